//! The distributed similarity graph (CSR rows owned as the embeddings).

use crate::comm::Comm;
use crate::config::{GraphSection, Metric};
use crate::dist::knn::KnnLists;
use crate::error::{Error, Result};
use crate::layout::RowLayout;

pub struct DistGraph {
    pub layout: RowLayout,
}

impl DistGraph {
    pub fn build(
        comm: &dyn Comm,
        layout: &RowLayout,
        knn: &KnnLists,
        graph: &GraphSection,
        metric: Metric,
    ) -> Result<DistGraph> {
        let _ = (comm, knn, graph, metric);
        let _ = layout;
        Err(Error::internal("graph is not built yet"))
    }
}
