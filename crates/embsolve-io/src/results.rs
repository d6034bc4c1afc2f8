//! `results.h5`: rank 0 creates the file with every dataset at its full size, then each rank in
//! turn writes its own row slices by hyperslab (serial HDF5, one writer at a time).
//!
//! Layout (SPEC "Outputs"): `/ids`, `/knn/{indices,distances}`, `/components/labels`, `/leiden/labels`,
//! `/pagerank/scores`, `/spectral/{eigenvalues,embedding,labels}`, `/fft/{mean_power,features}`,
//! `/fft/period3/{seq,start,score}`, `/stats/{mean,norm_min,norm_max}` and the root attributes
//! `config`, `version`, `n_ranks`. `io::results_reader` reads the same names back.

use embsolve_kernels::error::{Error, Result};
use embsolve_kernels::results::{GlobalResults, Ids, LocalResults};
use hdf5::types::VarLenUnicode;
use hdf5::{Dataset, File, Group, H5Type, Location};
use ndarray::{s, ArrayView1, ArrayView2};
use std::path::Path;

fn output_error(path: &Path, what: &str, e: impl std::fmt::Display) -> Error {
    Error::output(format!("{}: {what}: {e}", path.display()))
}

/// Whether `/knn/*` is written: `output.write_knn` of the resolved config (default true).
fn knn_written(global: &GlobalResults) -> bool {
    global.knn_k.is_some()
        && global
            .config_toml
            .parse::<toml::Table>()
            .ok()
            .and_then(|t| t.get("output")?.get("write_knn")?.as_bool())
            .unwrap_or(true)
}

fn unicode(path: &Path, text: &str) -> Result<VarLenUnicode> {
    text.parse::<VarLenUnicode>()
        .map_err(|e| output_error(path, "string attribute", e))
}

struct Writer<'a> {
    path: &'a Path,
    file: File,
}

impl Writer<'_> {
    fn group(&self, name: &str) -> Result<Group> {
        self.file
            .group(name)
            .or_else(|_| self.file.create_group(name))
            .map_err(|e| output_error(self.path, name, e))
    }

    fn dataset<T: H5Type>(&self, name: &str, shape: &[usize]) -> Result<Dataset> {
        self.file
            .new_dataset::<T>()
            .shape(shape)
            .create(name)
            .map_err(|e| output_error(self.path, name, e))
    }

    fn dataset_with<T: H5Type>(&self, name: &str, data: &[T]) -> Result<Dataset> {
        self.file
            .new_dataset_builder()
            .with_data(data)
            .create(name)
            .map_err(|e| output_error(self.path, name, e))
    }

    fn scalar<T: H5Type>(&self, name: &str, value: T) -> Result<()> {
        self.file
            .new_dataset::<T>()
            .shape(())
            .create(name)
            .and_then(|ds| ds.write_scalar(&value))
            .map_err(|e| output_error(self.path, name, e))
    }

    fn attr<T: H5Type>(&self, location: &Location, name: &str, value: T) -> Result<()> {
        location
            .new_attr::<T>()
            .create(name)
            .and_then(|a| a.write_scalar(&value))
            .map_err(|e| output_error(self.path, &format!("attribute {name}"), e))
    }

    fn open(&self, name: &str) -> Result<Dataset> {
        self.file
            .dataset(name)
            .map_err(|e| output_error(self.path, name, e))
    }

    fn rows_1d<T: H5Type>(&self, name: &str, start: usize, values: &[T]) -> Result<()> {
        if values.is_empty() {
            return Ok(());
        }
        self.open(name)?
            .write_slice(ArrayView1::from(values), s![start..start + values.len()])
            .map_err(|e| output_error(self.path, name, e))
    }

    fn rows_2d<T: H5Type + Clone>(
        &self,
        name: &str,
        start: usize,
        values: ArrayView2<T>,
    ) -> Result<()> {
        if values.nrows() == 0 {
            return Ok(());
        }
        let end = start + values.nrows();
        let values = values.as_standard_layout();
        self.open(name)?
            .write_slice(&values, s![start..end, ..])
            .map_err(|e| output_error(self.path, name, e))
    }
}

