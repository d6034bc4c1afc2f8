//! Tile skipping for the exact kNN: a row order that makes the GEMM tiles compact, and per-tile
//! balls that prove a query cannot find a list member anywhere in a tile.
//!
//! # The order
//!
//! [`cluster_order`] groups rows by a coarse k-means: centroids from k-means++ and Lloyd on a
//! stratified sample of the rows, then every row to its nearest centroid (one f32 GEMM), rows
//! sorted by (cluster, position). The order only decides which tiles can be skipped, never what a
//! list holds: the search is exact for any order (`kernels::knn` module doc), so the order may use
//! fast, approximate arithmetic.
//!
//! # The bound
//!
//! A tile's rows are split into *pieces*, the maximal runs of one cluster. A piece has a centre
//! `c` (its mean, rounded to f32) and a radius `r >= |b - c|` for each of its rows `b` (summed in
//! f64, rounded up). For a query `q` and any row `b` of the piece:
//!
//! - `q.b = q.c + q.(b - c) <= q.c + |q| r` (Cauchy–Schwarz): the key of `ip` and `cosine`;
//! - `|q - b| >= |q - c| - r` (triangle inequality), so the `l2` key
//!   `q.b - |b|^2/2 = (|q|^2 - |q - b|^2)/2 <= (|q|^2 - max(0, |q - c| - r)^2)/2`.
//!
//! These bound the key from above. A GEMM key exceeds the exact key by at most `2 γ_D |q| |b|`,
//! and the f32 sums in the bound itself (`q.c`, `|q|^2`) err by as much again, so the bound is
//! raised by the search's margin (four times `2 γ_D`) times `(|q| + max |b| + |c|)^2`. When the
//! raised bound is below the query's filter threshold for every piece of a tile, no GEMM key of
//! the tile can pass that query's filter: skipping the tile offers the query exactly the same
//! (empty) set of candidates as computing it.

use crate::knn::{canonical_dot, gemm_tile};
use crate::types::Metric;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

/// Sample rows per cluster for the k-means of [`cluster_order`].
const SAMPLE_PER_CLUSTER: usize = 16;
/// Most clusters (larger blocks get larger clusters; a tile is then part of one cluster).
const MAX_CLUSTERS: usize = 1024;
/// Lloyd iterations on the sample.
const SAMPLE_ITERATIONS: usize = 4;
/// Rows per GEMM when rows are sent to their nearest centroid.
const ASSIGN_ROWS: usize = 256;
/// Seed of the sample's k-means++ (fixed: the same rows always get the same order).
const ORDER_SEED: u64 = 0x6b6e_6e5f_6f72_6465;

/// A permutation of rows: position `i` of the new order holds row `order[i]`, which belongs to
/// cluster `labels[i]` (pieces never cross a change of label).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowOrder {
    pub order: Vec<usize>,
    pub labels: Vec<u32>,
}

impl RowOrder {
    /// The rows as they are, one cluster.
    pub fn identity(n_rows: usize) -> RowOrder {
        RowOrder {
            order: (0..n_rows).collect(),
            labels: vec![0; n_rows],
        }
    }
}

/// Whether ordering a block of `n_rows` reference rows pays for `n_queries` queries: the order
/// costs one GEMM of the rows against about `n_rows / cluster_rows` centroids, the search one
/// against the queries, and skipped tiles can save at most the search. Ordered when the centroids
/// are at most an eighth of the queries; otherwise the block keeps its order (the lists are the
/// same either way).
pub fn worth_ordering(n_rows: usize, cluster_rows: usize, n_queries: usize) -> bool {
    let n_clusters = n_rows.div_ceil(cluster_rows.max(1)).min(MAX_CLUSTERS);
    n_clusters.saturating_mul(8) <= n_queries
}

