//! kNN tiles on the GPU: cuBLAS SGEMM computes a tile of query-by-row dot products, the NVRTC
//! `topk_tile` kernel turns them into keys and keeps each query's best candidates (ties to the
//! smaller row), and the candidates go back to the CPU with a bound that lets [`crate::exact`]
//! re-rank them exactly. Tiles are sized from free device memory; buffers are allocated once and
//! grown only when a larger block arrives.

use crate::error::{GpuError, Result};
use crate::exact::BlockCandidates;
use crate::gpu::Gpu;
use crate::kernels::{self, MAX_CANDIDATES, NO_ROW, TOPK_THREADS};
use cudarc::cublas::{sys as cublas_sys, CudaBlas, Gemm, GemmConfig};
use cudarc::driver::{CudaFunction, CudaSlice, CudaStream, LaunchConfig, PushKernelArg};
use std::sync::Arc;

/// Distance of the kNN search, as in `knn.metric`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    /// Distance `-dot`.
    InnerProduct,
    /// Distance `1 - cos`.
    Cosine,
    /// Euclidean distance.
    L2,
}

impl Metric {
    fn code(self) -> i32 {
        match self {
            Metric::InnerProduct => kernels::METRIC_INNER_PRODUCT,
            Metric::Cosine => kernels::METRIC_COSINE,
            Metric::L2 => kernels::METRIC_L2,
        }
    }

    /// The key the GPU ranks by, as a function of the distance: `-dot` for ip, `-cos` for cosine,
    /// the squared distance for l2. Strictly increasing in the distance (for l2 on distances >= 0).
    pub fn key_of_distance(self, distance: f32) -> f64 {
        let distance = f64::from(distance);
        match self {
            Metric::InnerProduct => distance,
            Metric::Cosine => distance - 1.0,
            Metric::L2 => distance * distance,
        }
    }
}

/// Arithmetic of the dot-product tiles. Either way the final lists are exact (CPU re-rank); TF32
/// is faster on tensor cores and needs a wider bound, so more queries fall back to exact blocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precision {
    Fp32,
    Tf32,
}

/// Unit roundoff of f32.
const F32_UNIT: f64 = 1.0 / 16_777_216.0;

/// A bound on |key computed on the GPU - key computed on the CPU from its exact distance| for one
/// query and any row of a block (both in f32 with any summation order; TF32 rounds inputs to 10
/// mantissa bits). `query_norm` is the query's norm, `max_row_norm` the largest in the block.
/// Twice the forward-error bound `gamma_D = D u / (1 - D u)` of each side, plus the rounding of
/// the scalings, times a safety factor of 2.
pub fn key_margin(
    metric: Metric,
    precision: Precision,
    dim: usize,
    query_norm: f64,
    max_row_norm: f64,
) -> f64 {
    let dim_unit = (dim as f64 + 2.0) * F32_UNIT;
    let gamma = dim_unit / (1.0 - dim_unit).max(0.5);
    let input_rounding = match precision {
        Precision::Fp32 => 0.0,
        Precision::Tf32 => {
            let tf32_unit = 1.0 / 1024.0;
            2.0 * tf32_unit + tf32_unit * tf32_unit
        }
    };
    let gpu = input_rounding + 2.0 * gamma + 4.0 * F32_UNIT;
    let cpu = 2.0 * gamma + 8.0 * F32_UNIT;
    let relative = 2.0 * (gpu + cpu);
    let scale = match metric {
        Metric::InnerProduct => query_norm * max_row_norm,
        Metric::Cosine => 1.0,
        Metric::L2 => 2.0 * (query_norm + max_row_norm) * (query_norm + max_row_norm),
    };
    relative * scale + f64::from(f32::MIN_POSITIVE)
}

/// Candidates kept per query for a given k: twice k, at least k + 16, at most the kernel's limit.
pub fn default_candidates(k: usize) -> usize {
    (2 * k).max(k + 16).min(MAX_CANDIDATES)
}

/// Settings of the tile engine.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct KnnTileConfig {
    /// Candidates per query and block (0 = [`default_candidates`]); at least k, at most 64.
    pub n_candidates: usize,
    pub precision: Precision,
    /// Share of the free device memory the dot tile may use.
    pub memory_fraction: f64,
    /// Upper bounds on the tile (rows of queries x rows of the block).
    pub max_tile_queries: usize,
    pub max_tile_rows: usize,
}

