//! Naive reference implementations: the oracles unit tests compare the fast kernels against.

// ---- kNN oracle (kernels::knn) ----

/// Exact kNN by brute force: every pair's canonical distance, a full sort per row by
/// (distance, row), self excluded. Returns `n x k` indices and distances, row-major.
pub fn knn_naive(
    rows: ndarray::ArrayView2<f32>,
    k: usize,
    metric: crate::config::Metric,
) -> (Vec<u64>, Vec<f32>) {
    let n_rows = rows.nrows();
    let owned: Vec<Vec<f32>> = rows.rows().into_iter().map(|r| r.to_vec()).collect();
    let mut indices = Vec::with_capacity(n_rows * k);
    let mut distances = Vec::with_capacity(n_rows * k);
    for (i, query) in owned.iter().enumerate() {
        let mut all: Vec<(f32, usize)> = owned
            .iter()
            .enumerate()
            .filter(|&(j, _)| j != i)
            .map(|(j, other)| (crate::kernels::knn::exact_distance(metric, query, other), j))
            .collect();
        all.sort_by(|a, b| {
            a.0.partial_cmp(&b.0)
                .unwrap_or(std::cmp::Ordering::Equal)
                .then(a.1.cmp(&b.1))
        });
        for &(distance, j) in all.iter().take(k) {
            indices.push(j as u64);
            distances.push(distance);
        }
    }
    (indices, distances)
}
// ---- end of kNN oracle ----
