//! Connected components.

use crate::comm::Comm;
use crate::dist::graph::DistGraph;

/// Local labels (smallest global row of the component) and the number of components.
pub fn connected_components(comm: &dyn Comm, graph: &DistGraph) -> (Vec<i64>, u64) {
    let _ = (comm, graph);
    (Vec::new(), 0)
}
