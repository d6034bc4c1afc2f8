//! PCA pieces: the exact scatter matrix (sum of x x^T) of a row block, the top principal axes of
//! the global covariance by a dense symmetric eigensolver (faer), and the projection.

use crate::exact::ExactSum;
use ndarray::{Array2, ArrayView2, Axis};
use rayon::prelude::*;

/// Upper-triangular-complete scatter sum_rows x x^T (dim x dim, row-major), exact.
pub fn scatter_exact(rows: ArrayView2<f32>) -> Vec<ExactSum> {
    let dim = rows.ncols();
    rows.axis_chunks_iter(Axis(0), 256)
        .into_par_iter()
        .map(|chunk| {
            let mut acc = vec![ExactSum::default(); dim * dim];
            for row in chunk.rows() {
                for i in 0..dim {
                    let xi = row[i] as f64;
                    for j in i..dim {
                        acc[i * dim + j].add(xi * row[j] as f64);
                    }
                }
            }
            acc
        })
        .reduce(
            || vec![ExactSum::default(); dim * dim],
            |mut a, b| {
                a.iter_mut().zip(b).for_each(|(x, y)| x.merge(y));
                a
            },
        )
}

/// The `n_axes` leading eigenvectors (columns of the result, dim x n_axes) of the covariance
/// scatter/n - mean mean^T. Signs are fixed so the largest-magnitude entry of each axis is positive.
pub fn top_axes(scatter: &[ExactSum], mean: &[f64], n: usize, n_axes: usize) -> Array2<f64> {
    let dim = mean.len();
    let n = n.max(1) as f64;
    let cov = faer::Mat::<f64>::from_fn(dim, dim, |i, j| {
        let (a, b) = if i <= j { (i, j) } else { (j, i) };
        scatter[a * dim + b].value() / n - mean[i] * mean[j]
    });
    let eig = cov
        .self_adjoint_eigen(faer::Side::Lower)
        .expect("symmetric eigendecomposition");
    let values = eig.S();
    let vectors = eig.U();
    let mut order: Vec<usize> = (0..dim).collect();
    order.sort_by(|&a, &b| {
        values[b]
            .partial_cmp(&values[a])
            .unwrap_or(std::cmp::Ordering::Equal)
            .then(a.cmp(&b))
    });
    let mut axes = Array2::<f64>::zeros((dim, n_axes));
    for (c, &src) in order.iter().take(n_axes).enumerate() {
        let col: Vec<f64> = (0..dim).map(|r| vectors[(r, src)]).collect();
        let pivot = col
            .iter()
            .cloned()
            .fold(0.0f64, |m, x| if x.abs() > m.abs() { x } else { m });
        let sign = if pivot < 0.0 { -1.0 } else { 1.0 };
        for r in 0..dim {
            axes[[r, c]] = sign * col[r];
        }
    }
    axes
}

/// (rows - mean) projected on `axes` (dim x n_axes).
pub fn project(rows: ArrayView2<f32>, mean: &[f64], axes: &Array2<f64>) -> Array2<f32> {
    let n_axes = axes.ncols();
    let mut out = Array2::<f32>::zeros((rows.nrows(), n_axes));
    out.axis_iter_mut(Axis(0))
        .into_par_iter()
        .zip(rows.axis_iter(Axis(0)))
        .for_each(|(mut o, row)| {
            for c in 0..n_axes {
                let mut acc = 0.0f64;
                for (r, &x) in row.iter().enumerate() {
                    acc += (x as f64 - mean[r]) * axes[[r, c]];
                }
                o[c] = acc as f32;
            }
        });
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn leading_axis_of_a_line_is_its_direction() {
        let rows = array![[1.0f32, 2.0], [2.0, 4.0], [3.0, 6.0], [-1.0, -2.0]];
        let mean = vec![1.25, 2.5];
        let axes = top_axes(&scatter_exact(rows.view()), &mean, 4, 1);
        let norm = (1.0f64 + 4.0).sqrt();
        assert!(
            (axes[[0, 0]] - 1.0 / norm).abs() < 1e-9 && (axes[[1, 0]] - 2.0 / norm).abs() < 1e-9,
            "{axes:?}"
        );
        let projected = project(rows.view(), &mean, &axes);
        assert!((projected[[2, 0]] as f64 - (1.75 * 1.0 + 3.5 * 2.0) / norm).abs() < 1e-5);
    }
}
