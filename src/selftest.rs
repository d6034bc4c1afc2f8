//! `embsolve selftest`: multi-rank checks run under `mpirun -n P`. Every rank solves a seeded
//! problem distributed and checks its slice against the serial whole-problem answer; a failure
//! names the check and the rank.

use crate::comm::{Comm, SerialComm};
use crate::dist::allreduce_exact;
use crate::kernels::exact::ExactSum;
use crate::layout::RowLayout;

/// One named check: Ok, or a message saying what differed.
pub type Check = fn(&dyn Comm) -> Result<(), String>;

/// Every registered check.
pub fn checks() -> Vec<(&'static str, Check)> {
    vec![
        ("exact_allreduce", check_exact_allreduce),
        ("spectral_lanczos", check_spectral_lanczos),
        ("spectral_kmeans", check_spectral_kmeans),
        ("spectral_clustering", check_spectral_clustering),
        ("spectral_ari", check_spectral_ari),
    ]
}

/// Run every check (or those whose name contains `filter`); returns the number of failures.
pub fn run(comm: &dyn Comm, filter: Option<&str>) -> usize {
    let mut failures = 0;
    for (name, check) in checks() {
        if filter.is_some_and(|f| !name.contains(f)) {
            continue;
        }
        let outcome = check(comm);
        let mut failed = [outcome.is_err() as u64];
        comm.allreduce_sum_u64(&mut failed);
        if let Err(message) = &outcome {
            eprintln!(
                "selftest {name}: FAILED on rank {} of {}: {message}",
                comm.rank(),
                comm.size()
            );
        }
        if failed[0] > 0 {
            failures += 1;
        } else if comm.rank() == 0 {
            println!("selftest {name}: ok on {} ranks", comm.size());
        }
    }
    failures
}

/// Exact sums of a distributed vector equal the serial sum bit for bit.
fn check_exact_allreduce(comm: &dyn Comm) -> Result<(), String> {
    let n = 10_007;
    let value = |i: usize| ((i * 2_654_435_761) % 1000) as f64 * 1e-3 - 0.4;
    let layout = RowLayout::new(n, comm.size());
    let mut local = [ExactSum::default()];
    layout
        .range(comm.rank())
        .for_each(|i| local[0].add(value(i)));
    allreduce_exact(comm, &mut local);
    let mut serial = [ExactSum::default()];
    (0..n).for_each(|i| serial[0].add(value(i)));
    allreduce_exact(&SerialComm, &mut serial);
    if local != serial {
        return Err(format!(
            "distributed {:?} != serial {:?}",
            local[0], serial[0]
        ));
    }
    Ok(())
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

impl crate::kernels::linop::LinOp for RowBlockOp<'_> {
    fn local_len(&self) -> usize {
        self.local_rows.len() / self.n
    }
    fn apply(&self, x: &[f64], y: &mut [f64]) {
        let (full, _) = crate::comm::allgatherv(self.comm, x);
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
    use crate::kernels::lanczos::hashed_uniform;
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
fn check_spectral_lanczos(comm: &dyn Comm) -> Result<(), String> {
    use crate::kernels::lanczos::{dense_symmetric_eigen, lanczos, LanczosParams};
    use crate::kernels::linop::{DenseOp, SerialReduce};
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
            &crate::dist::CommReduce(comm),
            n,
            range.start,
            &params,
        );
        let serial_op = DenseOp {
            n,
            values: matrix.clone(),
        };
        let serial = lanczos(&serial_op, &SerialReduce, n, 0, &params);
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
fn check_spectral_kmeans(comm: &dyn Comm) -> Result<(), String> {
    use crate::kernels::kmeans::{kmeans, KmeansParams};
    use crate::kernels::lanczos::hashed_uniform;
    use crate::kernels::linop::SerialReduce;
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
    let distributed = kmeans(
        local,
        dim,
        &crate::dist::CommReduce(comm),
        range.start,
        &params,
    );
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
fn check_spectral_clustering(comm: &dyn Comm) -> Result<(), String> {
    use crate::dist::spectral::spectral_on_operator;
    use crate::kernels::linop::{DenseOp, SerialReduce};
    let (n, matrix, truth) = planted_normalized_adjacency(4, 60, 0.25, 0.02, 23);
    let params = crate::config::SpectralSection {
        n_eigs: 8,
        ..Default::default()
    };
    let range = RowLayout::new(n, comm.size()).range(comm.rank());
    let distributed = spectral_on_operator(
        &RowBlockOp::new(comm, n, &matrix),
        &crate::dist::CommReduce(comm),
        n,
        range.start,
        &params,
    );
    let serial_op = DenseOp {
        n,
        values: matrix.clone(),
    };
    let serial = spectral_on_operator(&serial_op, &SerialReduce, n, 0, &params);
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
    let ari = crate::dist::ari::adjusted_rand_index(comm, &truth[range], &predicted);
    if ari < 0.95 {
        return Err(format!("ARI {ari} < 0.95"));
    }
    Ok(())
}

/// The distributed adjusted Rand index equals the serial one exactly.
fn check_spectral_ari(comm: &dyn Comm) -> Result<(), String> {
    use crate::dist::ari::adjusted_rand_index;
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
