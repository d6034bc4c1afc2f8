//! Connected components of the distributed graph. The label of a row is the smallest global row
//! of its component, so labels are identical for any number of ranks.
//!
//! The number of communication rounds is fixed (it does not grow with the graph's diameter):
//! 1. union-find over the edges inside this rank's block gives local labels (local minima);
//! 2. one halo exchange gives the local label of every remote neighbour;
//! 3. each cross-rank edge becomes a pair of local labels; each rank keeps a spanning forest of
//!    its pairs (at most one pair per local label it touches) and the forests are all-gathered;
//! 4. every rank runs the same union-find over the gathered forest and relabels its rows.
//!
//! The gathered forest has at most as many pairs as there are distinct local labels that touch a
//! rank boundary, which is small when rows of a component sit together and at most the number of
//! boundary rows otherwise.

use crate::checkpoint::{Checkpointed, Payload};
use crate::distributed::graph::DistGraph;
use crate::record::ResultsRecord;
use embsolve_comm::{self as comm, Comm};
use embsolve_kernels::results::{GlobalResults, LocalResults};
use embsolve_kernels::unionfind::UnionFind;

/// Local labels (smallest global row of the component) and the number of components.
pub fn connected_components(comm: &dyn Comm, graph: &DistGraph) -> (Vec<i64>, u64) {
    let n_local = graph.local_rows();
    let row_start = graph.row_start as u64;
    let adjacency = &graph.adjacency;

    // 1. Components inside the block.
    let mut local_sets = UnionFind::new(n_local);
    for row in 0..n_local {
        for &col in adjacency.row(row).0 {
            if (col as usize) < row {
                local_sets.union(row as u32, col);
            }
        }
    }
    let local_labels: Vec<u64> = local_sets
        .roots()
        .iter()
        .map(|&root| row_start + root as u64)
        .collect();

    // 2. Local labels of the remote neighbours.
    let halo_labels = graph.with_halo(comm, &local_labels);

    // 3. Cross-rank pairs (emitted from the side with the smaller label, each once), reduced to
    //    a spanning forest.
    let mut pairs: Vec<(u64, u64)> = Vec::new();
    for (row, &label) in local_labels.iter().enumerate() {
        for &col in adjacency.row(row).0 {
            if (col as usize) >= n_local {
                let remote = halo_labels[col as usize];
                if label < remote {
                    pairs.push((label, remote));
                }
            }
        }
    }
    pairs.sort_unstable();
    pairs.dedup();
    let forest = spanning_forest(&pairs);
    let flat: Vec<u64> = forest.iter().flat_map(|&(a, b)| [a, b]).collect();

    // 4. The same merge on every rank.
    let (gathered, _) = comm::allgatherv(comm, &flat);
    let gathered_pairs: Vec<(u64, u64)> = gathered.chunks_exact(2).map(|p| (p[0], p[1])).collect();
    let (vertices, roots) = merge_pairs(&gathered_pairs);
    let labels: Vec<i64> = local_labels
        .iter()
        .map(|&label| match vertices.binary_search(&label) {
            Ok(position) => roots[position] as i64,
            Err(_) => label as i64,
        })
        .collect();

    let own_roots = labels
        .iter()
        .enumerate()
        .filter(|&(row, &label)| label as u64 == row_start + row as u64)
        .count() as u64;
    let mut n_components = [own_roots];
    comm.allreduce_sum_u64(&mut n_components);
    (labels, n_components[0])
}

/// The vertices of `pairs` (ascending) and, for each, the smallest vertex joined to it.
fn merge_pairs(pairs: &[(u64, u64)]) -> (Vec<u64>, Vec<u64>) {
    let mut vertices: Vec<u64> = pairs.iter().flat_map(|&(a, b)| [a, b]).collect();
    vertices.sort_unstable();
    vertices.dedup();
    let index = |v: u64| vertices.binary_search(&v).expect("vertex of a pair") as u32;
    let mut sets = UnionFind::new(vertices.len());
    for &(a, b) in pairs {
        sets.union(index(a), index(b));
    }
    // Vertices are sorted, so the smallest index of a set is its smallest vertex.
    let roots = sets.roots().iter().map(|&r| vertices[r as usize]).collect();
    (vertices, roots)
}

/// The pairs that join different sets when added in order: a forest with the same components.
fn spanning_forest(pairs: &[(u64, u64)]) -> Vec<(u64, u64)> {
    let mut vertices: Vec<u64> = pairs.iter().flat_map(|&(a, b)| [a, b]).collect();
    vertices.sort_unstable();
    vertices.dedup();
    let index = |v: u64| vertices.binary_search(&v).expect("vertex of a pair") as u32;
    let mut sets = UnionFind::new(vertices.len());
    pairs
        .iter()
        .copied()
        .filter(|&(a, b)| sets.union(index(a), index(b)))
        .collect()
}

/// This rank's component labels and the number of components (the `components` stage).
#[derive(Debug, Clone, PartialEq)]
pub struct ComponentLabels {
    pub labels: Vec<i64>,
    pub n_components: u64,
}

/// [`connected_components`] as a stage result.
pub fn component_labels(comm: &dyn Comm, graph: &DistGraph) -> ComponentLabels {
    let (labels, n_components) = connected_components(comm, graph);
    ComponentLabels {
        labels,
        n_components,
    }
}

impl Checkpointed for ComponentLabels {
    fn encode(&self, payload: &mut Payload) {
        payload.put_slice(&self.labels).put_u64(self.n_components);
    }
    fn decode(payload: &mut Payload) -> Option<Self> {
        Some(ComponentLabels {
            labels: payload.vec()?,
            n_components: payload.u64()?,
        })
    }
}

/// The components stage's part of the results.
pub fn publish(
    components: ComponentLabels,
    record: &mut ResultsRecord,
    global: &mut GlobalResults,
    local: &mut LocalResults,
) {
    record.n_components = Some(components.n_components);
    global.n_components = Some(components.n_components);
    local.component_labels = Some(components.labels);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_round_trip_through_a_checkpoint() {
        crate::checkpoint::assert_round_trip(&ComponentLabels {
            labels: vec![0, 0, 2, 2, 4],
            n_components: 3,
        });
    }

    #[test]
    fn forest_keeps_components_and_merge_takes_minima() {
        let pairs = vec![(3, 9), (9, 12), (3, 12), (20, 21), (5, 21)];
        let forest = spanning_forest(&pairs);
        assert_eq!(forest, vec![(3, 9), (9, 12), (20, 21), (5, 21)]);
        let (vertices, roots) = merge_pairs(&forest);
        assert_eq!(vertices, vec![3, 5, 9, 12, 20, 21]);
        assert_eq!(roots, vec![3, 5, 3, 3, 5, 5]);
    }
}
