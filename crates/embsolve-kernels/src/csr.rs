//! Local compressed sparse rows and a multithreaded SpMV whose result does not depend on the
//! thread count: each row is summed by one thread, in storage order.

use rayon::prelude::*;

/// Rows per rayon task in the row-parallel loops (large enough to amortise scheduling).
pub const ROWS_PER_TASK: usize = 2048;

/// A sparse matrix in compressed sparse row form. Column indices are `u32` (they index this
/// rank's local rows followed by its halo, far below 2^32); the entries of a row keep the order
/// they were given in, which fixes the summation order of `spmv`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Csr {
    pub n_cols: usize,
    pub row_ptr: Vec<usize>,
    pub cols: Vec<u32>,
    pub values: Vec<f64>,
}

impl Csr {
    /// An empty matrix with `n_rows` rows and `n_cols` columns.
    pub fn empty(n_rows: usize, n_cols: usize) -> Self {
        Csr {
            n_cols,
            row_ptr: vec![0; n_rows + 1],
            cols: Vec::new(),
            values: Vec::new(),
        }
    }

    pub fn n_rows(&self) -> usize {
        self.row_ptr.len() - 1
    }

    pub fn nnz(&self) -> usize {
        self.cols.len()
    }

    /// Column indices and values of row `row`.
    pub fn row(&self, row: usize) -> (&[u32], &[f64]) {
        let range = self.row_ptr[row]..self.row_ptr[row + 1];
        (&self.cols[range.clone()], &self.values[range])
    }

    /// The same pattern with other values (one per stored entry).
    pub fn with_values(&self, values: Vec<f64>) -> Csr {
        assert_eq!(values.len(), self.nnz(), "one value per stored entry");
        Csr {
            n_cols: self.n_cols,
            row_ptr: self.row_ptr.clone(),
            cols: self.cols.clone(),
            values,
        }
    }

    /// Dot product of row `row` with `x`, summed in the fixed order of [`lane_sum`] (written out
    /// over chunks of four, so the only bounds checks left are the gathers from `x`).
    #[inline]
    pub fn row_dot(&self, row: usize, x: &[f64]) -> f64 {
        let (cols, values) = self.row(row);
        let mut acc = [0.0f64; 4];
        let split = cols.len() - cols.len() % 4;
        for (c, v) in cols[..split]
            .chunks_exact(4)
            .zip(values[..split].chunks_exact(4))
        {
            for lane in 0..4 {
                acc[lane] += v[lane] * x[c[lane] as usize];
            }
        }
        for (lane, (&col, &value)) in cols[split..].iter().zip(&values[split..]).enumerate() {
            acc[lane] += value * x[col as usize];
        }
        (acc[0] + acc[1]) + (acc[2] + acc[3])
    }

    /// y = A x, rows in parallel. `x` has `n_cols` entries, `y` has `n_rows`.
    pub fn spmv(&self, x: &[f64], y: &mut [f64]) {
        assert_eq!(x.len(), self.n_cols, "x has one entry per column");
        assert_eq!(y.len(), self.n_rows(), "y has one entry per row");
        y.par_chunks_mut(ROWS_PER_TASK)
            .enumerate()
            .for_each(|(chunk, y_chunk)| {
                let first = chunk * ROWS_PER_TASK;
                for (offset, yi) in y_chunk.iter_mut().enumerate() {
                    *yi = self.row_dot(first + offset, x);
                }
            });
    }

    /// Sum of each row's values, in storage order.
    pub fn row_sums(&self) -> Vec<f64> {
        (0..self.n_rows())
            .into_par_iter()
            .with_min_len(ROWS_PER_TASK)
            .map(|row| {
                let values = self.row(row).1;
                lane_sum(values.len(), |e| values[e])
            })
            .collect()
    }
}

