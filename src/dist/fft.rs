//! FFT analysis of token tracks.

use crate::comm::Comm;
use crate::config::FftSection;
use crate::error::{Error, Result};
use crate::results::FftSummary;
use ndarray::Array2;

pub struct FftOutcome {
    pub summary: FftSummary,
    pub seq_start: usize,
    pub features: Array2<f32>,
    pub window_start: usize,
    pub period3: Vec<(i64, i64, f32)>,
}

pub fn run(comm: &dyn Comm, params: &FftSection) -> Result<FftOutcome> {
    let _ = (comm, params);
    Err(Error::internal("fft is not built yet"))
}
