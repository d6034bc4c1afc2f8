//! The nearest centroids of many rows (the cells of a partitioned search): one GEMM tile of rows
//! against all centroids, then the canonical distances of the few centroids whose GEMM key is
//! within the error margin of the p-th best. The result is the exact top-p by (canonical distance,
//! centroid), as in the `knn` module doc, with none of a search's ordering or lists: with a few
//! hundred or thousand centroids, every row meets every centroid anyway.

use super::distance::{exact_distance, sum_sq};
use super::gemm::gemm_tile;
use crate::types::Metric;
use rayon::prelude::*;

/// Rows per GEMM tile.
const ASSIGN_ROWS: usize = 128;

/// The relative error margin of a GEMM dot product of `dim` terms against the canonical one:
/// four times the worst-case `2 γ` (as the search's filter uses).
pub(super) fn gemm_margin(dim: usize) -> f64 {
    let unit = f64::from(f32::EPSILON) / 2.0;
    let width = (dim + 8) as f64;
    4.0 * 2.0 * width * unit / (1.0 - width * unit)
}

/// One thread's buffers, sized by the first tile and reused for the rest.
#[derive(Default)]
struct Scratch {
    /// GEMM values of a tile of rows against every centroid.
    tile: Vec<f32>,
    /// One row's keys, and a copy for the selection of the p-th.
    keys: Vec<f32>,
    scratch: Vec<f32>,
    /// (canonical distance, centroid) of the centroids within the margin.
    candidates: Vec<(f32, u32)>,
}

