//! The CPU kNN backend: `kernels::knn::KnnSearch` (GEMM tiles + fused top-k) on this rank's
//! rayon pool.

use super::KnnBackend;
use crate::config::Metric;
use embsolve_kernels::error::{Error, Result};
use embsolve_kernels::knn::{KnnSearch, TileShape};
use embsolve_kernels::types::KnnLists;
use ndarray::ArrayView2;

/// Exact kNN on the CPU; threads follow the rayon pool the pipeline sized from `[run] threads`.
#[derive(Default)]
pub struct CpuKnn {
    search: Option<KnnSearch>,
    /// Exact evaluations of finished searches.
    finished_evaluations: u64,
    /// GEMM tiles (skipped, computed) of finished searches.
    finished_tiles: (u64, u64),
    dim: usize,
    n_queries: usize,
    query_start: usize,
    shape: TileShape,
}

impl CpuKnn {
    pub fn new() -> CpuKnn {
        CpuKnn::default()
    }

    /// Use other tile sizes (tests and benchmarks; the lists do not change).
    pub fn with_tile_shape(shape: TileShape) -> CpuKnn {
        CpuKnn {
            shape,
            ..CpuKnn::default()
        }
    }

    /// Pairs whose exact distance was computed (the filter's pass count), over all searches.
    pub fn exact_evaluations(&self) -> u64 {
        self.finished_evaluations + self.search.as_ref().map_or(0, KnnSearch::exact_evaluations)
    }

    /// GEMM tiles (ruled out by their balls, computed), over all searches.
    pub fn tile_counts(&self) -> (u64, u64) {
        let current = self.search.as_ref().map_or((0, 0), KnnSearch::tile_counts);
        (
            self.finished_tiles.0 + current.0,
            self.finished_tiles.1 + current.1,
        )
    }
}

impl KnnBackend for CpuKnn {
    fn name(&self) -> &'static str {
        "cpu"
    }

    fn begin(
        &mut self,
        queries: ArrayView2<f32>,
        query_start: usize,
        k: usize,
        metric: Metric,
    ) -> Result<()> {
        if k == 0 {
            return Err(Error::config("knn.k must be at least 1"));
        }
        self.dim = queries.ncols();
        self.n_queries = queries.nrows();
        self.query_start = query_start;
        self.search = Some(KnnSearch::new(
            queries,
            query_start,
            k,
            metric,
            rayon::current_num_threads(),
            self.shape,
        ));
        Ok(())
    }

    fn add_block(&mut self, block: ArrayView2<f32>, block_start: usize) -> Result<()> {
        let search = self
            .search
            .as_mut()
            .ok_or_else(|| Error::internal("cpu knn: add_block before begin"))?;
        if self.n_queries == 0 {
            // A rank without rows only passes blocks on.
            return Ok(());
        }
        if block.nrows() > 0 && block.ncols() != self.dim {
            return Err(Error::internal(format!(
                "cpu knn: block at global row {block_start} has {} columns, the queries {}",
                block.ncols(),
                self.dim
            )));
        }
        let contiguous = block.as_standard_layout();
        let rows = contiguous
            .as_slice()
            .ok_or_else(|| Error::internal("cpu knn: block is not contiguous"))?;
        search.add_block(rows, block_start);
        Ok(())
    }

    fn finish(&mut self) -> Result<KnnLists> {
        let search = self
            .search
            .take()
            .ok_or_else(|| Error::internal("cpu knn: finish before begin"))?;
        let evaluations = search.exact_evaluations();
        self.finished_evaluations += evaluations;
        let (skipped, computed) = search.tile_counts();
        self.finished_tiles = (
            self.finished_tiles.0 + skipped,
            self.finished_tiles.1 + computed,
        );
        log::debug!(
            "cpu knn: {computed} GEMM tiles computed, {skipped} ruled out by their balls, \
             {evaluations} exact distances"
        );
        let neighbours = search.finish().map_err(|row| {
            Error::input(format!(
                "knn: global row {row} has fewer than k neighbours with a finite distance \
                 (is knn.k smaller than the number of rows, and are all values finite?)"
            ))
        })?;
        Ok(KnnLists {
            k: neighbours.k,
            indices: neighbours.indices,
            distances: neighbours.distances,
        })
    }
}