impl Default for KnnTileConfig {
    fn default() -> Self {
        KnnTileConfig {
            n_candidates: 0,
            precision: Precision::Fp32,
            memory_fraction: 0.5,
            max_tile_queries: 16_384,
            max_tile_rows: 32_768,
        }
    }
}

/// Per-row scale the kernel uses: 1/|r| for cosine (0 for a zero row), |r|^2 for l2, unused
/// (1) for ip; and the row norms, for the bounds.
fn row_scales(rows: &[f32], dim: usize, metric: Metric, scales: &mut [f32], norms: &mut [f64]) {
    for ((row, scale), norm) in rows
        .chunks_exact(dim.max(1))
        .zip(scales.iter_mut())
        .zip(norms.iter_mut())
    {
        let squared: f64 = row.iter().map(|&x| f64::from(x) * f64::from(x)).sum();
        *norm = squared.sqrt();
        *scale = match metric {
            Metric::InnerProduct => 1.0,
            Metric::Cosine if squared > 0.0 => (1.0 / squared.sqrt()) as f32,
            Metric::Cosine => 0.0,
            Metric::L2 => squared as f32,
        };
    }
}

/// The GPU side of one rank's kNN search: its queries stay on the device; each block of
/// reference rows is uploaded, tiled, and reduced to candidates per query.
pub struct KnnTileEngine {
    stream: Arc<CudaStream>,
    blas: CudaBlas,
    topk: CudaFunction,
    config: KnnTileConfig,
    metric: Metric,
    dim: usize,
    n_queries: usize,
    query_start: u64,
    n_keep: usize,
    free_bytes: usize,
    queries: CudaSlice<f32>,
    query_scale: CudaSlice<f32>,
    query_norms: Vec<f64>,
    block: Option<CudaSlice<f32>>,
    row_scale: Option<CudaSlice<f32>>,
    dots: Option<CudaSlice<f32>>,
    candidate_keys: Option<CudaSlice<f32>>,
    candidate_rows: Option<CudaSlice<u32>>,
    host_row_scale: Vec<f32>,
    host_row_norms: Vec<f64>,
    empty_keys: Vec<f32>,
    empty_rows: Vec<u32>,
}

fn alloc<T: cudarc::driver::DeviceRepr + cudarc::driver::ValidAsZeroBits>(
    stream: &Arc<CudaStream>,
    len: usize,
    what: &str,
) -> Result<CudaSlice<T>> {
    stream
        .alloc_zeros::<T>(len.max(1))
        .map_err(|e| GpuError::call(&format!("CUDA allocation of {what} ({len} elements)"), e))
}

fn ensure<T: cudarc::driver::DeviceRepr + cudarc::driver::ValidAsZeroBits>(
    slot: &mut Option<CudaSlice<T>>,
    stream: &Arc<CudaStream>,
    len: usize,
    what: &str,
) -> Result<()> {
    if slot.as_ref().is_none_or(|buffer| buffer.len() < len) {
        *slot = None;
        *slot = Some(alloc(stream, len, what)?);
    }
    Ok(())
}

fn to_i32(value: usize, what: &str) -> Result<i32> {
    i32::try_from(value).map_err(|_| GpuError::new(format!("{what} = {value} exceeds 2^31 - 1")))
}