/// Create `path` (replacing any old file) with every dataset sized for `global.n_rows` rows, the
/// global values and the attributes. Per-row datasets are filled by [`write_local`].
pub fn create(path: &Path, global: &GlobalResults) -> Result<()> {
    hdf5::silence_errors(true);
    let file = File::create(path).map_err(|e| output_error(path, "cannot create", e))?;
    let w = Writer { path, file };
    let n = global.n_rows;

    w.attr(&w.file, "config", unicode(path, &global.config_toml)?)?;
    w.attr(&w.file, "version", unicode(path, &global.version)?)?;
    w.attr(&w.file, "n_ranks", global.n_ranks as i64)?;

    if global.string_ids {
        w.dataset::<VarLenUnicode>("ids", &[n])?;
    } else {
        w.dataset::<i64>("ids", &[n])?;
    }

    w.group("stats")?;
    w.dataset_with("stats/mean", &global.stats_mean)?;
    w.scalar("stats/norm_min", global.norm_min)?;
    w.scalar("stats/norm_max", global.norm_max)?;

    if let (true, Some(k)) = (knn_written(global), global.knn_k) {
        w.group("knn")?;
        let indices = w.dataset::<i64>("knn/indices", &[n, k])?;
        w.attr(&indices, "k", k as i64)?;
        w.dataset::<f32>("knn/distances", &[n, k])?;
    }
    if let Some(n_components) = global.n_components {
        w.group("components")?;
        let labels = w.dataset::<i64>("components/labels", &[n])?;
        w.attr(&labels, "n_components", n_components as i64)?;
    }
    if let Some(pagerank) = &global.pagerank {
        w.group("pagerank")?;
        let scores = w.dataset::<f64>("pagerank/scores", &[n])?;
        w.attr(&scores, "iterations", pagerank.iterations as i64)?;
        w.attr(&scores, "residual", pagerank.residual)?;
    }
    if let Some(leiden) = &global.leiden {
        w.group("leiden")?;
        let labels = w.dataset::<i64>("leiden/labels", &[n])?;
        w.attr(&labels, "n_clusters", leiden.n_clusters as i64)?;
        w.attr(&labels, "modularity", leiden.modularity)?;
        w.attr(&labels, "iterations", leiden.iterations as i64)?;
        w.attr(&labels, "converged", u8::from(leiden.converged))?;
    }
    if let Some(spectral) = &global.spectral {
        w.group("spectral")?;
        let eigenvalues = w.dataset_with("spectral/eigenvalues", &spectral.eigenvalues)?;
        w.attr(&eigenvalues, "iterations", spectral.iterations as i64)?;
        w.attr(&eigenvalues, "converged", u8::from(spectral.converged))?;
        w.dataset::<f32>("spectral/embedding", &[n, spectral.n_eigs])?;
        let labels = w.dataset::<i32>("spectral/labels", &[n])?;
        w.attr(&labels, "n_clusters", spectral.n_clusters as i64)?;
    }
    if let Some(fft) = &global.fft {
        w.group("fft")?;
        let mean_power = w.dataset_with("fft/mean_power", &fft.mean_power)?;
        w.attr(&mean_power, "n_sequences", fft.n_sequences as i64)?;
        w.attr(&mean_power, "n_windows", fft.n_windows as i64)?;
        w.dataset::<f32>("fft/features", &[fft.n_sequences, fft.bins])?;
        w.group("fft/period3")?;
        w.dataset::<i64>("fft/period3/seq", &[fft.n_windows])?;
        w.dataset::<i64>("fft/period3/start", &[fft.n_windows])?;
        w.dataset::<f32>("fft/period3/score", &[fft.n_windows])?;
        w.dataset_with("fft/score_edges", &fft.score_edges)?;
        w.dataset_with("fft/score_counts", &fft.score_counts)?;
    }
    w.file.flush().map_err(|e| output_error(path, "flush", e))
}

