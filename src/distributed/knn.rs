//! Ring-pass exact kNN. Each rank keeps its query rows; the row blocks travel around the ring in
//! P steps (block of rank r - s at step s), and the send of the next block overlaps the compute on
//! the current one. Per rank, memory is two blocks plus the k-lists: nothing N x N exists.

use super::partitioned::{partitioned_knn, PartitionedParams, PartitionedSummary, RecallEstimate};
use crate::backend::KnnBackend;
use crate::checkpoint::{Checkpointed, Payload};
use crate::config::{KnnMethod, KnnSection, Metric};
use crate::record::{KnnRecord, ResultsRecord};
use crate::telemetry::Progress;
use embsolve_comm::Comm;
use embsolve_kernels::error::{Error, Result};
use embsolve_kernels::knn::{KnnSearch, TileShape};
use embsolve_kernels::layout::RowLayout;
use embsolve_kernels::results::{GlobalResults, LocalResults};
pub use embsolve_kernels::types::KnnLists;
use ndarray::ArrayView2;

/// Exact kNN of this rank's rows (`local`, global rows `layout.range(rank)`) against all rows
/// (collective). Lists are nearest first, self excluded, ties to the smaller global row, and
/// identical for any number of ranks or threads. A rank with zero rows takes part in the ring and
/// returns empty lists. `k` must be in `1..n_rows`.
pub fn exact_knn(
    comm: &dyn Comm,
    layout: &RowLayout,
    local: ArrayView2<f32>,
    k: usize,
    metric: Metric,
    backend: &mut dyn KnnBackend,
) -> Result<KnnLists> {
    let rank = comm.rank();
    check_k(layout, k)?;
    let dim = agree_on_blocks(comm, layout, local)?;
    // A failed start still takes part in the ring (it is collective); the error is returned after.
    let mut outcome: Result<()> = backend.begin(local, layout.start(rank), k, metric);
    ring_pass(
        comm,
        layout,
        local,
        dim,
        "knn ring",
        |block, block_start| {
            // After a failure keep passing blocks (the ring is collective), but stop computing.
            if outcome.is_ok() {
                outcome = backend.add_block(block, block_start);
            }
        },
    )?;
    outcome?;
    let lists = backend.finish()?;
    if lists.indices.len() != local.nrows() * k {
        return Err(Error::internal(format!(
            "knn: rank {rank} got {} list entries for {} rows",
            lists.indices.len(),
            local.nrows()
        )));
    }
    Ok(lists)
}

/// `knn.k` against the row count: the same test on every rank (k and n_rows are global), so every
/// rank leaves together.
pub(crate) fn check_k(layout: &RowLayout, k: usize) -> Result<()> {
    if k == 0 || k >= layout.n_rows {
        return Err(Error::config(format!(
            "knn.k = {k} must be at least 1 and smaller than the number of rows ({})",
            layout.n_rows
        )));
    }
    Ok(())
}

/// Checks every rank's block against the layout and the others' width (collective, so no rank
/// waits alone in a later exchange); returns the common dimension.
pub(crate) fn agree_on_blocks(
    comm: &dyn Comm,
    layout: &RowLayout,
    local: ArrayView2<f32>,
) -> Result<usize> {
    let rank = comm.rank();
    let n_ranks = comm.size();
    let local_problem = if layout.n_ranks != n_ranks {
        Some(format!(
            "knn: layout for {} ranks used on {n_ranks}",
            layout.n_ranks
        ))
    } else if local.nrows() != layout.local_rows(rank) {
        Some(format!(
            "knn: rank {rank} holds {} rows, its block is {}",
            local.nrows(),
            layout.local_rows(rank)
        ))
    } else {
        None
    };
    let has_rows = local.nrows() > 0;
    let mut high = [
        if has_rows { local.ncols() as u64 } else { 0 },
        u64::from(local_problem.is_some()),
    ];
    let mut low = [if has_rows {
        local.ncols() as u64
    } else {
        u64::MAX
    }];
    comm.allreduce_max_u64(&mut high);
    comm.allreduce_min_u64(&mut low);
    if let Some(problem) = local_problem {
        return Err(Error::internal(problem));
    }
    if high[1] != 0 {
        return Err(Error::internal(
            "knn: another rank has a malformed row block",
        ));
    }
    if high[0] != low[0] && low[0] != u64::MAX {
        return Err(Error::input(format!(
            "knn: row blocks disagree on the dimension ({} and {} columns)",
            low[0], high[0]
        )));
    }
    Ok(high[0] as usize)
}

