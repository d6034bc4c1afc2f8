//! The distributed similarity graph: this rank's rows of the symmetrised, weighted kNN graph as a
//! local CSR (columns: own rows, then a halo of remote rows), and the halo exchange plan that
//! every iterative solver on the graph reuses.
//!
//! Rules, identical for any number of ranks (the kNN lists are):
//! - a directed kNN entry i -> j survives when its similarity is at least `graph.min_similarity`
//!   (cosine: 1 - d, ip: -d; the key is rejected for l2);
//! - `union` keeps the undirected edge {i, j} when either direction survives, `mutual` when both;
//!   its distance d_ij is the smaller of the two directions' distances;
//! - weights: `similarity` = the similarity clipped at 0 (l2: 1 / (1 + d)); `gaussian` =
//!   exp(-d_ij^2 / (sigma_i sigma_j)) with sigma_i = |distance to the k-th neighbour of i| (the
//!   remote sigma_j come through the halo); `binary` = 1. A zero weight keeps the edge (it still
//!   joins components) but carries no walk.
//!
//! Every row lists its entries by ascending global column, so sums over a row have the same order
//! (and bits) whatever the row distribution.

use crate::config::{EdgeWeight, GraphSection, Metric, Symmetrize};
use bytemuck::{Pod, Zeroable};
use embsolve_comm::{self as comm, Comm};
use embsolve_kernels::csr::Csr;
use embsolve_kernels::error::{Error, Result};
use embsolve_kernels::layout::RowLayout;
use embsolve_kernels::types::KnnLists;
use rayon::prelude::*;

/// Which remote rows this rank needs (its halo) and which of its rows each other rank needs.
/// A pure function of the graph and the layout, computed once by `DistGraph::build`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HaloPlan {
    /// Global rows of the halo entries, ascending (so grouped by owning rank).
    pub halo_rows: Vec<u64>,
    /// Halo entries expected from each rank.
    pub recv_counts: Vec<usize>,
    /// Local indices of the rows sent to each rank, grouped by destination rank, ascending.
    pub send_rows: Vec<u32>,
    /// Rows sent to each rank.
    pub send_counts: Vec<usize>,
}

impl HaloPlan {
    pub fn halo_len(&self) -> usize {
        self.halo_rows.len()
    }

    /// Fill `halo` with the owners' values of the halo rows. Collective.
    pub fn exchange<T: Pod>(&self, comm: &dyn Comm, local: &[T], halo: &mut [T]) {
        assert_eq!(halo.len(), self.halo_rows.len(), "halo buffer length");
        if comm.size() == 1 {
            return;
        }
        let send: Vec<T> = self.send_rows.iter().map(|&r| local[r as usize]).collect();
        let (received, counts) = comm::alltoallv(comm, &send, &self.send_counts);
        assert_eq!(
            counts,
            self.recv_counts,
            "rank {}: halo counts differ from the plan",
            comm.rank()
        );
        halo.copy_from_slice(&received);
    }
}

/// This rank's rows of the similarity graph.
#[derive(Debug, Clone)]
pub struct DistGraph {
    pub layout: RowLayout,
    /// First global row owned by this rank.
    pub row_start: usize,
    /// Weights W: local rows x (local rows + halo); entries by ascending global column.
    pub adjacency: Csr,
    /// D^-1/2 W D^-1/2 on the same pattern.
    pub normalized: Csr,
    /// Weighted degree of each local row.
    pub degrees: Vec<f64>,
    /// 1 / sqrt(degree), 0 for a row of degree 0.
    pub inv_sqrt_degrees: Vec<f64>,
    pub halo: HaloPlan,
    /// Undirected edges of the whole graph.
    pub n_edges: u64,
}

/// One kNN entry in flight: the row that will store it, its column and the distance.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Pod, Zeroable)]
struct Entry {
    row: u64,
    col: u64,
    distance: f64,
}

