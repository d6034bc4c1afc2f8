//! Ring-pass exact kNN. Each rank keeps its query rows; the row blocks travel around the ring in
//! P steps (block of rank r - s at step s), and the send of the next block overlaps the compute on
//! the current one. Per rank, memory is two blocks plus the k-lists: nothing N x N exists.

use crate::backend::KnnBackend;
use crate::checkpoint::{Checkpointed, Payload};
use crate::config::Metric;
use crate::record::{KnnRecord, ResultsRecord};
use crate::telemetry::Progress;
use embsolve_comm::Comm;
use embsolve_kernels::error::{Error, Result};
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
    let n_ranks = comm.size();
    // Same test on every rank (k and n_rows are global), so every rank leaves together.
    if k == 0 || k >= layout.n_rows {
        return Err(Error::config(format!(
            "knn.k = {k} must be at least 1 and smaller than the number of rows ({})",
            layout.n_rows
        )));
    }
    // Local checks are made collective before the ring, so no rank waits alone in a shift.
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
    let dim = high[0] as usize;
    // A failed start still takes part in the ring (it is collective); the error is returned after.
    let mut outcome: Result<()> = backend.begin(local, layout.start(rank), k, metric);

    // Two ring buffers of the largest block; every rank sends and receives the padded size.
    let capacity = layout.max_local_rows() * dim;
    let mut current = vec![0.0f32; capacity];
    let mut incoming = vec![0.0f32; capacity];
    for (dst, src) in current.chunks_exact_mut(dim.max(1)).zip(local.rows()) {
        for (d, s) in dst.iter_mut().zip(src.iter()) {
            *d = *s;
        }
    }

    let mut progress = Progress::new(comm, "knn ring", n_ranks as u64);
    for step in 0..n_ranks {
        let owner = (rank + n_ranks - step) % n_ranks;
        let rows = layout.local_rows(owner);
        let block = ArrayView2::from_shape((rows, dim), &current[..rows * dim])
            .map_err(|e| Error::internal(format!("knn ring block: {e}")))?;
        let block_start = layout.start(owner);
        let mut compute = || {
            // After a failure keep passing blocks (the ring is collective), but stop computing.
            if outcome.is_ok() {
                outcome = backend.add_block(block, block_start);
            }
        };
        if step + 1 < n_ranks {
            comm.ring_shift_f32(&current, &mut incoming, &mut compute);
            std::mem::swap(&mut current, &mut incoming);
        } else {
            compute();
        }
        progress.update(step as u64 + 1);
        log::debug!(
            "knn ring step {}/{n_ranks} (block of rank {owner})",
            step + 1
        );
    }
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

/// The kNN stage's part of the results: `k` and the method in `run.json`, the lists in
/// `results.h5` when `output.write_knn`.
pub fn publish(
    knn: &KnnLists,
    write_knn: bool,
    record: &mut ResultsRecord,
    global: &mut GlobalResults,
    local: &mut LocalResults,
) {
    record.knn = KnnRecord {
        method: "exact".into(),
        recall_estimate: None,
    };
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