/// Order `rows` (row-major, `dim` columns) so that rows near each other in space are near each
/// other in the order: about `cluster_rows` rows per cluster (see the module doc). Deterministic:
/// the same rows give the same order for any thread count.
pub fn cluster_order(rows: &[f32], dim: usize, cluster_rows: usize) -> RowOrder {
    let n_rows = rows.len().checked_div(dim).unwrap_or(0);
    let n_clusters = n_rows.div_ceil(cluster_rows.max(1)).min(MAX_CLUSTERS);
    if n_clusters < 2 || dim == 0 {
        return RowOrder::identity(n_rows);
    }
    let stride = (n_rows / (n_clusters * SAMPLE_PER_CLUSTER)).max(1);
    let sample: Vec<f32> = rows
        .chunks_exact(dim)
        .step_by(stride)
        .flat_map(|row| row.iter().copied())
        .collect();
    let centroids = chained(&sample_centroids(&sample, dim, n_clusters), dim);
    let n_clusters = centroids.len() / dim;
    let row_labels = nearest_centroids(rows, dim, &centroids);

    // Counting sort by label, stable in the row position.
    let mut starts = vec![0usize; n_clusters + 1];
    for &label in &row_labels {
        starts[label as usize + 1] += 1;
    }
    for j in 0..n_clusters {
        starts[j + 1] += starts[j];
    }
    let mut order = vec![0usize; n_rows];
    let mut labels = vec![0u32; n_rows];
    for (row, &label) in row_labels.iter().enumerate() {
        let slot = &mut starts[label as usize];
        order[*slot] = row;
        labels[*slot] = label;
        *slot += 1;
    }
    RowOrder { order, labels }
}

/// The nearest centroid of every row (largest `r.c - |c|^2 / 2`, one f32 GEMM per
/// [`ASSIGN_ROWS`] rows; ties and NaN to the lower centroid).
fn nearest_centroids(rows: &[f32], dim: usize, centroids: &[f32]) -> Vec<u32> {
    let n_rows = rows.len() / dim;
    let n_clusters = centroids.len() / dim;
    let half_sq_norms: Vec<f32> = centroids
        .chunks_exact(dim)
        .map(|c| 0.5 * canonical_dot(c, c))
        .collect();
    let mut nearest = vec![0u32; n_rows];
    nearest
        .par_chunks_mut(ASSIGN_ROWS)
        .enumerate()
        .for_each_init(Vec::new, |tile: &mut Vec<f32>, (chunk, labels)| {
            let first = chunk * ASSIGN_ROWS;
            tile.resize(labels.len() * n_clusters, 0.0);
            gemm_tile(
                tile,
                n_clusters,
                &rows[first * dim..(first + labels.len()) * dim],
                labels.len(),
                centroids,
                n_clusters,
                dim,
            );
            for (label, keys) in labels.iter_mut().zip(tile.chunks_exact(n_clusters)) {
                let mut best = (0u32, f32::NEG_INFINITY);
                for (j, (&key, &offset)) in keys.iter().zip(&half_sq_norms).enumerate() {
                    let key = key - offset;
                    if key > best.1 {
                        best = (j as u32, key);
                    }
                }
                *label = best.0;
            }
        });
    nearest
}

/// `n_clusters` centroids of the sample (row-major f32): k-means++ seeds drawn with a fixed seed,
/// then [`SAMPLE_ITERATIONS`] Lloyd iterations (assignment by GEMM, means in f64; an empty
/// cluster keeps its centroid).
fn sample_centroids(sample: &[f32], dim: usize, n_clusters: usize) -> Vec<f32> {
    let n = sample.len() / dim;
    let n_clusters = n_clusters.min(n);
    let mut rng = ChaCha8Rng::seed_from_u64(ORDER_SEED);
    let sq_norms: Vec<f32> = sample
        .chunks_exact(dim)
        .map(|row| canonical_dot(row, row))
        .collect();
    let mut centroids: Vec<f32> = Vec::with_capacity(n_clusters * dim);
    let mut nearest = vec![f32::INFINITY; n];
    let mut pick = rng.gen_range(0..n);
    loop {
        let seed = &sample[pick * dim..(pick + 1) * dim];
        centroids.extend_from_slice(seed);
        if centroids.len() == n_clusters * dim {
            break;
        }
        let seed_sq = sq_norms[pick];
        nearest
            .par_iter_mut()
            .zip(sample.par_chunks_exact(dim))
            .zip(&sq_norms)
            .with_min_len(64)
            .for_each(|((near, row), &sq)| {
                let d2 = (sq + seed_sq - 2.0 * canonical_dot(row, seed)).max(0.0);
                if d2 < *near {
                    *near = d2;
                }
            });
        let total: f64 = nearest.iter().map(|&d| f64::from(d)).sum();
        pick = if total > 0.0 && total.is_finite() {
            let target = rng.gen::<f64>() * total;
            let mut sum = 0.0;
            nearest
                .iter()
                .position(|&d| {
                    sum += f64::from(d);
                    sum > target
                })
                .unwrap_or(n - 1)
        } else {
            rng.gen_range(0..n)
        };
    }
    let mut means = vec![0.0f64; n_clusters * dim];
    for _ in 0..SAMPLE_ITERATIONS {
        let labels = nearest_centroids(sample, dim, &centroids);
        let mut counts = vec![0usize; n_clusters];
        means.iter_mut().for_each(|m| *m = 0.0);
        for (row, &label) in sample.chunks_exact(dim).zip(&labels) {
            let label = label as usize;
            counts[label] += 1;
            for (m, &v) in means[label * dim..(label + 1) * dim].iter_mut().zip(row) {
                *m += f64::from(v);
            }
        }
        for (j, &count) in counts.iter().enumerate() {
            if count > 0 {
                for (c, &m) in centroids[j * dim..(j + 1) * dim]
                    .iter_mut()
                    .zip(&means[j * dim..(j + 1) * dim])
                {
                    *c = (m / count as f64) as f32;
                }
            }
        }
    }
    centroids
}

