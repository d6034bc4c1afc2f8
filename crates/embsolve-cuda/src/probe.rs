//! Is CUDA usable here? Checks that each library loads before anything calls into it (cudarc
//! panics on a missing library), then that the driver initialises and sees a device.

use cudarc::driver::CudaContext;

/// Which CUDA libraries can be loaded on this machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Libraries {
    /// The driver (`libcuda.so`).
    pub driver: bool,
    /// The run-time compiler (`libnvrtc.so`).
    pub nvrtc: bool,
    /// cuBLAS (`libcublas.so`).
    pub cublas: bool,
    /// cuFFT (`libcufft.so`).
    pub cufft: bool,
}

impl Libraries {
    /// Look each library up (a `dlopen` by the names cudarc uses; nothing is called).
    pub fn detect() -> Libraries {
        // SAFETY: these only try to open the shared library by name and close it again.
        unsafe {
            Libraries {
                driver: cudarc::driver::sys::is_culib_present(),
                nvrtc: cudarc::nvrtc::sys::is_culib_present(),
                cublas: cudarc::cublas::sys::is_culib_present(),
                cufft: cudarc::cufft::sys::is_culib_present(),
            }
        }
    }

    /// The libraries that are missing, by file name, for messages.
    pub fn missing(&self) -> Vec<&'static str> {
        let mut missing = Vec::new();
        if !self.driver {
            missing.push("libcuda.so (the NVIDIA driver)");
        }
        if !self.nvrtc {
            missing.push("libnvrtc.so (NVRTC)");
        }
        if !self.cublas {
            missing.push("libcublas.so (cuBLAS)");
        }
        if !self.cufft {
            missing.push("libcufft.so (cuFFT)");
        }
        missing
    }
}

/// Only NVRTC is needed to compile the kernels (no driver, no device).
pub fn nvrtc_present() -> bool {
    Libraries::detect().nvrtc
}

/// Number of CUDA devices, or why there are none usable. Never panics.
pub fn device_count() -> Result<usize, String> {
    let libraries = Libraries::detect();
    if !libraries.driver {
        return Err("CUDA is not usable: libcuda.so (the NVIDIA driver) was not found".into());
    }
    let count = std::panic::catch_unwind(CudaContext::device_count)
        .map_err(|_| "CUDA is not usable: the driver library could not be used".to_string())?
        .map_err(|e| format!("CUDA is not usable: cuInit/cuDeviceGetCount failed: {e:?}"))?;
    if count <= 0 {
        return Err("CUDA is not usable: the driver sees no CUDA device".into());
    }
    Ok(count as usize)
}

/// Whether CUDA can run the offloaded kernels here: every library loads and a device is visible.
/// `Ok` carries the device count; `Err` the reason, naming the missing piece.
pub fn probe() -> Result<usize, String> {
    let missing = Libraries::detect().missing();
    if !missing.is_empty() {
        return Err(format!(
            "CUDA is not usable: {} not found (searched by the standard names on the library path; \
             set LD_LIBRARY_PATH)",
            missing.join(", ")
        ));
    }
    device_count()
}

/// `probe().is_ok()`.
pub fn available() -> bool {
    probe().is_ok()
}

/// The device a rank uses: its rank on the node modulo the device count (one GPU per rank).
pub fn device_for_local_rank(local_rank: usize, device_count: usize) -> usize {
    local_rank % device_count.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_ranks_share_devices_round_robin() {
        assert_eq!(device_for_local_rank(0, 4), 0);
        assert_eq!(device_for_local_rank(5, 4), 1);
        assert_eq!(device_for_local_rank(3, 1), 0);
        assert_eq!(device_for_local_rank(2, 0), 0);
    }

    #[test]
    fn probe_gives_a_reason_or_a_device_count_and_never_panics() {
        match probe() {
            Ok(count) => assert!(count > 0),
            Err(reason) => assert!(reason.contains("CUDA"), "reason must name CUDA: {reason}"),
        }
        assert_eq!(available(), probe().is_ok());
    }

    #[test]
    fn missing_names_every_absent_library() {
        let none = Libraries {
            driver: false,
            nvrtc: false,
            cublas: false,
            cufft: false,
        };
        assert_eq!(none.missing().len(), 4);
        let all = Libraries {
            driver: true,
            nvrtc: true,
            cublas: true,
            cufft: true,
        };
        assert!(all.missing().is_empty());
    }
}
