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
//! 5. **Short lists.** A row whose probed cells hold fewer than k other rows is searched exactly
//!    (a second ring pass for those rows only), so every list is full.
//!
//! Every list is the exact top-k, by (canonical distance, global row), of the rows of the cells it
//! probed; the cells depend only on the centroids, and those only on the data and the seed. The
//! lists are therefore identical for any number of ranks or threads.

use super::knn::{agree_on_blocks, check_k, exact_knn_of_rows, KnnLists};
use crate::config::Metric;
use crate::telemetry::Progress;
use embsolve_comm::{allgatherv, allreduce_exact, alltoallv, Comm};
use embsolve_kernels::error::{Error, Result};
use embsolve_kernels::exact::ExactSum;
use embsolve_kernels::knn::{nearest_centroids, KnnSearch, TileShape, EMPTY_ROW};
use embsolve_kernels::lanczos::hashed_uniform;
use embsolve_kernels::layout::RowLayout;
use ndarray::ArrayView2;
use rayon::prelude::*;

/// Training rows per cell (k-means on a sample; faiss trains with 39 to 256 per cell).
pub const TRAIN_ROWS_PER_CELL: usize = 64;
/// Sample rows per parallel task when the training sums its cells.
const TRAIN_SUM_ROWS: usize = 8192;
/// Most Lloyd iterations of the training.
pub const TRAIN_ITERATIONS: usize = 12;
/// Most probes `knn.probes = 0` tries before it settles for the best it reached.
pub const AUTO_MAX_PROBES: usize = 64;
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
pub fn partitioned_knn(
    comm: &dyn Comm,
    layout: &RowLayout,
    local: ArrayView2<f32>,
    k: usize,
    metric: Metric,
    params: &PartitionedParams,
) -> Result<(KnnLists, PartitionedSummary)> {
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
        let chosen = ctx.choose_probes(
            &store,
            &sample,
            &lists,
            exact,
            &centroids,
            &owners,
            params.recall,
        );
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
    };
    Ok((lists, summary))
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

    /// The `probes` nearest cells of each row of `locals` (row-major, nearest first, ties to the
    /// lower cell), by the exact search against the centroids.
    fn nearest_cells(&self, locals: &[usize], centroids: &[f32], probes: usize) -> Vec<u32> {
        let n_local = self.rows.len() / self.dim.max(1);
        let whole = locals.len() == n_local && locals.iter().enumerate().all(|(i, &r)| i == r);
        let gathered;
        let queries = if whole {
            self.rows
        } else {
            gathered = self.gather(locals);
            &gathered[..]
        };
        nearest_centroids(queries, self.dim, centroids, probes, self.metric)
    }

    /// k-means centroids (`wanted` cells, fewer when the sample has fewer rows), row-major, and the
    /// Lloyd iterations run.
    fn train(&self, wanted: usize, seed: u64) -> (Vec<f32>, usize) {
        let comm = self.comm;
        let dim = self.dim;
        let n_local = self.rows.len() / dim.max(1);
        let fraction = (TRAIN_ROWS_PER_CELL * wanted) as f64 / self.n as f64;
        let keyed: Vec<(f64, usize)> = (0..n_local)
            .map(|row| {
                let key = unit_key(seed, TRAIN_STREAM, (self.start + row) as u64);
                (key, row)
            })
            .filter(|&(key, _)| fraction >= 1.0 || key < fraction)
            .collect();
        let sample: Vec<usize> = keyed.iter().map(|&(_, row)| row).collect();

        // Starting centroids: the sampled rows with the smallest keys.
        let mut smallest = keyed.clone();
        smallest.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        smallest.truncate(wanted);
        let offers: Vec<u64> = smallest
            .iter()
            .flat_map(|&(key, row)| [key.to_bits(), (self.start + row) as u64])
            .collect();
        let (all_offers, _) = allgatherv(comm, &offers);
        let mut chosen: Vec<(f64, u64)> = all_offers
            .chunks_exact(2)
            .map(|pair| (f64::from_bits(pair[0]), pair[1]))
            .collect();
        chosen.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        chosen.truncate(wanted);
        let n_cells = chosen.len();
        let end = (self.start + n_local) as u64;
        let mine: Vec<(usize, usize)> = chosen
            .iter()
            .enumerate()
            .filter(|(_, &(_, id))| id >= self.start as u64 && id < end)
            .map(|(cell, &(_, id))| (cell, id as usize - self.start))
            .collect();
        let mut offered = Vec::with_capacity(mine.len() * (dim + 1));
        for &(cell, row) in &mine {
            offered.push(f32::from_bits(cell as u32));
            offered.extend_from_slice(self.row(row));
        }
        let (all_rows, _) = allgatherv(comm, &offered);
        let mut centroids = vec![0.0f32; n_cells * dim];
        for record in all_rows.chunks_exact(dim + 1) {
            let cell = record[0].to_bits() as usize;
            centroids[cell * dim..(cell + 1) * dim].copy_from_slice(&record[1..]);
        }

        let mut labels = vec![u32::MAX; sample.len()];
        let mut iterations = 0;
        for _ in 0..TRAIN_ITERATIONS {
            iterations += 1;
            let assigned = self.nearest_cells(&sample, &centroids, 1);
            let mut changed = [assigned.iter().zip(&labels).filter(|(a, b)| a != b).count() as u64];
            labels = assigned;
            // Exact sums add in any order: chunks of the sample on all threads, merged.
            let empty = || {
                (
                    vec![ExactSum::default(); n_cells * dim],
                    vec![0u64; n_cells],
                )
            };
            let all_rows = self.rows;
            let (mut sums, mut counts) = sample
                .par_chunks(TRAIN_SUM_ROWS)
                .zip(labels.par_chunks(TRAIN_SUM_ROWS))
                .map(|(rows, cells)| {
                    let (mut sums, mut counts) = empty();
                    for (&row, &cell) in rows.iter().zip(cells) {
                        let cell = cell as usize;
                        counts[cell] += 1;
                        for (sum, &x) in sums[cell * dim..(cell + 1) * dim]
                            .iter_mut()
                            .zip(&all_rows[row * dim..(row + 1) * dim])
                        {
                            sum.add(f64::from(x));
                        }
                    }
                    (sums, counts)
                })
                .reduce(
                    empty,
                    |(mut sums, mut counts), (other_sums, other_counts)| {
                        sums.iter_mut()
                            .zip(other_sums)
                            .for_each(|(a, b)| a.merge(b));
                        counts
                            .iter_mut()
                            .zip(other_counts)
                            .for_each(|(a, b)| *a += b);
                        (sums, counts)
                    },
                );
            allreduce_exact(comm, &mut sums);
            comm.allreduce_sum_u64(&mut counts);
            comm.allreduce_sum_u64(&mut changed);
            for (cell, &count) in counts.iter().enumerate() {
                if count == 0 {
                    continue; // an empty cell keeps its centroid
                }
                let mean: Vec<f64> = sums[cell * dim..(cell + 1) * dim]
                    .iter()
                    .map(|s| s.value() / count as f64)
                    .collect();
                let scale = if self.metric == Metric::Cosine {
                    let norm = mean.iter().map(|v| v * v).sum::<f64>().sqrt();
                    if norm > 0.0 {
                        1.0 / norm
                    } else {
                        continue; // opposite rows cancel: keep the old centroid
                    }
                } else {
                    1.0
                };
                for (c, m) in centroids[cell * dim..(cell + 1) * dim]
                    .iter_mut()
                    .zip(&mean)
                {
                    *c = (m * scale) as f32;
                }
            }
            if changed[0] == 0 {
                break;
            }
        }
        (centroids, iterations)
    }

    /// Every row to the owner of its home cell; returns the cells this rank owns.
    fn distribute(&self, homes: &[u32], owners: &[u32]) -> CellStore {
        let comm = self.comm;
        let dim = self.dim;
        let n_ranks = comm.size();
        let mut by_rank: Vec<Vec<usize>> = vec![Vec::new(); n_ranks];
        for (row, &cell) in homes.iter().enumerate() {
            by_rank[owners[cell as usize] as usize].push(row);
        }
        let counts: Vec<usize> = by_rank.iter().map(Vec::len).collect();
        let order: Vec<usize> = by_rank.concat();
        let ids: Vec<u64> = order.iter().map(|&r| (self.start + r) as u64).collect();
        let cells: Vec<u32> = order.iter().map(|&r| homes[r]).collect();
        let sent = self.gather(&order);
        let (ids, _) = alltoallv(comm, &ids, &counts);
        let (cells, _) = alltoallv(comm, &cells, &counts);
        let data_counts: Vec<usize> = counts.iter().map(|c| c * dim).collect();
        let (data, _) = alltoallv(comm, &sent, &data_counts);
        drop(sent);
        // Received in (source rank, local row) order: ascending global row. A stable grouping by
        // cell keeps that order within each cell; every cell's buffers are sized once.
        let mut slot = std::collections::HashMap::new();
        let mut sizes: Vec<usize> = Vec::new();
        for &cell in &cells {
            let at = *slot.entry(cell).or_insert_with(|| {
                sizes.push(0);
                sizes.len() - 1
            });
            sizes[at] += 1;
        }
        let mut store: Vec<(u32, Vec<u64>, Vec<f32>)> =
            vec![(0, Vec::new(), Vec::new()); sizes.len()];
        for (&cell, &at) in &slot {
            store[at] = (
                cell,
                Vec::with_capacity(sizes[at]),
                Vec::with_capacity(sizes[at] * dim),
            );
        }
        for (i, &cell) in cells.iter().enumerate() {
            let at = slot[&cell];
            store[at].1.push(ids[i]);
            store[at].2.extend_from_slice(&data[i * dim..(i + 1) * dim]);
        }
        CellStore { cells: store, slot }
    }

    /// Every owned cell searched against itself; the lists return to the rows' ranks. Returns
    /// this rank's lists (short where the home cell holds k rows or fewer).
    fn home_search(&self, store: &CellStore) -> KnnLists {
        let comm = self.comm;
        let (dim, k, metric) = (self.dim, self.k, self.metric);
        let found: Vec<(Vec<u64>, Vec<u64>, Vec<f32>)> = store
            .cells
            .par_iter()
            .map(|(_, ids, rows)| {
                let view =
                    ArrayView2::from_shape((ids.len(), dim), rows.as_slice()).expect("rows x dim");
                let mut search =
                    KnnSearch::with_ids(view, ids.clone(), k, metric, 1, TileShape::default());
                search.add_block_with_ids(rows, ids);
                let lists = search.finish_partial();
                (
                    lists.ids.clone(),
                    lists.lists.indices,
                    lists.lists.distances,
                )
            })
            .collect();
        // Back to the rows' ranks, grouped by rank.
        let layout = RowLayout::new(self.n, comm.size());
        let mut by_rank: Vec<Vec<(usize, usize)>> = vec![Vec::new(); comm.size()];
        for (cell, (ids, _, _)) in found.iter().enumerate() {
            for (i, &id) in ids.iter().enumerate() {
                by_rank[layout.owner(id as usize)].push((cell, i));
            }
        }
        let counts: Vec<usize> = by_rank.iter().map(Vec::len).collect();
        let mut ids = Vec::new();
        let mut indices = Vec::new();
        let mut distances = Vec::new();
        for &(cell, i) in by_rank.iter().flatten() {
            let (cell_ids, cell_indices, cell_distances) = &found[cell];
            ids.push(cell_ids[i]);
            indices.extend_from_slice(&cell_indices[i * k..(i + 1) * k]);
            distances.extend_from_slice(&cell_distances[i * k..(i + 1) * k]);
        }
        let list_counts: Vec<usize> = counts.iter().map(|c| c * k).collect();
        let (ids, _) = alltoallv(comm, &ids, &counts);
        let (indices, _) = alltoallv(comm, &indices, &list_counts);
        let (distances, _) = alltoallv(comm, &distances, &list_counts);
        let n_local = self.rows.len() / dim.max(1);
        let mut lists = KnnLists {
            k,
            indices: vec![EMPTY_ROW; n_local * k],
            distances: vec![f32::INFINITY; n_local * k],
        };
        for (i, &id) in ids.iter().enumerate() {
            let row = id as usize - self.start;
            lists.indices[row * k..(row + 1) * k].copy_from_slice(&indices[i * k..(i + 1) * k]);
            lists.distances[row * k..(row + 1) * k].copy_from_slice(&distances[i * k..(i + 1) * k]);
        }
        lists
    }

    /// Rows `locals[i]` searched in cells `cells[i]` (at their owners, collective); returns one
    /// merged list (k entries, short where the cells hold fewer rows) per request.
    fn probe_round(
        &self,
        store: &CellStore,
        locals: &[usize],
        cells: &[Vec<u32>],
        owners: &[u32],
    ) -> (Vec<u64>, Vec<f32>) {
        let comm = self.comm;
        let (dim, k, metric) = (self.dim, self.k, self.metric);
        let n_ranks = comm.size();
        // One message per (request, owner): header [id, n_cells, cells...] and the row.
        let mut sent: Vec<Vec<(usize, Vec<u32>)>> = vec![Vec::new(); n_ranks];
        for (request, request_cells) in cells.iter().enumerate() {
            let mut per_owner: Vec<(u32, Vec<u32>)> = Vec::new();
            for &cell in request_cells {
                let owner = owners[cell as usize];
                match per_owner.iter_mut().find(|(o, _)| *o == owner) {
                    Some((_, list)) => list.push(cell),
                    None => per_owner.push((owner, vec![cell])),
                }
            }
            for (owner, owner_cells) in per_owner {
                sent[owner as usize].push((request, owner_cells));
            }
        }
        let mut header = Vec::new();
        let mut header_counts = vec![0usize; n_ranks];
        let mut data = Vec::new();
        let mut data_counts = vec![0usize; n_ranks];
        for (rank, messages) in sent.iter().enumerate() {
            let before = header.len();
            for (request, owner_cells) in messages {
                let row = locals[*request];
                header.push((self.start + row) as u64);
                header.push(owner_cells.len() as u64);
                header.extend(owner_cells.iter().map(|&c| u64::from(c)));
                data.extend_from_slice(self.row(row));
            }
            header_counts[rank] = header.len() - before;
            data_counts[rank] = messages.len() * dim;
        }
        let (header, _) = alltoallv(comm, &header, &header_counts);
        let (data, data_counts_in) = alltoallv(comm, &data, &data_counts);

        // Parse the received queries: (global row, cells) in arrival order.
        let mut queries: Vec<(u64, Vec<u32>)> = Vec::new();
        let mut at = 0;
        while at < header.len() {
            let id = header[at];
            let count = header[at + 1] as usize;
            let query_cells = header[at + 2..at + 2 + count]
                .iter()
                .map(|&c| c as u32)
                .collect();
            queries.push((id, query_cells));
            at += 2 + count;
        }
        // Per owned cell, the queries that probe it.
        let mut per_cell: Vec<Vec<usize>> = vec![Vec::new(); store.cells.len()];
        for (q, (_, query_cells)) in queries.iter().enumerate() {
            for cell in query_cells {
                per_cell[store.slot[cell]].push(q);
            }
        }
        let found: Vec<(Vec<usize>, Vec<u64>, Vec<f32>)> = per_cell
            .into_par_iter()
            .enumerate()
            .filter(|(_, qs)| !qs.is_empty())
            .map(|(slot, qs)| {
                let (_, ids, rows) = &store.cells[slot];
                let mut block = Vec::with_capacity(qs.len() * dim);
                for &q in &qs {
                    block.extend_from_slice(&data[q * dim..(q + 1) * dim]);
                }
                let view = ArrayView2::from_shape((qs.len(), dim), &block[..]).expect("rows x dim");
                let query_ids = qs.iter().map(|&q| queries[q].0).collect();
                let mut search =
                    KnnSearch::with_ids(view, query_ids, k, metric, 1, TileShape::default());
                search.add_block_with_ids(rows, ids);
                let lists = search.finish_partial().lists;
                (qs, lists.indices, lists.distances)
            })
            .collect();
        let mut back_indices = vec![EMPTY_ROW; queries.len() * k];
        let mut back_distances = vec![f32::INFINITY; queries.len() * k];
        for (qs, indices, distances) in &found {
            for (i, &q) in qs.iter().enumerate() {
                merge_lists(
                    &mut back_indices[q * k..(q + 1) * k],
                    &mut back_distances[q * k..(q + 1) * k],
                    &indices[i * k..(i + 1) * k],
                    &distances[i * k..(i + 1) * k],
                );
            }
        }
        // Lists go back in arrival order, which is the senders' order per rank.
        let back_counts: Vec<usize> = data_counts_in.iter().map(|c| c / dim.max(1) * k).collect();
        let (indices, _) = alltoallv(comm, &back_indices, &back_counts);
        let (distances, _) = alltoallv(comm, &back_distances, &back_counts);
        let mut out_indices = vec![EMPTY_ROW; locals.len() * k];
        let mut out_distances = vec![f32::INFINITY; locals.len() * k];
        let mut position = 0;
        for messages in &sent {
            for (request, _) in messages {
                let r = *request;
                merge_lists(
                    &mut out_indices[r * k..(r + 1) * k],
                    &mut out_distances[r * k..(r + 1) * k],
                    &indices[position * k..(position + 1) * k],
                    &distances[position * k..(position + 1) * k],
                );
                position += 1;
            }
        }
        (out_indices, out_distances)
    }

    /// The probe count for `target`: the sample's home-cell lists are extended one cell at a time
    /// until their recall against the exact lists reaches it (or `AUTO_MAX_PROBES`, or every
    /// cell). Collective.
    #[allow(clippy::too_many_arguments)]
    fn choose_probes(
        &self,
        store: &CellStore,
        sample: &[usize],
        lists: &KnnLists,
        exact: &KnnLists,
        centroids: &[f32],
        owners: &[u32],
        target: f64,
    ) -> usize {
        let k = self.k;
        let most = AUTO_MAX_PROBES.min(owners.len());
        let sample_cells = self.nearest_cells(sample, centroids, most);
        let mut indices = Vec::with_capacity(sample.len() * k);
        let mut distances = Vec::with_capacity(sample.len() * k);
        for &row in sample {
            indices.extend_from_slice(&lists.indices[row * k..(row + 1) * k]);
            distances.extend_from_slice(&lists.distances[row * k..(row + 1) * k]);
        }
        let mut probes = 1;
        loop {
            let estimate = self.recall(&indices, exact);
            log::info!(
                "knn partitioned: {probes} probes give recall {:.4} on the {}-row sample (target \
                 {target})",
                estimate.recall,
                estimate.sample
            );
            if estimate.recall >= target || probes >= most {
                if estimate.recall < target {
                    log::warn!(
                        "knn partitioned: recall {:.4} with {probes} probes is below knn.recall = \
                         {target}; more probes are not tried (raise knn.partitions' cell size \
                         with fewer partitions, or use knn.method = \"exact\")",
                        estimate.recall
                    );
                }
                return probes;
            }
            let next: Vec<Vec<u32>> = (0..sample.len())
                .map(|i| vec![sample_cells[i * most + probes]])
                .collect();
            let (found_i, found_d) = self.probe_round(store, sample, &next, owners);
            for i in 0..sample.len() {
                merge_lists(
                    &mut indices[i * k..(i + 1) * k],
                    &mut distances[i * k..(i + 1) * k],
                    &found_i[i * k..(i + 1) * k],
                    &found_d[i * k..(i + 1) * k],
                );
            }
            probes += 1;
        }
    }

    /// The further probes (cells 1..probes of each row, `cells` row-major with `probes` per row)
    /// of every row, merged into `lists`, in rounds of at most `ROUND_ROWS` rows. Collective.
    fn further_probes(
        &self,
        store: &CellStore,
        cells: &[u32],
        probes: usize,
        owners: &[u32],
        lists: &mut KnnLists,
    ) {
        let k = self.k;
        let n_local = self.rows.len() / self.dim.max(1);
        let mut rounds = [n_local.div_ceil(ROUND_ROWS) as u64];
        self.comm.allreduce_max_u64(&mut rounds);
        let mut progress = Progress::new(self.comm, "knn probes", rounds[0]);
        for round in 0..rounds[0] as usize {
            let first = (round * ROUND_ROWS).min(n_local);
            let end = (first + ROUND_ROWS).min(n_local);
            let locals: Vec<usize> = (first..end).collect();
            let wanted: Vec<Vec<u32>> = locals
                .iter()
                .map(|&row| cells[row * probes + 1..(row + 1) * probes].to_vec())
                .collect();
            let (found_i, found_d) = self.probe_round(store, &locals, &wanted, owners);
            for (i, &row) in locals.iter().enumerate() {
                merge_lists(
                    &mut lists.indices[row * k..(row + 1) * k],
                    &mut lists.distances[row * k..(row + 1) * k],
                    &found_i[i * k..(i + 1) * k],
                    &found_d[i * k..(i + 1) * k],
                );
            }
            progress.update(round as u64 + 1);
        }
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
mod tests {
    use super::*;
    use embsolve_comm::SerialComm;
    use ndarray::Array2;

    fn rows(n: usize, dim: usize, unit: bool) -> Array2<f32> {
        let mut rows = Array2::from_shape_fn((n, dim), |(i, j)| {
            let centre = ((i % 7) * 3 + j) as f32 % 5.0;
            centre + hashed_uniform(11, j as u64, i as u64) as f32 * 0.4
        });
        if unit {
            for mut row in rows.rows_mut() {
                let norm = row.iter().map(|v| v * v).sum::<f32>().sqrt();
                row.mapv_inplace(|v| v / norm);
            }
        }
        rows
    }

    #[test]
    fn probing_every_cell_gives_the_exact_lists() {
        for metric in [Metric::L2, Metric::Cosine] {
            let data = rows(300, 6, metric == Metric::Cosine);
            let layout = RowLayout::new(300, 1);
            let params = PartitionedParams {
                partitions: 9,
                probes: 9,
                recall: 0.95,
                recall_sample: 50,
                seed: 4,
            };
            let (lists, summary) =
                partitioned_knn(&SerialComm, &layout, data.view(), 5, metric, &params).unwrap();
            let (indices, distances) =
                embsolve_kernels::reference::knn_naive(data.view(), 5, metric);
            assert_eq!(lists.indices, indices, "{metric:?}");
            assert_eq!(lists.distances, distances, "{metric:?}");
            let recall = summary.recall.unwrap();
            assert_eq!(recall.recall, 1.0);
            assert!(recall.sample > 0 && recall.sample < 300);
            assert_eq!(summary.partitions, 9);
        }
    }

    #[test]
    fn auto_probes_reach_the_target_on_the_sample_and_lists_are_full() {
        let data = rows(400, 6, false);
        let layout = RowLayout::new(400, 1);
        let params = PartitionedParams {
            partitions: 0,
            probes: 0,
            recall: 0.99,
            recall_sample: 400,
            seed: 1,
        };
        let (lists, summary) =
            partitioned_knn(&SerialComm, &layout, data.view(), 8, Metric::L2, &params).unwrap();
        assert!(summary.probes_auto);
        assert_eq!(summary.partitions, 20);
        let recall = summary.recall.unwrap();
        assert!(recall.recall >= 0.99, "{recall:?}");
        assert!(!lists.indices.contains(&EMPTY_ROW));
        // The sample is every row: the estimate is the measured recall.
        let (exact, _) = embsolve_kernels::reference::knn_naive(data.view(), 8, Metric::L2);
        let hits: usize = exact
            .chunks_exact(8)
            .zip(lists.indices.chunks_exact(8))
            .map(|(t, f)| f.iter().filter(|id| t.contains(id)).count())
            .sum();
        assert!((hits as f64 / (400.0 * 8.0) - recall.recall).abs() < 1e-12);
    }

    #[test]
    fn more_probes_than_cells_is_a_config_error() {
        let data = rows(100, 4, false);
        let layout = RowLayout::new(100, 1);
        let params = PartitionedParams {
            partitions: 0,
            probes: 11,
            recall: 0.9,
            recall_sample: 10,
            seed: 0,
        };
        let err =
            partitioned_knn(&SerialComm, &layout, data.view(), 3, Metric::L2, &params).unwrap_err();
        assert_eq!(err.exit_status(), 2);
        assert!(err.message.contains("knn.probes"), "{}", err.message);
    }

    #[test]
    fn merged_lists_keep_the_k_smallest_once_in_list_order() {
        let mut indices = vec![4, 9, EMPTY_ROW];
        let mut distances = vec![0.5, 1.0, f32::INFINITY];
        merge_lists(&mut indices, &mut distances, &[2, 4, 1], &[0.5, 0.5, 2.0]);
        assert_eq!(indices, vec![2, 4, 9]);
        assert_eq!(distances, vec![0.5, 0.5, 1.0]);
    }

    #[test]
    fn cells_are_dealt_largest_first_to_the_least_loaded_rank() {
        assert_eq!(deal_cells(&[5, 1, 4, 2], 2), vec![0, 1, 1, 1]);
        assert_eq!(deal_cells(&[3, 3], 1), vec![0, 0]);
        assert_eq!(resolve_partitions(200_000, 0), 447);
        assert_eq!(resolve_partitions(10, 50), 10);
    }

    #[test]
    fn recall_interval_brackets_the_mean() {
        let r = recall_estimate(4, 14, 50, 4);
        assert!((r.recall - 14.0 / 16.0).abs() < 1e-12);
        assert!(r.low < r.recall && r.recall < r.high && r.high <= 1.0);
    }
}
