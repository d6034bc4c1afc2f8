//! Spectral clustering: the largest eigenpairs of the graph's normalised adjacency D^-1/2 W D^-1/2
//! (one connected component at a time, `component_spectrum`; Lanczos for any operator through
//! `spectral_on_operator`), the row-normalised spectral embedding, the number of clusters from the
//! eigengap rule of `embsolve_kernels::eigengap` (when not given), and k-means on the embedding. Every step uses exact
//! reductions, so the results do not depend on the number of ranks.

use crate::checkpoint::{Checkpointed, Payload};
use crate::config::SpectralSection;
use crate::distributed::component_spectrum::{component_spectrum, ComponentGraph};
use crate::distributed::components::connected_components;
use crate::distributed::graph::DistGraph;
use crate::distributed::CommReduce;
use crate::record::{EigengapRecord, ResultsRecord, SpectralRecord};
use embsolve_comm::{self as comm, Comm};
use embsolve_kernels::eigengap::eigengap;
use embsolve_kernels::error::{Error, Result};
use embsolve_kernels::exact::ExactSum;
use embsolve_kernels::kmeans::{kmeans, KmeansParams};
use embsolve_kernels::lanczos::{lanczos, KnownEigenpairs, LanczosOutcome, LanczosParams};
use embsolve_kernels::linop::{LinOp, Reduce};
use embsolve_kernels::results::{GlobalResults, LocalResults, SpectralSummary};
use ndarray::Array2;
use std::collections::BTreeMap;

/// k-means++ starts (the best inertia wins) and Lloyd iterations per start.
const KMEANS_STARTS: usize = 8;
const KMEANS_MAX_ITER: usize = 300;

#[derive(Debug, Clone, PartialEq)]
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
    /// The largest residual norm |A v - lambda v| of the returned eigenpairs.
    pub largest_residual: f64,
}

/// Spectral clustering of the graph. Collective over `comm`. `component_labels` are this rank's
/// connected-component labels when the caller has them (they are computed here otherwise).
pub fn spectral_clustering(
    comm: &dyn Comm,
    graph: &DistGraph,
    params: &SpectralSection,
    component_labels: Option<&[i64]>,
) -> Result<SpectralOutcome> {
    let eigen = graph_eigenpairs(comm, graph, params, component_labels)?;
    if !eigen.converged && params.require_converged {
        return Err(Error::internal(format!(
            "spectral: the eigensolver did not converge to spectral.tol = {:e} within \
             spectral.max_iter = {} (largest residual {:e}); no labels are written. Raise \
             spectral.max_iter, or set spectral.require_converged = false to keep approximate \
             clusters",
            params.tol,
            params.max_iter,
            eigen.residuals.iter().fold(0.0f64, |m, &r| m.max(r))
        )));
    }
    Ok(cluster_eigenpairs(
        eigen,
        &CommReduce(comm),
        graph.local_rows(),
        graph.layout.start(comm.rank()),
        params,
    ))
}

/// The `params.n_eigs` largest eigenpairs of the graph's normalised adjacency (this rank's rows of
/// the vectors), solved one connected component at a time. An eigenvalue outside the spectrum
/// [-1, 1] marks the outcome not converged. Collective over `comm`.
pub fn graph_eigenpairs(
    comm: &dyn Comm,
    graph: &DistGraph,
    params: &SpectralSection,
    component_labels: Option<&[i64]>,
) -> Result<LanczosOutcome> {
    let n_rows = graph.layout.n_rows;
    if params.n_eigs > n_rows {
        return Err(Error::config(format!(
            "spectral.n_eigs = {} exceeds the number of rows ({n_rows})",
            params.n_eigs
        )));
    }
    let computed;
    let labels = match component_labels {
        Some(labels) => labels,
        None => {
            computed = connected_components(comm, graph).0;
            &computed
        }
    };
    let operator = graph.normalized_adjacency(comm);
    let n_local = graph.local_rows();
    let columns: Vec<u64> = (0..(n_local + graph.halo.halo_len()) as u32)
        .map(|c| graph.global_column(c))
        .collect();
    let view = ComponentGraph {
        n_rows,
        row_start: graph.layout.start(comm.rank()),
        labels,
        degrees: &graph.degrees,
        normalized: &graph.normalized,
        columns: &columns,
        operator: &operator,
    };
    let started = std::time::Instant::now();
    let mut eigen = component_spectrum(comm, &view, &lanczos_params(params));
    log::debug!(
        "spectral: eigenpairs in {:.3} s",
        started.elapsed().as_secs_f64()
    );
    // The spectrum of D^-1/2 W D^-1/2 lies in [-1, 1] (W >= 0): a value outside is a failed solve,
    // never a result.
    if let Some(outside) = eigen
        .eigenvalues
        .iter()
        .find(|v| v.is_nan() || v.abs() > 1.0 + SPECTRUM_SLACK)
    {
        log::warn!(
            "spectral: eigenvalue {outside} lies outside the spectrum [-1, 1] of the normalised \
             adjacency: the eigensolver failed"
        );
        eigen.converged = false;
    }
    Ok(eigen)
}

