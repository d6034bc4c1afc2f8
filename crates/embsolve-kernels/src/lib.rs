//! Pure compute and the plain types every layer shares: no MPI, no files, no GPU. Each kernel
//! works on slices and ndarray views and has a naive oracle in `reference` that the unit tests
//! compare against. Nothing in this crate's dependency tree links MPI, HDF5, Parquet, Arrow, CUDA
//! or a plotting library (checked by the workspace's tidy test).

pub mod csr;
pub mod eigengap;
pub mod error;
pub mod exact;
pub mod fft;
pub mod kmeans;
pub mod knn;
pub mod lanczos;
pub mod layout;
pub mod leiden;
pub mod linop;
pub mod pagerank;
pub mod pca;
pub mod reference;
pub mod results;
mod simd;
pub mod tile_bounds;
pub mod types;
pub mod unionfind;

pub use error::{Error, ErrorKind, Result};
