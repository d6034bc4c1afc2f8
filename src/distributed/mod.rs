//! Kernels joined with `Comm`: the distributed algorithms. Each takes the communicator as an
//! argument (never the world) and this rank's slice; plans are computed once and reused.

pub mod ari;
pub mod component_spectrum;
pub mod components;
pub mod fft;
pub mod graph;
pub mod ids;
pub mod knn;
pub mod leiden;
pub mod pagerank;
pub mod partitioned;
pub mod preprocess;
pub mod spectral;

pub use embsolve_comm::{allreduce_exact, CommReduce};
