//! Tests of the solver against faer's dense eigensolver, of the baseline and AVX2 kernels, of
//! the sparse form of known vectors and of the seeded start vectors.

use super::basis::DENSE_ONLY;
use super::*;
use crate::linop::{DenseOp, LinOp, SerialReduce};

/// The normalised adjacency D^-1/2 W D^-1/2 of a weighted graph given as dense weights.
fn normalized(n: usize, weights: &[f64]) -> Vec<f64> {
    let degrees: Vec<f64> = (0..n)
        .map(|i| weights[i * n..(i + 1) * n].iter().sum())
        .collect();
    let mut out = vec![0.0; n * n];
    for i in 0..n {
        for j in 0..n {
            if degrees[i] > 0.0 && degrees[j] > 0.0 {
                out[i * n + j] = weights[i * n + j] / (degrees[i] * degrees[j]).sqrt();
            }
        }
    }
    out
}

/// A seeded random graph: `blocks` dense-ish communities of the given sizes, edges between
/// communities only when `bridges`.
fn community_graph(sizes: &[usize], bridges: bool, seed: u64) -> (usize, Vec<f64>) {
    let n: usize = sizes.iter().sum();
    let mut block = Vec::new();
    for (b, &size) in sizes.iter().enumerate() {
        block.extend(std::iter::repeat_n(b, size));
    }
    let mut weights = vec![0.0; n * n];
    for i in 0..n {
        for j in 0..i {
            let u = hashed_uniform(seed, 1, (i * n + j) as u64) * 0.5 + 0.5;
            let same = block[i] == block[j];
            let weight = if same && u < 0.5 {
                0.5 + u
            } else if !same && bridges && u < 0.02 {
                0.3
            } else {
                0.0
            };
            weights[i * n + j] = weight;
            weights[j * n + i] = weight;
        }
        // A ring inside each block keeps every block connected.
        let next = i + 1;
        if next < n && block[next] == block[i] {
            weights[i * n + next] = 1.0;
            weights[next * n + i] = 1.0;
        }
    }
    (n, weights)
}

fn check_against_dense(n: usize, matrix: &[f64], n_eigs: usize, label: &str) -> LanczosOutcome {
    let op = DenseOp {
        n,
        values: matrix.to_vec(),
    };
    let params = LanczosParams {
        n_eigs,
        tol: 1e-10,
        max_iter: 5000,
        seed: 3,
    };
    let outcome = lanczos(&op, &SerialReduce, n, 0, &params, None);
    assert!(outcome.converged, "{label}: not converged");
    let (values, vectors) = dense_symmetric_eigen(n, matrix);
    for (i, (found, expected)) in outcome.eigenvalues.iter().zip(&values).enumerate() {
        assert!(
            (found - expected).abs() <= 1e-8,
            "{label}: eigenvalue {i}: lanczos {found} dense {expected}"
        );
    }
    // Each Lanczos vector is a unit eigenvector: ||A y - theta y|| small, orthonormal set.
    for i in 0..n_eigs {
        let y: Vec<f64> = (0..n).map(|r| outcome.vectors[r * n_eigs + i]).collect();
        let mut ay = vec![0.0; n];
        op.apply(&y, &mut ay);
        let residual: f64 = ay
            .iter()
            .zip(&y)
            .map(|(a, b)| (a - outcome.eigenvalues[i] * b).powi(2))
            .sum::<f64>()
            .sqrt();
        assert!(residual < 1e-7, "{label}: residual {i} = {residual}");
        for j in 0..n_eigs {
            let dot: f64 = (0..n)
                .map(|r| outcome.vectors[r * n_eigs + i] * outcome.vectors[r * n_eigs + j])
                .sum();
            let expected = if i == j { 1.0 } else { 0.0 };
            assert!(
                (dot - expected).abs() < 1e-8,
                "{label}: <y{i}, y{j}> = {dot}"
            );
        }
    }
    // Simple eigenvalues: the vector matches the dense one up to sign.
    for i in 0..n_eigs {
        let simple = (i == 0 || values[i - 1] - values[i] > 1e-6)
            && (i + 1 >= n || values[i] - values[i + 1] > 1e-6);
        if simple {
            let dot: f64 = (0..n)
                .map(|r| outcome.vectors[r * n_eigs + i] * vectors[r * n + i])
                .sum();
            assert!(
                (dot.abs() - 1.0).abs() < 1e-7,
                "{label}: vector {i}: |dot| = {dot}"
            );
        }
    }
    outcome
}

