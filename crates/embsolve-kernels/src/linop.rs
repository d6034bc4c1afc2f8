//! The two small traits iterative solvers are written against: an operator (y = A x on this
//! rank's slice) and a reduction (sums over all ranks). Serial versions drive the unit tests; the
//! distributed ones live in `dist`.

use crate::exact::ExactSum;

/// y = A x, where x and y are this rank's slices (length `local_len`). A distributed operator does
/// its halo exchange inside `apply`, so every rank must call `apply` together.
pub trait LinOp {
    fn local_len(&self) -> usize;
    fn apply(&self, x: &[f64], y: &mut [f64]);
}

/// Sums over all ranks. Exact sums make solvers independent of the rank count.
pub trait Reduce {
    fn sum_exact(&self, values: &mut [ExactSum]);
    fn sum_f64(&self, values: &mut [f64]);
    fn max_f64(&self, values: &mut [f64]);
}

/// The reduction of a single process.
pub struct SerialReduce;

impl Reduce for SerialReduce {
    fn sum_exact(&self, _values: &mut [ExactSum]) {}
    fn sum_f64(&self, _values: &mut [f64]) {}
    fn max_f64(&self, _values: &mut [f64]) {}
}

/// A square sparse matrix held whole by one process.
impl LinOp for crate::csr::Csr {
    fn local_len(&self) -> usize {
        self.n_rows()
    }
    fn apply(&self, x: &[f64], y: &mut [f64]) {
        self.spmv(x, y);
    }
}

/// A dense symmetric matrix as an operator (tests).
pub struct DenseOp {
    pub n: usize,
    pub values: Vec<f64>,
}

impl LinOp for DenseOp {
    fn local_len(&self) -> usize {
        self.n
    }
    fn apply(&self, x: &[f64], y: &mut [f64]) {
        for (i, yi) in y.iter_mut().enumerate() {
            *yi = self.values[i * self.n..(i + 1) * self.n]
                .iter()
                .zip(x)
                .map(|(a, b)| a * b)
                .sum();
        }
    }
}
