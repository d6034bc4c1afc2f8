//! `embsolve generate --kind blobs`: a seeded Gaussian mixture written as Parquet (the way Ray Data
//! writes it), HDF5 or `.npy`, with `id` and `label` columns and a `manifest.json`.
//!
//! The rows are drawn in global row order from one ChaCha stream seeded by `seed`, so the data do
//! not depend on the number of shards. Cluster centres are uniform in `[-10, 10]^dim`; each row
//! picks a cluster uniformly and adds `noise` times a standard normal vector.

use super::manifest::{Manifest, ManifestFile};
use super::{hdf5_input, npy, parquet, Format};
use embsolve_kernels::error::{Error, Result};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;
use std::path::{Path, PathBuf};

/// What to generate.
#[derive(Debug, Clone)]
pub struct BlobsParams {
    pub n_rows: usize,
    pub dim: usize,
    pub clusters: usize,
    pub noise: f64,
    pub seed: u64,
    pub format: Format,
    pub shards: usize,
    /// Store float16 instead of float32.
    pub half: bool,
    pub out: PathBuf,
}

/// The mixture: centres, then rows drawn in order.
struct Blobs {
    rng: ChaCha8Rng,
    centres: Vec<f32>,
    dim: usize,
    clusters: usize,
    noise: f32,
}

impl Blobs {
    fn new(params: &BlobsParams) -> Blobs {
        let mut rng = ChaCha8Rng::seed_from_u64(params.seed);
        let centres = (0..params.clusters * params.dim)
            .map(|_| rng.gen_range(-10.0f32..10.0))
            .collect();
        Blobs {
            rng,
            centres,
            dim: params.dim,
            clusters: params.clusters,
            noise: params.noise as f32,
        }
    }

    /// The next `n` rows: values (row-major) and labels.
    fn next_rows(&mut self, n: usize) -> (Vec<f32>, Vec<i64>) {
        let mut values = Vec::with_capacity(n * self.dim);
        let mut labels = Vec::with_capacity(n);
        for _ in 0..n {
            let cluster = self.rng.gen_range(0..self.clusters);
            labels.push(cluster as i64);
            let centre = &self.centres[cluster * self.dim..(cluster + 1) * self.dim];
            for &c in centre {
                let z: f32 = self.rng.sample(StandardNormal);
                values.push(c + self.noise * z);
            }
        }
        (values, labels)
    }
}

/// Rows of each shard: as even as possible, in order.
fn shard_sizes(n_rows: usize, shards: usize) -> Vec<usize> {
    (0..shards)
        .map(|s| (s + 1) * n_rows / shards - s * n_rows / shards)
        .collect()
}

fn check(params: &BlobsParams) -> Result<()> {
    if params.n_rows == 0 || params.dim == 0 || params.clusters == 0 || params.shards == 0 {
        return Err(Error::usage(
            "generate: --n, --dim, --clusters and --shards must be at least 1",
        ));
    }
    if params.shards > params.n_rows {
        return Err(Error::usage(format!(
            "generate: --shards {} is more than --n {}",
            params.shards, params.n_rows
        )));
    }
    if !(params.noise.is_finite() && params.noise >= 0.0) {
        return Err(Error::usage(
            "generate: --noise must be a finite number >= 0",
        ));
    }
    if params.half && params.format == Format::Hdf5 {
        return Err(Error::usage(
            "generate: --dtype f16 is available for parquet and npy (HDF5 output is float32)",
        ));
    }
    Ok(())
}

fn output_error(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::output(format!("{}: {e}", path.display()))
}

fn single_file(params: &BlobsParams) -> bool {
    params.shards == 1 && Format::from_extension(&params.out) == Some(params.format)
}

/// Generate the dataset; returns a one-line summary.
pub fn blobs(params: &BlobsParams) -> Result<String> {
    check(params)?;
    let out = &params.out;
    let single = single_file(params);
    if single {
        if let Some(parent) = out.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| output_error(parent, e))?;
        }
    } else {
        std::fs::create_dir_all(out).map_err(|e| output_error(out, e))?;
        let old = out.join(super::manifest::FILE_NAME);
        if old.exists() {
            std::fs::remove_file(&old).map_err(|e| output_error(&old, e))?;
        }
    }
    let mut blobs = Blobs::new(params);
    let sizes = shard_sizes(params.n_rows, params.shards);
    let mut files = Vec::with_capacity(sizes.len());
    let mut row_start = 0;
    for (shard, &rows) in sizes.iter().enumerate() {
        let rows_per_group = rows.div_ceil(4).clamp(1, 1 << 20);
        let name = format!("part-{shard:05}");
        let relative = match params.format {
            Format::Parquet => format!("{name}.parquet"),
            Format::Hdf5 => format!("{name}.h5"),
            Format::Npy => format!("embedding/{name}.npy"),
        };
        let path = if single {
            out.clone()
        } else {
            out.join(&relative)
        };
        write_shard(
            params,
            &mut blobs,
            &path,
            &name,
            rows,
            row_start,
            rows_per_group,
            single,
        )?;
        files.push(ManifestFile {
            path: relative,
            rows,
        });
        row_start += rows;
    }
    let dtype = if params.half { "float16" } else { "float32" };
    if !single {
        let manifest = Manifest {
            format: Some(params.format),
            column: Some("embedding".into()),
            id_column: Some("id".into()),
            label_column: Some("label".into()),
            dim: Some(params.dim),
            dtype: Some(dtype.into()),
            n_rows: Some(params.n_rows),
            files,
            producer: serde_json::json!({
                "tool": "embsolve generate",
                "kind": "blobs",
                "clusters": params.clusters,
                "noise": params.noise,
                "seed": params.seed,
            }),
        };
        super::manifest::write(out, &manifest)?;
    }
    Ok(format!(
        "wrote {} rows x {} ({dtype}, {} clusters) as {} in {} shard(s) to {}",
        params.n_rows,
        params.dim,
        params.clusters,
        params.format.name(),
        params.shards,
        out.display()
    ))
}

