//! Offloadable kernels behind one seam: the kNN distance tile with its top-k (and the batched real
//! FFT). `cpu` is always there; `cuda` (through the `embsolve-cuda` crate) is chosen at run time
//! when a GPU is usable. The only home of CUDA in this crate.

pub mod cpu;
pub mod cuda;

use crate::config::{BackendChoice, Metric};
use embsolve_kernels::error::Result;
use embsolve_kernels::types::KnnLists;
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

/// Pick the backend for `knn.backend` and `knn.k`. Never panics when CUDA is missing: `auto` falls
/// back to the CPU (also when k is more than the GPU kernels keep), `cuda` is a clear error (exit 2).
pub fn select_knn_backend(
    choice: BackendChoice,
    k: usize,
    local_rank: usize,
) -> Result<Box<dyn KnnBackend>> {
    match choice {
        BackendChoice::Cpu => Ok(Box::new(cpu::CpuKnn::new())),
        BackendChoice::Cuda => {
            cuda::check_k(k)?;
            Ok(Box::new(cuda::CudaKnn::open(local_rank)?))
        }
        BackendChoice::Auto if cuda::check_k(k).is_err() => {
            log::info!(
                "knn.backend = auto: knn.k = {k} is more than the CUDA kernels keep per query; kNN \
                 on the CPU"
            );
            Ok(Box::new(cpu::CpuKnn::new()))
        }
        BackendChoice::Auto => match cuda::CudaKnn::open(local_rank) {
            Ok(backend) => Ok(Box::new(backend)),
            Err(error) => {
                log::info!("knn.backend = auto: {}; kNN on the CPU", error.message);
                Ok(Box::new(cpu::CpuKnn::new()))
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use embsolve_kernels::error::ErrorKind;

    #[test]
    fn cpu_always_auto_by_gpu_and_cuda_without_gpu_is_a_backend_error() {
        assert_eq!(
            select_knn_backend(BackendChoice::Cpu, 16, 0)
                .unwrap()
                .name(),
            "cpu"
        );
        let gpu = cuda::CudaKnn::open(0).is_ok();
        assert_eq!(
            select_knn_backend(BackendChoice::Auto, 16, 1)
                .unwrap()
                .name(),
            if gpu { "cuda" } else { "cpu" }
        );
        if !gpu {
            let err = select_knn_backend(BackendChoice::Cuda, 16, 0)
                .err()
                .unwrap();
            assert_eq!(err.kind, ErrorKind::Backend);
            assert_eq!(err.exit_status(), 2);
            assert!(err.message.contains("CUDA"), "{}", err.message);
        }
        // More neighbours than the GPU kernels keep: auto takes the CPU, cuda is a config error.
        assert_eq!(
            select_knn_backend(BackendChoice::Auto, 1000, 0)
                .unwrap()
                .name(),
            "cpu"
        );
        let err = select_knn_backend(BackendChoice::Cuda, 1000, 0)
            .err()
            .unwrap();
        assert_eq!(err.exit_status(), 2);
        assert!(err.message.contains("knn.k = 1000"), "{}", err.message);
    }
}