impl KnnTileEngine {
    /// Upload `queries` (row-major `n_queries x dim`, global rows `query_start..`) and prepare a
    /// search keeping `k` neighbours.
    #[allow(clippy::too_many_arguments)]
    pub fn begin(
        gpu: &Gpu,
        queries: &[f32],
        dim: usize,
        query_start: u64,
        k: usize,
        metric: Metric,
        config: KnnTileConfig,
    ) -> Result<KnnTileEngine> {
        if dim == 0 || !queries.len().is_multiple_of(dim) {
            return Err(GpuError::new(format!(
                "query buffer of {} values is not a whole number of rows of dim {dim}",
                queries.len()
            )));
        }
        let n_queries = queries.len() / dim;
        if k > MAX_CANDIDATES {
            return Err(GpuError::new(format!(
                "k = {k} exceeds the GPU top-k limit of {MAX_CANDIDATES}"
            )));
        }
        let n_keep = match config.n_candidates {
            0 => default_candidates(k),
            n => n,
        };
        if n_keep < k.max(1) || n_keep > MAX_CANDIDATES {
            return Err(GpuError::new(format!(
                "{n_keep} candidates per query is outside k = {k} ..= {MAX_CANDIDATES}"
            )));
        }
        let stream = gpu.stream().clone();
        let blas = CudaBlas::new(stream.clone()).map_err(|e| GpuError::call("cuBLAS init", e))?;
        let math = match config.precision {
            Precision::Fp32 => cublas_sys::cublasMath_t::CUBLAS_DEFAULT_MATH,
            Precision::Tf32 => cublas_sys::cublasMath_t::CUBLAS_TF32_TENSOR_OP_MATH,
        };
        // SAFETY: the handle is live for the lifetime of `blas`.
        unsafe { cublas_sys::cublasSetMathMode(*blas.handle(), math) }
            .result()
            .map_err(|e| GpuError::call("cublasSetMathMode", e))?;
        let topk = gpu.function("topk_tile")?.clone();

        let mut query_scale_host = vec![0f32; n_queries];
        let mut query_norms = vec![0f64; n_queries];
        row_scales(
            queries,
            dim,
            metric,
            &mut query_scale_host,
            &mut query_norms,
        );
        let mut queries_device = alloc::<f32>(&stream, queries.len(), "queries")?;
        stream
            .memcpy_htod(queries, &mut queries_device)
            .map_err(|e| GpuError::call("upload of the queries", e))?;
        let mut query_scale = alloc::<f32>(&stream, n_queries, "query scales")?;
        stream
            .memcpy_htod(&query_scale_host, &mut query_scale)
            .map_err(|e| GpuError::call("upload of the query scales", e))?;
        let (free_bytes, _) = gpu.memory()?;
        Ok(KnnTileEngine {
            stream,
            blas,
            topk,
            config,
            metric,
            dim,
            n_queries,
            query_start,
            n_keep,
            free_bytes,
            queries: queries_device,
            query_scale,
            query_norms,
            block: None,
            row_scale: None,
            dots: None,
            candidate_keys: None,
            candidate_rows: None,
            host_row_scale: Vec::new(),
            host_row_norms: Vec::new(),
            empty_keys: Vec::new(),
            empty_rows: Vec::new(),
        })
    }

    pub fn n_candidates(&self) -> usize {
        self.n_keep
    }

    pub fn n_queries(&self) -> usize {
        self.n_queries
    }

    /// Tile shape for a block of `n_rows`: (queries, rows) per SGEMM, from free memory.
    fn tile_shape(&self, n_rows: usize) -> (usize, usize) {
        let tile_rows = n_rows.clamp(1, self.config.max_tile_rows);
        let budget = (self.free_bytes as f64 * self.config.memory_fraction) as usize;
        let per_query = tile_rows * 4 + self.n_keep * 8;
        let tile_queries = (budget / per_query.max(1))
            .min(self.config.max_tile_queries)
            .clamp(1, self.n_queries.max(1));
        (tile_queries, tile_rows)
    }

