//! Ring-pass exact kNN.

use crate::backend::KnnBackend;
use crate::comm::Comm;
use crate::config::Metric;
use crate::error::{Error, Result};
use crate::layout::RowLayout;
use ndarray::ArrayView2;

/// This rank's kNN lists: `indices[i * k + j]` is the j-th nearest global row of local row i.
#[derive(Debug, Clone, PartialEq)]
pub struct KnnLists {
    pub k: usize,
    pub indices: Vec<u64>,
    pub distances: Vec<f32>,
}

pub fn exact_knn(
    comm: &dyn Comm,
    layout: &RowLayout,
    local: ArrayView2<f32>,
    k: usize,
    metric: Metric,
    backend: &mut dyn KnnBackend,
) -> Result<KnnLists> {
    let _ = (comm, layout, local, k, metric, backend);
    Err(Error::internal("knn is not built yet"))
}
