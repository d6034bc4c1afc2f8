//! Partitioned approximate kNN (`knn.method = "partitioned"`), with a recall measured on an exact
//! sample.
//!
//! 1. **Cells.** k-means on a seeded sample of rows (`TRAIN_ROWS_PER_CELL` per cell) gives
//!    `knn.partitions` centroids (spherical for cosine: unit centroids). Assignment is the exact
//!    kNN search of the rows against the centroids, so a row's cells are its `probes` nearest
//!    centroids by canonical distance, ties to the lower cell. Sums are exact (fixed point), so
//!    the centroids have the same bits for any rank or thread count.
//! 2. **Home cells.** Every row is stored in its nearest cell. Cells are dealt to ranks by size
//!    (largest first, to the least loaded rank) and rows travel to their cell's owner by one
//!    `alltoallv`. Each owner searches every cell against itself (the symmetric GEMM pass: each
//!    pair once for both lists), and the lists travel back to the rows' ranks.
//! 3. **Further probes.** A row's other probed cells are searched by shipping the row to each
//!    cell's owner (in rounds of at most `ROUND_ROWS` rows per rank, to bound memory), where the
//!    cell's rows are its reference block; the partial lists come back and are merged at the
//!    row's rank.
//! 4. **Certificate.** A seeded sample of `knn.recall_sample` rows is searched exactly (one ring
//!    pass for the sample only). With `knn.probes = 0` the sample's lists are extended one cell at
//!    a time until their recall reaches `knn.recall`; that probe count is then used for every
//!    row. The final lists of the sample give the recall estimate and its 95% interval.
//!    When the target needs more probes than [`break_even_probes`] (where the further probes
//!    would cost more than the exact ring for every row), the exact lists are computed instead.
//! 5. **Short lists.** A row whose probed cells hold fewer than k other rows is searched exactly
//!    (a second ring pass for those rows only), so every list is full.
//!
//! Every list is the exact top-k, by (canonical distance, global row), of the rows of the cells it
//! probed; the cells depend only on the centroids, and those only on the data and the seed. The
//! lists are therefore identical for any number of ranks or threads.

mod exchange;
mod train;

use super::knn::{agree_on_blocks, check_k, exact_knn_of_rows, KnnLists};
use crate::config::Metric;
use embsolve_comm::Comm;
use embsolve_kernels::error::{Error, Result};
use embsolve_kernels::knn::EMPTY_ROW;
use embsolve_kernels::lanczos::hashed_uniform;
use embsolve_kernels::layout::RowLayout;
use ndarray::ArrayView2;

/// Training rows per cell (k-means on a sample; faiss trains with 39 to 256 per cell).
pub const TRAIN_ROWS_PER_CELL: usize = 64;
/// Sample rows per parallel task when the training sums its cells.
const TRAIN_SUM_ROWS: usize = 8192;
/// Most Lloyd iterations of the training.
pub const TRAIN_ITERATIONS: usize = 12;
/// Most probes `knn.probes = 0` tries before it settles for the best it reached.
pub const AUTO_MAX_PROBES: usize = 64;
/// How much more a further probe costs per pair of rows than the exact ring (its GEMMs are
/// smaller, and every pair is computed for one side only). Measured (bench/runs/2026-12-08):
/// 3.2 on 100,000 x 128 Gaussian rows with bounded probe lists (5.5 before the bounds), 8 on
/// 20,000 x 4096 hashed protein 3-mers.
pub const PROBE_COST_RATIO: usize = 6;

/// The probe count above which the exact search of every row is cheaper: further probes cost
/// about `PROBE_COST_RATIO` n (p - 1) n / cells pair operations against the ring's n^2 / 2, so
/// p = 1 + cells / (2 `PROBE_COST_RATIO`).
pub fn break_even_probes(cells: usize) -> usize {
    1 + cells / (2 * PROBE_COST_RATIO)
}

/// What the certificate sample decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ProbeChoice {
    /// This many probes meet the target (or are the most worth trying).
    Probes(usize),
    /// The target needs more probes than the break-even (this many were tried): exact lists.
    Exact(usize),
}

/// Rows per rank shipped in one round of further probes.
pub const ROUND_ROWS: usize = 1 << 16;

/// Hash streams of the seeded choices.
const TRAIN_STREAM: u64 = 0x0074_7261_696e;
const CERTIFICATE_STREAM: u64 = 0x6365_7274;