/// The centroids (row-major, `dim` columns) reordered into a greedy nearest-neighbour
/// chain from the first one: consecutive clusters are near each other, so a tile that holds the
/// end of one cluster and the start of the next stays compact. O(clusters^2 dim), with at most
/// [`MAX_CLUSTERS`] clusters.
fn chained(centroids: &[f32], dim: usize) -> Vec<f32> {
    let n = centroids.len() / dim;
    let mut left: Vec<usize> = (1..n).collect();
    let mut chain = Vec::with_capacity(n);
    let mut at = 0;
    chain.push(at);
    while !left.is_empty() {
        let here = &centroids[at * dim..(at + 1) * dim];
        let distance = |j: usize| -> f64 {
            here.iter()
                .zip(&centroids[j * dim..(j + 1) * dim])
                .map(|(&a, &b)| {
                    let d = f64::from(a) - f64::from(b);
                    d * d
                })
                .sum()
        };
        let (slot, _) = left.par_iter().map(|&j| distance(j)).enumerate().reduce(
            || (usize::MAX, f64::INFINITY),
            |a, b| {
                if b.1 < a.1 || (b.1 == a.1 && b.0 < a.0) {
                    b
                } else {
                    a
                }
            },
        );
        let slot = if slot == usize::MAX { 0 } else { slot };
        at = left.remove(slot);
        chain.push(at);
    }
    chain
        .iter()
        .flat_map(|&j| centroids[j * dim..(j + 1) * dim].iter().copied())
        .collect()
}

/// The balls of every tile of an ordered block (tiles of `tile_rows` consecutive rows; the last
/// may hold fewer), one per piece.
#[derive(Debug, Clone)]
pub struct TileBalls {
    dim: usize,
    /// Pieces of tile t: `tile_pieces[t]..tile_pieces[t + 1]`.
    tile_pieces: Vec<usize>,
    /// Row-major `n_pieces x dim` centres.
    centres: Vec<f32>,
    centre_norms: Vec<f64>,
    radii: Vec<f64>,
    /// Largest row norm per tile.
    max_norms: Vec<f64>,
}

/// One piece: its centre, the centre's norm and the radius (rounded up).
fn piece_ball(rows: &[f32], dim: usize) -> (Vec<f32>, f64, f64) {
    let n = (rows.len() / dim) as f64;
    let mut sum = vec![0.0f64; dim];
    for row in rows.chunks_exact(dim) {
        for (s, &v) in sum.iter_mut().zip(row) {
            *s += f64::from(v);
        }
    }
    let centre: Vec<f32> = sum.iter().map(|&s| (s / n) as f32).collect();
    let centre_norm = centre
        .iter()
        .map(|&c| f64::from(c) * f64::from(c))
        .sum::<f64>()
        .sqrt();
    let mut radius2 = 0.0f64;
    for row in rows.chunks_exact(dim) {
        let d2: f64 = row
            .iter()
            .zip(&centre)
            .map(|(&b, &c)| {
                let d = f64::from(b) - f64::from(c);
                d * d
            })
            .sum();
        radius2 = radius2.max(d2);
    }
    // The f64 sums of D squares err by far less than 1e-9 relative.
    (centre, centre_norm, radius2.sqrt() * (1.0 + 1e-9))
}

