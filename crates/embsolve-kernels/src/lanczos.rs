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

use crate::exact::{grid_split, ExactSum, GridSum, GRID_SUM_TERMS};
use crate::linop::{LinOp, Reduce};
use rayon::prelude::*;

/// What to compute and when to stop.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LanczosParams {
    /// Number of largest (algebraic) eigenpairs wanted.
    pub n_eigs: usize,
    /// Converged when every wanted residual ||A y - theta y|| is at most `tol` times the largest
    /// Ritz value magnitude.
    pub tol: f64,
    /// Most operator applications.
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
const CHUNK_ROWS: usize = 512;
/// Chunks per parallel task at least: a vector of a few thousand rows (a component solved on one
/// rank, while the other threads solve other components) is one task, not several.
const MIN_CHUNKS_PER_TASK: usize = 8;
const _: () = assert!(CHUNK_ROWS * 8 <= GRID_SUM_TERMS);
/// Extra Krylov vectors beyond the wanted ones in the first search.
const EXTRA_BASIS: usize = 24;
/// Krylov vectors of a check for missed eigenvalues.
const CHECK_BASIS: usize = 24;
/// Steps between convergence tests inside a cycle (each solves the projected problem).
const RITZ_EVERY: usize = 4;
/// A Gram-Schmidt pass that leaves less than this fraction of the norm is repeated.
const REORTHOGONALISE_BELOW: f64 = 1.0 / 128.0;
/// A new vector this much shorter than the operator scale means an invariant subspace.
const BREAKDOWN: f64 = 1e-10;

/// Exact local dot product of two slices, with every product scaled by `scale` (a power of two).
pub fn exact_dot(a: &[f64], b: &[f64], scale: f64) -> ExactSum {
    let total = a
        .par_chunks(CHUNK_ROWS * 8)
        .zip(b.par_chunks(CHUNK_ROWS * 8))
        .map(|(x, y)| simd::dot(x, y, scale).exact().0)
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

/// Dense symmetric eigendecomposition of an `n` x `n` row-major matrix with faer (sequential):
/// eigenvalues descending (ties by index) and the matching eigenvectors as columns, row-major.
pub fn dense_symmetric_eigen(n: usize, matrix: &[f64]) -> (Vec<f64>, Vec<f64>) {
    use faer::dyn_stack::{MemBuffer, MemStack};
    use faer::linalg::evd;
    if n == 0 {
        return (Vec::new(), Vec::new());
    }
    let a = faer::Mat::<f64>::from_fn(n, n, |i, j| matrix[i * n + j]);
    let mut u = faer::Mat::<f64>::zeros(n, n);
    let mut s = faer::diag::Diag::<f64>::zeros(n);
    let par = faer::Par::Seq;
    let scratch = evd::self_adjoint_evd_scratch::<f64>(
        n,
        evd::ComputeEigenvectors::Yes,
        par,
        Default::default(),
    );
    let solved = evd::self_adjoint_evd(
        a.as_ref(),
        s.as_mut(),
        Some(u.as_mut()),
        par,
        MemStack::new(&mut MemBuffer::new(scratch)),
        Default::default(),
    );
    if solved.is_err() {
        // The QR iteration did not converge (non-finite input): report NaN rather than panic.
        return (vec![f64::NAN; n], vec![f64::NAN; n * n]);
    }
    let values = s.column_vector();
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&a, &b| values[b].total_cmp(&values[a]).then(a.cmp(&b)));
    let sorted_values = order.iter().map(|&i| values[i]).collect();
    let mut vectors = vec![0.0; n * n];
    for (column, &source) in order.iter().enumerate() {
        for row in 0..n {
            vectors[row * n + column] = u[(row, source)];
        }
    }
    (sorted_values, vectors)
}

/// The basis: this rank's rows of up to `capacity` vectors, row-major.
struct Basis {
    local_len: usize,
    capacity: usize,
    data: Vec<f64>,
    /// Columns 0..n that have at most one nonzero per row (the component vectors), also kept as
    /// (column, value) per row, so Gram-Schmidt handles them in O(rows) instead of O(n rows).
    sparse: Option<SparseColumns>,
}

/// Per row the only nonzero among columns 0..n (`NO_COLUMN` when none) and its value.
struct SparseColumns {
    n: usize,
    column: Vec<u32>,
    value: Vec<f64>,
}

const NO_COLUMN: u32 = u32::MAX;

impl Basis {
    fn new(local_len: usize, capacity: usize) -> Self {
        Basis {
            local_len,
            capacity,
            data: vec![0.0; local_len * capacity],
            sparse: None,
        }
    }

