//! The CUDA kNN backend: the `embsolve-cuda` tile engine finds candidates on the GPU, and every
//! candidate is re-ranked here with the CPU's exact distance, so the lists equal the CPU
//! backend's (nearest first, ties to the smaller global row, self excluded). Also the GPU power
//! spectra for the FFT stage. The only user of `embsolve-cuda` in the program.

use crate::backend::KnnBackend;
use crate::config::Metric;
use embsolve_cuda::kernels::MAX_CANDIDATES;
use embsolve_cuda::knn::KnnTileConfig;
use embsolve_cuda::{ExactTopK, Gpu, GpuError, KnnTileEngine, MergeStats, Precision};
use embsolve_kernels::error::{Error, Result};
use embsolve_kernels::types::KnnLists;
use ndarray::ArrayView2;

/// Whether CUDA is usable on this machine: `Ok(device count)` or the reason it is not.
pub fn probe() -> std::result::Result<usize, String> {
    embsolve_cuda::probe()
}

fn gpu_metric(metric: Metric) -> embsolve_cuda::Metric {
    match metric {
        Metric::Cosine => embsolve_cuda::Metric::Cosine,
        Metric::L2 => embsolve_cuda::Metric::L2,
        Metric::Ip => embsolve_cuda::Metric::InnerProduct,
    }
}

/// The exact distance of one (query, row) pair: the CPU backend's own canonical distance
/// (`kernels::knn::exact_distance`; rows are unit length under cosine), so the final lists and
/// distances are bit-identical to the CPU's.
pub fn exact_distance(query: &[f32], row: &[f32], metric: Metric) -> f32 {
    embsolve_kernels::knn::exact_distance(metric, query, row)
}

/// `EMBSOLVE_CUDA_PRECISION=tf32` selects TF32 dot tiles (faster on tensor cores; the lists stay
/// exact through the re-rank); anything else is FP32.
fn precision_from_env() -> Precision {
    match std::env::var("EMBSOLVE_CUDA_PRECISION").as_deref() {
        Ok("tf32") | Ok("TF32") => Precision::Tf32,
        _ => Precision::Fp32,
    }
}

fn runtime_error(error: GpuError) -> Error {
    Error::internal(format!("CUDA kNN: {error}"))
}

struct Search {
    engine: KnnTileEngine,
    queries: Vec<f32>,
    dim: usize,
    metric: Metric,
    lists: ExactTopK,
}

/// kNN on this rank's GPU.
pub struct CudaKnn {
    gpu: Gpu,
    config: KnnTileConfig,
    search: Option<Search>,
    stats: MergeStats,
}

impl CudaKnn {
    /// Open the GPU of this rank (`local_rank` modulo the device count). When CUDA is not usable
    /// the error is `Error::backend` naming CUDA and the reason (exit status 2).
    pub fn open(local_rank: usize) -> Result<CudaKnn> {
        let gpu = Gpu::open(local_rank).map_err(|e| {
            Error::backend(format!(
                "knn.backend = \"cuda\" but CUDA is not usable for local rank {local_rank}: {e}"
            ))
        })?;
        log::info!("kNN on {}", gpu.describe());
        Ok(CudaKnn {
            gpu,
            config: KnnTileConfig {
                precision: precision_from_env(),
                ..KnnTileConfig::default()
            },
            search: None,
            stats: MergeStats::default(),
        })
    }

    /// Candidates re-ranked and blocks evaluated exactly so far (for the log and tests).
    pub fn stats(&self) -> MergeStats {
        self.stats
    }
}

/// Whether the CUDA kernels can keep `k` neighbours per query (a config error if not).
pub fn check_k(k: usize) -> Result<()> {
    if k > MAX_CANDIDATES {
        return Err(Error::config(format!(
            "knn.k = {k} is more than the CUDA backend keeps per query ({MAX_CANDIDATES}); \
             use knn.backend = \"cpu\" or \"auto\""
        )));
    }
    Ok(())
}