/// The entry was in the row's own list (forward) or came from the column's list (reverse).
const FORWARD: u8 = 1;
const REVERSE: u8 = 2;

/// Similarity of a kNN distance for the metric (see the module rules).
pub fn similarity(metric: Metric, distance: f64) -> f64 {
    match metric {
        Metric::Cosine => 1.0 - distance,
        Metric::Ip => -distance,
        Metric::L2 => 1.0 / (1.0 + distance),
    }
}

/// The self-tuning Gaussian weight of an edge of distance `d` between rows of scales `sigma_a`
/// and `sigma_b`.
pub fn gaussian_weight(d: f64, sigma_a: f64, sigma_b: f64) -> f64 {
    let scale = sigma_a * sigma_b;
    if scale > 0.0 {
        (-d * d / scale).exp()
    } else if d == 0.0 {
        1.0
    } else {
        0.0
    }
}

/// Check the kNN lists of this rank against the layout.
fn check_knn(layout: &RowLayout, rank: usize, knn: &KnnLists) -> Result<()> {
    let n_local = layout.local_rows(rank);
    let expected = n_local * knn.k;
    if knn.indices.len() != expected || knn.distances.len() != expected {
        return Err(Error::internal(format!(
            "kNN lists hold {} indices and {} distances for {n_local} rows x k = {}",
            knn.indices.len(),
            knn.distances.len(),
            knn.k
        )));
    }
    if let Some(position) = knn.indices.iter().position(|&j| j >= layout.n_rows as u64) {
        return Err(Error::internal(format!(
            "kNN neighbour {} of global row {} is beyond the {} rows",
            knn.indices[position],
            layout.start(rank) + position / knn.k.max(1),
            layout.n_rows
        )));
    }
    if let Some(position) = knn.distances.iter().position(|d| !d.is_finite()) {
        return Err(Error::input(format!(
            "kNN distance of global row {} is not finite ({})",
            layout.start(rank) + position / knn.k.max(1),
            knn.distances[position]
        )));
    }
    Ok(())
}

/// The undirected edges of one row from its entries sorted by column: the two directions of a
/// pair merge (smaller distance, both flags), and `symmetrize` decides which pairs stay.
fn merge_row(row: u64, entries: &[(u64, f64, u8)], symmetrize: Symmetrize) -> Vec<(u64, u64, f64)> {
    let mut out = Vec::with_capacity(entries.len());
    let mut at = 0;
    while at < entries.len() {
        let (col, mut distance, mut flags) = entries[at];
        let mut next = at + 1;
        while next < entries.len() && entries[next].0 == col {
            distance = distance.min(entries[next].1);
            flags |= entries[next].2;
            next += 1;
        }
        let keep = match symmetrize {
            Symmetrize::Union => true,
            Symmetrize::Mutual => flags == FORWARD | REVERSE,
        };
        if keep {
            out.push((row, col, distance));
        }
        at = next;
    }
    out
}

