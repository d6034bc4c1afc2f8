//! Spectral checks: the known eigenvalue-1 vectors of the components, Lanczos, the per-component
//! spectral solver, k-means, the whole spectral clustering and the adjusted Rand index, each equal
//! to the serial run bit for bit and close to a dense oracle.

use super::graph::{crafted_knn, graph_cases, GraphCase};
use embsolve_comm::{Comm, CommReduce, SerialComm};
use embsolve_kernels::layout::RowLayout;

/// The eigenvalue-1 vectors known from the components (the spectral deflation) equal the serial
/// ones bit for bit, with few (all kept) and many (largest kept) components.
pub(super) fn check_spectral_component_vectors(comm: &dyn Comm) -> Result<(), String> {
    for case in graph_cases(None) {
        let (graph, serial) = case.build(comm)?;
        let (labels, _) = embsolve::distributed::components::connected_components(comm, &graph);
        let (serial_labels, _) =
            embsolve::distributed::components::connected_components(&SerialComm, &serial);
        for n_eigs in [3, 64] {
            let known = embsolve::distributed::spectral::component_eigenpairs(
                comm,
                &labels,
                &graph.degrees,
                n_eigs,
            );
            let whole = embsolve::distributed::spectral::component_eigenpairs(
                &SerialComm,
                &serial_labels,
                &serial.degrees,
                n_eigs,
            );
            let width = whole.values.len();
            let range = graph.layout.range(comm.rank());
            if known.values != whole.values
                || known.vectors[..] != whole.vectors[range.start * width..range.end * width]
            {
                return Err(format!(
                    "{} (n_eigs {n_eigs}): component vectors differ from the serial ones",
                    case.name
                ));
            }
        }
    }
    Ok(())
}

/// A graph whose components take every path of the per-component solver: one larger than a
/// quarter of the rows (distributed Lanczos), two gathered and solved by serial Lanczos, three
/// small enough for the dense solver, and isolated rows.
fn mixed_components_case() -> GraphCase {
    use embsolve_kernels::types::{EdgeWeight, GraphParams, Metric, Symmetrize};
    let bounds = [0usize, 300, 450, 600, 650, 680, 695];
    let n_rows = 700;
    GraphCase {
        name: "mixed-components",
        n_rows,
        metric: Metric::Cosine,
        section: GraphParams {
            symmetrize: Symmetrize::Union,
            weight: EdgeWeight::Similarity,
            min_similarity: 0.0,
        },
        knn: crafted_knn(n_rows, 2, move |row| {
            let Some(part) = bounds.windows(2).find(|b| (b[0]..b[1]).contains(&row)) else {
                return Vec::new();
            };
            let (start, len) = (part[0], part[1] - part[0]);
            let mut kept = vec![start + (row - start + 1) % len];
            let chord = start + (row * 7 + 3) % len;
            if chord != row && !kept.contains(&chord) {
                kept.push(chord);
            }
            kept.retain(|&c| c != row);
            kept
        }),
    }
}