/// One connected component: its label, rows, and rows of positive degree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ComponentInfo {
    pub label: u64,
    pub rows: u64,
    pub positive_rows: u64,
}

/// Every connected component, by label (the same table on every rank). Gathers one triple per
/// component present on each rank.
pub fn component_table(comm: &dyn Comm, labels: &[i64], degrees: &[f64]) -> Vec<ComponentInfo> {
    assert_eq!(labels.len(), degrees.len(), "one label and degree per row");
    let mut local: BTreeMap<u64, (u64, u64)> = BTreeMap::new();
    for (&label, &degree) in labels.iter().zip(degrees) {
        let entry = local.entry(label as u64).or_default();
        entry.0 += 1;
        entry.1 += u64::from(degree > 0.0);
    }
    let flat: Vec<u64> = local.iter().flat_map(|(&l, &(n, p))| [l, n, p]).collect();
    let (gathered, _) = comm::allgatherv(comm, &flat);
    let mut table: BTreeMap<u64, (u64, u64)> = BTreeMap::new();
    for triple in gathered.chunks_exact(3) {
        let entry = table.entry(triple[0]).or_default();
        entry.0 += triple[1];
        entry.1 += triple[2];
    }
    table
        .into_iter()
        .map(|(label, (rows, positive_rows))| ComponentInfo {
            label,
            rows,
            positive_rows,
        })
        .collect()
}

/// The eigenvalue-1 eigenvectors of D^-1/2 W D^-1/2 that the connected components give exactly:
/// for a component C of positive degree, y_i = sqrt(d_i / d_C) on its rows (d_C = sum of its
/// degrees) and 0 elsewhere, since (D^-1/2 W D^-1/2 D^1/2 1_C)_i = d_i^-1/2 sum_j w_ij = d_i^1/2.
/// Disjoint supports make them orthonormal. At most `n_eigs` are returned: all components when
/// there are no more than that, else the largest (by rows, then smallest label), since the
/// eigenvalue 1 then fills every wanted slot. Degree sums are exact, so the vectors have the same
/// bits for any rank count.
/// `labels` and `degrees` are this rank's rows (labels as `connected_components` gives them).
pub fn component_eigenpairs(
    comm: &dyn Comm,
    labels: &[i64],
    degrees: &[f64],
    n_eigs: usize,
) -> KnownEigenpairs {
    let table = component_table(comm, labels, degrees);
    component_eigenpairs_from(comm, labels, degrees, &table, n_eigs).0
}

/// [`component_eigenpairs`] from a gathered [`component_table`]; also the component label of
/// each returned column.
pub fn component_eigenpairs_from(
    comm: &dyn Comm,
    labels: &[i64],
    degrees: &[f64],
    table: &[ComponentInfo],
    n_eigs: usize,
) -> (KnownEigenpairs, Vec<u64>) {
    let n_local = labels.len();
    let mut components: Vec<(u64, u64)> = table
        .iter()
        .filter(|c| c.positive_rows > 0)
        .map(|c| (c.label, c.positive_rows))
        .collect();
    let n_components = components.len();
    if n_components > n_eigs {
        components.sort_by_key(|&(label, rows)| (std::cmp::Reverse(rows), label));
        components.truncate(n_eigs);
        components.sort_unstable();
    }
    let column_of: BTreeMap<u64, usize> = components
        .iter()
        .enumerate()
        .map(|(column, &(label, _))| (label, column))
        .collect();
    let n_known = components.len();
    let mut degree_sums = vec![ExactSum::default(); n_known];
    for (&label, &degree) in labels.iter().zip(degrees) {
        if let Some(&column) = column_of.get(&(label as u64)) {
            degree_sums[column].add(degree);
        }
    }
    CommReduce(comm).sum_exact(&mut degree_sums);
    let totals: Vec<f64> = degree_sums.iter().map(ExactSum::value).collect();
    let mut vectors = vec![0.0; n_local * n_known];
    for (row, (&label, &degree)) in labels.iter().zip(degrees).enumerate() {
        if let Some(&column) = column_of.get(&(label as u64)) {
            if degree > 0.0 && totals[column] > 0.0 {
                vectors[row * n_known + column] = (degree / totals[column]).sqrt();
            }
        }
    }
    if n_known > 0 {
        log::info!(
            "spectral: {n_components} connected components; {n_known} eigenvalue-1 vectors \
             known from them, Lanczos searches the rest"
        );
    }
    let known = KnownEigenpairs {
        values: vec![1.0; n_known],
        vectors,
    };
    (known, components.iter().map(|&(label, _)| label).collect())
}