/// Every rank's row block passes every rank once (collective): `on_block(block, block_start)` sees
/// this rank's own block first, then the block of rank r - s at step s, while the next block is
/// already on its way. Memory is two blocks of the largest size.
pub(crate) fn ring_pass(
    comm: &dyn Comm,
    layout: &RowLayout,
    local: ArrayView2<f32>,
    dim: usize,
    label: &'static str,
    mut on_block: impl FnMut(ArrayView2<f32>, usize),
) -> Result<()> {
    let rank = comm.rank();
    let n_ranks = comm.size();
    // Two ring buffers of the largest block; every rank sends and receives the padded size.
    let capacity = layout.max_local_rows() * dim;
    let mut current = vec![0.0f32; capacity];
    let mut incoming = vec![0.0f32; capacity];
    for (dst, src) in current.chunks_exact_mut(dim.max(1)).zip(local.rows()) {
        for (d, s) in dst.iter_mut().zip(src.iter()) {
            *d = *s;
        }
    }
    let mut progress = Progress::new(comm, label, n_ranks as u64);
    for step in 0..n_ranks {
        let owner = (rank + n_ranks - step) % n_ranks;
        let rows = layout.local_rows(owner);
        let block = ArrayView2::from_shape((rows, dim), &current[..rows * dim])
            .map_err(|e| Error::internal(format!("knn ring block: {e}")))?;
        let block_start = layout.start(owner);
        let mut compute = || on_block(block, block_start);
        if step + 1 < n_ranks {
            comm.ring_shift_f32(&current, &mut incoming, &mut compute);
            std::mem::swap(&mut current, &mut incoming);
        } else {
            compute();
        }
        progress.update(step as u64 + 1);
        log::debug!(
            "{label} step {}/{n_ranks} (block of rank {owner})",
            step + 1
        );
    }
    Ok(())
}

/// Exact lists of a subset of this rank's rows (`rows`: local row indices) against all rows, by
/// one ring pass (collective; a rank may give no rows). The lists are in the order of `rows`, the
/// same as [`exact_knn`] gives those rows.
pub(crate) fn exact_knn_of_rows(
    comm: &dyn Comm,
    layout: &RowLayout,
    local: ArrayView2<f32>,
    rows: &[usize],
    k: usize,
    metric: Metric,
) -> Result<KnnLists> {
    let dim = agree_on_blocks(comm, layout, local)?;
    let start = layout.start(comm.rank());
    let mut queries = ndarray::Array2::<f32>::zeros((rows.len(), dim));
    for (mut dst, &row) in queries.rows_mut().into_iter().zip(rows) {
        dst.assign(&local.row(row));
    }
    let ids = rows.iter().map(|&row| (start + row) as u64).collect();
    let mut search = KnnSearch::with_ids(
        queries.view(),
        ids,
        k,
        metric,
        rayon::current_num_threads(),
        TileShape::default(),
    );
    ring_pass(
        comm,
        layout,
        local,
        dim,
        "knn exact sample",
        |block, block_start| {
            if !rows.is_empty() {
                let contiguous = block.as_standard_layout();
                search.add_block(contiguous.as_slice().unwrap_or(&[]), block_start);
            }
        },
    )?;
    let neighbours = search.finish().map_err(|row| {
        Error::input(format!(
            "knn: global row {row} has fewer than k neighbours with a finite distance"
        ))
    })?;
    Ok(KnnLists {
        k,
        indices: neighbours.indices,
        distances: neighbours.distances,
    })
}