/// Spectral clustering solved one connected component at a time equals the serial run bit for bit
/// (eigenvalues, embedding, labels) and its eigenvalues match the dense eigendecomposition of the
/// whole normalised adjacency to 1e-8, on graphs with many components of every size.
pub(super) fn check_spectral_by_component(comm: &dyn Comm) -> Result<(), String> {
    use embsolve_kernels::lanczos::dense_symmetric_eigen;
    let mut cases = graph_cases(None);
    cases.push(mixed_components_case());
    for case in cases {
        let (graph, serial) = case.build(comm)?;
        let n = case.n_rows;
        for n_eigs in [2usize, 12] {
            if n_eigs > n {
                continue;
            }
            let params = embsolve::config::SpectralSection {
                n_eigs,
                tol: 1e-10,
                ..Default::default()
            };
            let run = |c: &dyn Comm, g: &embsolve::distributed::graph::DistGraph| {
                embsolve::distributed::spectral::spectral_clustering(c, g, &params, None)
                    .map_err(|e| format!("{}: {e}", case.name))
            };
            let distributed = run(comm, &graph)?;
            let whole = run(&SerialComm, &serial)?;
            let range = graph.layout.range(comm.rank());
            if distributed.eigenvalues != whole.eigenvalues
                || distributed.labels != whole.labels[range.clone()]
                || distributed.embedding != whole.embedding.slice(ndarray::s![range.clone(), ..])
            {
                return Err(format!(
                    "{} (n_eigs {n_eigs}): eigenvalues, labels or embedding differ from the \
                     serial run",
                    case.name
                ));
            }
            let (exact, _) = dense_symmetric_eigen(n, &dense_normalized(&serial));
            let worst = whole
                .eigenvalues
                .iter()
                .zip(&exact)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0f64, f64::max);
            if whole.eigenvalues.len() != n_eigs || worst > 1e-8 {
                return Err(format!(
                    "{} (n_eigs {n_eigs}): eigenvalues {:?} vs dense {:?}",
                    case.name,
                    whole.eigenvalues,
                    &exact[..n_eigs]
                ));
            }
        }
    }
    Ok(())
}

/// The serial graph's normalised adjacency D^-1/2 W D^-1/2 as a dense row-major matrix.
pub(super) fn dense_normalized(serial: &embsolve::distributed::graph::DistGraph) -> Vec<f64> {
    let n = serial.layout.n_rows;
    let mut dense = vec![0.0; n * n];
    for row in 0..n {
        let (cols, values) = serial.normalized.row(row);
        for (&c, &v) in cols.iter().zip(values) {
            dense[row * n + serial.global_column(c) as usize] = v;
        }
    }
    dense
}

/// A dense symmetric matrix distributed by `RowLayout`: this rank holds its rows; `apply`
/// gathers x and multiplies (collective).
struct RowBlockOp<'a> {
    comm: &'a dyn Comm,
    n: usize,
    local_rows: Vec<f64>,
}

impl<'a> RowBlockOp<'a> {
    fn new(comm: &'a dyn Comm, n: usize, matrix: &[f64]) -> Self {
        let range = RowLayout::new(n, comm.size()).range(comm.rank());
        RowBlockOp {
            comm,
            n,
            local_rows: matrix[range.start * n..range.end * n].to_vec(),
        }
    }
}

impl embsolve_kernels::linop::LinOp for RowBlockOp<'_> {
    fn local_len(&self) -> usize {
        self.local_rows.len() / self.n
    }
    fn apply(&self, x: &[f64], y: &mut [f64]) {
        let (full, _) = embsolve_comm::allgatherv(self.comm, x);
        for (yi, row) in y.iter_mut().zip(self.local_rows.chunks_exact(self.n)) {
            *yi = row.iter().zip(&full).map(|(a, b)| a * b).sum();
        }
    }
}

/// The normalised adjacency of a seeded planted-partition graph: `k` groups of `size` rows
/// (row r in group r % k; a ring inside each group keeps it connected), edge probability `p_in`
/// inside a group and `p_out` across. Returns n, the dense matrix and the groups.
fn planted_normalized_adjacency(
    k: usize,
    size: usize,
    p_in: f64,
    p_out: f64,
    seed: u64,
) -> (usize, Vec<f64>, Vec<i64>) {
    use embsolve_kernels::lanczos::hashed_uniform;
    let n = k * size;
    let mut weights = vec![0.0; n * n];
    for i in 0..n {
        for j in 0..i {
            let u = hashed_uniform(seed, 0, (i * n + j) as u64) * 0.5 + 0.5;
            let same = i % k == j % k;
            let ring = same && i == j + k;
            if ring || u < if same { p_in } else { p_out } {
                let weight = 0.5 + u;
                weights[i * n + j] = weight;
                weights[j * n + i] = weight;
            }
        }
    }
    let degrees: Vec<f64> = (0..n)
        .map(|i| weights[i * n..(i + 1) * n].iter().sum())
        .collect();
    let mut matrix = vec![0.0; n * n];
    for i in 0..n {
        for j in 0..n {
            if weights[i * n + j] > 0.0 {
                matrix[i * n + j] = weights[i * n + j] / (degrees[i] * degrees[j]).sqrt();
            }
        }
    }
    (n, matrix, (0..n).map(|r| (r % k) as i64).collect())
}