impl DistGraph {
    /// Build this rank's rows from its kNN lists. Collective: the reverse edges travel by one
    /// all-to-all, and the halo of sigma (Gaussian) and of 1/sqrt(degree) by the plan.
    pub fn build(
        comm: &dyn Comm,
        layout: &RowLayout,
        knn: &KnnLists,
        graph: &GraphSection,
        metric: Metric,
    ) -> Result<DistGraph> {
        if metric == Metric::L2 && graph.min_similarity > -1.0 {
            return Err(Error::config(format!(
                "graph.min_similarity = {} applies to the cosine and ip metrics only (knn.metric = \"l2\")",
                graph.min_similarity
            )));
        }
        let rank = comm.rank();
        let n_ranks = comm.size();
        embsolve_comm::agree(comm, check_knn(layout, rank, knn))?;
        let k = knn.k;
        let row_start = layout.start(rank);
        let n_local = layout.local_rows(rank);
        let local_range = row_start as u64..(row_start + n_local) as u64;

        // Directed entries that survive the similarity filter (self entries never do).
        let filtered = metric != Metric::L2;
        let mut forward: Vec<Entry> = Vec::with_capacity(knn.indices.len());
        for local_row in 0..n_local {
            let row = (row_start + local_row) as u64;
            for slot in local_row * k..(local_row + 1) * k {
                let col = knn.indices[slot];
                let distance = knn.distances[slot] as f64;
                if col == row || (filtered && similarity(metric, distance) < graph.min_similarity) {
                    continue;
                }
                forward.push(Entry { row, col, distance });
            }
        }

        // Reverse entries go to the owner of their column, which stores them in that row.
        let mut send_counts = vec![0usize; n_ranks];
        for e in &forward {
            send_counts[layout.owner(e.col as usize)] += 1;
        }
        let mut fill: Vec<usize> = send_counts
            .iter()
            .scan(0, |offset, &count| {
                let start = *offset;
                *offset += count;
                Some(start)
            })
            .collect();
        let mut reverse = vec![Entry::zeroed(); forward.len()];
        for e in &forward {
            let slot = &mut fill[layout.owner(e.col as usize)];
            reverse[*slot] = Entry {
                row: e.col,
                col: e.row,
                distance: e.distance,
            };
            *slot += 1;
        }
        let (received, _) = comm::alltoallv(comm, &reverse, &send_counts);
        drop(reverse);

        // Bucket both directions by local row (a counting sort), then sort each row's few
        // entries by column and merge the two directions of each pair.
        let mut bucket_start = vec![0usize; n_local + 1];
        for e in forward.iter().chain(&received) {
            bucket_start[(e.row - row_start as u64) as usize + 1] += 1;
        }
        for i in 0..n_local {
            bucket_start[i + 1] += bucket_start[i];
        }
        let mut fill = bucket_start.clone();
        let mut bucketed = vec![(0u64, 0.0f64, 0u8); bucket_start[n_local]];
        for (e, flag) in forward
            .iter()
            .map(|e| (e, FORWARD))
            .chain(received.iter().map(|e| (e, REVERSE)))
        {
            let slot = &mut fill[(e.row - row_start as u64) as usize];
            bucketed[*slot] = (e.col, e.distance, flag);
            *slot += 1;
        }
        drop(forward);
        drop(received);
        let symmetrize = graph.symmetrize;
        let edges: Vec<(u64, u64, f64)> = {
            let mut segments: Vec<&mut [(u64, f64, u8)]> = Vec::with_capacity(n_local);
            let mut rest: &mut [(u64, f64, u8)] = &mut bucketed;
            for i in 0..n_local {
                let (head, tail) = rest.split_at_mut(bucket_start[i + 1] - bucket_start[i]);
                segments.push(head);
                rest = tail;
            }
            segments
                .into_par_iter()
                .enumerate()
                .with_min_len(embsolve_kernels::csr::ROWS_PER_TASK)
                .flat_map_iter(|(local_row, segment)| {
                    segment.sort_unstable_by_key(|entry| entry.0);
                    merge_row((row_start + local_row) as u64, segment, symmetrize)
                })
                .collect()
        };
        drop(bucketed);

        // The halo: remote columns, ascending.
        let mut halo_rows: Vec<u64> = edges
            .iter()
            .map(|e| e.1)
            .filter(|c| !local_range.contains(c))
            .collect();
        halo_rows.par_sort_unstable();
        halo_rows.dedup();
        let too_wide = n_local + halo_rows.len() > u32::MAX as usize;
        embsolve_comm::agree(
            comm,
            if too_wide {
                Err(Error::internal(format!(
                    "{} local rows plus {} halo rows exceed 2^32 column indices",
                    n_local,
                    halo_rows.len()
                )))
            } else {
                Ok(())
            },
        )?;

        // Local CSR pattern (columns: local rows, then halo), rows in ascending global column.
        let mut row_ptr = vec![0usize; n_local + 1];
        for e in &edges {
            row_ptr[(e.0 - row_start as u64) as usize + 1] += 1;
        }
        for i in 0..n_local {
            row_ptr[i + 1] += row_ptr[i];
        }
        let cols: Vec<u32> = edges
            .par_iter()
            .map(|e| {
                if local_range.contains(&e.1) {
                    (e.1 - row_start as u64) as u32
                } else {
                    let position = halo_rows
                        .binary_search(&e.1)
                        .expect("every remote column is in the halo");
                    (n_local + position) as u32
                }
            })
            .collect();

        // The plan: halo counts per owner; by symmetry, rank r needs exactly those of my rows
        // that have a neighbour on r.
        let mut recv_counts = vec![0usize; n_ranks];
        for &g in &halo_rows {
            recv_counts[layout.owner(g as usize)] += 1;
        }
        let mut per_rank: Vec<Vec<u32>> = vec![Vec::new(); n_ranks];
        for local_row in 0..n_local {
            for &col in &cols[row_ptr[local_row]..row_ptr[local_row + 1]] {
                if (col as usize) < n_local {
                    continue;
                }
                let owner = layout.owner(halo_rows[col as usize - n_local] as usize);
                if per_rank[owner].last() != Some(&(local_row as u32)) {
                    per_rank[owner].push(local_row as u32);
                }
            }
        }
        let send_counts: Vec<usize> = per_rank.iter().map(Vec::len).collect();
        let halo = HaloPlan {
            halo_rows,
            recv_counts,
            send_rows: per_rank.concat(),
            send_counts,
        };
        let n_columns = n_local + halo.halo_len();

        // Weights.
        let values: Vec<f64> = match graph.weight {
            EdgeWeight::Binary => vec![1.0; edges.len()],
            EdgeWeight::Similarity => edges
                .iter()
                .map(|e| similarity(metric, e.2).max(0.0))
                .collect(),
            EdgeWeight::Gaussian => {
                let mut sigma = vec![0.0f64; n_columns];
                for (local_row, s) in sigma[..n_local].iter_mut().enumerate() {
                    if k > 0 {
                        *s = (knn.distances[local_row * k + k - 1] as f64).abs();
                    }
                }
                let (own, remote) = sigma.split_at_mut(n_local);
                halo.exchange(comm, own, remote);
                (0..n_local)
                    .flat_map(|local_row| {
                        (row_ptr[local_row]..row_ptr[local_row + 1]).map(move |at| (local_row, at))
                    })
                    .map(|(local_row, at)| {
                        gaussian_weight(edges[at].2, sigma[local_row], sigma[cols[at] as usize])
                    })
                    .collect()
            }
        };
        drop(edges);
        let adjacency = Csr {
            n_cols: n_columns,
            row_ptr,
            cols,
            values,
        };

        // Degrees and the normalised values D^-1/2 W D^-1/2.
        let degrees = adjacency.row_sums();
        let mut scale = vec![0.0f64; n_columns];
        for (s, &d) in scale.iter_mut().zip(&degrees) {
            *s = if d > 0.0 { 1.0 / d.sqrt() } else { 0.0 };
        }
        {
            let (own, remote) = scale.split_at_mut(n_local);
            halo.exchange(comm, own, remote);
        }
        let normalized_values: Vec<f64> = (0..n_local)
            .into_par_iter()
            .with_min_len(embsolve_kernels::csr::ROWS_PER_TASK)
            .flat_map_iter(|local_row| {
                let row_scale = scale[local_row];
                let (cols, values) = adjacency.row(local_row);
                let scale = &scale;
                cols.iter()
                    .zip(values)
                    .map(move |(&c, &w)| w * row_scale * scale[c as usize])
            })
            .collect();
        let normalized = adjacency.with_values(normalized_values);
        let inv_sqrt_degrees = scale[..n_local].to_vec();

        let mut stored = [adjacency.nnz() as u64];
        comm.allreduce_sum_u64(&mut stored);
        let mut halo_max = [halo.halo_len() as u64];
        comm.allreduce_max_u64(&mut halo_max);
        log::info!(
            "graph: {} rows, {} edges; rank {rank}: {} local entries, halo {} (max over ranks {})",
            layout.n_rows,
            stored[0] / 2,
            adjacency.nnz(),
            halo.halo_len(),
            halo_max[0]
        );
        Ok(DistGraph {
            layout: *layout,
            row_start,
            adjacency,
            normalized,
            degrees,
            inv_sqrt_degrees,
            halo,
            n_edges: stored[0] / 2,
        })
    }