    fn column(&self, column: usize, out: &mut [f64]) {
        for (row, value) in out.iter_mut().enumerate() {
            *value = self.data[row * self.capacity + column];
        }
    }

    fn set_column(&mut self, column: usize, values: &[f64], factor: f64) {
        self.forget_sparse_if_touched(column);
        for (row, &value) in values.iter().enumerate() {
            self.data[row * self.capacity + column] = value * factor;
        }
    }

    fn swap_columns(&mut self, a: usize, b: usize) {
        self.forget_sparse_if_touched(a.min(b));
        for row in 0..self.local_len {
            self.data
                .swap(row * self.capacity + a, row * self.capacity + b);
        }
    }

    /// Use the sparse form for columns 0..n when every row has at most one nonzero among them
    /// (the same answer on every rank: a collective decision is made by the caller).
    fn sparse_form(&self, n: usize) -> Option<SparseColumns> {
        let mut column = vec![NO_COLUMN; self.local_len];
        let mut value = vec![0.0; self.local_len];
        for row in 0..self.local_len {
            for c in 0..n {
                let v = self.data[row * self.capacity + c];
                if v != 0.0 {
                    if column[row] != NO_COLUMN {
                        return None;
                    }
                    column[row] = c as u32;
                    value[row] = v;
                }
            }
        }
        Some(SparseColumns { n, column, value })
    }

    fn forget_sparse_if_touched(&mut self, column: usize) {
        if self.sparse.as_ref().is_some_and(|s| column < s.n) {
            self.sparse = None;
        }
    }

    /// Columns handled by the sparse form for a pass over columns 0..n_columns.
    fn n_sparse(&self, n_columns: usize) -> usize {
        match &self.sparse {
            Some(sparse) if sparse.n <= n_columns => sparse.n,
            _ => 0,
        }
    }

    /// Exact local inner products of columns 0..n_columns with `w` (each product times `scale`).
    /// The sparse columns give the same exact sums as the dense kernel would (same terms).
    fn local_dots(&self, n_columns: usize, w: &[f64], scale: f64) -> Vec<ExactSum> {
        let capacity = self.capacity;
        let n_sparse = self.n_sparse(n_columns);
        let sparse = self.sparse.as_ref().filter(|_| n_sparse > 0);
        let sums = self
            .data
            .par_chunks(CHUNK_ROWS * capacity)
            .zip(w.par_chunks(CHUNK_ROWS))
            .enumerate()
            .with_min_len(MIN_CHUNKS_PER_TASK)
            .map(|(chunk, (rows, w_rows))| {
                let mut high = vec![0.0; n_columns];
                let mut low = vec![0.0; n_columns];
                simd::dots_rows(
                    rows,
                    capacity,
                    n_sparse,
                    w_rows,
                    scale,
                    &mut high[n_sparse..],
                    &mut low[n_sparse..],
                );
                if let Some(sparse) = sparse {
                    let first_row = chunk * CHUNK_ROWS;
                    for (offset, &w_value) in w_rows.iter().enumerate() {
                        let c = sparse.column[first_row + offset];
                        if c != NO_COLUMN {
                            let (h, l) =
                                grid_split(sparse.value[first_row + offset] * (w_value * scale));
                            high[c as usize] += h;
                            low[c as usize] += l;
                        }
                    }
                }
                high.iter()
                    .zip(&low)
                    .map(|(&h, &l)| GridSum::from_parts(h, l).exact().0)
                    .collect::<Vec<i128>>()
            })
            .reduce(
                || vec![0i128; n_columns],
                |mut a, b| {
                    a.iter_mut()
                        .zip(b)
                        .for_each(|(x, y)| *x = x.wrapping_add(y));
                    a
                },
            );
        sums.into_iter().map(ExactSum).collect()
    }

    /// w -= sum_c coefficients[c] * column c (c < coefficients.len()), row by row: the dense
    /// columns first, then the row's sparse column.
    fn subtract(&self, coefficients: &[f64], w: &mut [f64]) {
        let capacity = self.capacity;
        let n_sparse = self.n_sparse(coefficients.len());
        let sparse = self.sparse.as_ref().filter(|_| n_sparse > 0);
        w.par_chunks_mut(CHUNK_ROWS)
            .zip(self.data.par_chunks(CHUNK_ROWS * capacity))
            .enumerate()
            .with_min_len(MIN_CHUNKS_PER_TASK)
            .for_each(|(chunk, (w_rows, rows))| {
                simd::subtract_rows(rows, capacity, n_sparse, &coefficients[n_sparse..], w_rows);
                if let Some(sparse) = sparse {
                    let first_row = chunk * CHUNK_ROWS;
                    for (offset, w_value) in w_rows.iter_mut().enumerate() {
                        let c = sparse.column[first_row + offset];
                        if c != NO_COLUMN {
                            *w_value -= sparse.value[first_row + offset] * coefficients[c as usize];
                        }
                    }
                }
            });
    }