/// For every row of `rows` (row-major, `dim` columns) its `probes` nearest centroids
/// (`centroids` row-major), nearest first by canonical distance, ties to the lower centroid;
/// row-major `n_rows x probes`. A row whose keys are not finite gets centroid 0 throughout.
/// For cosine, rows and centroids must be unit length. The same result for any thread count.
pub fn nearest_centroids(
    rows: &[f32],
    dim: usize,
    centroids: &[f32],
    probes: usize,
    metric: Metric,
) -> Vec<u32> {
    let n_rows = rows.len().checked_div(dim).unwrap_or(0);
    let n_cells = centroids.len().checked_div(dim).unwrap_or(0);
    let probes = probes.min(n_cells);
    let mut out = vec![0u32; n_rows * probes];
    if probes == 0 || n_rows == 0 {
        return out;
    }
    let half_sq: Vec<f32> = centroids
        .chunks_exact(dim)
        .map(|c| match metric {
            Metric::L2 => 0.5 * sum_sq(c),
            Metric::Cosine | Metric::Ip => 0.0,
        })
        .collect();
    let largest_norm = centroids
        .chunks_exact(dim)
        .map(|c| sum_sq(c).sqrt())
        .fold(0.0f32, f32::max);
    let margin = gemm_margin(dim);
    out.par_chunks_mut(ASSIGN_ROWS * probes)
        .enumerate()
        .for_each_init(
            Scratch::default,
            |Scratch {
                 tile,
                 keys,
                 scratch,
                 candidates,
             },
             (chunk, cells)| {
                let first = chunk * ASSIGN_ROWS;
                let count = cells.len() / probes;
                let block = &rows[first * dim..(first + count) * dim];
                tile.resize(count * n_cells, 0.0);
                gemm_tile(tile, n_cells, block, count, centroids, n_cells, dim);
                for (i, row_cells) in cells.chunks_exact_mut(probes).enumerate() {
                    let query = &block[i * dim..(i + 1) * dim];
                    let row_keys = &tile[i * n_cells..(i + 1) * n_cells];
                    keys.clear();
                    keys.extend(row_keys.iter().zip(&half_sq).map(|(&g, &h)| g - h));
                    // The p-th largest GEMM key (NaN sorts last).
                    scratch.clear();
                    scratch.extend_from_slice(keys);
                    let (_, pth, _) = scratch.select_nth_unstable_by(probes - 1, |a, b| {
                        b.partial_cmp(a)
                            .unwrap_or_else(|| b.is_nan().cmp(&a.is_nan()))
                    });
                    let pth = *pth;
                    if !pth.is_finite() {
                        row_cells.fill(0);
                        continue;
                    }
                    let norm = f64::from(sum_sq(query).sqrt());
                    let error = margin * (norm + f64::from(largest_norm)).powi(2);
                    let threshold = (f64::from(pth) - 2.0 * error) as f32;
                    candidates.clear();
                    for (cell, &key) in keys.iter().enumerate() {
                        if key >= threshold {
                            let centroid = &centroids[cell * dim..(cell + 1) * dim];
                            candidates.push((exact_distance(metric, query, centroid), cell as u32));
                        }
                    }
                    candidates.sort_unstable_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
                    for (slot, &(_, cell)) in row_cells.iter_mut().zip(candidates.iter()) {
                        *slot = cell;
                    }
                }
            },
        );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    fn unit_rows(n: usize, dim: usize, seed: u64) -> Vec<f32> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut rows: Vec<f32> = (0..n * dim).map(|_| rng.gen_range(-1.0..1.0)).collect();
        for row in rows.chunks_exact_mut(dim) {
            let norm = sum_sq(row).sqrt();
            row.iter_mut().for_each(|v| *v /= norm);
        }
        rows
    }

    /// The oracle: every canonical distance, sorted by (distance, centroid).
    fn naive(rows: &[f32], dim: usize, centroids: &[f32], p: usize, metric: Metric) -> Vec<u32> {
        rows.chunks_exact(dim)
            .flat_map(|q| {
                let mut all: Vec<(f32, u32)> = centroids
                    .chunks_exact(dim)
                    .enumerate()
                    .map(|(c, centroid)| (exact_distance(metric, q, centroid), c as u32))
                    .collect();
                all.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
                all.into_iter().take(p).map(|(_, c)| c).collect::<Vec<_>>()
            })
            .collect()
    }

    #[test]
    fn equals_the_naive_top_p_for_every_metric() {
        let dim = 37;
        let rows = unit_rows(700, dim, 1);
        let centroids = unit_rows(53, dim, 2);
        for metric in [Metric::Cosine, Metric::Ip, Metric::L2] {
            for p in [1, 3, 53] {
                let got = nearest_centroids(&rows, dim, &centroids, p, metric);
                assert_eq!(
                    got,
                    naive(&rows, dim, &centroids, p, metric),
                    "{metric:?} p={p}"
                );
            }
        }
    }

    #[test]
    fn duplicate_centroids_tie_to_the_lower_one() {
        let dim = 40;
        let rows = unit_rows(300, dim, 3);
        let mut centroids = unit_rows(10, dim, 4);
        let copy = centroids[2 * dim..3 * dim].to_vec();
        centroids[7 * dim..8 * dim].copy_from_slice(&copy);
        for metric in [Metric::Cosine, Metric::L2] {
            let got = nearest_centroids(&rows, dim, &centroids, 10, metric);
            assert_eq!(got, naive(&rows, dim, &centroids, 10, metric));
            for cells in got.chunks_exact(10) {
                let at2 = cells.iter().position(|&c| c == 2).unwrap();
                let at7 = cells.iter().position(|&c| c == 7).unwrap();
                assert_eq!(at7, at2 + 1, "the copy follows its twin");
            }
        }
    }

    #[test]
    fn the_thread_count_changes_nothing() {
        let dim = 64;
        let rows = unit_rows(1000, dim, 5);
        let centroids = unit_rows(31, dim, 6);
        let one = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .unwrap()
            .install(|| nearest_centroids(&rows, dim, &centroids, 4, Metric::Cosine));
        let three = rayon::ThreadPoolBuilder::new()
            .num_threads(3)
            .build()
            .unwrap()
            .install(|| nearest_centroids(&rows, dim, &centroids, 4, Metric::Cosine));
        assert_eq!(one, three);
    }
}
