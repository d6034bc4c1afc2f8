//! PageRank.

use crate::comm::Comm;
use crate::config::PagerankSection;
use crate::dist::graph::DistGraph;

pub struct PagerankOutcome {
    pub scores: Vec<f64>,
    pub iterations: usize,
    pub residual: f64,
}

pub fn pagerank(comm: &dyn Comm, graph: &DistGraph, params: &PagerankSection) -> PagerankOutcome {
    let _ = (comm, graph, params);
    PagerankOutcome {
        scores: Vec::new(),
        iterations: 0,
        residual: 0.0,
    }
}