/// Distributed Lanczos equals the serial run bit for bit (eigenvalues and this rank's rows of
/// the vectors) and the dense eigendecomposition to 1e-8, on a graph with three components
/// (eigenvalue 1 three times) and on a connected one.
pub(super) fn check_spectral_lanczos(comm: &dyn Comm) -> Result<(), String> {
    use embsolve_kernels::lanczos::{dense_symmetric_eigen, lanczos, LanczosParams};
    use embsolve_kernels::linop::{DenseOp, SerialReduce};
    for (label, p_out, n_eigs) in [("three components", 0.0, 6), ("connected", 0.01, 9)] {
        let (n, matrix, _) = planted_normalized_adjacency(3, 50, 0.2, p_out, 17);
        let params = LanczosParams {
            n_eigs,
            tol: 1e-10,
            max_iter: 3000,
            seed: 5,
        };
        let layout = RowLayout::new(n, comm.size());
        let range = layout.range(comm.rank());
        let distributed = lanczos(
            &RowBlockOp::new(comm, n, &matrix),
            &CommReduce(comm),
            n,
            range.start,
            &params,
            None,
        );
        let serial_op = DenseOp {
            n,
            values: matrix.clone(),
        };
        let serial = lanczos(&serial_op, &SerialReduce, n, 0, &params, None);
        if !distributed.converged {
            return Err(format!("{label}: not converged"));
        }
        if distributed.eigenvalues != serial.eigenvalues {
            return Err(format!(
                "{label}: eigenvalues {:?} != serial {:?}",
                distributed.eigenvalues, serial.eigenvalues
            ));
        }
        if distributed.iterations != serial.iterations {
            return Err(format!(
                "{label}: {} iterations != serial {}",
                distributed.iterations, serial.iterations
            ));
        }
        let serial_rows = &serial.vectors[range.start * n_eigs..range.end * n_eigs];
        if distributed.vectors != serial_rows {
            return Err(format!(
                "{label}: eigenvector rows differ from the serial run"
            ));
        }
        let (dense, _) = dense_symmetric_eigen(n, &matrix);
        for (i, (a, b)) in distributed.eigenvalues.iter().zip(&dense).enumerate() {
            if (a - b).abs() > 1e-8 {
                return Err(format!("{label}: eigenvalue {i}: lanczos {a} dense {b}"));
            }
        }
        if p_out == 0.0 && (0..3).any(|i| (distributed.eigenvalues[i] - 1.0).abs() > 1e-9) {
            return Err(format!(
                "{label}: eigenvalue 1 is not triple: {:?}",
                distributed.eigenvalues
            ));
        }
    }
    Ok(())
}

