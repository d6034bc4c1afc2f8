//! Thick-restart Lanczos for the largest eigenpairs of a symmetric operator, written against
//! `LinOp` (y = A x on this rank's rows) and `Reduce` (sums over ranks).
//!
//! Every new basis vector is orthogonalised against the whole basis (full reorthogonalisation,
//! classical Gram-Schmidt), a second time when the first pass cancelled nearly all of it. All inner products are exact sums
//! (`GridSum` per block of rows, fixed point across blocks, threads and ranks), every per-row
//! update depends only on that row, and the start vectors are seeded by the global row index, so
//! the eigenvalues and vectors are bit-identical for any rank or thread count.
//! The small projected problem is solved by faer's dense symmetric eigensolver (sequential, so the
//! thread count cannot change it). After the wanted pairs converge, a fresh random start vector
//! orthogonal to them checks for eigenvalues a single Krylov sequence cannot see (repeated
//! eigenvalues, e.g. the eigenvalue 1 of a graph with several components); any found are swapped in.

mod basis;
mod dense;
mod simd;
mod solver;
#[cfg(test)]
mod tests;

pub use dense::dense_symmetric_eigen;
pub use solver::{lanczos, lanczos_on_support};

use crate::exact::{ExactSum, GRID_SUM_TERMS};
use rayon::prelude::*;

/// What to compute and when to stop.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LanczosParams {
    /// Number of largest (algebraic) eigenpairs wanted.
    pub n_eigs: usize,
    /// Converged when every wanted residual ||A y - theta y|| is at most `tol` times the largest
    /// Ritz value magnitude.
    pub tol: f64,
    /// Most restart cycles: the solve stops after `max_iter` times the active basis size operator
    /// applications (each cycle applies the operator at most once per basis vector), so the budget
    /// grows with the number of wanted pairs.
    pub max_iter: usize,
    /// Seed of the start vectors.
    pub seed: u64,
}

/// Eigenpairs: the known ones first (as given), then the found ones in descending order of
/// eigenvalue (all descending when the known eigenvalues are the largest, as for a graph).
#[derive(Debug, Clone)]
pub struct LanczosOutcome {
    pub eigenvalues: Vec<f64>,
    /// This rank's rows of the eigenvectors, row-major (`local_len` x `n_eigs`). Unit length over
    /// all ranks; the entry of largest magnitude (smallest global row on ties) is positive.
    pub vectors: Vec<f64>,
    /// Residual norms ||A y - theta y|| of the returned pairs.
    pub residuals: Vec<f64>,
    /// Operator applications.
    pub iterations: usize,
    pub converged: bool,
}

/// Eigenpairs known before the iteration starts (for the normalised adjacency: the eigenvalue 1 of
/// each connected component, whose vector is D^1/2 times the component's indicator). They are
/// locked as the first basis columns, so Lanczos searches only their orthogonal complement.
#[derive(Debug, Clone, Default)]
pub struct KnownEigenpairs {
    pub values: Vec<f64>,
    /// This rank's rows of orthonormal vectors, row-major (`local_len` x `values.len()`).
    pub vectors: Vec<f64>,
}

/// Rows per parallel chunk of the vector kernels.
const CHUNK_ROWS: usize = 256;
/// Chunks per parallel task at least: a vector of a few thousand rows still splits across the
/// threads (a single-component graph on one rank keeps every thread busy), while tiny components
/// stay one task. Chunking never changes a result: per-chunk sums are exact and add exactly.
const MIN_CHUNKS_PER_TASK: usize = 2;
const _: () = assert!(CHUNK_ROWS * 8 <= GRID_SUM_TERMS);

/// Exact local dot product of two slices, with every product scaled by `scale` (a power of two).
pub fn exact_dot(a: &[f64], b: &[f64], scale: f64) -> ExactSum {
    let features = simd::features();
    let total = a
        .par_chunks(CHUNK_ROWS * 8)
        .zip(b.par_chunks(CHUNK_ROWS * 8))
        .map(|(x, y)| simd::dot(features, x, y, scale).exact().0)
        .reduce(|| 0i128, i128::wrapping_add);
    ExactSum(total)
}

/// A power of two close to 1 / `max_abs` (1 for zero or non-finite), so scaled values use the
/// fixed-point range well; scaling by it is exact.
pub fn power_of_two_scale(max_abs: f64) -> f64 {
    if max_abs.is_nan() || max_abs <= 0.0 || !max_abs.is_finite() {
        return 1.0;
    }
    let exponent = max_abs.log2().ceil() as i32;
    2f64.powi(-exponent.clamp(-1000, 1000))
}

/// A deterministic value in [-1, 1) from (seed, stream, global row): splitmix64 of the three.
pub fn hashed_uniform(seed: u64, stream: u64, global_row: u64) -> f64 {
    let mut z = seed
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .wrapping_add(stream.wrapping_mul(0xD1B5_4A32_D192_ED03))
        .wrapping_add(global_row.wrapping_mul(0x94D0_49BB_1331_11EB))
        .wrapping_add(0x2545_F491_4F6C_DD1D);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    (z >> 11) as f64 / (1u64 << 52) as f64 - 1.0
}
