//! The GEMM distance tiles: dot products of a block of queries with a block of reference rows
//! by the `gemm` crate. Its summation order depends on the shape and the CPU, so these values
//! only filter candidates (the `knn` module doc); the lists use the canonical distances.

/// `tile[i * tile_stride + j] = dot(query i, reference j)` for an `n_query x n_ref` tile, with the
/// single-threaded `gemm` kernel (threads split the queries one level up).
pub fn gemm_tile(
    tile: &mut [f32],
    tile_stride: usize,
    queries: &[f32],
    n_query: usize,
    references: &[f32],
    n_ref: usize,
    dim: usize,
) {
    assert!(n_ref <= tile_stride);
    assert!(n_query == 0 || tile.len() >= (n_query - 1) * tile_stride + n_ref);
    assert!(queries.len() >= n_query * dim && references.len() >= n_ref * dim);
    if n_query == 0 || n_ref == 0 {
        return;
    }
    // SAFETY: the asserts above keep every index the kernel touches inside the three slices:
    // dst (i, j) at i * tile_stride + j, lhs (i, l) at i * dim + l, rhs (l, j) at j * dim + l.
    unsafe {
        gemm::gemm(
            n_query,
            n_ref,
            dim,
            tile.as_mut_ptr(),
            1,
            tile_stride as isize,
            false,
            queries.as_ptr(),
            1,
            dim as isize,
            references.as_ptr(),
            dim as isize,
            1,
            0.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}
