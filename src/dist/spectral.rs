//! Spectral clustering: the largest eigenpairs of the graph's normalised adjacency D^-1/2 W D^-1/2
//! by distributed Lanczos, the row-normalised spectral embedding, the number of clusters from the
//! largest eigengap (when not given), and k-means on the embedding. Every step uses exact
//! reductions, so the results do not depend on the number of ranks.

use crate::comm::Comm;
use crate::config::SpectralSection;
use crate::dist::graph::DistGraph;
use crate::dist::CommReduce;
use crate::error::{Error, Result};
use crate::kernels::kmeans::{kmeans, KmeansParams};
use crate::kernels::lanczos::{lanczos, LanczosParams};
use crate::kernels::linop::{LinOp, Reduce};
use ndarray::Array2;

/// k-means++ starts (the best inertia wins) and Lloyd iterations per start.
const KMEANS_STARTS: usize = 8;
const KMEANS_MAX_ITER: usize = 300;

pub struct SpectralOutcome {
    /// The `n_eigs` largest eigenvalues, descending.
    pub eigenvalues: Vec<f64>,
    /// This rank's rows of the row-normalised eigenvectors (n_local x n_eigs).
    pub embedding: Array2<f32>,
    /// Cluster of each local row (0..n_clusters, cluster 0 holds the smallest global row).
    pub labels: Vec<i32>,
    pub n_clusters: usize,
    /// Operator applications of Lanczos.
    pub iterations: usize,
    /// Whether every residual reached `spectral.tol` before `spectral.max_iter`.
    pub converged: bool,
}

/// Spectral clustering of the graph. Collective over `comm`.
pub fn spectral_clustering(
    comm: &dyn Comm,
    graph: &DistGraph,
    params: &SpectralSection,
) -> Result<SpectralOutcome> {
    let n_rows = graph.layout.n_rows;
    if params.n_eigs > n_rows {
        return Err(Error::config(format!(
            "spectral.n_eigs = {} exceeds the number of rows ({n_rows})",
            params.n_eigs
        )));
    }
    let operator = graph.normalized_adjacency(comm);
    let row_start = graph.layout.start(comm.rank());
    Ok(spectral_on_operator(
        &operator,
        &CommReduce(comm),
        n_rows,
        row_start,
        params,
    ))
}

/// Spectral clustering of any symmetric operator distributed by rows (global rows
/// `row_start..row_start + operator.local_len()` of `n_rows` on this rank). Collective.
pub fn spectral_on_operator(
    operator: &dyn LinOp,
    reduce: &dyn Reduce,
    n_rows: usize,
    row_start: usize,
    params: &SpectralSection,
) -> SpectralOutcome {
    let lanczos_params = LanczosParams {
        n_eigs: params.n_eigs,
        tol: params.tol,
        max_iter: params.max_iter,
        seed: params.seed,
    };
    let eigen = lanczos(operator, reduce, n_rows, row_start, &lanczos_params);
    let n_eigs = eigen.eigenvalues.len();
    let n_local = operator.local_len();
    log::info!(
        "spectral: {} Lanczos iterations, converged = {}, eigenvalues {:?}, largest residual {:e}",
        eigen.iterations,
        eigen.converged,
        eigen.eigenvalues,
        eigen.residuals.iter().fold(0.0f64, |m, &r| m.max(r))
    );

    let mut embedding = Array2::<f32>::zeros((n_local, n_eigs));
    for (row, mut out) in embedding.rows_mut().into_iter().enumerate() {
        let values = &eigen.vectors[row * n_eigs..(row + 1) * n_eigs];
        let norm = values.iter().map(|v| v * v).sum::<f64>().sqrt();
        let inverse = if norm > 0.0 { 1.0 / norm } else { 0.0 };
        for (o, v) in out.iter_mut().zip(values) {
            *o = (v * inverse) as f32;
        }
    }

    let n_clusters = if params.n_clusters > 0 {
        params.n_clusters.min(n_eigs.max(1))
    } else {
        choose_n_clusters(&eigen.eigenvalues)
    };
    let points = normalized_rows(&eigen.vectors, n_eigs, n_clusters);
    let clusters = kmeans(
        &points,
        n_clusters,
        reduce,
        row_start,
        &KmeansParams {
            n_clusters,
            seed: params.seed,
            n_init: KMEANS_STARTS,
            max_iter: KMEANS_MAX_ITER,
        },
    );
    SpectralOutcome {
        eigenvalues: eigen.eigenvalues,
        embedding,
        labels: clusters.labels.iter().map(|&l| l as i32).collect(),
        n_clusters,
        iterations: eigen.iterations,
        converged: eigen.converged,
    }
}

/// Gaps below this are rounding, not structure: eigenvalues that equal 1 up to it belong to
/// separate connected components.
const NEGLIGIBLE_GAP: f64 = 1e-6;