#[test]
fn connected_graph_matches_dense_eigen() {
    let (n, weights) = community_graph(&[30, 25, 35, 20], true, 1);
    let matrix = normalized(n, &weights);
    let outcome = check_against_dense(n, &matrix, 6, "connected");
    assert!((outcome.eigenvalues[0] - 1.0).abs() < 1e-10);
}

#[test]
fn three_components_give_eigenvalue_one_three_times() {
    let (n, weights) = community_graph(&[40, 30, 50], false, 2);
    let matrix = normalized(n, &weights);
    let outcome = check_against_dense(n, &matrix, 5, "three components");
    for i in 0..3 {
        assert!(
            (outcome.eigenvalues[i] - 1.0).abs() < 1e-9,
            "eigenvalue {i} = {}",
            outcome.eigenvalues[i]
        );
    }
    assert!(outcome.eigenvalues[3] < 1.0 - 1e-3);
}

#[test]
fn larger_graph_with_restarts_matches_dense_eigen() {
    let (n, weights) = community_graph(&[60; 8], true, 5);
    let matrix = normalized(n, &weights);
    // 12 eigenpairs from a 36-vector basis over 480 rows: several thick restarts.
    check_against_dense(n, &matrix, 12, "eight communities");
}

#[test]
fn whole_space_and_tiny_operators() {
    // n_eigs = n: the Krylov space is the whole space.
    let (n, weights) = community_graph(&[3, 4], true, 8);
    let matrix = normalized(n, &weights);
    check_against_dense(n, &matrix, n, "whole space");
    // Diagonal with repeated entries and a negative one.
    let diag = [2.0, -3.0, 2.0, 0.5, 2.0, 1.0];
    let mut matrix = vec![0.0; 36];
    for (i, d) in diag.iter().enumerate() {
        matrix[i * 6 + i] = *d;
    }
    let outcome = check_against_dense(6, &matrix, 4, "diagonal");
    assert_eq!(outcome.eigenvalues.len(), 4);
}

#[test]
fn baseline_and_avx2_kernels_give_the_same_bits() {
    let (n, weights) = community_graph(&[700, 600, 500], true, 9);
    let op = DenseOp {
        n,
        values: normalized(n, &weights),
    };
    let params = LanczosParams {
        n_eigs: 5,
        tol: 1e-10,
        max_iter: 2000,
        seed: 1,
    };
    let dispatched = lanczos(&op, &SerialReduce, n, 0, &params, None);
    simd::BASELINE_ONLY.store(true, std::sync::atomic::Ordering::Relaxed);
    let baseline = lanczos(&op, &SerialReduce, n, 0, &params, None);
    simd::BASELINE_ONLY.store(false, std::sync::atomic::Ordering::Relaxed);
    assert!(dispatched.converged);
    assert_eq!(dispatched.iterations, baseline.iterations);
    let bits = |values: &[f64]| values.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(&dispatched.eigenvalues), bits(&baseline.eigenvalues));
    assert_eq!(bits(&dispatched.vectors), bits(&baseline.vectors));
}

#[test]
fn a_star_with_a_many_fold_zero_eigenvalue_matches_the_dense_eigen() {
    // Hub 0 joined to every leaf: eigenvalues 1, -1 and 0 (n - 2 times).
    let n = 257;
    let mut weights = vec![0.0; n * n];
    for leaf in 1..n {
        let w = 0.5 + 0.25 * hashed_uniform(3, 0, leaf as u64);
        weights[leaf] = w;
        weights[leaf * n] = w;
    }
    let values = normalized(n, &weights);
    for n_eigs in [2, 12] {
        check_against_dense(n, &values, n_eigs, &format!("star, n_eigs {n_eigs}"));
    }
}