    /// Rows owned by this rank.
    pub fn local_rows(&self) -> usize {
        self.adjacency.n_rows()
    }

    /// Global row of a local CSR column (a local row or a halo entry).
    pub fn global_column(&self, col: u32) -> u64 {
        let col = col as usize;
        let n_local = self.local_rows();
        if col < n_local {
            (self.row_start + col) as u64
        } else {
            self.halo.halo_rows[col - n_local]
        }
    }

    /// This rank's rows as (global row, global column, weight), by row then column.
    pub fn local_edges(&self) -> Vec<(u64, u64, f64)> {
        let mut out = Vec::with_capacity(self.adjacency.nnz());
        for local_row in 0..self.local_rows() {
            let (cols, values) = self.adjacency.row(local_row);
            for (&c, &w) in cols.iter().zip(values) {
                out.push((
                    (self.row_start + local_row) as u64,
                    self.global_column(c),
                    w,
                ));
            }
        }
        out
    }

    /// `values` of this rank's rows followed by their halo copies (a vector over the CSR columns).
    /// Collective.
    pub fn with_halo<T: Pod + Default>(&self, comm: &dyn Comm, values: &[T]) -> Vec<T> {
        let n_local = self.local_rows();
        assert_eq!(values.len(), n_local, "one value per local row");
        let mut full = vec![T::default(); n_local + self.halo.halo_len()];
        full[..n_local].copy_from_slice(values);
        let (own, remote) = full.split_at_mut(n_local);
        self.halo.exchange(comm, own, remote);
        full
    }
}