/// The number of clusters k in 2..n (n = number of eigenvalues, descending) with the largest gap
/// between the k-th and (k+1)-th eigenvalue (the smaller k on ties); 2 when there are only two
/// eigenvalues, and at most n. When no gap is larger than rounding (every computed eigenvalue is
/// the same, e.g. more connected components than `n_eigs`), the largest gap lies beyond the
/// computed ones: k = n, with a warning to raise `spectral.n_eigs`.
pub fn choose_n_clusters(eigenvalues: &[f64]) -> usize {
    let n = eigenvalues.len();
    if n <= 2 {
        return n.max(1);
    }
    let mut best = (2, f64::NEG_INFINITY);
    for k in 2..n {
        let gap = eigenvalues[k - 1] - eigenvalues[k];
        if gap > best.1 {
            best = (k, gap);
        }
    }
    if best.1 < NEGLIGIBLE_GAP {
        log::warn!(
            "spectral: the {n} computed eigenvalues show no gap (the graph may have more than {n} \
             components); using {n} clusters; raise spectral.n_eigs to see the real gap"
        );
        return n;
    }
    best.0
}

/// The first `n_columns` of each row of `vectors` (rows of `width`), scaled to unit length (zero
/// rows stay zero). Row-major n_rows x n_columns.
pub fn normalized_rows(vectors: &[f64], width: usize, n_columns: usize) -> Vec<f64> {
    let mut out = Vec::with_capacity(vectors.len() / width.max(1) * n_columns);
    for row in vectors.chunks_exact(width.max(1)) {
        let values = &row[..n_columns];
        let norm = values.iter().map(|v| v * v).sum::<f64>().sqrt();
        let inverse = if norm > 0.0 { 1.0 / norm } else { 0.0 };
        out.extend(values.iter().map(|v| v * inverse));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::lanczos::hashed_uniform;
    use crate::kernels::linop::{DenseOp, SerialReduce};

    /// Planted partition: `k` groups of `size` rows (interleaved: row r is in group r % k), dense
    /// inside a group, sparse across; the normalised adjacency as a dense operator.
    fn planted(k: usize, size: usize, p_in: f64, p_out: f64, seed: u64) -> (DenseOp, Vec<i64>) {
        let n = k * size;
        let mut weights = vec![0.0; n * n];
        for i in 0..n {
            for j in 0..i {
                let u = hashed_uniform(seed, 0, (i * n + j) as u64) * 0.5 + 0.5;
                let p = if i % k == j % k { p_in } else { p_out };
                if u < p {
                    weights[i * n + j] = 1.0;
                    weights[j * n + i] = 1.0;
                }
            }
        }
        let degrees: Vec<f64> = (0..n)
            .map(|i| weights[i * n..(i + 1) * n].iter().sum())
            .collect();
        let mut values = vec![0.0; n * n];
        for i in 0..n {
            for j in 0..n {
                if weights[i * n + j] > 0.0 {
                    values[i * n + j] = weights[i * n + j] / (degrees[i] * degrees[j]).sqrt();
                }
            }
        }
        let truth = (0..n).map(|r| (r % k) as i64).collect();
        (DenseOp { n, values }, truth)
    }

    #[test]
    fn planted_partition_is_recovered_with_the_eigengap_choice() {
        let (op, truth) = planted(5, 60, 0.3, 0.02, 4);
        let params = SpectralSection {
            n_eigs: 10,
            ..Default::default()
        };
        let outcome = spectral_on_operator(&op, &SerialReduce, op.n, 0, &params);
        assert!(outcome.converged);
        assert_eq!(
            outcome.n_clusters, 5,
            "eigenvalues {:?}",
            outcome.eigenvalues
        );
        let predicted: Vec<i64> = outcome.labels.iter().map(|&l| l as i64).collect();
        let table = crate::dist::ari::contingency(&truth, &predicted);
        let ari = crate::dist::ari::ari_from_contingency(&table);
        assert!(ari >= 0.95, "ari {ari}");
        // Interleaved groups: rows 0..5 open the five clusters in order.
        assert_eq!(&outcome.labels[..5], &[0, 1, 2, 3, 4]);
        for row in outcome.embedding.rows() {
            let norm: f32 = row.iter().map(|v| v * v).sum::<f32>().sqrt();
            assert!((norm - 1.0).abs() < 1e-5);
        }
    }

    #[test]
    fn eigengap_choice() {
        assert_eq!(choose_n_clusters(&[1.0, 0.99, 0.98, 0.5, 0.45]), 3);
        assert_eq!(choose_n_clusters(&[1.0, 1.0, 1.0, 0.2]), 3);
        assert_eq!(choose_n_clusters(&[1.0, 0.9]), 2);
        // A gap after the first eigenvalue alone is not a clustering: k is at least 2.
        assert_eq!(choose_n_clusters(&[1.0, 0.2, 0.19, 0.1]), 3);
        // No gap beyond rounding among the computed eigenvalues: all of them.
        assert_eq!(
            choose_n_clusters(&[1.0, 1.0 - 1e-14, 1.0 - 2e-14, 1.0 - 3e-14]),
            4
        );
    }
}
