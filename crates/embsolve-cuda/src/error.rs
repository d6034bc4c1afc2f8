//! The error of the CUDA crate: a message saying which library or call failed and why.

use std::fmt;

/// A CUDA failure (missing library, no device, failed call), with a message naming the library.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GpuError {
    pub message: String,
}

impl GpuError {
    pub fn new(message: impl Into<String>) -> Self {
        GpuError {
            message: message.into(),
        }
    }

    /// Wrap the error of a call, naming what was being done.
    pub fn call(what: &str, error: impl fmt::Debug) -> Self {
        GpuError::new(format!("{what} failed: {error:?}"))
    }
}

impl fmt::Display for GpuError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for GpuError {}

pub type Result<T, E = GpuError> = std::result::Result<T, E>;
