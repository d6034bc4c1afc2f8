//! The per-row vector kernels of the basis, each compiled for the baseline target and with AVX2
//! by `crate::simd::dispatch!` and chosen at run time. The arithmetic and its order are the same
//! in both (Rust never contracts a * b + c into an FMA), so the results are bit-identical on any
//! x86-64 machine.

use crate::exact::{grid_split, GridSum};
use crate::simd::{self, Features};

/// Tests set this to run the baseline kernels on an AVX2 machine.
#[cfg(test)]
pub static BASELINE_ONLY: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// The features the kernels use: the CPU's (none while a test asks for the baseline).
#[inline]
pub fn features() -> Features {
    #[cfg(test)]
    if BASELINE_ONLY.load(std::sync::atomic::Ordering::Relaxed) {
        return Features::baseline();
    }
    Features::detect()
}

simd::dispatch! {
    /// (high[c], low[c]) accumulate the `grid_split` parts of row[c] * w[row] * scale over the
    /// rows, for c < high.len().
    #[allow(clippy::too_many_arguments)]
    pub fn dots_rows(
        rows: &[f64],
        capacity: usize,
        first: usize,
        w_rows: &[f64],
        scale: f64,
        high: &mut [f64],
        low: &mut [f64],
    ) {
        let n_columns = high.len();
        let low = &mut low[..n_columns];
        for (row, &w_value) in rows.chunks_exact(capacity).zip(w_rows) {
            let w_scaled = w_value * scale;
            for ((h, l), &v) in high
                .iter_mut()
                .zip(low.iter_mut())
                .zip(&row[first..first + n_columns])
            {
                let (term_high, term_low) = grid_split(v * w_scaled);
                *h += term_high;
                *l += term_low;
            }
        }
    }
}

simd::dispatch! {
    /// w[row] -= sum_c row[c] * coefficients[c], the sum in four interleaved partial sums (a
    /// fixed order per row, so the result does not depend on how rows are split).
    pub fn subtract_rows(
        rows: &[f64],
        capacity: usize,
        first: usize,
        coefficients: &[f64],
        w_rows: &mut [f64],
    ) {
        let n_columns = coefficients.len();
        let split = n_columns / 4 * 4;
        for (w_value, row) in w_rows.iter_mut().zip(rows.chunks_exact(capacity)) {
            let row = &row[first..];
            let mut partial = [0.0f64; 4];
            for (v, c) in row[..split]
                .chunks_exact(4)
                .zip(coefficients[..split].chunks_exact(4))
            {
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
    }
}

simd::dispatch! {
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
    }
}

simd::dispatch! {
    /// sum_i x[i] * y[i] * scale as a block sum.
    pub fn dot(x: &[f64], y: &[f64], scale: f64) -> GridSum {
        let mut acc = GridSum::default();
        x.iter().zip(y).for_each(|(p, q)| acc.add(p * q * scale));
        acc
    }
}