    /// Columns first..first+n_out become the combinations sum_l columns[first + l] * coefficients[l][i]
    /// (coefficients row-major, n_in x n_out, n_out <= n_in).
    fn combine(&mut self, first: usize, n_in: usize, coefficients: &[f64], n_out: usize) {
        let capacity = self.capacity;
        self.data
            .par_chunks_mut(CHUNK_ROWS * capacity)
            .with_min_len(MIN_CHUNKS_PER_TASK)
            .for_each(|rows| {
                let mut combined = vec![0.0; n_out];
                simd::combine_rows(rows, capacity, first, n_in, coefficients, &mut combined);
            });
    }
}

/// Tests set this to keep known vectors in the dense kernels only.
#[cfg(test)]
static DENSE_ONLY: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

fn dense_only() -> bool {
    #[cfg(test)]
    if DENSE_ONLY.load(std::sync::atomic::Ordering::Relaxed) {
        return true;
    }
    false
}

/// The solver state shared by the search and the checks.
struct Solver<'a> {
    op: &'a dyn LinOp,
    reduce: &'a dyn Reduce,
    n_global: usize,
    row_start: usize,
    seed: u64,
    tol: f64,
    basis: Basis,
    w: Vec<f64>,
    x: Vec<f64>,
    iterations: usize,
    max_iter: usize,
    /// Streams of random vectors used so far (each start or breakdown draws a new one).
    streams: u64,
    /// Rows where random vectors may be nonzero (all when `None`).
    support: Option<&'a [bool]>,
    /// Known pairs, locked in columns 0..n_known.
    n_known: usize,
    /// Largest |entry| of any projected matrix and largest new-vector norm so far.
    op_scale: f64,
}

/// Ritz pairs of one search: values descending, residual norms, and whether they converged.
struct SearchResult {
    values: Vec<f64>,
    residuals: Vec<f64>,
    converged: bool,
}

