//! Token tracks for the FFT solver: readers (Parquet ragged tensors or list<int>, HDF5
//! /tokens + /offsets) and the synthetic generator with planted coding segments.

use crate::error::{Error, Result};
use std::path::Path;

/// `embsolve generate --kind tracks`: `n_sequences` synthetic DNA tracks of about `length` bases.
pub fn generate_tracks(
    n_sequences: usize,
    length: usize,
    seed: u64,
    format: &str,
    shards: usize,
    out: &Path,
) -> Result<()> {
    let _ = (n_sequences, length, seed, format, shards, out);
    Err(Error::usage("generate --kind tracks is not built yet"))
}
