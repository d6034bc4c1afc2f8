//! embsolve: the HPC half of a Ray -> HPC pipeline for sequence embeddings. An SPMD program: every
//! rank reads its row block, runs graph and spectral solvers, and the results are reduced and
//! written once.
//!
//! Layers (see docs/ARCHITECTURE.md): `comm` is the only user of MPI, `io` the only user of
//! HDF5/Parquet/Arrow, `backend` the only user of CUDA; `kernels` is pure compute; `dist` joins
//! kernels and `Comm`; `pipeline` is the driver.

pub mod backend;
pub mod checkpoint;
pub mod comm;
pub mod config;
pub mod dist;
pub mod error;
pub mod io;
pub mod kernels;
pub mod layout;
pub mod pipeline;
pub mod report;
pub mod results;
pub mod selftest;
pub mod signals;
pub mod telemetry;

pub use error::{Error, ErrorKind, Result};

/// The version written to results and printed by `--version`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
