//! Batched real FFTs on the GPU (cuFFT R2C plans) returning power spectra `|X_f|^2`, one row of
//! `n / 2 + 1` bins per window, for the windowed spectra of token tracks.

use crate::error::{GpuError, Result};
use crate::gpu::Gpu;
use cudarc::cufft::{sys as cufft_sys, CudaFft};
use cudarc::driver::{CudaFunction, CudaSlice, CudaStream, LaunchConfig, PushKernelArg};
use std::sync::Arc;

/// A cuFFT plan for `batch` real transforms of length `n`, with its device buffers.
pub struct BatchedRealFft {
    stream: Arc<CudaStream>,
    plan: CudaFft,
    power_kernel: CudaFunction,
    n: usize,
    batch: usize,
    input: CudaSlice<f32>,
    spectrum: CudaSlice<cufft_sys::float2>,
    power: CudaSlice<f32>,
}

impl BatchedRealFft {
    /// Plan `batch` transforms of length `n` (both at least 1).
    pub fn new(gpu: &Gpu, n: usize, batch: usize) -> Result<BatchedRealFft> {
        if n == 0 || batch == 0 {
            return Err(GpuError::new(format!(
                "an FFT needs a length and a batch of at least 1 (got n = {n}, batch = {batch})"
            )));
        }
        let n_i32 =
            i32::try_from(n).map_err(|_| GpuError::new(format!("FFT length {n} too large")))?;
        let batch_i32 = i32::try_from(batch)
            .map_err(|_| GpuError::new(format!("FFT batch {batch} too large")))?;
        let stream = gpu.stream().clone();
        let plan = CudaFft::plan_1d(
            n_i32,
            cufft_sys::cufftType::CUFFT_R2C,
            batch_i32,
            stream.clone(),
        )
        .map_err(|e| GpuError::call("cuFFT R2C plan", e))?;
        let bins = n / 2 + 1;
        let input = stream
            .alloc_zeros::<f32>(n * batch)
            .map_err(|e| GpuError::call("CUDA allocation of FFT input", e))?;
        let spectrum = stream
            .alloc_zeros::<cufft_sys::float2>(bins * batch)
            .map_err(|e| GpuError::call("CUDA allocation of FFT spectrum", e))?;
        let power = stream
            .alloc_zeros::<f32>(bins * batch)
            .map_err(|e| GpuError::call("CUDA allocation of FFT power", e))?;
        Ok(BatchedRealFft {
            stream,
            plan,
            power_kernel: gpu.function("power_spectrum")?.clone(),
            n,
            batch,
            input,
            spectrum,
            power,
        })
    }

    pub fn len(&self) -> usize {
        self.n
    }

    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    pub fn bins(&self) -> usize {
        self.n / 2 + 1
    }

    pub fn batch(&self) -> usize {
        self.batch
    }

    /// Power spectra of `windows` (row-major `n_windows x n`, any number of windows) into `power`
    /// (`n_windows x bins`). Windows go through the plan `batch` at a time.
    pub fn power(&mut self, windows: &[f32], power: &mut [f32]) -> Result<()> {
        let (n, bins) = (self.n, self.bins());
        if !windows.len().is_multiple_of(n) || power.len() != windows.len() / n * bins {
            return Err(GpuError::new(format!(
                "FFT of {} values (length {n}) into {} values (bins {bins}) does not fit",
                windows.len(),
                power.len()
            )));
        }
        let n_windows = windows.len() / n;
        let mut first = 0;
        while first < n_windows {
            let count = self.batch.min(n_windows - first);
            self.stream
                .memcpy_htod(
                    &windows[first * n..(first + count) * n],
                    &mut self.input.slice_mut(..count * n),
                )
                .map_err(|e| GpuError::call("upload of FFT windows", e))?;
            // Rows past `count` hold earlier data: transformed, never read back.
            self.plan
                .exec_r2c(&self.input, &mut self.spectrum)
                .map_err(|e| GpuError::call("cuFFT R2C execution", e))?;
            let total = (count * bins) as i64;
            let launch = LaunchConfig {
                grid_dim: ((total as u64).div_ceil(256) as u32, 1, 1),
                block_dim: (256, 1, 1),
                shared_mem_bytes: 0,
            };
            let mut builder = self.stream.launch_builder(&self.power_kernel);
            builder.arg(&self.spectrum).arg(&mut self.power).arg(&total);
            // SAFETY: `power_spectrum(const float*, float*, long long)`; both buffers hold at least
            // `total` complex / real values.
            unsafe { builder.launch(launch) }
                .map_err(|e| GpuError::call("launch of power_spectrum", e))?;
            self.stream
                .memcpy_dtoh(
                    &self.power.slice(..count * bins),
                    &mut power[first * bins..(first + count) * bins],
                )
                .map_err(|e| GpuError::call("download of FFT power", e))?;
            first += count;
        }
        self.stream
            .synchronize()
            .map_err(|e| GpuError::call("CUDA stream synchronisation", e))
    }
}