impl Solver<'_> {
    fn max_abs(&self, values: &[f64]) -> f64 {
        let mut max = [values.iter().fold(0.0f64, |m, v| m.max(v.abs()))];
        self.reduce.max_f64(&mut max);
        max[0]
    }

    /// Orthogonalise `w` against basis columns 0..n_columns by classical Gram-Schmidt; returns the
    /// coefficients and the norm of what is left. A second pass runs when the first removed all
    /// but `REORTHOGONALISE_BELOW` of the norm (the DGKS test): one pass leaves components along
    /// the basis of about eps ||w before|| / ||w after||, so without the second pass the loss of
    /// orthogonality stays below eps / `REORTHOGONALISE_BELOW`. The test uses exact norms, so
    /// every rank takes the same branch.
    fn orthogonalise(&mut self, n_columns: usize) -> (Vec<f64>, f64) {
        let mut total = vec![0.0; n_columns];
        if n_columns == 0 {
            return (total, self.norm_w());
        }
        let mut norm = self.norm_w();
        for _pass in 0..2 {
            let before = norm;
            let scale = power_of_two_scale(self.max_abs(&self.w));
            let mut sums = self.basis.local_dots(n_columns, &self.w, scale);
            self.reduce.sum_exact(&mut sums);
            let coefficients: Vec<f64> = sums.iter().map(|s| s.value() / scale).collect();
            self.basis.subtract(&coefficients, &mut self.w);
            total
                .iter_mut()
                .zip(&coefficients)
                .for_each(|(t, c)| *t += c);
            norm = self.norm_w();
            if norm >= REORTHOGONALISE_BELOW * before {
                break;
            }
        }
        (total, norm)
    }

    /// ||w|| over all ranks (exact).
    fn norm_w(&self) -> f64 {
        let scale = power_of_two_scale(self.max_abs(&self.w));
        let mut sum = [exact_dot(&self.w, &self.w, scale * scale)];
        self.reduce.sum_exact(&mut sum);
        sum[0].value().max(0.0).sqrt() / scale
    }

    /// A fresh seeded random vector in `w`, orthogonalised against columns 0..n_columns and
    /// normalised; false when nothing is left after orthogonalisation.
    fn random_into_w(&mut self, n_columns: usize) -> bool {
        let stream = self.streams;
        self.streams += 1;
        let (seed, row_start, support) = (self.seed, self.row_start, self.support);
        self.w.iter_mut().enumerate().for_each(|(row, value)| {
            *value = match support {
                Some(inside) if !inside[row] => 0.0,
                _ => hashed_uniform(seed, stream, (row_start + row) as u64),
            };
        });
        let (_, norm) = self.orthogonalise(n_columns);
        if norm.is_nan() || norm <= BREAKDOWN {
            return false;
        }
        self.w.iter_mut().for_each(|v| *v /= norm);
        true
    }

    /// Thick-restart Lanczos on the complement of the locked columns 0..n_locked, using columns
    /// n_locked..n_locked+active (+1 for the residual vector). On return the `want` largest Ritz
    /// vectors are in columns n_locked..n_locked+want.
    /// With `stop_below`, the search also ends once the largest Ritz pair has converged to the
    /// square root of the tolerance and lies below that bound (the check for missed eigenvalues
    /// only needs to know that much).
    fn search(
        &mut self,
        n_locked: usize,
        want: usize,
        active: usize,
        stop_below: Option<f64>,
    ) -> SearchResult {
        let base = n_locked;
        let mut h = vec![0.0; active * active];
        if !self.random_into_w(base) {
            return SearchResult {
                values: Vec::new(),
                residuals: Vec::new(),
                converged: true,
            };
        }
        self.basis.set_column(base, &self.w, 1.0);
        let mut kept = 0;
        loop {
            // Expand the basis from `kept` to at most `active` vectors.
            let mut size = active;
            let mut last_beta = 0.0;
            let mut exhausted = false;
            for j in kept..active {
                self.basis.column(base + j, &mut self.x);
                self.op.apply(&self.x, &mut self.w);
                self.iterations += 1;
                let (coefficients, beta) = self.orthogonalise(base + j + 1);
                h[j * active + j] = coefficients[base + j];
                // The operator's scale as seen so far in any search: a search whose first
                // vectors lie in a null space must not take rounding for a new direction.
                self.op_scale = h
                    .iter()
                    .fold(self.op_scale, |m, v| m.max(v.abs()))
                    .max(beta);
                let scale = self.op_scale.max(f64::MIN_POSITIVE);
                let at_limit = self.iterations >= self.max_iter;
                // The projected eigenproblem is O(m^3): solved every `RITZ_EVERY` steps only.
                if j + 1 >= want && j + 1 < active && !at_limit && (j + 1 - want) % RITZ_EVERY == 0
                {
                    let (values, _, residuals) = ritz(&h, active, j + 1, beta);
                    if self.finished(&values, &residuals, want, stop_below) {
                        size = j + 1;
                        last_beta = beta;
                        break;
                    }
                }
                if j + 1 == active || at_limit {
                    size = j + 1;
                    last_beta = beta;
                    if beta > BREAKDOWN * scale {
                        let inverse = 1.0 / beta;
                        self.w.iter_mut().for_each(|v| *v *= inverse);
                    } else {
                        last_beta = 0.0;
                    }
                    break;
                }
                if beta > BREAKDOWN * scale {
                    h[j * active + j + 1] = beta;
                    h[(j + 1) * active + j] = beta;
                    self.basis.set_column(base + j + 1, &self.w, 1.0 / beta);
                } else if base + j + 1 < self.n_global && self.random_into_w(base + j + 1) {
                    // Invariant subspace: continue with an unrelated direction (coupling zero).
                    self.basis.set_column(base + j + 1, &self.w, 1.0);
                } else {
                    // The whole space is spanned: the Ritz pairs are exact.
                    size = j + 1;
                    exhausted = true;
                    break;
                }
            }

            let (values, vectors, residuals) = ritz(&h, active, size, last_beta);
            let n_wanted = want.min(size);
            let converged = exhausted || self.finished(&values, &residuals, want, stop_below);
            let out_of_budget = self.iterations >= self.max_iter;
            if converged || out_of_budget || size <= want {
                log::debug!(
                    "lanczos search (locked {n_locked}, want {want}): {} iterations so far, converged = {converged}, leading {:?}",
                    self.iterations,
                    &values[..n_wanted.min(3)]
                );
                let n_out = n_wanted;
                let coefficients = leading_columns(&vectors, size, n_out);
                self.basis.combine(base, size, &coefficients, n_out);
                return SearchResult {
                    values: values[..n_out].to_vec(),
                    residuals: residuals[..n_out].to_vec(),
                    converged: converged && n_out == want,
                };
            }

            // Thick restart: keep the leading Ritz vectors and the residual direction.
            kept = (want + (size - want) / 2).min(size - 1);
            let coefficients = leading_columns(&vectors, size, kept);
            self.basis.combine(base, size, &coefficients, kept);
            // A cycle that ended in an invariant subspace has no residual direction (`w` is
            // rounding): go on from a fresh one, uncoupled (`last_beta` is zero).
            if last_beta == 0.0 && !self.random_into_w(base + kept) {
                return SearchResult {
                    values: values[..want].to_vec(),
                    residuals: residuals[..want].to_vec(),
                    converged: true,
                };
            }
            self.basis.set_column(base + kept, &self.w, 1.0);
            h.iter_mut().for_each(|v| *v = 0.0);
            for i in 0..kept {
                h[i * active + i] = values[i];
                let coupling = last_beta * vectors[(size - 1) * size + i];
                h[i * active + kept] = coupling;
                h[kept * active + i] = coupling;
            }
        }
    }

    /// Whether the `want` leading Ritz pairs have converged (residual at most tol times the
    /// largest Ritz value magnitude), or the largest Ritz pair is settled below `stop_below`.
    fn finished(
        &self,
        values: &[f64],
        residuals: &[f64],
        want: usize,
        stop_below: Option<f64>,
    ) -> bool {
        let scale = values
            .iter()
            .fold(0.0f64, |m, v| m.max(v.abs()))
            .max(f64::MIN_POSITIVE);
        if values.len() >= want && residuals[..want].iter().all(|&r| r <= self.tol * scale) {
            return true;
        }
        // The check: the largest Ritz pair is converged to the square root of the tolerance
        // and lies below the bound with its residual interval.
        match (stop_below, values.first()) {
            (Some(limit), Some(&value)) => {
                residuals[0] <= self.tol.sqrt() * scale && value + residuals[0] < limit
            }
            _ => false,
        }
    }

    /// Put the known eigenvectors in columns 0..n and measure their residuals ||A y - theta y||
    /// (one operator application each); converged when every residual is within the tolerance.
    fn lock_known(&mut self, known: &KnownEigenpairs) -> (Vec<f64>, bool) {
        let n = known.values.len();
        let local_len = self.basis.local_len;
        assert_eq!(known.vectors.len(), local_len * n, "known vectors' shape");
        for column in 0..n {
            for row in 0..local_len {
                self.x[row] = known.vectors[row * n + column];
            }
            self.basis.set_column(column, &self.x, 1.0);
        }
        // The sparse form only when every rank can use it (the kernels' rounding differs).
        let sparse = self.basis.sparse_form(n);
        let mut dense_somewhere = [if sparse.is_some() { 0.0 } else { 1.0 }];
        self.reduce.max_f64(&mut dense_somewhere);
        if dense_somewhere[0] == 0.0 && !dense_only() {
            self.basis.sparse = sparse;
        }
        let scale = known
            .values
            .iter()
            .fold(0.0f64, |m, v| m.max(v.abs()))
            .max(f64::MIN_POSITIVE);
        self.op_scale = self.op_scale.max(scale);
        let mut residuals = Vec::with_capacity(n);
        for (column, &value) in known.values.iter().enumerate() {
            self.basis.column(column, &mut self.x);
            self.op.apply(&self.x, &mut self.w);
            self.iterations += 1;
            for (w, x) in self.w.iter_mut().zip(&self.x) {
                *w -= value * x;
            }
            residuals.push(self.norm_w());
        }
        let converged = residuals.iter().all(|&r| r <= self.tol * scale);
        (residuals, converged)
    }

    /// Move pair `position` towards the front until the eigenvalues descend, never in front of the
    /// known pairs; the residuals and basis columns follow.
    fn sift_up(&mut self, eigenvalues: &mut [f64], residuals: &mut [f64], mut position: usize) {
        while position > self.n_known && eigenvalues[position - 1] < eigenvalues[position] {
            eigenvalues.swap(position - 1, position);
            residuals.swap(position - 1, position);
            self.basis.swap_columns(position - 1, position);
            position -= 1;
        }
    }

    /// The first `eigenvalues.len()` basis columns as this rank's rows of the eigenvectors.
    fn outcome(
        &self,
        eigenvalues: Vec<f64>,
        residuals: Vec<f64>,
        converged: bool,
    ) -> LanczosOutcome {
        let n_out = eigenvalues.len();
        let capacity = self.basis.capacity;
        let mut vectors = Vec::with_capacity(self.basis.local_len * n_out);
        for row in 0..self.basis.local_len {
            vectors.extend_from_slice(&self.basis.data[row * capacity..row * capacity + n_out]);
        }
        LanczosOutcome {
            eigenvalues,
            vectors,
            residuals,
            iterations: self.iterations,
            converged,
        }
    }

    /// Flip each of columns 0..n so its largest-magnitude entry (smallest global row on ties) is
    /// positive.
    fn fix_signs(&mut self, n: usize) {
        let capacity = self.basis.capacity;
        let data = &self.basis.data;
        let mut largest: Vec<f64> = (0..n)
            .map(|c| {
                (0..self.basis.local_len).fold(0.0f64, |m, r| m.max(data[r * capacity + c].abs()))
            })
            .collect();
        self.reduce.max_f64(&mut largest);
        let mut first_row: Vec<f64> = (0..n)
            .map(|c| {
                (0..self.basis.local_len)
                    .find(|&r| data[r * capacity + c].abs() == largest[c])
                    .map(|r| -((self.row_start + r) as f64))
                    .unwrap_or(f64::NEG_INFINITY)
            })
            .collect();
        self.reduce.max_f64(&mut first_row);
        let mut signs: Vec<f64> = (0..n)
            .map(|c| {
                let row = (-first_row[c]) as usize;
                if (self.row_start..self.row_start + self.basis.local_len).contains(&row) {
                    let value = data[(row - self.row_start) * capacity + c];
                    if value < 0.0 {
                        -1.0
                    } else {
                        1.0
                    }
                } else {
                    0.0
                }
            })
            .collect();
        self.reduce.sum_f64(&mut signs);
        for row in 0..self.basis.local_len {
            for (c, &sign) in signs.iter().enumerate() {
                if sign < 0.0 {
                    self.basis.data[row * capacity + c] *= -1.0;
                }
            }
        }
    }
}

