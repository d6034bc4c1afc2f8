//! The exchanges of a partitioned search: rows to their home cells' ranks, the home-cell search,
//! rounds of further probes, and the probe count chosen on the certificate sample.

use super::{
    break_even_probes, merge_lists, CellStore, ProbeChoice, Search, AUTO_MAX_PROBES, ROUND_ROWS,
};
use crate::distributed::knn::KnnLists;
use crate::telemetry::Progress;
use embsolve_comm::alltoallv;
use embsolve_kernels::knn::{KnnSearch, TileShape, EMPTY_ROW};
use embsolve_kernels::layout::RowLayout;
use ndarray::ArrayView2;
use rayon::prelude::*;

impl Search<'_> {
    /// Every row to the owner of its home cell; returns the cells this rank owns.
    pub(super) fn distribute(&self, homes: &[u32], owners: &[u32]) -> CellStore {
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
        let mut firsts: Vec<(u32, usize)> = Vec::new();
        for &cell in &cells {
            let at = *slot.entry(cell).or_insert_with(|| {
                firsts.push((cell, 0));
                firsts.len() - 1
            });
            firsts[at].1 += 1;
        }
        let mut store: Vec<(u32, Vec<u64>, Vec<f32>)> = firsts
            .iter()
            .map(|&(cell, size)| {
                (
                    cell,
                    Vec::with_capacity(size),
                    Vec::with_capacity(size * dim),
                )
            })
            .collect();
        for (i, &cell) in cells.iter().enumerate() {
            let at = slot[&cell];
            store[at].1.push(ids[i]);
            store[at].2.extend_from_slice(&data[i * dim..(i + 1) * dim]);
        }
        CellStore { cells: store, slot }
    }

    /// Every owned cell searched against itself; the lists return to the rows' ranks. Returns
    /// this rank's lists (short where the home cell holds k rows or fewer).
    pub(super) fn home_search(&self, store: &CellStore) -> KnnLists {
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
    pub(super) fn probe_round(
        &self,
        store: &CellStore,
        locals: &[usize],
        cells: &[Vec<u32>],
        bounds: &[f32],
        owners: &[u32],
    ) -> (Vec<u64>, Vec<f32>) {
        let comm = self.comm;
        let (dim, k, metric) = (self.dim, self.k, self.metric);
        let n_ranks = comm.size();
        // One message per (request, owner): header [id, bound, n_cells, cells...] and the row.
        // The bound is the k-th distance of the row's list so far: a probed cell only returns
        // rows at or below it, which are the only ones that can enter the merged list.
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
                header.push(u64::from(bounds[*request].to_bits()));
                header.push(owner_cells.len() as u64);
                header.extend(owner_cells.iter().map(|&c| u64::from(c)));
                data.extend_from_slice(self.row(row));
            }
            header_counts[rank] = header.len() - before;
            data_counts[rank] = messages.len() * dim;
        }
        let (header, _) = alltoallv(comm, &header, &header_counts);
        let (data, data_counts_in) = alltoallv(comm, &data, &data_counts);

        // Parse the received queries: (global row, bound, cells) in arrival order.
        let mut queries: Vec<(u64, f32, Vec<u32>)> = Vec::new();
        let mut at = 0;
        while at < header.len() {
            let id = header[at];
            let bound = f32::from_bits(header[at + 1] as u32);
            let count = header[at + 2] as usize;
            let query_cells = header[at + 3..at + 3 + count]
                .iter()
                .map(|&c| c as u32)
                .collect();
            queries.push((id, bound, query_cells));
            at += 3 + count;
        }
        // Per owned cell, the queries that probe it. A cell no row calls home (k-means can leave
        // one empty, for example duplicate centroids) is in no store: it adds nothing.
        let mut per_cell: Vec<Vec<usize>> = vec![Vec::new(); store.cells.len()];
        for (q, (_, _, query_cells)) in queries.iter().enumerate() {
            for cell in query_cells {
                if let Some(&slot) = store.slot.get(cell) {
                    per_cell[slot].push(q);
                }
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
                let bounds: Vec<f32> = qs.iter().map(|&q| queries[q].1).collect();
                let mut search =
                    KnnSearch::with_ids(view, query_ids, k, metric, 1, TileShape::default());
                search.set_bounds(&bounds);
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
    pub(super) fn choose_probes(
        &self,
        store: &CellStore,
        sample: &[usize],
        lists: &KnnLists,
        exact: &KnnLists,
        centroids: &[f32],
        owners: &[u32],
        target: f64,
    ) -> ProbeChoice {
        let k = self.k;
        let break_even = break_even_probes(owners.len());
        let most = AUTO_MAX_PROBES.min(owners.len()).min(break_even);
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
            if estimate.recall >= target {
                return ProbeChoice::Probes(probes);
            }
            if probes >= most {
                if probes >= break_even {
                    log::warn!(
                        "knn partitioned: recall {:.4} with {probes} probes is below knn.recall = \
                         {target}, and more probes would cost more than the exact search (about \
                         {break_even} of {} cells): the exact lists are computed instead",
                        estimate.recall,
                        owners.len()
                    );
                    return ProbeChoice::Exact(probes);
                }
                log::warn!(
                    "knn partitioned: recall {:.4} with {probes} probes is below knn.recall = \
                     {target}; more probes are not tried (use fewer, larger cells with \
                     knn.partitions, or knn.method = \"exact\")",
                    estimate.recall
                );
                return ProbeChoice::Probes(probes);
            }
            let next: Vec<Vec<u32>> = (0..sample.len())
                .map(|i| vec![sample_cells[i * most + probes]])
                .collect();
            let bounds: Vec<f32> = distances.chunks_exact(k).map(|list| list[k - 1]).collect();
            let (found_i, found_d) = self.probe_round(store, sample, &next, &bounds, owners);
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
    pub(super) fn further_probes(
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
            let bounds: Vec<f32> = locals
                .iter()
                .map(|&row| lists.distances[row * k + k - 1])
                .collect();
            let (found_i, found_d) = self.probe_round(store, &locals, &wanted, &bounds, owners);
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
}