impl TileBalls {
    /// Balls of the tiles of `rows` (row-major, `dim` columns, `labels[i]` the cluster of row i).
    pub fn new(rows: &[f32], dim: usize, labels: &[u32], tile_rows: usize) -> TileBalls {
        let n_rows = rows.len().checked_div(dim).unwrap_or(0);
        assert_eq!(labels.len(), n_rows, "one label per row");
        let tile_rows = tile_rows.max(1);
        struct Tile {
            balls: Vec<(Vec<f32>, f64, f64)>,
            max_norm: f64,
        }
        let tiles: Vec<Tile> = (0..n_rows.div_ceil(tile_rows))
            .into_par_iter()
            .map(|tile| {
                let first = tile * tile_rows;
                let end = (first + tile_rows).min(n_rows);
                let mut balls = Vec::new();
                let mut piece_first = first;
                for row in first + 1..=end {
                    if row == end || labels[row] != labels[piece_first] {
                        balls.push(piece_ball(&rows[piece_first * dim..row * dim], dim));
                        piece_first = row;
                    }
                }
                let max_norm = rows[first * dim..end * dim]
                    .chunks_exact(dim)
                    .map(|row| {
                        row.iter()
                            .map(|&v| f64::from(v) * f64::from(v))
                            .sum::<f64>()
                    })
                    .fold(0.0f64, f64::max)
                    .sqrt();
                Tile { balls, max_norm }
            })
            .collect();
        let mut balls = TileBalls {
            dim,
            tile_pieces: vec![0],
            centres: Vec::new(),
            centre_norms: Vec::new(),
            radii: Vec::new(),
            max_norms: Vec::with_capacity(tiles.len()),
        };
        for tile in tiles {
            for (centre, centre_norm, radius) in tile.balls {
                balls.centres.extend(centre);
                balls.centre_norms.push(centre_norm);
                balls.radii.push(radius);
            }
            balls.tile_pieces.push(balls.radii.len());
            balls.max_norms.push(tile.max_norm * (1.0 + 1e-9));
        }
        balls
    }

    /// Tiles covered.
    pub fn n_tiles(&self) -> usize {
        self.max_norms.len()
    }

    /// Pieces of `tile`.
    pub fn n_pieces(&self, tile: usize) -> usize {
        self.tile_pieces[tile + 1] - self.tile_pieces[tile]
    }