/// Ritz pairs of the leading `size` x `size` block of the projected matrix `h` (row stride
/// `stride`) whose next basis vector has coupling `beta`: values descending, vectors (row-major)
/// and residual norms |beta * last component|.
fn ritz(h: &[f64], stride: usize, size: usize, beta: f64) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let projected: Vec<f64> = (0..size * size)
        .map(|index| h[(index / size) * stride + index % size])
        .collect();
    let (values, vectors) = dense_symmetric_eigen(size, &projected);
    let residuals = (0..size)
        .map(|i| (beta * vectors[(size - 1) * size + i]).abs())
        .collect();
    (values, vectors, residuals)
}

/// The first `n_out` columns of a row-major `size` x `size` matrix, row-major `size` x `n_out`.
fn leading_columns(matrix: &[f64], size: usize, n_out: usize) -> Vec<f64> {
    let mut out = Vec::with_capacity(size * n_out);
    for row in 0..size {
        out.extend_from_slice(&matrix[row * size..row * size + n_out]);
    }
    out
}

/// The `params.n_eigs` largest eigenpairs of the symmetric operator `op` (distributed by rows:
/// this rank holds global rows `row_start..row_start + op.local_len()` of `n_global`).
/// Collective: every rank calls it with the same parameters. `n_eigs` is clamped to `n_global`.
/// `known` eigenpairs (at most `n_eigs`; the same on every rank) are returned as given, with their
/// residuals measured, and the rest are searched for in their orthogonal complement.
pub fn lanczos(
    op: &dyn LinOp,
    reduce: &dyn Reduce,
    n_global: usize,
    row_start: usize,
    params: &LanczosParams,
    known: Option<&KnownEigenpairs>,
) -> LanczosOutcome {
    lanczos_on_support(op, reduce, n_global, row_start, params, known, None)
}