/// Spectral clustering of any symmetric operator distributed by rows (global rows
/// `row_start..row_start + operator.local_len()` of `n_rows` on this rank). Collective.
pub fn spectral_on_operator(
    operator: &dyn LinOp,
    reduce: &dyn Reduce,
    n_rows: usize,
    row_start: usize,
    params: &SpectralSection,
    known: Option<&KnownEigenpairs>,
) -> SpectralOutcome {
    let eigen = lanczos(
        operator,
        reduce,
        n_rows,
        row_start,
        &lanczos_params(params),
        known,
    );
    cluster_eigenpairs(eigen, reduce, operator.local_len(), row_start, params)
}

fn lanczos_params(params: &SpectralSection) -> LanczosParams {
    LanczosParams {
        n_eigs: params.n_eigs,
        tol: params.tol,
        max_iter: params.max_iter,
        seed: params.seed,
    }
}

/// The embedding, the number of clusters and the k-means labels from the eigenpairs. Collective.
pub fn cluster_eigenpairs(
    eigen: LanczosOutcome,
    reduce: &dyn Reduce,
    n_local: usize,
    row_start: usize,
    params: &SpectralSection,
) -> SpectralOutcome {
    let n_eigs = eigen.eigenvalues.len();
    let largest_residual = eigen.residuals.iter().fold(0.0f64, |m, &r| m.max(r));
    log::info!(
        "spectral: {} Lanczos iterations, converged = {}, eigenvalues {:?}, largest residual {:e}",
        eigen.iterations,
        eigen.converged,
        eigen.eigenvalues,
        largest_residual
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
    let started = std::time::Instant::now();
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
    log::debug!(
        "spectral: k-means in {:.3} s",
        started.elapsed().as_secs_f64()
    );
    SpectralOutcome {
        eigenvalues: eigen.eigenvalues,
        embedding,
        labels: clusters.labels.iter().map(|&l| l as i32).collect(),
        n_clusters,
        iterations: eigen.iterations,
        converged: eigen.converged,
        largest_residual,
    }
}

/// Eigenvalues may exceed 1 in magnitude by rounding up to this much.
pub(crate) const SPECTRUM_SLACK: f64 = 1e-8;

/// The number of clusters from the eigengap rule (`embsolve_kernels::eigengap`), with a warning
/// when the computed eigenvalues show no gap.
pub fn choose_n_clusters(eigenvalues: &[f64]) -> usize {
    let choice = eigengap(eigenvalues);
    if choice.no_gap {
        let n = eigenvalues.len();
        log::warn!(
            "spectral: the {n} computed eigenvalues show no gap (the graph may have more than {n} \
             components); using {n} clusters; raise spectral.n_eigs to see the real gap"
        );
    }
    choice.n_clusters
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

/// The spectral stage as a checkpoint: eigenpairs, this rank's embedding rows and labels.
impl Checkpointed for SpectralOutcome {
    fn encode(&self, payload: &mut Payload) {
        let embedding: Vec<f32> = self.embedding.iter().copied().collect();
        payload
            .put_slice(&self.eigenvalues)
            .put_u64(self.embedding.ncols() as u64)
            .put_slice(&embedding)
            .put_slice(&self.labels)
            .put_u64(self.n_clusters as u64)
            .put_u64(self.iterations as u64)
            .put_u64(self.converged as u64)
            .put_f64(self.largest_residual);
    }
    fn decode(payload: &mut Payload) -> Option<Self> {
        let eigenvalues = payload.vec()?;
        let n_cols = payload.u64()? as usize;
        let embedding: Vec<f32> = payload.vec()?;
        let n_local = embedding.len().checked_div(n_cols).unwrap_or(0);
        let embedding = Array2::from_shape_vec((n_local, n_cols), embedding).ok()?;
        Some(SpectralOutcome {
            eigenvalues,
            embedding,
            labels: payload.vec()?,
            n_clusters: payload.u64()? as usize,
            iterations: payload.u64()? as usize,
            converged: payload.u64()? != 0,
            largest_residual: payload.f64()?,
        })
    }
}

/// The spectral stage's part of the results; an unconverged solve is said as a warning.
pub fn publish(
    outcome: SpectralOutcome,
    params: &SpectralSection,
    record: &mut ResultsRecord,
    global: &mut GlobalResults,
    local: &mut LocalResults,
) {
    if !outcome.converged {
        log::warn!(
            "spectral: Lanczos stopped at spectral.max_iter = {} before every residual reached \
             spectral.tol = {:e} (largest residual {:e}): the eigenpairs and clusters are \
             approximate (raise spectral.max_iter)",
            params.max_iter,
            params.tol,
            outcome.largest_residual
        );
    }
    record.n_clusters = Some(outcome.n_clusters);
    record.eigenvalues = Some(outcome.eigenvalues.clone());
    record.lanczos_iterations = Some(outcome.iterations);
    record.lanczos_converged = Some(outcome.converged);
    record.spectral = Some(SpectralRecord {
        converged: outcome.converged,
        largest_residual: outcome.largest_residual,
        iterations: outcome.iterations,
        n_clusters_from: if params.n_clusters > 0 {
            "config"
        } else {
            "eigengap"
        }
        .into(),
        eigengap: (params.n_clusters == 0).then(|| {
            let choice = eigengap(&outcome.eigenvalues);
            EigengapRecord {
                n_clusters: choice.n_clusters,
                first_k: choice.first_k,
                log_ratios: choice.log_ratios,
            }
        }),
    });
    global.spectral = Some(SpectralSummary {
        eigenvalues: outcome.eigenvalues,
        n_clusters: outcome.n_clusters,
        n_eigs: params.n_eigs,
        iterations: outcome.iterations,
        converged: outcome.converged,
    });
    local.spectral_embedding = Some(outcome.embedding);
    local.spectral_labels = Some(outcome.labels);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcome_round_trips_through_a_checkpoint() {
        crate::checkpoint::assert_round_trip(&SpectralOutcome {
            eigenvalues: vec![1.0, 0.75, 0.5],
            embedding: Array2::from_shape_vec((2, 3), vec![0.5, -0.5, 0.25, 1.0, 0.0, -1.0])
                .unwrap(),
            labels: vec![0, 1],
            n_clusters: 2,
            iterations: 42,
            converged: true,
            largest_residual: 1e-9,
        });
    }
    use embsolve_kernels::lanczos::hashed_uniform;
    use embsolve_kernels::linop::{DenseOp, LinOp, SerialReduce};

    /// D^-1/2 W D^-1/2 of a dense symmetric weight matrix as an operator, and the degrees.
    fn normalized(n: usize, weights: &[f64]) -> (DenseOp, Vec<f64>) {
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
        (DenseOp { n, values }, degrees)
    }

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
        let truth = (0..n).map(|r| (r % k) as i64).collect();
        (normalized(n, &weights).0, truth)
    }

    #[test]
    fn planted_partition_is_recovered_with_the_eigengap_choice() {
        let (op, truth) = planted(5, 60, 0.3, 0.02, 4);
        let params = SpectralSection {
            n_eigs: 10,
            ..Default::default()
        };
        let outcome = spectral_on_operator(&op, &SerialReduce, op.n, 0, &params, None);
        assert!(outcome.converged);
        assert_eq!(
            outcome.n_clusters, 5,
            "eigenvalues {:?}",
            outcome.eigenvalues
        );
        let predicted: Vec<i64> = outcome.labels.iter().map(|&l| l as i64).collect();
        let table = crate::distributed::ari::contingency(&truth, &predicted);
        let ari = crate::distributed::ari::ari_from_contingency(&table);
        assert!(ari >= 0.95, "ari {ari}");
        // Interleaved groups: rows 0..5 open the five clusters in order.
        assert_eq!(&outcome.labels[..5], &[0, 1, 2, 3, 4]);
        for row in outcome.embedding.rows() {
            let norm: f32 = row.iter().map(|v| v * v).sum::<f32>().sqrt();
            assert!((norm - 1.0).abs() < 1e-5);
        }
    }

    /// Disconnected groups of the given sizes (rows in order), each a ring plus random chords;
    /// the normalised adjacency, the degrees and the component labels (smallest row of each).
    fn components_graph(sizes: &[usize], seed: u64) -> (DenseOp, Vec<f64>, Vec<i64>) {
        let n: usize = sizes.iter().sum();
        let mut labels = Vec::with_capacity(n);
        let mut first = 0;
        for &size in sizes {
            labels.extend(std::iter::repeat_n(first as i64, size));
            first += size;
        }
        let mut weights = vec![0.0; n * n];
        for i in 0..n {
            for j in 0..i {
                let u = hashed_uniform(seed, 0, (i * n + j) as u64) * 0.5 + 0.5;
                if labels[i] == labels[j] && (u < 0.2 || j + 1 == i) {
                    weights[i * n + j] = 0.5 + u;
                    weights[j * n + i] = 0.5 + u;
                }
            }
        }
        let (op, degrees) = normalized(n, &weights);
        (op, degrees, labels)
    }

    #[test]
    fn known_component_vectors_give_the_dense_eigenvalues_and_the_same_clusters() {
        let (op, degrees, labels) = components_graph(&[40, 25, 60, 35], 7);
        let params = SpectralSection {
            n_eigs: 7,
            n_clusters: 4,
            tol: 1e-10,
            ..Default::default()
        };
        let known = component_eigenpairs(&embsolve_comm::SerialComm, &labels, &degrees, 7);
        assert_eq!(known.values, vec![1.0; 4]);
        // Each known vector is an eigenvector: A y = y.
        for column in 0..4 {
            let y: Vec<f64> = (0..op.n).map(|r| known.vectors[r * 4 + column]).collect();
            let mut ay = vec![0.0; op.n];
            op.apply(&y, &mut ay);
            let residual = ay.iter().zip(&y).map(|(a, b)| (a - b).powi(2)).sum::<f64>();
            assert!(residual.sqrt() < 1e-12, "column {column}: {residual}");
        }
        let deflated = spectral_on_operator(&op, &SerialReduce, op.n, 0, &params, Some(&known));
        let plain = spectral_on_operator(&op, &SerialReduce, op.n, 0, &params, None);
        assert!(deflated.converged && plain.converged);
        let (dense, _) = embsolve_kernels::lanczos::dense_symmetric_eigen(op.n, &op.values);
        for (i, ((d, p), e)) in deflated
            .eigenvalues
            .iter()
            .zip(&plain.eigenvalues)
            .zip(&dense)
            .enumerate()
        {
            assert!(
                (d - e).abs() < 1e-8,
                "eigenvalue {i}: deflated {d}, dense {e}"
            );
            assert!((p - e).abs() < 1e-8, "eigenvalue {i}: plain {p}, dense {e}");
        }
        assert!(deflated.iterations < plain.iterations);
        // The components are the clusters, found both ways.
        let truth: Vec<i64> = labels.clone();
        for outcome in [&deflated, &plain] {
            let predicted: Vec<i64> = outcome.labels.iter().map(|&l| l as i64).collect();
            let table = crate::distributed::ari::contingency(&truth, &predicted);
            assert_eq!(crate::distributed::ari::ari_from_contingency(&table), 1.0);
        }
    }

    #[test]
    fn more_components_than_eigenpairs_keeps_the_largest() {
        let (op, degrees, labels) = components_graph(&[12, 30, 18, 30, 9], 3);
        let known = component_eigenpairs(&embsolve_comm::SerialComm, &labels, &degrees, 3);
        assert_eq!(known.values.len(), 3);
        // Sizes 30 (label 12), 30 (label 60), 18 (label 42), in label order.
        let support: Vec<i64> = (0..3)
            .map(|column| {
                let row = (0..op.n)
                    .find(|&r| known.vectors[r * 3 + column] > 0.0)
                    .expect("non-empty support");
                labels[row]
            })
            .collect();
        assert_eq!(support, vec![12, 42, 60]);
        let params = SpectralSection {
            n_eigs: 3,
            n_clusters: 3,
            ..Default::default()
        };
        let outcome = spectral_on_operator(&op, &SerialReduce, op.n, 0, &params, Some(&known));
        assert!(outcome.converged);
        assert!(outcome.eigenvalues.iter().all(|&v| v == 1.0));
    }
}