/// Settings of a partitioned search (the `knn` keys).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PartitionedParams {
    /// Cells; 0 = about sqrt(n).
    pub partitions: usize,
    /// Cells searched per row; 0 = the fewest that reach `recall` on the certificate sample.
    pub probes: usize,
    pub recall: f64,
    pub recall_sample: usize,
    pub seed: u64,
}

/// The measured recall@k of the certificate sample.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RecallEstimate {
    /// Rows in the sample.
    pub sample: u64,
    pub recall: f64,
    /// 95% confidence interval of the mean over rows (normal approximation, clamped to [0, 1]).
    pub low: f64,
    pub high: f64,
}

/// What a partitioned search did, for the log and `run.json`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PartitionedSummary {
    pub partitions: usize,
    pub probes: usize,
    /// True when `probes` was chosen from the target recall.
    pub probes_auto: bool,
    pub recall: Option<RecallEstimate>,
    /// Rows searched exactly because their probed cells held fewer than k other rows.
    pub exact_rows: u64,
    pub training_iterations: usize,
    /// Rows in the largest and the smallest cell.
    pub largest_cell: u64,
    pub smallest_cell: u64,
    /// True when the target recall needed more probes than the exact search costs: the lists
    /// are then the exact ones (computed by the caller), and `recall` is 1.
    pub exact_fallback: bool,
}

/// The number of cells for `n` rows: `partitions`, or about sqrt(n) when 0.
pub fn resolve_partitions(n_rows: usize, partitions: usize) -> usize {
    if partitions > 0 {
        partitions.min(n_rows).max(1)
    } else {
        ((n_rows as f64).sqrt().round() as usize).clamp(1, n_rows.max(1))
    }
}