/// [`lanczos`] restricted to the rows where `support` (this rank's rows) is true: every start
/// vector is zero elsewhere, so for an operator that maps such vectors to such vectors (a block
/// diagonal one, e.g. a graph's adjacency restricted to some of its connected components) the
/// whole search stays there exactly. `dimension` is the number of supported rows over all ranks
/// (`n_global` of [`lanczos`]).
pub fn lanczos_on_support(
    op: &dyn LinOp,
    reduce: &dyn Reduce,
    dimension: usize,
    row_start: usize,
    params: &LanczosParams,
    known: Option<&KnownEigenpairs>,
    support: Option<&[bool]>,
) -> LanczosOutcome {
    let n_global = dimension;
    let n_eigs = params.n_eigs.min(n_global);
    let local_len = op.local_len();
    let n_known = known.map_or(0, |k| k.values.len());
    assert!(n_known <= n_eigs, "more known eigenpairs than wanted");
    let want = n_eigs - n_known;
    let active = (want + EXTRA_BASIS).max(2 * want).min(n_global - n_known);
    let check_active = CHECK_BASIS.min(n_global - n_eigs);
    let capacity = (n_known + active).max(n_eigs + check_active) + 1;
    let mut solver = Solver {
        op,
        reduce,
        n_global,
        row_start,
        seed: params.seed,
        tol: params.tol,
        basis: Basis::new(local_len, capacity),
        w: vec![0.0; local_len],
        x: vec![0.0; local_len],
        iterations: 0,
        max_iter: params.max_iter.max(1),
        streams: 0,
        support,
        n_known,
        op_scale: 0.0,
    };
    if n_eigs == 0 {
        return LanczosOutcome {
            eigenvalues: Vec::new(),
            vectors: Vec::new(),
            residuals: Vec::new(),
            iterations: 0,
            converged: true,
        };
    }

    let mut eigenvalues = Vec::with_capacity(n_eigs);
    let mut residuals = Vec::with_capacity(n_eigs);
    let mut converged = true;
    if let Some(known) = known.filter(|k| !k.values.is_empty()) {
        let (known_residuals, known_converged) = solver.lock_known(known);
        eigenvalues.extend_from_slice(&known.values);
        residuals.extend(known_residuals);
        converged = known_converged;
    }
    if want > 0 {
        let found = solver.search(n_known, want, active, None);
        eigenvalues.extend(found.values);
        residuals.extend(found.residuals);
        converged &= found.converged;
        // Descending order over the found pairs.
        for position in n_known + 1..eigenvalues.len() {
            solver.sift_up(&mut eigenvalues, &mut residuals, position);
        }
    }

    // Check for eigenvalues the first Krylov sequence missed (repeated eigenvalues): search the
    // complement of the converged vectors from a fresh start; swap in anything larger. (A search
    // that ran out of budget short of `n_eigs` pairs is not converged, so it is not checked; when
    // every wanted pair is known there is nothing to check.)
    while converged
        && want > 0
        && eigenvalues.len() == n_eigs
        && check_active > 0
        && solver.iterations < solver.max_iter
    {
        let smallest = eigenvalues[n_eigs - 1];
        let scale = eigenvalues
            .iter()
            .fold(0.0f64, |m, v| m.max(v.abs()))
            .max(f64::MIN_POSITIVE);
        let check = solver.search(n_eigs, 1, check_active, Some(smallest));
        match check.values.first() {
            Some(&value) if value > smallest + params.tol * scale => {
                if !check.converged {
                    converged = false;
                }
                // Replace the smallest and keep descending order.
                solver.basis.swap_columns(n_eigs - 1, n_eigs);
                eigenvalues[n_eigs - 1] = value;
                residuals[n_eigs - 1] = check.residuals[0];
                solver.sift_up(&mut eigenvalues, &mut residuals, n_eigs - 1);
            }
            _ => {
                if !check.converged {
                    converged = false;
                }
                break;
            }
        }
    }
    if solver.iterations >= solver.max_iter && !converged {
        log::debug!("lanczos stopped at max_iter = {}", params.max_iter);
    }

    let n_out = eigenvalues.len();
    solver.fix_signs(n_out);
    solver.outcome(eigenvalues, residuals, converged)
}

