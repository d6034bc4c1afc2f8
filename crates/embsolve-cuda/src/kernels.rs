//! CUDA C sources of the kernels and their compilation by NVRTC at start-up.
//!
//! Kernels are compiled to a CUBIN for the exact architecture of the device (`sm_XY`): a CUBIN from
//! an NVRTC of the same major version loads on an older driver, whereas PTX from a newer NVRTC can be
//! rejected by the driver. PTX for `compute_XY` is kept as the fallback.

use crate::error::{GpuError, Result};
use cudarc::nvrtc::{result as nvrtc_result, sys as nvrtc_sys, Ptx};
use std::ffi::{c_char, CStr};

/// Largest number of candidates per query one top-k launch can keep.
pub const MAX_CANDIDATES: usize = 64;

/// Threads per block of the top-k kernel (one block per query row).
pub const TOPK_THREADS: u32 = 128;

/// "No row" in a candidate list (an empty slot).
pub const NO_ROW: u32 = u32::MAX;

/// Metric codes shared with the kernel source.
pub const METRIC_INNER_PRODUCT: i32 = 0;
pub const METRIC_COSINE: i32 = 1;
pub const METRIC_L2: i32 = 2;

/// Fused key computation and per-query top-k selection over one tile of the dot-product matrix.
///
/// `dots` is row-major `n_queries x ld_dots` (row q = query q against the tile's columns). The key
/// (smaller is nearer) is `-dot` (ip), `-dot / (|q| |r|)` (cosine, from the reciprocal norms) or
/// `|q|^2 + |r|^2 - 2 dot` (l2). Each query keeps its `n_keep` smallest `(key, row)` pairs,
/// compared lexicographically, so ties go to the smaller row. The list in `keys`/`rows` on entry
/// (from earlier tiles of the same block) is merged in; empty slots are `(+inf, NO_ROW)`.
pub const TOPK_SOURCE: &str = r#"
#define KEY_INF __int_as_float(0x7f800000)
#define NO_ROW 0xffffffffu
#define MAX_KEEP 64
#define FULL_MASK 0xffffffffu

__device__ __forceinline__ bool pair_less(float key_a, unsigned row_a, float key_b, unsigned row_b) {
    return key_a < key_b || (key_a == key_b && row_a < row_b);
}

extern "C" __global__ void topk_tile(
    const float* __restrict__ dots, int n_queries, int n_cols, int ld_dots, int metric,
    const float* __restrict__ query_scale, const float* __restrict__ col_scale,
    long long self_diagonal, unsigned col_base, int n_keep,
    float* __restrict__ keys, unsigned* __restrict__ rows)
{
    const int query = blockIdx.x;
    if (query >= n_queries) return;
    const int tid = threadIdx.x;
    float local_keys[MAX_KEEP];
    unsigned local_rows[MAX_KEEP];
    for (int i = 0; i < n_keep; ++i) { local_keys[i] = KEY_INF; local_rows[i] = NO_ROW; }

    const float* dot_row = dots + (long long)query * ld_dots;
    const float q_scale = query_scale[query];
    float* out_keys = keys + (long long)query * n_keep;
    unsigned* out_rows = rows + (long long)query * n_keep;
    const long long self_col = (long long)query + self_diagonal;

    for (int idx = tid; idx < n_cols + n_keep; idx += blockDim.x) {
        float key;
        unsigned row;
        if (idx < n_cols) {
            if ((long long)idx == self_col) continue;
            const float dot = dot_row[idx];
            if (metric == 1) {
                key = -(dot * q_scale) * col_scale[idx];
            } else if (metric == 2) {
                key = (q_scale + col_scale[idx]) - 2.0f * dot;
            } else {
                key = -dot;
            }
            row = col_base + (unsigned)idx;
        } else {
            key = out_keys[idx - n_cols];
            row = out_rows[idx - n_cols];
            if (row == NO_ROW) continue;
        }
        if (!pair_less(key, row, local_keys[n_keep - 1], local_rows[n_keep - 1])) continue;
        int pos = n_keep - 1;
        while (pos > 0 && pair_less(key, row, local_keys[pos - 1], local_rows[pos - 1])) {
            local_keys[pos] = local_keys[pos - 1];
            local_rows[pos] = local_rows[pos - 1];
            --pos;
        }
        local_keys[pos] = key;
        local_rows[pos] = row;
    }
    __syncthreads();

    // Merge the per-thread sorted lists: n_keep rounds of a block-wide argmin over list heads.
    __shared__ float warp_keys[32];
    __shared__ unsigned warp_rows[32];
    __shared__ int warp_owner[32];
    __shared__ int winner;
    const int lane = tid & 31;
    const int warp = tid >> 5;
    const int n_warps = (blockDim.x + 31) >> 5;
    int head = 0;
    for (int slot = 0; slot < n_keep; ++slot) {
        float best_key = head < n_keep ? local_keys[head] : KEY_INF;
        unsigned best_row = head < n_keep ? local_rows[head] : NO_ROW;
        int best_owner = tid;
        for (int offset = 16; offset > 0; offset >>= 1) {
            const float other_key = __shfl_down_sync(FULL_MASK, best_key, offset);
            const unsigned other_row = __shfl_down_sync(FULL_MASK, best_row, offset);
            const int other_owner = __shfl_down_sync(FULL_MASK, best_owner, offset);
            if (lane + offset < 32 && (pair_less(other_key, other_row, best_key, best_row) ||
                (other_key == best_key && other_row == best_row && other_owner < best_owner))) {
                best_key = other_key; best_row = other_row; best_owner = other_owner;
            }
        }
        if (lane == 0) { warp_keys[warp] = best_key; warp_rows[warp] = best_row; warp_owner[warp] = best_owner; }
        __syncthreads();
        if (tid == 0) {
            for (int w = 1; w < n_warps; ++w) {
                if (pair_less(warp_keys[w], warp_rows[w], best_key, best_row) ||
                    (warp_keys[w] == best_key && warp_rows[w] == best_row && warp_owner[w] < best_owner)) {
                    best_key = warp_keys[w]; best_row = warp_rows[w]; best_owner = warp_owner[w];
                }
            }
            out_keys[slot] = best_key;
            out_rows[slot] = best_row;
            winner = best_owner;
        }
        __syncthreads();
        if (tid == winner) ++head;
    }
}
"#;

