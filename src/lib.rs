//! embsolve: the HPC half of a Ray -> HPC pipeline for sequence embeddings. An SPMD program: every
//! rank reads its row block, runs graph and spectral solvers, and the results are reduced and
//! written once.
//!
//! This crate is the driver; the outside worlds live in their own crates (see
//! docs/ARCHITECTURE.md): `embsolve-comm` is the only user of MPI, `embsolve-io` of
//! HDF5/Parquet/Arrow, `embsolve-cuda` (through `backend`) of CUDA, `embsolve-report` of plotters,
//! and `embsolve-kernels` is pure compute. `distributed` joins kernels and `Comm`; `pipeline` is
//! the driver.

pub mod backend;
pub mod checkpoint;
pub mod config;
pub mod distributed;
pub mod pipeline;
pub mod plan;
pub mod record;
pub mod signals;
pub mod telemetry;

pub use embsolve_kernels::error::{Error, ErrorKind, Result};

/// The version written to results and printed by `--version`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