    /// Reduce one block (row-major `n_rows x dim`, global rows `block_start..`) to candidates.
    pub fn add_block(&mut self, block: &[f32], block_start: u64) -> Result<BlockCandidates> {
        let dim = self.dim;
        if !block.len().is_multiple_of(dim) {
            return Err(GpuError::new(format!(
                "block of {} values is not a whole number of rows of dim {dim}",
                block.len()
            )));
        }
        let n_rows = block.len() / dim;
        let n_keep = self.n_keep;
        let mut candidates = BlockCandidates {
            metric: self.metric,
            n_queries: self.n_queries,
            n_keep,
            block_start,
            n_block_rows: n_rows,
            query_start: self.query_start,
            rows: vec![NO_ROW; self.n_queries * n_keep],
            keys: vec![f32::INFINITY; self.n_queries * n_keep],
            outside_key_bound: vec![f64::INFINITY; self.n_queries],
        };
        if n_rows == 0 || self.n_queries == 0 {
            return Ok(candidates);
        }
        to_i32(n_rows, "block rows")?;

        self.host_row_scale.resize(n_rows, 0.0);
        self.host_row_norms.resize(n_rows, 0.0);
        row_scales(
            block,
            dim,
            self.metric,
            &mut self.host_row_scale,
            &mut self.host_row_norms,
        );
        let max_row_norm = self.host_row_norms.iter().copied().fold(0.0, f64::max);

        let (tile_queries, tile_rows) = self.tile_shape(n_rows);
        let stream = self.stream.clone();
        ensure(&mut self.block, &stream, block.len(), "block")?;
        ensure(&mut self.row_scale, &stream, n_rows, "row scales")?;
        ensure(
            &mut self.dots,
            &stream,
            tile_queries * tile_rows,
            "dot tile",
        )?;
        ensure(
            &mut self.candidate_keys,
            &stream,
            tile_queries * n_keep,
            "candidate keys",
        )?;
        ensure(
            &mut self.candidate_rows,
            &stream,
            tile_queries * n_keep,
            "candidate rows",
        )?;
        self.empty_keys.resize(tile_queries * n_keep, f32::INFINITY);
        self.empty_rows.resize(tile_queries * n_keep, NO_ROW);
        let (Some(block_device), Some(row_scale), Some(dots), Some(keys), Some(rows)) = (
            self.block.as_mut(),
            self.row_scale.as_mut(),
            self.dots.as_mut(),
            self.candidate_keys.as_mut(),
            self.candidate_rows.as_mut(),
        ) else {
            return Err(GpuError::new("kNN tile buffers were not allocated"));
        };
        stream
            .memcpy_htod(block, &mut block_device.slice_mut(..block.len()))
            .map_err(|e| GpuError::call("upload of a block", e))?;
        stream
            .memcpy_htod(&self.host_row_scale, &mut row_scale.slice_mut(..n_rows))
            .map_err(|e| GpuError::call("upload of the row scales", e))?;

        let metric_code = self.metric.code();
        let n_keep_i32 = to_i32(n_keep, "candidates")?;
        let dim_i32 = to_i32(dim, "dim")?;
        for query_first in (0..self.n_queries).step_by(tile_queries) {
            let n_tile_queries = tile_queries.min(self.n_queries - query_first);
            let tile_len = n_tile_queries * n_keep;
            stream
                .memcpy_htod(
                    &self.empty_keys[..tile_len],
                    &mut keys.slice_mut(..tile_len),
                )
                .map_err(|e| GpuError::call("reset of the candidate keys", e))?;
            stream
                .memcpy_htod(
                    &self.empty_rows[..tile_len],
                    &mut rows.slice_mut(..tile_len),
                )
                .map_err(|e| GpuError::call("reset of the candidate rows", e))?;
            for row_first in (0..n_rows).step_by(tile_rows) {
                let n_tile_rows = tile_rows.min(n_rows - row_first);
                let config = GemmConfig {
                    transa: cublas_sys::cublasOperation_t::CUBLAS_OP_T,
                    transb: cublas_sys::cublasOperation_t::CUBLAS_OP_N,
                    m: to_i32(n_tile_rows, "tile rows")?,
                    n: to_i32(n_tile_queries, "tile queries")?,
                    k: dim_i32,
                    alpha: 1.0f32,
                    lda: dim_i32,
                    ldb: dim_i32,
                    beta: 0.0f32,
                    ldc: to_i32(n_tile_rows, "tile rows")?,
                };
                let a = block_device.slice(row_first * dim..(row_first + n_tile_rows) * dim);
                let b = self
                    .queries
                    .slice(query_first * dim..(query_first + n_tile_queries) * dim);
                let mut c = dots.slice_mut(..n_tile_queries * n_tile_rows);
                // SAFETY: A is n_tile_rows x dim, B is n_tile_queries x dim (row-major = column-major
                // transposed), C holds n_tile_queries x n_tile_rows; all views are that long.
                unsafe { self.blas.gemm(config, &a, &b, &mut c) }
                    .map_err(|e| GpuError::call("cuBLAS SGEMM of a dot tile", e))?;

                let self_diagonal = (self.query_start as i64 + query_first as i64)
                    - (block_start as i64 + row_first as i64);
                let n_queries_i32 = to_i32(n_tile_queries, "tile queries")?;
                let n_cols_i32 = to_i32(n_tile_rows, "tile rows")?;
                let col_base = row_first as u32;
                let dots_view = dots.slice(..n_tile_queries * n_tile_rows);
                let query_scale_view = self
                    .query_scale
                    .slice(query_first..query_first + n_tile_queries);
                let row_scale_view = row_scale.slice(row_first..row_first + n_tile_rows);
                let mut keys_view = keys.slice_mut(..tile_len);
                let mut rows_view = rows.slice_mut(..tile_len);
                let launch = LaunchConfig {
                    grid_dim: (n_tile_queries as u32, 1, 1),
                    block_dim: (TOPK_THREADS, 1, 1),
                    shared_mem_bytes: 0,
                };
                let mut builder = stream.launch_builder(&self.topk);
                builder
                    .arg(&dots_view)
                    .arg(&n_queries_i32)
                    .arg(&n_cols_i32)
                    .arg(&n_cols_i32)
                    .arg(&metric_code)
                    .arg(&query_scale_view)
                    .arg(&row_scale_view)
                    .arg(&self_diagonal)
                    .arg(&col_base)
                    .arg(&n_keep_i32)
                    .arg(&mut keys_view)
                    .arg(&mut rows_view);
                // SAFETY: the argument list matches `topk_tile` in kernels.rs; every view covers
                // the extents the kernel indexes (n_tile_queries rows of n_tile_rows / n_keep).
                unsafe { builder.launch(launch) }
                    .map_err(|e| GpuError::call("launch of topk_tile", e))?;
            }
            let range = query_first * n_keep..(query_first + n_tile_queries) * n_keep;
            stream
                .memcpy_dtoh(&keys.slice(..tile_len), &mut candidates.keys[range.clone()])
                .map_err(|e| GpuError::call("download of candidate keys", e))?;
            stream
                .memcpy_dtoh(&rows.slice(..tile_len), &mut candidates.rows[range])
                .map_err(|e| GpuError::call("download of candidate rows", e))?;
        }
        stream
            .synchronize()
            .map_err(|e| GpuError::call("CUDA stream synchronisation", e))?;

        for (query, bound) in candidates.outside_key_bound.iter_mut().enumerate() {
            let last_key = candidates.keys[query * n_keep + n_keep - 1];
            let margin = key_margin(
                self.metric,
                self.config.precision,
                dim,
                self.query_norms[query],
                max_row_norm,
            );
            *bound = f64::from(last_key) - margin;
        }
        Ok(candidates)
    }
}