    /// True when no row of `tile` can pass the filter of query `query` (norm `norm`, squared
    /// norm `sq_norm`, filter threshold `threshold`, GEMM error margin `margin`): see the module
    /// doc. False whenever in doubt (an open list, NaN).
    #[allow(clippy::too_many_arguments)]
    pub fn rules_out(
        &self,
        metric: Metric,
        margin: f64,
        query: &[f32],
        norm: f32,
        sq_norm: f32,
        threshold: f32,
        tile: usize,
    ) -> bool {
        if threshold == f32::NEG_INFINITY || threshold.is_nan() {
            return false;
        }
        let threshold = f64::from(threshold);
        let norm = f64::from(norm);
        let sq_norm = f64::from(sq_norm);
        let dim = self.dim;
        let max_norm = self.max_norms[tile];
        (self.tile_pieces[tile]..self.tile_pieces[tile + 1]).all(|piece| {
            let centre = &self.centres[piece * dim..(piece + 1) * dim];
            let dot = f64::from(canonical_dot(query, centre));
            let centre_norm = self.centre_norms[piece];
            let radius = self.radii[piece];
            let bound = match metric {
                Metric::Ip | Metric::Cosine => dot + norm * radius,
                Metric::L2 => {
                    let near = norm + centre_norm;
                    let sq_gap =
                        sq_norm + centre_norm * centre_norm - 2.0 * dot - margin * near * near;
                    let gap = (sq_gap.max(0.0).sqrt() - radius).max(0.0);
                    0.5 * (sq_norm - gap * gap)
                }
            };
            let reach = norm + max_norm + centre_norm;
            bound + margin * reach * reach < threshold
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::knn::exact_distance;

    /// `n_blobs` tight blobs, rows shuffled.
    fn blobs(n_rows: usize, dim: usize, n_blobs: usize, seed: u64) -> (Vec<f32>, Vec<usize>) {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let centres: Vec<f32> = (0..n_blobs * dim)
            .map(|_| rng.gen_range(-10.0f32..10.0))
            .collect();
        let mut rows = Vec::with_capacity(n_rows * dim);
        let mut blob_of = Vec::with_capacity(n_rows);
        for _ in 0..n_rows {
            let blob = rng.gen_range(0..n_blobs);
            blob_of.push(blob);
            for j in 0..dim {
                rows.push(centres[blob * dim + j] + rng.gen_range(-1.0f32..1.0));
            }
        }
        (rows, blob_of)
    }

    #[test]
    fn the_order_is_a_permutation_that_keeps_blobs_together() {
        let dim = 8;
        let (rows, blob_of) = blobs(2000, dim, 5, 3);
        let order = cluster_order(&rows, dim, 100);
        let mut seen = order.order.clone();
        seen.sort_unstable();
        assert_eq!(seen, (0..2000).collect::<Vec<_>>());
        // Every cluster holds rows of one blob only, and labels come in runs.
        for window in order.order.windows(2).zip(order.labels.windows(2)) {
            let (rows_pair, labels_pair) = window;
            if labels_pair[0] == labels_pair[1] {
                assert_eq!(blob_of[rows_pair[0]], blob_of[rows_pair[1]]);
            }
        }
        assert!(order.labels.windows(2).all(|l| l[0] <= l[1]));
        // Same rows, same order (k-means on the sample is deterministic).
        assert_eq!(cluster_order(&rows, dim, 100), order);
        // Too few rows for two clusters: the identity.
        assert_eq!(cluster_order(&rows, dim, 5000), RowOrder::identity(2000));
    }

    #[test]
    fn a_tile_ruled_out_holds_no_row_that_passes_the_filter() {
        // For every metric, query and tile: when `rules_out` says so, every exact key of the tile
        // is below the threshold, and thresholds just above the tile's best key are never ruled out.
        let dim = 16;
        let (mut rows, _) = blobs(600, dim, 6, 9);
        for metric in [Metric::L2, Metric::Ip, Metric::Cosine] {
            if metric == Metric::Cosine {
                for row in rows.chunks_exact_mut(dim) {
                    let norm = canonical_dot(row, row).sqrt();
                    row.iter_mut().for_each(|v| *v /= norm);
                }
            }
            let order = cluster_order(&rows, dim, 50);
            let ordered: Vec<f32> = order
                .order
                .iter()
                .flat_map(|&i| rows[i * dim..(i + 1) * dim].iter().copied())
                .collect();
            let tile_rows = 64;
            let balls = TileBalls::new(&ordered, dim, &order.labels, tile_rows);
            let margin = 4.0 * 2.0 * (dim + 8) as f64 * f64::from(f32::EPSILON) / 2.0;
            let mut ruled_out = 0;
            for query in ordered.chunks_exact(dim).step_by(7) {
                let sq_norm = canonical_dot(query, query);
                let norm = sq_norm.sqrt();
                for tile in 0..balls.n_tiles() {
                    let first = tile * tile_rows;
                    let end = (first + tile_rows).min(600);
                    // The largest exact key in the tile.
                    let best = ordered[first * dim..end * dim]
                        .chunks_exact(dim)
                        .map(|b| {
                            let distance = f64::from(exact_distance(metric, query, b));
                            match metric {
                                Metric::Ip => -distance,
                                Metric::Cosine => 1.0 - distance,
                                Metric::L2 => 0.5 * (f64::from(sq_norm) - distance * distance),
                            }
                        })
                        .fold(f64::NEG_INFINITY, f64::max);
                    let at_best = best as f32;
                    assert!(
                        !balls.rules_out(metric, margin, query, norm, sq_norm, at_best, tile),
                        "{metric:?}: a tile whose best key {best} meets the threshold is ruled out"
                    );
                    let far = (best + 0.5 * best.abs() + 1.0) as f32;
                    if balls.rules_out(metric, margin, query, norm, sq_norm, far, tile) {
                        ruled_out += 1;
                    }
                }
            }
            assert!(
                ruled_out > 0,
                "{metric:?}: the bound never rules anything out"
            );
            assert!(!balls.rules_out(
                metric,
                margin,
                &ordered[..dim],
                1.0,
                1.0,
                f32::NEG_INFINITY,
                0
            ));
        }
    }
}