#[test]
fn known_component_vectors_sparse_and_dense_agree_with_the_dense_eigen() {
    let sizes = [300, 200, 250];
    let (n, weights) = community_graph(&sizes, false, 4);
    let values = normalized(n, &weights);
    let op = DenseOp {
        n,
        values: values.clone(),
    };
    // D^1/2 times each block's indicator, normalised: eigenvalue 1, one nonzero per row.
    let degrees: Vec<f64> = (0..n)
        .map(|i| weights[i * n..(i + 1) * n].iter().sum())
        .collect();
    let mut vectors = vec![0.0; n * sizes.len()];
    let mut first = 0;
    for (column, &size) in sizes.iter().enumerate() {
        let total: f64 = degrees[first..first + size].iter().sum();
        for row in first..first + size {
            vectors[row * sizes.len() + column] = (degrees[row] / total).sqrt();
        }
        first += size;
    }
    let known = KnownEigenpairs {
        values: vec![1.0; sizes.len()],
        vectors,
    };
    let params = LanczosParams {
        n_eigs: 7,
        tol: 1e-10,
        max_iter: 3000,
        seed: 2,
    };
    let sparse = lanczos(&op, &SerialReduce, n, 0, &params, Some(&known));
    DENSE_ONLY.store(true, std::sync::atomic::Ordering::Relaxed);
    let dense = lanczos(&op, &SerialReduce, n, 0, &params, Some(&known));
    DENSE_ONLY.store(false, std::sync::atomic::Ordering::Relaxed);
    let plain = lanczos(&op, &SerialReduce, n, 0, &params, None);
    let (reference, _) = dense_symmetric_eigen(n, &values);
    assert!(sparse.converged && dense.converged && plain.converged);
    for (i, &expected) in reference.iter().take(7).enumerate() {
        for (name, found) in [("sparse", &sparse), ("dense", &dense), ("plain", &plain)] {
            assert!(
                (found.eigenvalues[i] - expected).abs() < 1e-8,
                "{name} eigenvalue {i}: {} vs {expected}",
                found.eigenvalues[i]
            );
        }
        assert!((sparse.eigenvalues[i] - dense.eigenvalues[i]).abs() < 1e-12);
    }
    // The known vectors come back as given (their entries are positive already).
    for row in 0..n {
        for column in 0..3 {
            assert_eq!(
                sparse.vectors[row * 7 + column],
                known.vectors[row * 3 + column]
            );
        }
    }
}

#[test]
fn stops_at_max_iter_and_says_so() {
    let (n, weights) = community_graph(&[60; 8], true, 5);
    let op = DenseOp {
        n,
        values: normalized(n, &weights),
    };
    let params = LanczosParams {
        n_eigs: 12,
        tol: 1e-14,
        max_iter: 1,
        seed: 0,
    };
    let outcome = lanczos(&op, &SerialReduce, n, 0, &params, None);
    assert!(!outcome.converged);
    // One restart cycle: one operator application per vector of the active basis (12 + 24).
    assert_eq!(outcome.iterations, 36);
    assert_eq!(outcome.eigenvalues.len(), 12);
}

#[test]
fn start_vector_depends_on_global_row_only() {
    let a: Vec<f64> = (0..100).map(|r| hashed_uniform(4, 0, r)).collect();
    let b: Vec<f64> = (50..100).map(|r| hashed_uniform(4, 0, r)).collect();
    assert_eq!(&a[50..], &b[..]);
    assert!(a.iter().all(|v| (-1.0..1.0).contains(v)));
    let mean = a.iter().sum::<f64>() / 100.0;
    assert!(mean.abs() < 0.2, "mean {mean}");
    assert_ne!(hashed_uniform(4, 0, 7), hashed_uniform(5, 0, 7));
}
