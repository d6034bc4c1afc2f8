//! CUDA kernels for embsolve through cudarc, loaded at run time: a kNN tile engine (cuBLAS SGEMM
//! dot tiles + an NVRTC top-k kernel, exact re-rank on the CPU) and batched real FFTs (cuFFT).
//!
//! The crate links nothing but cudarc with `dynamic-loading`: it builds and its tests run on
//! machines without CUDA. Every first touch of a CUDA library goes through [`probe`], which checks
//! that the library can be loaded before cudarc is asked to call into it (cudarc panics on a
//! missing library), so callers get a reason string instead of a panic.

pub mod error;
pub mod exact;
pub mod fft;
pub mod gpu;
pub mod kernels;
pub mod knn;
pub mod probe;

pub use error::GpuError;
pub use exact::{BlockCandidates, ExactTopK, MergeStats};
pub use fft::BatchedRealFft;
pub use gpu::Gpu;
pub use knn::{KnnTileConfig, KnnTileEngine, Metric, Precision};
pub use probe::{available, probe, Libraries};
