//! Pure compute: no MPI, no files, no GPU. Each kernel works on slices and ndarray views and has a
//! naive oracle in `reference` that the unit tests compare against.

pub mod csr;
pub mod exact;
pub mod fft;
pub mod kmeans;
pub mod knn;
pub mod lanczos;
pub mod linop;
pub mod pagerank;
pub mod pca;
pub mod reference;
pub mod tile_bounds;
pub mod unionfind;
