//! The GPU of one rank: its context, a stream and the kernels compiled for it.

use crate::error::{GpuError, Result};
use crate::kernels::{self, Target};
use crate::probe;
use cudarc::driver::{CudaContext, CudaFunction, CudaModule, CudaStream};
use std::sync::Arc;

/// An open device with the kernels loaded. Opening checks every library first, so it returns an
/// error (never panics) on a machine without CUDA.
pub struct Gpu {
    context: Arc<CudaContext>,
    stream: Arc<CudaStream>,
    ordinal: usize,
    name: String,
    compute_capability: (i32, i32),
    functions: Vec<(String, CudaFunction)>,
    kernel_format: &'static str,
}

impl Gpu {
    /// Open the device of a rank: `local_rank` modulo the device count.
    pub fn open(local_rank: usize) -> Result<Gpu> {
        let count = probe::probe().map_err(GpuError::new)?;
        let ordinal = probe::device_for_local_rank(local_rank, count);
        std::panic::catch_unwind(|| Gpu::open_ordinal(ordinal)).map_err(|_| {
            GpuError::new(format!(
                "CUDA is not usable: opening device {ordinal} panicked in the CUDA libraries"
            ))
        })?
    }

    fn open_ordinal(ordinal: usize) -> Result<Gpu> {
        let context =
            CudaContext::new(ordinal).map_err(|e| GpuError::call("CUDA context creation", e))?;
        let name = context
            .name()
            .map_err(|e| GpuError::call("CUDA device name", e))?;
        let compute_capability = context
            .compute_capability()
            .map_err(|e| GpuError::call("CUDA compute capability", e))?;
        let stream = context
            .new_stream()
            .map_err(|e| GpuError::call("CUDA stream creation", e))?;
        let (major, minor) = compute_capability;
        let (modules, kernel_format) = match load_all(&context, Target::Cubin { major, minor }) {
            Ok(modules) => (modules, "cubin"),
            Err(cubin_error) => match load_all(&context, Target::Ptx { major, minor }) {
                Ok(modules) => (modules, "ptx"),
                Err(ptx_error) => {
                    return Err(GpuError::new(format!(
                        "CUDA kernels could not be loaded on device {ordinal} ({name}): \
                         as CUBIN: {cubin_error}; as PTX: {ptx_error}"
                    )))
                }
            },
        };
        let mut functions = Vec::new();
        for (module, entry_points) in modules {
            for entry in entry_points {
                let function = module
                    .load_function(entry)
                    .map_err(|e| GpuError::call(&format!("loading kernel {entry}"), e))?;
                functions.push((entry.to_string(), function));
            }
        }
        Ok(Gpu {
            context,
            stream,
            ordinal,
            name,
            compute_capability,
            functions,
            kernel_format,
        })
    }

    /// One line for the log: device, ordinal, architecture, memory.
    pub fn describe(&self) -> String {
        let (free, total) = self.memory().unwrap_or((0, 0));
        format!(
            "CUDA device {} ({}, sm_{}{}, {:.1} of {:.1} GiB free, kernels as {})",
            self.ordinal,
            self.name,
            self.compute_capability.0,
            self.compute_capability.1,
            free as f64 / (1u64 << 30) as f64,
            total as f64 / (1u64 << 30) as f64,
            self.kernel_format
        )
    }

    /// (free, total) device memory in bytes.
    pub fn memory(&self) -> Result<(usize, usize)> {
        self.context
            .mem_get_info()
            .map_err(|e| GpuError::call("cuMemGetInfo", e))
    }

    pub fn ordinal(&self) -> usize {
        self.ordinal
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn stream(&self) -> &Arc<CudaStream> {
        &self.stream
    }

    pub fn context(&self) -> &Arc<CudaContext> {
        &self.context
    }

    /// A loaded kernel by entry-point name.
    pub fn function(&self, entry: &str) -> Result<&CudaFunction> {
        self.functions
            .iter()
            .find(|(name, _)| name == entry)
            .map(|(_, function)| function)
            .ok_or_else(|| GpuError::new(format!("kernel {entry} is not loaded")))
    }
}

type LoadedModules = Vec<(Arc<CudaModule>, &'static [&'static str])>;

fn load_all(context: &Arc<CudaContext>, target: Target) -> Result<LoadedModules> {
    let mut modules = Vec::new();
    for (name, source, entry_points) in kernels::SOURCES {
        let image = kernels::compile(name, source, target)?;
        let module = context
            .load_module(image)
            .map_err(|e| GpuError::call(&format!("loading module {name}"), e))?;
        modules.push((module, *entry_points));
    }
    Ok(modules)
}
