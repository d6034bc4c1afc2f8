//! Offloadable kernels behind one seam: the kNN distance tile with its top-k (and the batched real
//! FFT). `cpu` is always there; `cuda` (through the `embsolve-cuda` crate) is chosen at run time
//! when a GPU is usable. The only home of CUDA in this crate.

pub mod cpu;

use crate::config::{BackendChoice, Metric};
use crate::dist::knn::KnnLists;
use crate::error::{Error, Result};
use ndarray::ArrayView2;

/// A kNN engine for one rank. It holds this rank's query rows and merges blocks of reference rows
/// (arriving around the ring) into the running top-k lists. Lists must be identical for every
/// backend: nearest first, self excluded, ties to the smaller global row.
pub trait KnnBackend {
    fn name(&self) -> &'static str;
    /// Start a search for `queries` (global rows `query_start..`), keeping `k` neighbours.
    fn begin(
        &mut self,
        queries: ArrayView2<f32>,
        query_start: usize,
        k: usize,
        metric: Metric,
    ) -> Result<()>;
    /// Merge one block of reference rows (global rows `block_start..`) into the lists.
    fn add_block(&mut self, block: ArrayView2<f32>, block_start: usize) -> Result<()>;
    /// The finished lists of the queries given to `begin`.
    fn finish(&mut self) -> Result<KnnLists>;
}

/// Pick the backend for `knn.backend`. Never panics when CUDA is missing: `auto` falls back to
/// the CPU, `cuda` is a clear error (exit 2).
pub fn select_knn_backend(choice: BackendChoice, local_rank: usize) -> Result<Box<dyn KnnBackend>> {
    // ---- CUDA backend plugs in here ----
    // When `cuda.rs` lands: `Cuda` returns the CUDA engine for GPU `local_rank % n_gpus` (or its
    // backend error), and `Auto` tries it first, falling back to the CPU when no GPU is usable.
    match choice {
        BackendChoice::Cpu | BackendChoice::Auto => Ok(Box::new(cpu::CpuKnn::new())),
        BackendChoice::Cuda => Err(Error::backend(format!(
            "knn.backend = \"cuda\" (local rank {local_rank}): no usable CUDA GPU in this build; \
             use knn.backend = \"cpu\" or \"auto\""
        ))),
    }
    // ---- end of the CUDA plug-in point ----
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;

    #[test]
    fn cpu_and_auto_give_the_cpu_and_cuda_is_a_backend_error() {
        assert_eq!(
            select_knn_backend(BackendChoice::Cpu, 0).unwrap().name(),
            "cpu"
        );
        assert_eq!(
            select_knn_backend(BackendChoice::Auto, 1).unwrap().name(),
            "cpu"
        );
        let err = select_knn_backend(BackendChoice::Cuda, 0).err().unwrap();
        assert_eq!(err.kind, ErrorKind::Backend);
        assert_eq!(err.exit_status(), 2);
        assert!(err.message.contains("knn.backend"), "{}", err.message);
    }
}