/// The normalised adjacency D^-1/2 W D^-1/2 of a distributed graph as an operator (collective
/// `apply`: it exchanges the halo).
pub struct NormalizedAdjacency<'a> {
    pub graph: &'a DistGraph,
    pub comm: &'a dyn Comm,
}

impl DistGraph {
    pub fn normalized_adjacency<'a>(&'a self, comm: &'a dyn Comm) -> NormalizedAdjacency<'a> {
        NormalizedAdjacency { graph: self, comm }
    }
}

impl embsolve_kernels::linop::LinOp for NormalizedAdjacency<'_> {
    fn local_len(&self) -> usize {
        self.graph.layout.local_rows(self.comm.rank())
    }
    fn apply(&self, x: &[f64], y: &mut [f64]) {
        let full = self.graph.with_halo(self.comm, x);
        self.graph.normalized.spmv(&full, y);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use embsolve_comm::SerialComm;
    use embsolve_kernels::linop::LinOp;
    use embsolve_kernels::reference;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    /// Clustered points on the unit sphere and their naive kNN lists.
    pub(crate) fn blob_knn(n: usize, dim: usize, k: usize, metric: Metric, seed: u64) -> KnnLists {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let centres: Vec<f32> = (0..4 * dim).map(|_| rng.gen_range(-1.0..1.0)).collect();
        let mut points = Vec::with_capacity(n * dim);
        for _ in 0..n {
            let c = rng.gen_range(0..4);
            let mut p: Vec<f32> = (0..dim)
                .map(|d| centres[c * dim + d] + rng.gen_range(-0.6..0.6))
                .collect();
            let norm = p.iter().map(|x| x * x).sum::<f32>().sqrt();
            p.iter_mut().for_each(|x| *x /= norm);
            points.extend(p);
        }
        let (indices, distances) = reference::graph_knn_naive(&points, dim, k, metric);
        KnnLists {
            k,
            indices,
            distances,
        }
    }

    #[test]
    fn serial_build_matches_the_naive_graph() {
        for metric in [Metric::Cosine, Metric::L2, Metric::Ip] {
            let knn = blob_knn(300, 6, 7, metric, 5);
            for symmetrize in [Symmetrize::Union, Symmetrize::Mutual] {
                for weight in [
                    EdgeWeight::Similarity,
                    EdgeWeight::Gaussian,
                    EdgeWeight::Binary,
                ] {
                    let min_similarity = if metric == Metric::L2 { -1.0 } else { 0.6 };
                    let section = GraphSection {
                        symmetrize,
                        weight,
                        min_similarity,
                    };
                    let layout = RowLayout::new(300, 1);
                    let graph = DistGraph::build(&SerialComm, &layout, &knn, &section, metric)
                        .expect("graph builds");
                    let expected = reference::similarity_graph_naive(
                        300,
                        knn.k,
                        &knn.indices,
                        &knn.distances,
                        &section,
                        metric,
                    );
                    let got = graph.local_edges();
                    let what = format!("{metric:?} {symmetrize:?} {weight:?}");
                    assert_eq!(got.len(), expected.len(), "{what}: edge count");
                    for ((row, col, w), ((er, ec), ew)) in got.iter().zip(&expected) {
                        assert_eq!((row, col), (er, ec), "{what}");
                        assert!(
                            (w - ew).abs() <= 1e-15,
                            "{what}: ({row}, {col}) {w} vs {ew}"
                        );
                    }
                    assert_eq!(graph.n_edges as usize * 2, expected.len());
                }
            }
        }
    }

    #[test]
    fn normalized_adjacency_matches_dense() {
        let knn = blob_knn(120, 5, 6, Metric::Cosine, 8);
        let section = GraphSection {
            weight: EdgeWeight::Gaussian,
            ..GraphSection::default()
        };
        let layout = RowLayout::new(120, 1);
        let graph =
            DistGraph::build(&SerialComm, &layout, &knn, &section, Metric::Cosine).expect("graph");
        let n = 120;
        let mut dense = vec![0.0; n * n];
        for (r, c, w) in graph.local_edges() {
            dense[r as usize * n + c as usize] = w;
        }
        let degree: Vec<f64> = (0..n)
            .map(|i| dense[i * n..(i + 1) * n].iter().sum())
            .collect();
        let x: Vec<f64> = (0..n).map(|i| ((i * 37) % 11) as f64 - 5.0).collect();
        let op = graph.normalized_adjacency(&SerialComm);
        assert_eq!(op.local_len(), n);
        let mut y = vec![0.0; n];
        op.apply(&x, &mut y);
        for i in 0..n {
            let expected: f64 = (0..n)
                .map(|j| dense[i * n + j] * x[j] / (degree[i] * degree[j]).sqrt())
                .sum();
            assert!(
                (y[i] - expected).abs() < 1e-12,
                "row {i}: {} vs {expected}",
                y[i]
            );
        }
    }

    #[test]
    fn min_similarity_with_l2_is_a_config_error() {
        let knn = blob_knn(20, 3, 3, Metric::L2, 1);
        let section = GraphSection {
            min_similarity: 0.2,
            ..GraphSection::default()
        };
        let err = DistGraph::build(
            &SerialComm,
            &RowLayout::new(20, 1),
            &knn,
            &section,
            Metric::L2,
        )
        .expect_err("rejected");
        assert_eq!(err.kind, embsolve_kernels::error::ErrorKind::Config);
        assert!(err.message.contains("graph.min_similarity"));
    }
}