#[allow(clippy::too_many_arguments)]
fn write_shard(
    params: &BlobsParams,
    blobs: &mut Blobs,
    path: &Path,
    name: &str,
    rows: usize,
    row_start: usize,
    rows_per_group: usize,
    single: bool,
) -> Result<()> {
    let dim = params.dim;
    let ids =
        |start: usize, n: usize| -> Vec<i64> { (start..start + n).map(|r| r as i64).collect() };
    match params.format {
        Format::Parquet => {
            let mut writer =
                parquet::ShardWriter::create(path, "embedding", dim, params.half, rows_per_group)?;
            let mut done = 0;
            while done < rows {
                let n = rows_per_group.min(rows - done);
                let (values, labels) = blobs.next_rows(n);
                writer.write(&values, &ids(row_start + done, n), &labels)?;
                done += n;
            }
            writer.finish()
        }
        Format::Hdf5 => {
            let (values, labels) = blobs.next_rows(rows);
            let values = ndarray::ArrayView2::from_shape((rows, dim), &values)
                .map_err(|e| output_error(path, e))?;
            hdf5_input::write_shard(path, "embedding", values, &ids(row_start, rows), &labels)
        }
        Format::Npy => {
            let (id_path, label_path) = if single {
                (None, None)
            } else {
                let root = path
                    .parent()
                    .and_then(Path::parent)
                    .ok_or_else(|| output_error(path, "no dataset directory"))?;
                for column in ["embedding", "id", "label"] {
                    let dir = root.join(column);
                    std::fs::create_dir_all(&dir).map_err(|e| output_error(&dir, e))?;
                }
                (
                    Some(root.join("id").join(format!("{name}.npy"))),
                    Some(root.join("label").join(format!("{name}.npy"))),
                )
            };
            let descr = if params.half { "<f2" } else { "<f4" };
            let mut writer = npy::NpyWriter::create(path, descr, &[rows, dim])?;
            let mut all_labels = Vec::with_capacity(rows);
            let mut done = 0;
            while done < rows {
                let n = rows_per_group.min(rows - done);
                let (values, labels) = blobs.next_rows(n);
                let bytes: Vec<u8> = if params.half {
                    values
                        .iter()
                        .flat_map(|&v| half::f16::from_f32(v).to_le_bytes())
                        .collect()
                } else {
                    values.iter().flat_map(|v| v.to_le_bytes()).collect()
                };
                writer.write(&bytes)?;
                all_labels.extend(labels);
                done += n;
            }
            writer.finish()?;
            if let (Some(id_path), Some(label_path)) = (id_path, label_path) {
                for (file, values) in [(id_path, ids(row_start, rows)), (label_path, all_labels)] {
                    let mut w = npy::NpyWriter::create(&file, "<i8", &[rows])?;
                    let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
                    w.write(&bytes)?;
                    w.finish()?;
                }
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_split_rows_evenly_in_order() {
        assert_eq!(shard_sizes(10, 3), vec![3, 3, 4]);
        assert_eq!(shard_sizes(7, 7), vec![1; 7]);
        assert_eq!(shard_sizes(5, 1), vec![5]);
    }

    #[test]
    fn rows_do_not_depend_on_how_they_are_drawn() {
        let params = BlobsParams {
            n_rows: 10,
            dim: 4,
            clusters: 3,
            noise: 0.5,
            seed: 11,
            format: Format::Npy,
            shards: 1,
            half: false,
            out: PathBuf::from("unused"),
        };
        let (all, all_labels) = Blobs::new(&params).next_rows(10);
        let mut parts = Blobs::new(&params);
        let (mut a, mut la) = parts.next_rows(3);
        let (b, lb) = parts.next_rows(7);
        a.extend(b);
        la.extend(lb);
        assert_eq!(all, a);
        assert_eq!(all_labels, la);
        assert!(all_labels.iter().all(|&l| (0..3).contains(&l)));
    }
}