/// Write this rank's slices (rows `local.row_start ..`) into the file made by [`create`].
pub fn write_local(path: &Path, global: &GlobalResults, local: &LocalResults) -> Result<()> {
    hdf5::silence_errors(true);
    let file = File::open_rw(path).map_err(|e| output_error(path, "cannot open", e))?;
    let w = Writer { path, file };
    let start = local.row_start;
    let n_local = local.n_local;
    if start + n_local > global.n_rows {
        return Err(Error::internal(format!(
            "{}: rows {start}..{} exceed the {} rows of the file",
            path.display(),
            start + n_local,
            global.n_rows
        )));
    }

    match local.ids.as_ref().unwrap_or(&Ids::RowNumbers) {
        Ids::Str(ids) if global.string_ids => {
            let values = ids
                .iter()
                .map(|id| unicode(path, id))
                .collect::<Result<Vec<_>>>()?;
            w.rows_1d("ids", start, &values)?;
        }
        Ids::Int(ids) if !global.string_ids => w.rows_1d("ids", start, ids)?,
        Ids::RowNumbers if !global.string_ids => {
            let rows: Vec<i64> = (start..start + n_local).map(|r| r as i64).collect();
            w.rows_1d("ids", start, &rows)?;
        }
        _ => {
            return Err(Error::internal(format!(
                "{}: the id kind of rows {start}.. differs from the other ranks'",
                path.display()
            )))
        }
    }

    if let (true, Some(k)) = (knn_written(global), global.knn_k) {
        if let (Some(indices), Some(distances)) = (&local.knn_indices, &local.knn_distances) {
            let shape = (n_local, k);
            let indices = ArrayView2::from_shape(shape, indices)
                .map_err(|e| output_error(path, "knn/indices", e))?;
            let distances = ArrayView2::from_shape(shape, distances)
                .map_err(|e| output_error(path, "knn/distances", e))?;
            w.rows_2d("knn/indices", start, indices)?;
            w.rows_2d("knn/distances", start, distances)?;
        }
    }
    if let (Some(_), Some(labels)) = (global.n_components, &local.component_labels) {
        w.rows_1d("components/labels", start, labels)?;
    }
    if let (Some(_), Some(scores)) = (&global.pagerank, &local.pagerank_scores) {
        w.rows_1d("pagerank/scores", start, scores)?;
    }
    if let (Some(_), Some(labels)) = (&global.leiden, &local.leiden_labels) {
        w.rows_1d("leiden/labels", start, labels)?;
    }
    if global.spectral.is_some() {
        if let Some(embedding) = &local.spectral_embedding {
            w.rows_2d("spectral/embedding", start, embedding.view())?;
        }
        if let Some(labels) = &local.spectral_labels {
            w.rows_1d("spectral/labels", start, labels)?;
        }
    }
    if global.fft.is_some() {
        if let Some(features) = &local.fft_features {
            w.rows_2d("fft/features", local.fft_seq_start, features.view())?;
        }
        if let Some(windows) = &local.fft_period3 {
            let at = local.fft_window_start;
            let seq: Vec<i64> = windows.iter().map(|w| w.0).collect();
            let window_start: Vec<i64> = windows.iter().map(|w| w.1).collect();
            let score: Vec<f32> = windows.iter().map(|w| w.2).collect();
            w.rows_1d("fft/period3/seq", at, &seq)?;
            w.rows_1d("fft/period3/start", at, &window_start)?;
            w.rows_1d("fft/period3/score", at, &score)?;
        }
    }
    w.file.flush().map_err(|e| output_error(path, "flush", e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use embsolve_kernels::results::{FftSummary, LeidenSummary, PagerankSummary, SpectralSummary};
    use ndarray::Array2;

    fn global(n: usize, string_ids: bool) -> GlobalResults {
        GlobalResults {
            version: "9.9.9".into(),
            config_toml: "[output]\nwrite_knn = true\n".into(),
            n_rows: n,
            dim: 3,
            n_ranks: 2,
            string_ids,
            ids_max_len: 4,
            int_ids: !string_ids,
            stats_mean: vec![0.5, -1.0, 2.0],
            norm_min: 0.25,
            norm_max: 4.0,
            knn_k: Some(2),
            n_components: Some(3),
            pagerank: Some(PagerankSummary {
                iterations: 17,
                residual: 1e-11,
            }),
            leiden: Some(LeidenSummary {
                n_clusters: 2,
                modularity: 0.375,
                iterations: 2,
                converged: true,
            }),
            spectral: Some(SpectralSummary {
                eigenvalues: vec![1.0, 0.9],
                n_clusters: 2,
                n_eigs: 2,
                iterations: 5,
                converged: true,
            }),
            fft: Some(FftSummary {
                mean_power: vec![1.0, 2.0, 3.0],
                bins: 3,
                n_sequences: 2,
                n_windows: 3,
                score_edges: vec![0.0, 1.0],
                score_counts: vec![3],
            }),
        }
    }

    fn local(global: &GlobalResults, row_start: usize, n_local: usize) -> LocalResults {
        let rows: Vec<usize> = (row_start..row_start + n_local).collect();
        let ids = if global.string_ids {
            Ids::Str(rows.iter().map(|r| format!("s{r}")).collect())
        } else {
            Ids::Int(rows.iter().map(|&r| 100 + r as i64).collect())
        };
        LocalResults {
            row_start,
            n_local,
            ids: Some(ids),
            knn_indices: Some(rows.iter().flat_map(|&r| [r as i64, -(r as i64)]).collect()),
            knn_distances: Some(rows.iter().flat_map(|&r| [r as f32, 0.5]).collect()),
            component_labels: Some(rows.iter().map(|&r| (r % 3) as i64).collect()),
            pagerank_scores: Some(rows.iter().map(|&r| r as f64 / 10.0).collect()),
            leiden_labels: Some(rows.iter().map(|&r| (r % 2) as i64).collect()),
            spectral_embedding: Some(Array2::from_shape_fn((n_local, 2), |(i, j)| {
                (rows[i] * 10 + j) as f32
            })),
            spectral_labels: Some(rows.iter().map(|&r| (r % 2) as i32).collect()),
            fft_seq_start: row_start / 3,
            fft_features: Some(Array2::from_elem((1, 3), row_start as f32)),
            fft_window_start: if row_start == 0 { 0 } else { 2 },
            fft_period3: Some(if row_start == 0 {
                vec![(0, 0, 0.5), (0, 60, 0.25)]
            } else {
                vec![(1, 0, 0.75)]
            }),
        }
    }

    #[test]
    fn two_writers_fill_every_row() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("results.h5");
        let g = global(5, false);
        create(&path, &g).unwrap();
        write_local(&path, &g, &local(&g, 3, 2)).unwrap();
        write_local(&path, &g, &local(&g, 0, 3)).unwrap();

        let file = File::open(&path).unwrap();
        assert_eq!(
            file.dataset("ids").unwrap().read_raw::<i64>().unwrap(),
            vec![100, 101, 102, 103, 104]
        );
        let knn = file
            .dataset("knn/indices")
            .unwrap()
            .read_2d::<i64>()
            .unwrap();
        assert_eq!(knn.shape(), &[5, 2]);
        assert_eq!(knn[[4, 0]], 4);
        assert_eq!(knn[[4, 1]], -4);
        let distances = file
            .dataset("knn/distances")
            .unwrap()
            .read_2d::<f32>()
            .unwrap();
        assert_eq!(distances[[3, 0]], 3.0);
        let components = file.dataset("components/labels").unwrap();
        assert_eq!(components.read_raw::<i64>().unwrap(), vec![0, 1, 2, 0, 1]);
        let leiden = file.dataset("leiden/labels").unwrap();
        assert_eq!(leiden.read_raw::<i64>().unwrap(), vec![0, 1, 0, 1, 0]);
        let modularity = leiden.attr("modularity").unwrap();
        assert_eq!(modularity.read_scalar::<f64>().unwrap(), 0.375);
        assert_eq!(
            components
                .attr("n_components")
                .unwrap()
                .read_scalar::<i64>()
                .unwrap(),
            3
        );
        let scores = file.dataset("pagerank/scores").unwrap();
        assert_eq!(scores.read_raw::<f64>().unwrap()[4], 0.4);
        assert_eq!(
            scores
                .attr("iterations")
                .unwrap()
                .read_scalar::<i64>()
                .unwrap(),
            17
        );
        let embedding = file
            .dataset("spectral/embedding")
            .unwrap()
            .read_2d::<f32>()
            .unwrap();
        assert_eq!(embedding[[4, 1]], 41.0);
        let labels = file.dataset("spectral/labels").unwrap();
        assert_eq!(labels.read_raw::<i32>().unwrap(), vec![0, 1, 0, 1, 0]);
        assert_eq!(
            labels
                .attr("n_clusters")
                .unwrap()
                .read_scalar::<i64>()
                .unwrap(),
            2
        );
        assert_eq!(
            file.dataset("stats/mean")
                .unwrap()
                .read_raw::<f64>()
                .unwrap(),
            vec![0.5, -1.0, 2.0]
        );
        assert_eq!(
            file.dataset("stats/norm_max")
                .unwrap()
                .read_scalar::<f64>()
                .unwrap(),
            4.0
        );
        let features = file
            .dataset("fft/features")
            .unwrap()
            .read_2d::<f32>()
            .unwrap();
        assert_eq!(features[[1, 0]], 3.0);
        assert_eq!(
            file.dataset("fft/period3/start")
                .unwrap()
                .read_raw::<i64>()
                .unwrap(),
            vec![0, 60, 0]
        );
        assert_eq!(
            file.attr("n_ranks").unwrap().read_scalar::<i64>().unwrap(),
            2
        );
        let version: VarLenUnicode = file.attr("version").unwrap().read_scalar().unwrap();
        assert_eq!(version.as_str(), "9.9.9");

        let back = crate::results_reader::read(&path, 100).unwrap();
        assert_eq!(back.n_rows, 5);
        assert_eq!(back.n_clusters, Some(2));
        assert_eq!(back.period3_track.unwrap(), vec![(0, 0.5), (60, 0.25)]);
    }

    #[test]
    fn string_ids_and_no_knn() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("results.h5");
        let mut g = global(4, true);
        g.config_toml = "[output]\nwrite_knn = false\n".into();
        g.fft = None;
        create(&path, &g).unwrap();
        write_local(&path, &g, &local(&g, 0, 2)).unwrap();
        write_local(&path, &g, &local(&g, 2, 2)).unwrap();
        let file = File::open(&path).unwrap();
        let ids: Vec<VarLenUnicode> = file.dataset("ids").unwrap().read_raw().unwrap();
        let ids: Vec<&str> = ids.iter().map(|s| s.as_str()).collect();
        assert_eq!(ids, vec!["s0", "s1", "s2", "s3"]);
        assert!(file.dataset("knn/indices").is_err());
        assert!(file.group("fft").is_err());
    }

    #[test]
    fn row_numbers_when_the_input_has_no_ids() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("results.h5");
        let mut g = global(3, false);
        g.knn_k = None;
        g.n_components = None;
        g.pagerank = None;
        g.spectral = None;
        g.fft = None;
        create(&path, &g).unwrap();
        let mut part = LocalResults {
            row_start: 1,
            n_local: 2,
            ..Default::default()
        };
        write_local(&path, &g, &part).unwrap();
        part.row_start = 0;
        part.n_local = 1;
        write_local(&path, &g, &part).unwrap();
        let file = File::open(&path).unwrap();
        assert_eq!(
            file.dataset("ids").unwrap().read_raw::<i64>().unwrap(),
            vec![0, 1, 2]
        );
    }
}
