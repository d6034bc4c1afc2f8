//! The Krylov basis: this rank's rows of the basis vectors, row-major, with the exact inner
//! products, the Gram-Schmidt update and the restart combinations over its columns (by the
//! vector kernels of `simd`), and a sparse form for locked columns with one nonzero per row.

use super::{simd, CHUNK_ROWS, MIN_CHUNKS_PER_TASK};
use crate::exact::{grid_split, ExactSum, GridSum};
use rayon::prelude::*;

/// The basis: this rank's rows of up to `capacity` vectors, row-major.
pub(super) struct Basis {
    pub(super) local_len: usize,
    pub(super) capacity: usize,
    pub(super) data: Vec<f64>,
    /// Columns 0..n that have at most one nonzero per row (the component vectors), also kept as
    /// (column, value) per row, so Gram-Schmidt handles them in O(rows) instead of O(n rows).
    pub(super) sparse: Option<SparseColumns>,
}

/// Per row the only nonzero among columns 0..n (`NO_COLUMN` when none) and its value.
pub(super) struct SparseColumns {
    n: usize,
    column: Vec<u32>,
    value: Vec<f64>,
}

const NO_COLUMN: u32 = u32::MAX;

impl Basis {
    pub(super) fn new(local_len: usize, capacity: usize) -> Self {
        Basis {
            local_len,
            capacity,
            data: vec![0.0; local_len * capacity],
            sparse: None,
        }
    }

    pub(super) fn column(&self, column: usize, out: &mut [f64]) {
        for (row, value) in out.iter_mut().enumerate() {
            *value = self.data[row * self.capacity + column];
        }
    }

    pub(super) fn set_column(&mut self, column: usize, values: &[f64], factor: f64) {
        self.forget_sparse_if_touched(column);
        for (row, &value) in values.iter().enumerate() {
            self.data[row * self.capacity + column] = value * factor;
        }
    }

    pub(super) fn swap_columns(&mut self, a: usize, b: usize) {
        self.forget_sparse_if_touched(a.min(b));
        for row in 0..self.local_len {
            self.data
                .swap(row * self.capacity + a, row * self.capacity + b);
        }
    }

    /// Use the sparse form for columns 0..n when every row has at most one nonzero among them
    /// (the same answer on every rank: a collective decision is made by the caller).
    pub(super) fn sparse_form(&self, n: usize) -> Option<SparseColumns> {
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
    pub(super) fn local_dots(&self, n_columns: usize, w: &[f64], scale: f64) -> Vec<ExactSum> {
        let capacity = self.capacity;
        let n_sparse = self.n_sparse(n_columns);
        let sparse = self.sparse.as_ref().filter(|_| n_sparse > 0);
        let features = simd::features();
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
                    features,
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
    pub(super) fn subtract(&self, coefficients: &[f64], w: &mut [f64]) {
        let capacity = self.capacity;
        let n_sparse = self.n_sparse(coefficients.len());
        let sparse = self.sparse.as_ref().filter(|_| n_sparse > 0);
        let features = simd::features();
        w.par_chunks_mut(CHUNK_ROWS)
            .zip(self.data.par_chunks(CHUNK_ROWS * capacity))
            .enumerate()
            .with_min_len(MIN_CHUNKS_PER_TASK)
            .for_each(|(chunk, (w_rows, rows))| {
                simd::subtract_rows(
                    features,
                    rows,
                    capacity,
                    n_sparse,
                    &coefficients[n_sparse..],
                    w_rows,
                );
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
    pub(super) fn combine(
        &mut self,
        first: usize,
        n_in: usize,
        coefficients: &[f64],
        n_out: usize,
    ) {
        let capacity = self.capacity;
        let features = simd::features();
        self.data
            .par_chunks_mut(CHUNK_ROWS * capacity)
            .with_min_len(MIN_CHUNKS_PER_TASK)
            .for_each(|rows| {
                let mut combined = vec![0.0; n_out];
                simd::combine_rows(
                    features,
                    rows,
                    capacity,
                    first,
                    n_in,
                    coefficients,
                    &mut combined,
                );
            });
    }
}

/// Tests set this to keep known vectors in the dense kernels only.
#[cfg(test)]
pub(super) static DENSE_ONLY: std::sync::atomic::AtomicBool =
    std::sync::atomic::AtomicBool::new(false);

pub(super) fn dense_only() -> bool {
    #[cfg(test)]
    if DENSE_ONLY.load(std::sync::atomic::Ordering::Relaxed) {
        return true;
    }
    false
}