impl Checkpointed for KnnLists {
    fn encode(&self, payload: &mut Payload) {
        payload
            .put_u64(self.k as u64)
            .put_slice(&self.indices)
            .put_slice(&self.distances);
    }
    fn decode(payload: &mut Payload) -> Option<Self> {
        Some(KnnLists {
            k: payload.u64()? as usize,
            indices: payload.vec()?,
            distances: payload.vec()?,
        })
    }
}

/// The kNN stage's value: the lists and, for the partitioned method, what the search did.
#[derive(Debug, Clone, PartialEq)]
pub struct KnnStage {
    pub lists: KnnLists,
    pub partitioned: Option<PartitionedSummary>,
}

/// The kNN lists by `knn.method` (collective): the exact ring pass through `backend`, or the
/// partitioned search (on the CPU).
pub fn find_knn(
    comm: &dyn Comm,
    layout: &RowLayout,
    local: ArrayView2<f32>,
    config: &KnnSection,
    backend: &mut dyn KnnBackend,
) -> Result<KnnStage> {
    match config.method {
        KnnMethod::Exact => Ok(KnnStage {
            lists: exact_knn(comm, layout, local, config.k, config.metric, backend)?,
            partitioned: None,
        }),
        KnnMethod::Partitioned => {
            if backend.name() != "cpu" {
                log::info!(
                    "knn.method = partitioned: the cells are searched on the CPU ({} is used by \
                     the exact method)",
                    backend.name()
                );
            }
            let params = PartitionedParams {
                partitions: config.partitions,
                probes: config.probes,
                recall: config.recall,
                recall_sample: config.recall_sample,
                seed: config.seed,
            };
            let (lists, summary) =
                partitioned_knn(comm, layout, local, config.k, config.metric, &params)?;
            let lists = match lists {
                Some(lists) => lists,
                None => exact_knn(comm, layout, local, config.k, config.metric, backend)?,
            };
            log::info!(
                "knn partitioned: {} cells ({} to {} rows), {} probes{}, {} rows searched exactly \
                 for short lists{}",
                summary.partitions,
                summary.smallest_cell,
                summary.largest_cell,
                summary.probes,
                if summary.probes_auto {
                    " (chosen from knn.recall)"
                } else {
                    ""
                },
                summary.exact_rows,
                summary.recall.map_or(String::new(), |r| format!(
                    ", recall@{} {:.4} (95% interval {:.4} to {:.4}, {} sampled rows)",
                    config.k, r.recall, r.low, r.high, r.sample
                ))
            );
            Ok(KnnStage {
                lists,
                partitioned: Some(summary),
            })
        }
    }
}

impl Checkpointed for KnnStage {
    fn encode(&self, payload: &mut Payload) {
        self.lists.encode(payload);
        match &self.partitioned {
            None => {
                payload.put_u64(0);
            }
            Some(s) => {
                let recall = s.recall.unwrap_or(RecallEstimate {
                    sample: u64::MAX,
                    recall: 0.0,
                    low: 0.0,
                    high: 0.0,
                });
                payload
                    .put_u64(1)
                    .put_u64(s.partitions as u64)
                    .put_u64(s.probes as u64)
                    .put_u64(u64::from(s.probes_auto))
                    .put_u64(recall.sample)
                    .put_f64(recall.recall)
                    .put_f64(recall.low)
                    .put_f64(recall.high)
                    .put_u64(s.exact_rows)
                    .put_u64(s.training_iterations as u64)
                    .put_u64(s.largest_cell)
                    .put_u64(s.smallest_cell)
                    .put_u64(u64::from(s.exact_fallback));
            }
        }
    }
    fn decode(payload: &mut Payload) -> Option<Self> {
        let lists = KnnLists::decode(payload)?;
        let partitioned = match payload.u64()? {
            0 => None,
            1 => {
                let partitions = payload.u64()? as usize;
                let probes = payload.u64()? as usize;
                let probes_auto = payload.u64()? != 0;
                let sample = payload.u64()?;
                let (recall, low, high) = (payload.f64()?, payload.f64()?, payload.f64()?);
                Some(PartitionedSummary {
                    partitions,
                    probes,
                    probes_auto,
                    recall: (sample != u64::MAX).then_some(RecallEstimate {
                        sample,
                        recall,
                        low,
                        high,
                    }),
                    exact_rows: payload.u64()?,
                    training_iterations: payload.u64()? as usize,
                    largest_cell: payload.u64()?,
                    smallest_cell: payload.u64()?,
                    exact_fallback: payload.u64()? != 0,
                })
            }
            _ => return None,
        };
        Some(KnnStage { lists, partitioned })
    }
}