/// `power[i] = re^2 + im^2` of an interleaved complex array (the cuFFT R2C output).
pub const POWER_SOURCE: &str = r#"
extern "C" __global__ void power_spectrum(const float* __restrict__ spectrum,
                                          float* __restrict__ power, long long n)
{
    const long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) {
        const float re = spectrum[2 * i];
        const float im = spectrum[2 * i + 1];
        power[i] = re * re + im * im;
    }
}
"#;

/// Every kernel source with the names of its entry points, for start-up and the compile test.
pub const SOURCES: &[(&str, &str, &[&str])] = &[
    ("topk_tile.cu", TOPK_SOURCE, &["topk_tile"]),
    ("power_spectrum.cu", POWER_SOURCE, &["power_spectrum"]),
];

/// What NVRTC should produce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// A CUBIN for `sm_<major><minor>`.
    Cubin { major: i32, minor: i32 },
    /// PTX for `compute_<major><minor>`, JIT-compiled by the driver.
    Ptx { major: i32, minor: i32 },
}

/// Compile one source with NVRTC (which must be present: check [`crate::probe::nvrtc_present`]).
pub fn compile(name: &str, source: &str, target: Target) -> Result<Ptx> {
    let arch = match target {
        Target::Cubin { major, minor } => format!("--gpu-architecture=sm_{major}{minor}"),
        Target::Ptx { major, minor } => format!("--gpu-architecture=compute_{major}{minor}"),
    };
    let options = vec![arch, "--std=c++14".to_string(), "--fmad=false".to_string()];
    let source_c = std::ffi::CString::new(source)
        .map_err(|_| GpuError::new(format!("kernel source {name} contains a NUL byte")))?;
    let name_c = std::ffi::CString::new(name)
        .map_err(|_| GpuError::new(format!("kernel name {name} contains a NUL byte")))?;
    let program = nvrtc_result::create_program(&source_c, Some(&name_c))
        .map_err(|e| GpuError::call(&format!("NVRTC create program {name}"), e))?;
    let compiled = compile_program(program, name, &options, target);
    // SAFETY: `program` was created above and is destroyed exactly once.
    let destroyed = unsafe { nvrtc_result::destroy_program(program) };
    let ptx = compiled?;
    destroyed.map_err(|e| GpuError::call(&format!("NVRTC destroy program {name}"), e))?;
    Ok(ptx)
}

fn compile_program(
    program: nvrtc_sys::nvrtcProgram,
    name: &str,
    options: &[String],
    target: Target,
) -> Result<Ptx> {
    // SAFETY: `program` is a live NVRTC program for the whole function.
    unsafe {
        if let Err(e) = nvrtc_result::compile_program(program, options) {
            let log = nvrtc_result::get_program_log(program)
                .map(|raw| CStr::from_ptr(raw.as_ptr()).to_string_lossy().into_owned())
                .unwrap_or_default();
            return Err(GpuError::new(format!(
                "NVRTC could not compile {name} ({options:?}): {e:?}\n{log}"
            )));
        }
        match target {
            Target::Cubin { .. } => {
                let mut size = 0usize;
                nvrtc_sys::nvrtcGetCUBINSize(program, &mut size)
                    .result()
                    .map_err(|e| GpuError::call(&format!("NVRTC CUBIN size of {name}"), e))?;
                let mut cubin = vec![0u8; size];
                nvrtc_sys::nvrtcGetCUBIN(program, cubin.as_mut_ptr() as *mut c_char)
                    .result()
                    .map_err(|e| GpuError::call(&format!("NVRTC CUBIN of {name}"), e))?;
                if cubin.is_empty() {
                    return Err(GpuError::new(format!(
                        "NVRTC gave an empty CUBIN for {name}"
                    )));
                }
                Ok(Ptx::from_binary(cubin))
            }
            Target::Ptx { .. } => {
                let image = nvrtc_result::get_ptx(program)
                    .map_err(|e| GpuError::call(&format!("NVRTC PTX of {name}"), e))?;
                let text = CStr::from_ptr(image.as_ptr())
                    .to_string_lossy()
                    .into_owned();
                Ok(Ptx::from_src(text))
            }
        }
    }
}
