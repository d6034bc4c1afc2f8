//! Leiden communities of the distributed graph. The graph's edges (each rank's rows of W, global
//! columns) are gathered onto every rank and every rank runs the same serial, deterministic
//! kernel (`embsolve_kernels::leiden`: serial local moving, refinement and aggregation on the
//! rank's threads) on the same CSR, so the labels are the same bits for any rank or thread count; each rank keeps its own rows' labels. The gather costs O(edges) memory
//! per rank (12 bytes per stored entry): about 1 GB for 1e8 entries. docs/cluster.md has the
//! model and the path beyond it.

use crate::checkpoint::{Checkpointed, Payload};
use crate::config::LeidenSection;
use crate::distributed::graph::DistGraph;
use crate::record::ResultsRecord;
use bytemuck::{Pod, Zeroable};
use embsolve_comm::{self as comm, Comm};
use embsolve_kernels::csr::Csr;
use embsolve_kernels::leiden::leiden as leiden_kernel;
use embsolve_kernels::results::{GlobalResults, LeidenSummary, LocalResults};

/// One stored entry of W in flight: global row, global column, weight.
#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable)]
struct Edge {
    row: u64,
    col: u64,
    weight: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct LeidenOutcome {
    /// Community of each local row: the smallest global row of the community.
    pub labels: Vec<i64>,
    pub summary_n_clusters: usize,
    pub quality: f64,
    pub iterations: usize,
    pub converged: bool,
}

/// The whole graph W as a symmetric CSR (global rows), gathered from every rank. Collective.
fn gather_graph(comm: &dyn Comm, graph: &DistGraph) -> Csr {
    let n = graph.layout.n_rows;
    let adjacency = &graph.adjacency;
    let mut local = Vec::with_capacity(adjacency.cols.len());
    for row in 0..graph.local_rows() {
        let (cols, values) = adjacency.row(row);
        for (&c, &w) in cols.iter().zip(values) {
            local.push(Edge {
                row: (graph.row_start + row) as u64,
                col: graph.global_column(c),
                weight: w,
            });
        }
    }
    // Ranks hold ascending row blocks, rows hold ascending columns: the gathered entries are in
    // CSR order already.
    let (all, _) = comm::allgatherv(comm, &local);
    let mut csr = Csr {
        n_cols: n,
        row_ptr: vec![0; n + 1],
        cols: Vec::with_capacity(all.len()),
        values: Vec::with_capacity(all.len()),
    };
    for edge in &all {
        csr.row_ptr[edge.row as usize + 1] += 1;
        csr.cols.push(edge.col as u32);
        csr.values.push(edge.weight);
    }
    for row in 0..n {
        csr.row_ptr[row + 1] += csr.row_ptr[row];
    }
    csr
}

/// Leiden communities of the graph; every rank returns its own rows' labels. Collective.
pub fn leiden(comm: &dyn Comm, graph: &DistGraph, params: &LeidenSection) -> LeidenOutcome {
    let whole = gather_graph(comm, graph);
    let outcome = leiden_kernel(&whole, &params.params());
    let range = graph.row_start..graph.row_start + graph.local_rows();
    log::info!(
        "leiden: {} communities, {} {:.6}, {} passes{}",
        outcome.n_communities,
        match params.objective {
            crate::config::LeidenObjective::Modularity => "modularity",
            crate::config::LeidenObjective::Cpm => "CPM quality",
        },
        outcome.quality,
        outcome.iterations,
        if outcome.converged {
            ""
        } else {
            " (stopped at leiden.max_iterations)"
        }
    );
    LeidenOutcome {
        labels: outcome.labels[range].iter().map(|&l| l as i64).collect(),
        summary_n_clusters: outcome.n_communities,
        quality: outcome.quality,
        iterations: outcome.iterations,
        converged: outcome.converged,
    }
}

impl Checkpointed for LeidenOutcome {
    fn encode(&self, payload: &mut Payload) {
        payload
            .put_slice(&self.labels)
            .put_u64(self.summary_n_clusters as u64)
            .put_f64(self.quality)
            .put_u64(self.iterations as u64)
            .put_u64(self.converged as u64);
    }
    fn decode(payload: &mut Payload) -> Option<Self> {
        Some(LeidenOutcome {
            labels: payload.vec()?,
            summary_n_clusters: payload.u64()? as usize,
            quality: payload.f64()?,
            iterations: payload.u64()? as usize,
            converged: payload.u64()? != 0,
        })
    }
}

/// The Leiden stage's part of the results.
pub fn publish(
    outcome: LeidenOutcome,
    record: &mut ResultsRecord,
    global: &mut GlobalResults,
    local: &mut LocalResults,
) {
    let summary = LeidenSummary {
        n_clusters: outcome.summary_n_clusters,
        modularity: outcome.quality,
        iterations: outcome.iterations,
        converged: outcome.converged,
    };
    record.leiden = Some(summary.clone());
    global.leiden = Some(summary);
    local.leiden_labels = Some(outcome.labels);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcome_round_trips_through_a_checkpoint() {
        crate::checkpoint::assert_round_trip(&LeidenOutcome {
            labels: vec![0, 0, 2, 2],
            summary_n_clusters: 2,
            quality: 0.42,
            iterations: 3,
            converged: true,
        });
    }
}