/// Approximate kNN of this rank's rows (`local`, global rows `layout.range(rank)`) by the
/// partitioned search of the module doc (collective). Lists are nearest first, self excluded,
/// ties to the smaller global row, full (k entries), and identical for any rank or thread count.
/// `None` when the target recall needs more probes than the exact search costs (the summary says
/// so): the caller then computes the exact lists.
pub fn partitioned_knn(
    comm: &dyn Comm,
    layout: &RowLayout,
    local: ArrayView2<f32>,
    k: usize,
    metric: Metric,
    params: &PartitionedParams,
) -> Result<(Option<KnnLists>, PartitionedSummary)> {
    check_k(layout, k)?;
    let dim = agree_on_blocks(comm, layout, local)?;
    let n = layout.n_rows;
    let start = layout.start(comm.rank());
    let wanted = resolve_partitions(n, params.partitions);
    if params.probes > wanted {
        return Err(Error::config(format!(
            "invalid value for `knn.probes`: {} is more than the {wanted} partitions (knn.partitions \
             = {}{})",
            params.probes,
            params.partitions,
            if params.partitions == 0 { ", about sqrt(n)" } else { "" }
        )));
    }
    let standard = local.as_standard_layout();
    let rows = standard.as_slice().expect("standard layout is contiguous");
    let ctx = Search {
        comm,
        rows,
        dim,
        start,
        n,
        k,
        metric,
    };

    let started = std::time::Instant::now();
    let (centroids, training_iterations) = ctx.train(wanted, params.seed);
    let n_cells = centroids.len() / dim.max(1);
    log::info!(
        "knn partitioned: {n_cells} cells trained in {training_iterations} iterations ({:.2} s)",
        started.elapsed().as_secs_f64()
    );

    let local_rows: Vec<usize> = (0..layout.local_rows(comm.rank())).collect();
    let first_probes = params.probes.max(1);
    let mut cells = ctx.nearest_cells(&local_rows, &centroids, first_probes);
    log::debug!(
        "knn partitioned: rows assigned to cells ({:.2} s)",
        started.elapsed().as_secs_f64()
    );
    let homes: Vec<u32> = cells.iter().step_by(first_probes).copied().collect();
    let mut sizes = vec![0u64; n_cells];
    for &cell in &homes {
        sizes[cell as usize] += 1;
    }
    comm.allreduce_sum_u64(&mut sizes);
    let owners = deal_cells(&sizes, comm.size());
    let store = ctx.distribute(&homes, &owners);
    log::debug!(
        "knn partitioned: rows sent to their cells' ranks ({:.2} s)",
        started.elapsed().as_secs_f64()
    );
    let mut lists = ctx.home_search(&store);
    log::info!(
        "knn partitioned: home cells searched ({:.2} s)",
        started.elapsed().as_secs_f64()
    );

    // The certificate sample and its exact lists.
    let fraction = params.recall_sample as f64 / n as f64;
    let sample: Vec<usize> = local_rows
        .iter()
        .copied()
        .filter(|&row| unit_key(params.seed, CERTIFICATE_STREAM, (start + row) as u64) < fraction)
        .collect();
    let mut sample_size = [sample.len() as u64];
    comm.allreduce_sum_u64(&mut sample_size);
    let exact_sample = if sample_size[0] > 0 {
        Some(exact_knn_of_rows(comm, layout, local, &sample, k, metric)?)
    } else {
        None
    };

    log::debug!(
        "knn partitioned: certificate sample searched exactly ({:.2} s)",
        started.elapsed().as_secs_f64()
    );
    let probes = if params.probes > 0 {
        params.probes
    } else {
        let exact = exact_sample
            .as_ref()
            .expect("probes = 0 needs a sample (checked with the config)");
        let choice = ctx.choose_probes(
            &store,
            &sample,
            &lists,
            exact,
            &centroids,
            &owners,
            params.recall,
        );
        let chosen = match choice {
            ProbeChoice::Probes(chosen) => chosen,
            ProbeChoice::Exact(tried) => {
                let summary = PartitionedSummary {
                    partitions: n_cells,
                    probes: tried,
                    probes_auto: true,
                    recall: Some(RecallEstimate {
                        sample: sample_size[0],
                        recall: 1.0,
                        low: 1.0,
                        high: 1.0,
                    }),
                    exact_rows: n as u64,
                    training_iterations,
                    largest_cell: sizes.iter().copied().max().unwrap_or(0),
                    smallest_cell: sizes.iter().copied().min().unwrap_or(0),
                    exact_fallback: true,
                };
                return Ok((None, summary));
            }
        };
        if chosen > 1 {
            cells = ctx.nearest_cells(&local_rows, &centroids, chosen);
        }
        chosen
    };
    if probes > 1 {
        ctx.further_probes(&store, &cells, probes, &owners, &mut lists);
    }
    log::info!(
        "knn partitioned: {probes} probes searched ({:.2} s)",
        started.elapsed().as_secs_f64()
    );

    // Short lists: exact search for those rows.
    let short: Vec<usize> = local_rows
        .iter()
        .copied()
        .filter(|&row| lists.indices[row * k..(row + 1) * k].contains(&EMPTY_ROW))
        .collect();
    let mut short_count = [short.len() as u64];
    comm.allreduce_sum_u64(&mut short_count);
    if short_count[0] > 0 {
        let exact = exact_knn_of_rows(comm, layout, local, &short, k, metric)?;
        for (i, &row) in short.iter().enumerate() {
            lists.indices[row * k..(row + 1) * k]
                .copy_from_slice(&exact.indices[i * k..(i + 1) * k]);
            lists.distances[row * k..(row + 1) * k]
                .copy_from_slice(&exact.distances[i * k..(i + 1) * k]);
        }
    }

    let recall = exact_sample.as_ref().map(|exact| {
        let found: Vec<u64> = sample
            .iter()
            .flat_map(|&row| lists.indices[row * k..(row + 1) * k].iter().copied())
            .collect();
        ctx.recall(&found, exact)
    });
    let summary = PartitionedSummary {
        partitions: n_cells,
        probes,
        probes_auto: params.probes == 0,
        recall,
        exact_rows: short_count[0],
        training_iterations,
        largest_cell: sizes.iter().copied().max().unwrap_or(0),
        smallest_cell: sizes.iter().copied().min().unwrap_or(0),
        exact_fallback: false,
    };
    Ok((Some(lists), summary))
}

/// A uniform key in [0, 1) from (seed, stream, global row).
fn unit_key(seed: u64, stream: u64, row: u64) -> f64 {
    (hashed_uniform(seed, stream, row) + 1.0) * 0.5
}

/// Cells to ranks: largest first (lower cell on ties), each to the least loaded rank (lower rank
/// on ties), the load being the sum of its cells' squared sizes (the search work).
pub fn deal_cells(sizes: &[u64], n_ranks: usize) -> Vec<u32> {
    let mut order: Vec<usize> = (0..sizes.len()).collect();
    order.sort_by(|&a, &b| sizes[b].cmp(&sizes[a]).then(a.cmp(&b)));
    let mut load = vec![0u128; n_ranks.max(1)];
    let mut owners = vec![0u32; sizes.len()];
    for cell in order {
        let (rank, _) = load
            .iter()
            .enumerate()
            .min_by(|a, b| a.1.cmp(b.1).then(a.0.cmp(&b.0)))
            .expect("at least one rank");
        owners[cell] = rank as u32;
        load[rank] += u128::from(sizes[cell]) * u128::from(sizes[cell]).max(1);
    }
    owners
}