/// The per-row vector kernels of the basis, compiled twice: for the baseline target and with AVX2,
/// chosen at run time. The arithmetic and its order are the same in both (Rust never contracts
/// a * b + c into an FMA), so the results are bit-identical on any x86-64 machine.
mod simd {
    use crate::exact::{grid_split, GridSum};

    /// Tests set this to run the baseline kernels on an AVX2 machine.
    #[cfg(test)]
    pub static BASELINE_ONLY: std::sync::atomic::AtomicBool =
        std::sync::atomic::AtomicBool::new(false);

    #[cfg(target_arch = "x86_64")]
    #[inline]
    fn use_avx2() -> bool {
        #[cfg(test)]
        if BASELINE_ONLY.load(std::sync::atomic::Ordering::Relaxed) {
            return false;
        }
        std::arch::is_x86_feature_detected!("avx2")
    }

    /// Runs `$body` as a function compiled with AVX2 when the CPU has it, else as written.
    macro_rules! dispatch {
        ($name:ident ( $($arg:ident : $ty:ty),* ) $(-> $ret:ty)? $body:block) => {
            #[inline(always)]
            fn body($($arg: $ty),*) $(-> $ret)? $body

            #[cfg(target_arch = "x86_64")]
            #[target_feature(enable = "avx2")]
            unsafe fn avx2($($arg: $ty),*) $(-> $ret)? {
                body($($arg),*)
            }

            #[cfg(target_arch = "x86_64")]
            if use_avx2() {
                // SAFETY: the CPU supports AVX2, checked just above.
                return unsafe { avx2($($arg),*) };
            }
            return body($($arg),*);
        };
    }

