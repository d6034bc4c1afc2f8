//! The solver: thick-restart Lanczos with full reorthogonalisation over the locked and active
//! basis columns, the check for missed (repeated) eigenvalues, and the public entry points.

use super::basis::{dense_only, Basis};
use super::dense::{leading_columns, ritz};
use super::{
    exact_dot, hashed_uniform, power_of_two_scale, KnownEigenpairs, LanczosOutcome, LanczosParams,
};
use crate::linop::{LinOp, Reduce};

/// Extra Krylov vectors beyond the wanted ones in the first search.
const EXTRA_BASIS: usize = 24;
/// Krylov vectors of a check for missed eigenvalues.
const CHECK_BASIS: usize = 24;
/// Fewest steps between convergence tests inside a cycle (each solves the projected problem).
const RITZ_EVERY: usize = 4;
/// Flops of the projected eigenproblem of size m, as a multiple of m^3 (reduction to tridiagonal
/// form, the implicit QR with vectors and their back-transformation).
const RITZ_FLOPS: f64 = 10.0;
/// A Gram-Schmidt pass that leaves less than this fraction of the norm is repeated.
const REORTHOGONALISE_BELOW: f64 = 1.0 / 128.0;
/// A new vector this much shorter than the operator scale means an invariant subspace.
const BREAKDOWN: f64 = 1e-10;

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
            let mut since_test = 0;
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
                // The projected eigenproblem is O(m^3): tested only when the steps since the last
                // test cost at least as much as a test.
                since_test += 1;
                if j + 1 >= want
                    && j + 1 < active
                    && !at_limit
                    && since_test >= self.test_interval(base + j + 1, j + 1)
                {
                    since_test = 0;
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

    /// Steps between convergence tests at a projected size `size` over `columns` basis columns:
    /// at least `RITZ_EVERY`, and enough that the Gram-Schmidt steps in between (about
    /// 4 n columns flops each) cost as much as the test. Depends on the global dimension only, so
    /// every rank and rank count tests at the same steps.
    fn test_interval(&self, columns: usize, size: usize) -> usize {
        let test = RITZ_FLOPS * (size as f64).powi(3);
        let step = 4.0 * self.n_global as f64 * columns as f64;
        RITZ_EVERY.max((test / step.max(1.0)).ceil() as usize)
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
        max_iter: params.max_iter.max(1).saturating_mul(active.max(1)),
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
