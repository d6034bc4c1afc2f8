//! PageRank of the distributed graph: power iteration of the weighted random walk on the
//! symmetrised graph, p <- damping * W D^-1 p + (damping * dangling mass + 1 - damping) / n,
//! from the uniform vector until the L1 change is below `pagerank.tol`. Rows of weighted degree 0
//! are dangling: their mass is spread uniformly. Row sums are in a fixed order and global sums
//! exact, so the scores have the same bits for any number of ranks or threads.

use crate::checkpoint::{Checkpointed, Payload};
use crate::config::PagerankSection;
use crate::distributed::allreduce_exact;
use crate::distributed::graph::DistGraph;
use crate::record::ResultsRecord;
use embsolve_comm::Comm;
use embsolve_kernels::exact::ExactSum;
use embsolve_kernels::pagerank::power_step;
use embsolve_kernels::results::{GlobalResults, LocalResults, PagerankSummary};

#[derive(Debug, Clone, PartialEq)]
pub struct PagerankOutcome {
    pub scores: Vec<f64>,
    pub iterations: usize,
    pub residual: f64,
}

/// Scores of this rank's rows (summing to 1 over all ranks), the steps taken and the L1 change
/// of the last step. Collective.
pub fn pagerank(comm: &dyn Comm, graph: &DistGraph, params: &PagerankSection) -> PagerankOutcome {
    let n_rows = graph.layout.n_rows;
    let n_local = graph.local_rows();
    if n_rows == 0 {
        return PagerankOutcome {
            scores: Vec::new(),
            iterations: 0,
            residual: 0.0,
        };
    }
    let damping = params.damping;
    let inv_degree: Vec<f64> = graph
        .degrees
        .iter()
        .map(|&d| if d > 0.0 { 1.0 / d } else { 0.0 })
        .collect();
    let mut scores = vec![1.0 / n_rows as f64; n_local];
    let first_walk: Vec<f64> = scores.iter().zip(&inv_degree).map(|(s, i)| s * i).collect();
    let mut walk = graph.with_halo(comm, &first_walk);
    let mut next_walk = vec![0.0; n_local];
    let mut dangling = [ExactSum::default()];
    for (score, &inv) in scores.iter().zip(&inv_degree) {
        if inv == 0.0 {
            dangling[0].add(*score);
        }
    }
    allreduce_exact(comm, &mut dangling);

    let mut iterations = 0;
    let mut residual = f64::INFINITY;
    while iterations < params.max_iter {
        let teleport = (damping * dangling[0].value() + 1.0 - damping) / n_rows as f64;
        let local = power_step(
            &graph.adjacency,
            &inv_degree,
            &walk,
            damping,
            teleport,
            &mut scores,
            &mut next_walk,
        );
        let mut sums = [local.residual, local.dangling];
        allreduce_exact(comm, &mut sums);
        iterations += 1;
        residual = sums[0].value();
        dangling[0] = sums[1];
        if residual < params.tol {
            break;
        }
        walk[..n_local].copy_from_slice(&next_walk);
        let (own, remote) = walk.split_at_mut(n_local);
        graph.halo.exchange(comm, own, remote);
    }

    // Remove the rounding drift of the mass (an exact total, so the same on every rank count).
    let mut total = [ExactSum::default()];
    scores.iter().for_each(|&s| total[0].add(s));
    allreduce_exact(comm, &mut total);
    let total = total[0].value();
    if total > 0.0 {
        scores.iter_mut().for_each(|s| *s /= total);
    }
    if residual >= params.tol {
        log::warn!(
            "pagerank: stopped at max_iter = {} with L1 change {residual:e} (tol {:e})",
            params.max_iter,
            params.tol
        );
    }
    PagerankOutcome {
        scores,
        iterations,
        residual,
    }
}

impl Checkpointed for PagerankOutcome {
    fn encode(&self, payload: &mut Payload) {
        payload
            .put_slice(&self.scores)
            .put_u64(self.iterations as u64)
            .put_f64(self.residual);
    }
    fn decode(payload: &mut Payload) -> Option<Self> {
        Some(PagerankOutcome {
            scores: payload.vec()?,
            iterations: payload.u64()? as usize,
            residual: payload.f64()?,
        })
    }
}

/// The PageRank stage's part of the results.
pub fn publish(
    outcome: PagerankOutcome,
    record: &mut ResultsRecord,
    global: &mut GlobalResults,
    local: &mut LocalResults,
) {
    record.pagerank_iterations = Some(outcome.iterations);
    global.pagerank = Some(PagerankSummary {
        iterations: outcome.iterations,
        residual: outcome.residual,
    });
    local.pagerank_scores = Some(outcome.scores);
}

#[cfg(test)]
mod checkpoint_tests {
    use super::*;

    #[test]
    fn outcome_round_trips_through_a_checkpoint() {
        crate::checkpoint::assert_round_trip(&PagerankOutcome {
            scores: vec![0.25, 0.5, 0.25],
            iterations: 17,
            residual: 3.5e-11,
        });
    }
}