/// Distributed k-means labels equal the serial labels exactly.
pub(super) fn check_spectral_kmeans(comm: &dyn Comm) -> Result<(), String> {
    use embsolve_kernels::kmeans::{kmeans, KmeansParams};
    use embsolve_kernels::lanczos::hashed_uniform;
    use embsolve_kernels::linop::SerialReduce;
    let (n, dim, k) = (997, 3, 7);
    let points: Vec<f64> = (0..n * dim)
        .map(|i| {
            let row = i / dim;
            let centre = ((row * 31) % k) as f64 * if i % dim == 0 { 1.0 } else { 0.3 };
            centre + 0.4 * hashed_uniform(2, (i % dim) as u64, row as u64)
        })
        .collect();
    let params = KmeansParams {
        n_clusters: k,
        seed: 3,
        n_init: 3,
        max_iter: 100,
    };
    let range = RowLayout::new(n, comm.size()).range(comm.rank());
    let local = &points[range.start * dim..range.end * dim];
    let distributed = kmeans(local, dim, &CommReduce(comm), range.start, &params);
    let serial = kmeans(&points, dim, &SerialReduce, 0, &params);
    if distributed.labels != serial.labels[range.clone()] {
        return Err("labels differ from the serial run".into());
    }
    if distributed.centroids != serial.centroids || distributed.inertia != serial.inertia {
        return Err(format!(
            "centroids or inertia differ: {} vs {}",
            distributed.inertia, serial.inertia
        ));
    }
    Ok(())
}

/// The whole spectral clustering of a planted partition: eigenvalues, embedding rows and labels
/// equal the serial run; the eigengap finds the 4 groups and the ARI is at least 0.95.
pub(super) fn check_spectral_clustering(comm: &dyn Comm) -> Result<(), String> {
    use embsolve::distributed::spectral::spectral_on_operator;
    use embsolve_kernels::linop::{DenseOp, SerialReduce};
    let (n, matrix, truth) = planted_normalized_adjacency(4, 60, 0.25, 0.02, 23);
    let params = embsolve::config::SpectralSection {
        n_eigs: 8,
        ..Default::default()
    };
    let range = RowLayout::new(n, comm.size()).range(comm.rank());
    let distributed = spectral_on_operator(
        &RowBlockOp::new(comm, n, &matrix),
        &CommReduce(comm),
        n,
        range.start,
        &params,
        None,
    );
    let serial_op = DenseOp {
        n,
        values: matrix.clone(),
    };
    let serial = spectral_on_operator(&serial_op, &SerialReduce, n, 0, &params, None);
    if distributed.eigenvalues != serial.eigenvalues {
        return Err(format!(
            "eigenvalues {:?} != serial {:?}",
            distributed.eigenvalues, serial.eigenvalues
        ));
    }
    if distributed.labels != serial.labels[range.clone()] {
        return Err("labels differ from the serial run".into());
    }
    if distributed.embedding != serial.embedding.slice(ndarray::s![range.clone(), ..]) {
        return Err("embedding rows differ from the serial run".into());
    }
    if distributed.n_clusters != 4 {
        return Err(format!(
            "eigengap chose {} clusters (eigenvalues {:?})",
            distributed.n_clusters, distributed.eigenvalues
        ));
    }
    let predicted: Vec<i64> = distributed.labels.iter().map(|&l| l as i64).collect();
    let ari = embsolve::distributed::ari::adjusted_rand_index(comm, &truth[range], &predicted);
    if ari < 0.95 {
        return Err(format!("ARI {ari} < 0.95"));
    }
    Ok(())
}

/// The distributed adjusted Rand index equals the serial one exactly.
pub(super) fn check_spectral_ari(comm: &dyn Comm) -> Result<(), String> {
    use embsolve::distributed::ari::adjusted_rand_index;
    let n = 1001;
    let truth: Vec<i64> = (0..n).map(|i| ((i * 7) % 13 % 5) as i64).collect();
    let predicted: Vec<i64> = (0..n)
        .map(|i| {
            if i % 9 == 0 {
                -3
            } else {
                ((i * 7) % 13 % 5) as i64 * 10
            }
        })
        .collect();
    let range = RowLayout::new(n, comm.size()).range(comm.rank());
    let distributed = adjusted_rand_index(comm, &truth[range.clone()], &predicted[range]);
    let serial = adjusted_rand_index(&SerialComm, &truth, &predicted);
    if distributed != serial || !(serial > 0.5 && serial < 1.0) {
        return Err(format!("distributed {distributed} != serial {serial}"));
    }
    Ok(())
}