/// The sum of `term(e)` for e in 0..n: term e goes to running sum e mod 4 (in order), then
/// (s0 + s1) + (s2 + s3). A fixed order that depends only on the row, so row results have the same
/// bits for any thread or rank count; four chains hide the add latency of the gathers.
#[inline(always)]
pub fn lane_sum(n: usize, term: impl Fn(usize) -> f64) -> f64 {
    let mut acc = [0.0f64; 4];
    let split = n - n % 4;
    for first in (0..split).step_by(4) {
        for (lane, sum) in acc.iter_mut().enumerate() {
            *sum += term(first + lane);
        }
    }
    for (lane, e) in (split..n).enumerate() {
        acc[lane] += term(e);
    }
    (acc[0] + acc[1]) + (acc[2] + acc[3])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reference;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    fn random_csr(n_rows: usize, n_cols: usize, seed: u64) -> Csr {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut csr = Csr::empty(0, n_cols);
        csr.row_ptr.clear();
        csr.row_ptr.push(0);
        for _ in 0..n_rows {
            let n_entries = rng.gen_range(0..8);
            for _ in 0..n_entries {
                csr.cols.push(rng.gen_range(0..n_cols as u32));
                csr.values.push(rng.gen_range(-1.0..1.0));
            }
            csr.row_ptr.push(csr.cols.len());
        }
        csr
    }

    #[test]
    fn spmv_matches_dense_oracle_and_sprs() {
        let (n_rows, n_cols) = (5000, 777);
        let csr = random_csr(n_rows, n_cols, 3);
        let mut rng = ChaCha8Rng::seed_from_u64(4);
        let x: Vec<f64> = (0..n_cols).map(|_| rng.gen_range(-1.0..1.0)).collect();
        let mut y = vec![0.0; n_rows];
        csr.spmv(&x, &mut y);
        let expected = reference::csr_spmv_naive(&csr.row_ptr, &csr.cols, &csr.values, &x);
        for (row, (a, b)) in y.iter().zip(&expected).enumerate() {
            assert!((a - b).abs() <= 1e-14, "row {row}: {a} vs naive {b}");
        }
        // The documented order: entry e to sum e mod 4, then (s0 + s1) + (s2 + s3).
        for (row, &found) in y.iter().enumerate() {
            let (cols, values) = csr.row(row);
            let mut lanes = [0.0f64; 4];
            for (e, (&c, &v)) in cols.iter().zip(values).enumerate() {
                lanes[e % 4] += v * x[c as usize];
            }
            assert_eq!(
                found,
                (lanes[0] + lanes[1]) + (lanes[2] + lanes[3]),
                "row {row}"
            );
        }

        let mut triplets = sprs::TriMat::new((n_rows, n_cols));
        for row in 0..n_rows {
            let (cols, values) = csr.row(row);
            for (&c, &v) in cols.iter().zip(values) {
                triplets.add_triplet(row, c as usize, v);
            }
        }
        let matrix: sprs::CsMat<f64> = triplets.to_csr();
        let y_sprs = &matrix * &ndarray::Array1::from(x.clone());
        for (row, (a, b)) in y.iter().zip(y_sprs.iter()).enumerate() {
            assert!((a - b).abs() <= 1e-12, "row {row}: {a} vs sprs {b}");
        }
    }

    #[test]
    fn spmv_is_identical_for_any_thread_count() {
        let csr = random_csr(20_000, 3000, 9);
        let x: Vec<f64> = (0..3000).map(|i| (i as f64).sin()).collect();
        let mut reference_y = vec![0.0; csr.n_rows()];
        rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .expect("pool")
            .install(|| csr.spmv(&x, &mut reference_y));
        for threads in [2, 3] {
            let mut y = vec![0.0; csr.n_rows()];
            rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .expect("pool")
                .install(|| csr.spmv(&x, &mut y));
            assert_eq!(y, reference_y, "{threads} threads");
        }
        let sums = csr.row_sums();
        let ones = vec![1.0; 3000];
        let mut y = vec![0.0; csr.n_rows()];
        csr.spmv(&ones, &mut y);
        assert_eq!(sums, y);
    }
}
