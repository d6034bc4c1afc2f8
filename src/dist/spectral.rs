//! Spectral clustering.

use crate::comm::Comm;
use crate::config::SpectralSection;
use crate::dist::graph::DistGraph;
use crate::error::{Error, Result};
use ndarray::Array2;

pub struct SpectralOutcome {
    pub eigenvalues: Vec<f64>,
    pub embedding: Array2<f32>,
    pub labels: Vec<i32>,
    pub n_clusters: usize,
    pub iterations: usize,
    pub converged: bool,
}

pub fn spectral_clustering(
    comm: &dyn Comm,
    graph: &DistGraph,
    params: &SpectralSection,
) -> Result<SpectralOutcome> {
    let _ = (comm, graph, params);
    Err(Error::internal("spectral is not built yet"))
}