/// Sorted (distance, row) lists of length k: merge `other` into `list` (top k of the union; an
/// entry already in `list` is kept once).
pub fn merge_lists(
    indices: &mut [u64],
    distances: &mut [f32],
    other_indices: &[u64],
    other_distances: &[f32],
) {
    let k = indices.len();
    let mut merged_i = Vec::with_capacity(k);
    let mut merged_d = Vec::with_capacity(k);
    let (mut a, mut b) = (0, 0);
    while merged_i.len() < k {
        let take_a = match (a < k, b < other_indices.len()) {
            (false, false) => break,
            (true, false) => true,
            (false, true) => false,
            (true, true) => {
                let (da, ia) = (distances[a], indices[a]);
                let (db, ib) = (other_distances[b], other_indices[b]);
                da < db || (da == db && ia <= ib)
            }
        };
        let (row, distance) = if take_a {
            a += 1;
            (indices[a - 1], distances[a - 1])
        } else {
            b += 1;
            (other_indices[b - 1], other_distances[b - 1])
        };
        if row == EMPTY_ROW {
            break;
        }
        if merged_i.last() != Some(&row) && !merged_i.contains(&row) {
            merged_i.push(row);
            merged_d.push(distance);
        }
    }
    merged_i.resize(k, EMPTY_ROW);
    merged_d.resize(k, f32::INFINITY);
    indices.copy_from_slice(&merged_i);
    distances.copy_from_slice(&merged_d);
}

/// The rows of the cells a rank owns: per cell, its global rows (ascending) and its rows.
struct CellStore {
    cells: Vec<(u32, Vec<u64>, Vec<f32>)>,
    /// Position in `cells` of each cell this rank owns.
    slot: std::collections::HashMap<u32, usize>,
}

/// The shared state of one partitioned search on one rank.
struct Search<'a> {
    comm: &'a dyn Comm,
    /// This rank's rows, row-major.
    rows: &'a [f32],
    dim: usize,
    /// Global row of local row 0.
    start: usize,
    n: usize,
    k: usize,
    metric: Metric,
}

impl Search<'_> {
    fn row(&self, local: usize) -> &[f32] {
        &self.rows[local * self.dim..(local + 1) * self.dim]
    }

    /// The rows `locals` as one contiguous block.
    fn gather(&self, locals: &[usize]) -> Vec<f32> {
        let mut out = Vec::with_capacity(locals.len() * self.dim);
        for &row in locals {
            out.extend_from_slice(self.row(row));
        }
        out
    }

    /// Recall@k of lists (`found`, k per sample row in sample order) against the sample's exact
    /// lists (collective).
    fn recall(&self, found: &[u64], exact: &KnnLists) -> RecallEstimate {
        let k = self.k;
        let mut totals = [0u64; 3];
        for (truth, list) in exact.indices.chunks_exact(k).zip(found.chunks_exact(k)) {
            let hits = list.iter().filter(|id| truth.contains(id)).count() as u64;
            totals[0] += 1;
            totals[1] += hits;
            totals[2] += hits * hits;
        }
        self.comm.allreduce_sum_u64(&mut totals);
        recall_estimate(totals[0], totals[1], totals[2], k)
    }
}
/// Mean recall of `rows` rows with `hits` hits in all (and `hits_sq` the sum of squared hits per
/// row), with its 95% interval.
pub fn recall_estimate(rows: u64, hits: u64, hits_sq: u64, k: usize) -> RecallEstimate {
    if rows == 0 {
        return RecallEstimate {
            sample: 0,
            recall: 1.0,
            low: 0.0,
            high: 1.0,
        };
    }
    let m = rows as f64;
    let k = k as f64;
    let mean = hits as f64 / (m * k);
    let second = hits_sq as f64 / (m * k * k);
    let variance = (second - mean * mean).max(0.0) * m / (m - 1.0).max(1.0);
    let half = 1.96 * (variance / m).sqrt();
    RecallEstimate {
        sample: rows,
        recall: mean,
        low: (mean - half).max(0.0),
        high: (mean + half).min(1.0),
    }
}

#[cfg(test)]
mod tests;