/// The CPU model of what the GPU hands back for one block: per query the `n_keep` smallest
/// `(key, row)` pairs of `keys` (row-major `n_queries x n_rows`, self excluded), and the bound
/// `last kept key - margins[query]` on every other row. The kernel's contract, used by tests.
#[allow(clippy::too_many_arguments)]
pub fn candidates_from_keys(
    keys: &[f32],
    n_rows: usize,
    query_start: u64,
    block_start: u64,
    metric: Metric,
    n_keep: usize,
    margins: &[f64],
) -> BlockCandidates {
    let n_queries = margins.len();
    let mut candidates = BlockCandidates {
        metric,
        n_queries,
        n_keep,
        block_start,
        n_block_rows: n_rows,
        query_start,
        rows: vec![NO_ROW; n_queries * n_keep],
        keys: vec![f32::INFINITY; n_queries * n_keep],
        outside_key_bound: vec![f64::INFINITY; n_queries],
    };
    let mut order: Vec<(f32, u32)> = Vec::with_capacity(n_rows);
    for query in 0..n_queries {
        order.clear();
        for row in 0..n_rows {
            if query_start + query as u64 != block_start + row as u64 {
                order.push((keys[query * n_rows + row], row as u32));
            }
        }
        // IEEE order (-0 == +0) with ties to the smaller row, as the kernel compares.
        order.sort_by(|a, b| {
            a.0.partial_cmp(&b.0)
                .unwrap_or(std::cmp::Ordering::Equal)
                .then(a.1.cmp(&b.1))
        });
        for (slot, &(key, row)) in order.iter().take(n_keep).enumerate() {
            candidates.keys[query * n_keep + slot] = key;
            candidates.rows[query * n_keep + slot] = row;
        }
        let last = candidates.keys[query * n_keep + n_keep - 1];
        candidates.outside_key_bound[query] = f64::from(last) - margins[query];
    }
    candidates
}