/// The kNN stage's part of the results: `k`, the method and (partitioned) its recall in
/// `run.json`, the lists in `results.h5` when `output.write_knn`.
pub fn publish(
    knn: &KnnStage,
    write_knn: bool,
    record: &mut ResultsRecord,
    global: &mut GlobalResults,
    local: &mut LocalResults,
) {
    record.knn = match &knn.partitioned {
        None => KnnRecord {
            method: "exact".into(),
            ..Default::default()
        },
        Some(s) => KnnRecord {
            method: "partitioned".into(),
            recall_estimate: s.recall.map(|r| r.recall),
            recall_interval: s.recall.map(|r| [r.low, r.high]),
            recall_sample: s.recall.map(|r| r.sample),
            partitions: Some(s.partitions),
            probes: Some(s.probes),
            probes_from_recall: Some(s.probes_auto),
            exact_rows: Some(s.exact_rows),
            exact_fallback: Some(s.exact_fallback),
        },
    };
    let knn = &knn.lists;
    global.knn_k = Some(knn.k);
    if write_knn {
        local.knn_indices = Some(knn.indices.iter().map(|&i| i as i64).collect());
        local.knn_distances = Some(knn.distances.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_round_trip_through_a_checkpoint() {
        crate::checkpoint::assert_round_trip(&KnnLists {
            k: 2,
            indices: vec![3, 1, 0, 2],
            distances: vec![0.5, 0.75, 0.125, f32::INFINITY],
        });
    }
    use crate::backend::cpu::CpuKnn;
    use embsolve_comm::SerialComm;
    use embsolve_kernels::error::ErrorKind;
    use ndarray::Array2;

    fn rows() -> Array2<f32> {
        Array2::from_shape_fn((40, 6), |(i, j)| ((i * 7 + j * 3) % 5) as f32 - 2.0)
    }

    #[test]
    fn one_rank_equals_the_oracle() {
        let rows = rows();
        let layout = RowLayout::new(40, 1);
        let mut backend = CpuKnn::new();
        let lists = exact_knn(
            &SerialComm,
            &layout,
            rows.view(),
            6,
            Metric::L2,
            &mut backend,
        )
        .unwrap();
        let (indices, distances) =
            embsolve_kernels::reference::knn_naive(rows.view(), 6, Metric::L2);
        assert_eq!(lists.indices, indices);
        assert_eq!(lists.distances, distances);
    }

    #[test]
    fn a_rank_without_rows_of_zero_width_returns_empty_lists() {
        // Two rows over three ranks: rank 2 holds none; here it is the only rank, so fake the
        // layout check with a one-rank layout of zero rows and a two-row problem elsewhere.
        let empty = Array2::<f32>::zeros((0, 0));
        let mut backend = CpuKnn::new();
        backend.begin(empty.view(), 2, 1, Metric::L2).unwrap();
        let block = rows();
        backend.add_block(block.view(), 0).unwrap();
        let lists = backend.finish().unwrap();
        assert!(lists.indices.is_empty() && lists.distances.is_empty());
    }

    #[test]
    fn k_not_below_n_rows_is_a_config_error() {
        let rows = rows();
        let layout = RowLayout::new(40, 1);
        for k in [0, 40, 41] {
            let err = exact_knn(
                &SerialComm,
                &layout,
                rows.view(),
                k,
                Metric::Ip,
                &mut CpuKnn::new(),
            )
            .unwrap_err();
            assert_eq!(err.kind, ErrorKind::Config, "k = {k}");
            assert!(err.message.contains("knn.k"), "{}", err.message);
        }
    }
}
