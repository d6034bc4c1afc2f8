//! CUDA kernels (placeholder until the backend lands).