    /// (high[c], low[c]) accumulate the `grid_split` parts of row[c] * w[row] * scale over the
    /// rows, for c < high.len().
    pub fn dots_rows(
        rows: &[f64],
        capacity: usize,
        first: usize,
        w_rows: &[f64],
        scale: f64,
        high: &mut [f64],
        low: &mut [f64],
    ) {
        dispatch!(dots_rows(rows: &[f64], capacity: usize, first: usize, w_rows: &[f64], scale: f64, high: &mut [f64], low: &mut [f64]) {
            let n_columns = high.len();
            let low = &mut low[..n_columns];
            for (row, &w_value) in rows.chunks_exact(capacity).zip(w_rows) {
                let w_scaled = w_value * scale;
                for ((h, l), &v) in high.iter_mut().zip(low.iter_mut()).zip(&row[first..first + n_columns]) {
                    let (term_high, term_low) = grid_split(v * w_scaled);
                    *h += term_high;
                    *l += term_low;
                }
            }
        });
    }

    /// w[row] -= sum_c row[c] * coefficients[c], the sum in four interleaved partial sums (a fixed
    /// order per row, so the result does not depend on how rows are split).
    pub fn subtract_rows(
        rows: &[f64],
        capacity: usize,
        first: usize,
        coefficients: &[f64],
        w_rows: &mut [f64],
    ) {
        dispatch!(subtract_rows(rows: &[f64], capacity: usize, first: usize, coefficients: &[f64], w_rows: &mut [f64]) {
            let n_columns = coefficients.len();
            let split = n_columns / 4 * 4;
            for (w_value, row) in w_rows.iter_mut().zip(rows.chunks_exact(capacity)) {
                let row = &row[first..];
                let mut partial = [0.0f64; 4];
                for (v, c) in row[..split].chunks_exact(4).zip(coefficients[..split].chunks_exact(4)) {
                    for lane in 0..4 {
                        partial[lane] += v[lane] * c[lane];
                    }
                }
                let mut projection = (partial[0] + partial[1]) + (partial[2] + partial[3]);
                for (v, c) in row[split..n_columns].iter().zip(&coefficients[split..]) {
                    projection += v * c;
                }
                *w_value -= projection;
            }
        });
    }

    /// Row by row, columns first..first+n_out become sum_l row[first + l] * coefficients[l][i];
    /// `combined` is scratch of length n_out.
    pub fn combine_rows(
        rows: &mut [f64],
        capacity: usize,
        first: usize,
        n_in: usize,
        coefficients: &[f64],
        combined: &mut [f64],
    ) {
        dispatch!(combine_rows(rows: &mut [f64], capacity: usize, first: usize, n_in: usize, coefficients: &[f64], combined: &mut [f64]) {
            let n_out = combined.len();
            for row in rows.chunks_exact_mut(capacity) {
                combined.iter_mut().for_each(|c| *c = 0.0);
                for l in 0..n_in {
                    let v = row[first + l];
                    let weights = &coefficients[l * n_out..(l + 1) * n_out];
                    for (c, &s) in combined.iter_mut().zip(weights) {
                        *c += v * s;
                    }
                }
                row[first..first + n_out].copy_from_slice(combined);
            }
        });
    }

    /// sum_i x[i] * y[i] * scale as a block sum.
    pub fn dot(x: &[f64], y: &[f64], scale: f64) -> GridSum {
        dispatch!(dot(x: &[f64], y: &[f64], scale: f64) -> GridSum {
            let mut acc = GridSum::default();
            x.iter().zip(y).for_each(|(p, q)| acc.add(p * q * scale));
            acc
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::linop::{DenseOp, SerialReduce};

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
            max_iter: 15,
            seed: 0,
        };
        let outcome = lanczos(&op, &SerialReduce, n, 0, &params, None);
        assert!(!outcome.converged);
        assert_eq!(outcome.iterations, 15);
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
}
