//! The PageRank power step on this rank's rows of a symmetric weighted graph: one fused pass that
//! applies the walk, adds the teleport term and measures the change. Sums are exact, so the step
//! gives the same bits for any thread count.

use crate::csr::{Csr, ROWS_PER_TASK};
use crate::exact::ExactSum;
use rayon::prelude::*;

/// The sums a step reports (this rank's part; the caller reduces them over ranks).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StepSums {
    /// Sum over rows of |new score - old score|.
    pub residual: ExactSum,
    /// Sum of the new scores of dangling rows (weighted degree 0).
    pub dangling: ExactSum,
}

impl StepSums {
    fn merge(mut self, other: StepSums) -> StepSums {
        self.residual.merge(other.residual);
        self.dangling.merge(other.dangling);
        self
    }
}

/// One step: `scores[i] = damping * sum_j w_ij * walk[j] + teleport`, where `walk` holds
/// score / weighted degree of every column (this rank's rows, then the halo). Writes the new
/// `walk` entries of this rank's rows into `next_walk` (`scores[i] * inv_degree[i]`, zero for a
/// dangling row) and returns the residual and dangling sums.
pub fn power_step(
    adjacency: &Csr,
    inv_degree: &[f64],
    walk: &[f64],
    damping: f64,
    teleport: f64,
    scores: &mut [f64],
    next_walk: &mut [f64],
) -> StepSums {
    let n_rows = adjacency.n_rows();
    assert_eq!(scores.len(), n_rows);
    assert_eq!(next_walk.len(), n_rows);
    assert_eq!(inv_degree.len(), n_rows);
    scores
        .par_chunks_mut(ROWS_PER_TASK)
        .zip(next_walk.par_chunks_mut(ROWS_PER_TASK))
        .enumerate()
        .map(|(chunk, (score_chunk, walk_chunk))| {
            let first = chunk * ROWS_PER_TASK;
            let mut sums = StepSums::default();
            for (offset, (score, next)) in score_chunk.iter_mut().zip(walk_chunk).enumerate() {
                let row = first + offset;
                let updated = damping * adjacency.row_dot(row, walk) + teleport;
                sums.residual.add((updated - *score).abs());
                *score = updated;
                let inv = inv_degree[row];
                if inv == 0.0 {
                    sums.dangling.add(updated);
                }
                *next = updated * inv;
            }
            sums
        })
        .reduce(StepSums::default, StepSums::merge)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reference;

    /// Serial power iteration of a whole small graph through `power_step`.
    fn iterate(n: usize, edges: &[(usize, usize, f64)], damping: f64, steps: usize) -> Vec<f64> {
        let mut rows: Vec<Vec<(u32, f64)>> = vec![Vec::new(); n];
        for &(a, b, w) in edges {
            rows[a].push((b as u32, w));
            rows[b].push((a as u32, w));
        }
        let mut csr = Csr::empty(0, n);
        csr.row_ptr = vec![0];
        for row in &mut rows {
            row.sort_by_key(|e| e.0);
            csr.cols.extend(row.iter().map(|e| e.0));
            csr.values.extend(row.iter().map(|e| e.1));
            csr.row_ptr.push(csr.cols.len());
        }
        let inv_degree: Vec<f64> = csr
            .row_sums()
            .iter()
            .map(|&d| if d > 0.0 { 1.0 / d } else { 0.0 })
            .collect();
        let mut scores = vec![1.0 / n as f64; n];
        let mut walk: Vec<f64> = scores.iter().zip(&inv_degree).map(|(s, i)| s * i).collect();
        let mut dangling: f64 = (0..n)
            .filter(|&i| inv_degree[i] == 0.0)
            .map(|i| scores[i])
            .sum();
        let mut next = vec![0.0; n];
        for _ in 0..steps {
            let teleport = (damping * dangling + 1.0 - damping) / n as f64;
            let sums = power_step(
                &csr,
                &inv_degree,
                &walk,
                damping,
                teleport,
                &mut scores,
                &mut next,
            );
            std::mem::swap(&mut walk, &mut next);
            dangling = sums.dangling.value();
        }
        scores
    }

    #[test]
    fn steps_match_the_dense_power_iteration() {
        // Two triangles with different weights, a pendant vertex, and two isolated vertices.
        let edges = [
            (0, 1, 1.0),
            (1, 2, 0.5),
            (0, 2, 2.0),
            (3, 4, 1.0),
            (4, 5, 1.0),
            (3, 5, 0.25),
            (5, 6, 3.0),
        ];
        let n = 9;
        for steps in [1, 5, 60] {
            let scores = iterate(n, &edges, 0.85, steps);
            let (expected, _, _) = reference::pagerank_dense(n, &edges, 0.85, 0.0, steps);
            let l1: f64 = scores
                .iter()
                .zip(&expected)
                .map(|(a, b)| (a - b).abs())
                .sum();
            assert!(l1 < 1e-14, "{steps} steps: L1 {l1}");
        }
        let scores = iterate(n, &edges, 0.85, 200);
        let total: f64 = scores.iter().sum();
        assert!((total - 1.0).abs() < 1e-12, "mass {total}");
        assert_eq!(scores[7], scores[8], "isolated vertices alike");
    }
}