impl KnnBackend for CudaKnn {
    fn name(&self) -> &'static str {
        "cuda"
    }

    fn begin(
        &mut self,
        queries: ArrayView2<f32>,
        query_start: usize,
        k: usize,
        metric: Metric,
    ) -> Result<()> {
        check_k(k)?;
        let dim = queries.ncols();
        let queries: Vec<f32> = queries.iter().copied().collect();
        let engine = KnnTileEngine::begin(
            &self.gpu,
            &queries,
            dim,
            query_start as u64,
            k,
            gpu_metric(metric),
            self.config,
        )
        .map_err(runtime_error)?;
        let n_queries = engine.n_queries();
        self.stats = MergeStats::default();
        self.search = Some(Search {
            engine,
            queries,
            dim,
            metric,
            lists: ExactTopK::new(n_queries, k),
        });
        Ok(())
    }

    fn add_block(&mut self, block: ArrayView2<f32>, block_start: usize) -> Result<()> {
        let search = self
            .search
            .as_mut()
            .ok_or_else(|| Error::internal("CUDA kNN: add_block before begin"))?;
        if block.ncols() != search.dim {
            return Err(Error::internal(format!(
                "CUDA kNN: block of dim {} for queries of dim {}",
                block.ncols(),
                search.dim
            )));
        }
        let block = block.as_standard_layout();
        let block = block
            .as_slice()
            .ok_or_else(|| Error::internal("CUDA kNN: block is not contiguous"))?;
        let candidates = search
            .engine
            .add_block(block, block_start as u64)
            .map_err(runtime_error)?;
        let (dim, metric, queries) = (search.dim, search.metric, &search.queries);
        let exact = |query: usize, row: usize| {
            exact_distance(
                &queries[query * dim..(query + 1) * dim],
                &block[row * dim..(row + 1) * dim],
                metric,
            )
        };
        let stats = search
            .lists
            .merge_block(&candidates, &exact, rayon::current_num_threads())
            .map_err(runtime_error)?;
        self.stats.add(stats);
        Ok(())
    }

    fn finish(&mut self) -> Result<KnnLists> {
        let search = self
            .search
            .take()
            .ok_or_else(|| Error::internal("CUDA kNN: finish before begin"))?;
        let k = search.lists.k();
        let (indices, distances) = search.lists.into_lists().map_err(runtime_error)?;
        log::debug!(
            "CUDA kNN: {} exact distance evaluations, {} query-blocks evaluated whole",
            self.stats.exact_evaluations,
            self.stats.fallback_queries
        );
        Ok(KnnLists {
            k,
            indices,
            distances,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_distance_is_the_cpu_backends() {
        let a = [0.6f32, 0.8];
        let b = [0.8f32, 0.6];
        for metric in [Metric::Cosine, Metric::L2, Metric::Ip] {
            assert_eq!(
                exact_distance(&a, &b, metric).to_bits(),
                embsolve_kernels::knn::exact_distance(metric, &a, &b).to_bits()
            );
        }
        assert!((exact_distance(&a, &b, Metric::Cosine) - (1.0 - 0.96)).abs() < 1e-6);
        assert!((exact_distance(&a, &b, Metric::Ip) + 0.96).abs() < 1e-6);
    }

    #[test]
    fn opening_without_a_usable_gpu_is_a_backend_error_naming_cuda() {
        match probe() {
            Ok(_) => {
                let backend = CudaKnn::open(0).expect("CUDA probed usable");
                assert_eq!(backend.name(), "cuda");
            }
            Err(reason) => {
                assert!(reason.contains("CUDA"), "{reason}");
                let error = CudaKnn::open(1).err().expect("no GPU: open must fail");
                assert_eq!(error.kind, embsolve_kernels::error::ErrorKind::Backend);
                assert_eq!(error.exit_status(), 2);
                assert!(error.message.contains("CUDA"), "{}", error.message);
            }
        }
    }
}
