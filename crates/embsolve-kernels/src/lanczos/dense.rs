//! The dense symmetric eigenproblems: faer's eigensolver (sequential, so the thread count cannot
//! change it), and the Ritz pairs of the small projected matrix of a Lanczos cycle.

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

/// Ritz pairs of the leading `size` x `size` block of the projected matrix `h` (row stride
/// `stride`) whose next basis vector has coupling `beta`: values descending, vectors (row-major)
/// and residual norms |beta * last component|.
pub(super) fn ritz(
    h: &[f64],
    stride: usize,
    size: usize,
    beta: f64,
) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
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
pub(super) fn leading_columns(matrix: &[f64], size: usize, n_out: usize) -> Vec<f64> {
    let mut out = Vec::with_capacity(size * n_out);
    for row in 0..size {
        out.extend_from_slice(&matrix[row * size..row * size + n_out]);
    }
    out
}
