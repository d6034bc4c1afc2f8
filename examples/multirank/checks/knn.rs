//! kNN checks: the ring-pass exact kNN on every metric, with default and tiny tiles, against the
//! serial brute-force oracle on the whole matrix (indices and distance bits), and with fewer rows
//! than ranks.

use embsolve_comm::Comm;
use embsolve_kernels::layout::RowLayout;
use embsolve_kernels::types::Metric;

/// Seeded rows with deliberate ties: exact duplicates and few distinct values (equal distances
/// between distinct rows). Unit length for cosine. Every rank builds the same matrix.
fn knn_rows(n_rows: usize, dim: usize, seed: u64, unit: bool) -> ndarray::Array2<f32> {
    use rand::{Rng, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut rows = ndarray::Array2::<f32>::zeros((n_rows, dim));
    for i in 0..n_rows {
        if i > 0 && rng.gen_bool(0.15) {
            let copy = rows.row(rng.gen_range(0..i)).to_owned();
            rows.row_mut(i).assign(&copy);
            continue;
        }
        for value in rows.row_mut(i).iter_mut() {
            *value = rng.gen_range(-3i32..=3) as f32 * 0.25;
        }
        if unit && rows.row(i).iter().all(|v| *v == 0.0) {
            rows[[i, 0]] = 1.0;
        }
    }
    if unit {
        for mut row in rows.rows_mut() {
            let norm = row.iter().map(|v| v * v).sum::<f32>().sqrt();
            row.mapv_inplace(|v| v / norm);
        }
    }
    rows
}

/// Ring kNN on `comm` (with small tiles, so blocks split into many tiles) against the serial
/// brute-force oracle on the whole matrix: identical indices and distance bits on every rank.
pub(super) fn check_knn_against_oracle(
    comm: &dyn Comm,
    n_rows: usize,
    dim: usize,
    k: usize,
    metric: Metric,
) -> Result<(), String> {
    use embsolve::backend::cpu::CpuKnn;
    use embsolve_kernels::knn::TileShape;
    let rows = knn_rows(n_rows, dim, 17 + n_rows as u64, metric == Metric::Cosine);
    let layout = RowLayout::new(n_rows, comm.size());
    let range = layout.range(comm.rank());
    let local = rows.slice(ndarray::s![range.clone(), ..]);
    let (want_indices, want_distances) =
        embsolve_kernels::reference::knn_naive(rows.view(), k, metric);
    for shape in [
        TileShape::default(),
        TileShape {
            query_rows: 5,
            ref_rows: 9,
        },
    ] {
        let mut backend = CpuKnn::with_tile_shape(shape);
        let lists =
            embsolve::distributed::knn::exact_knn(comm, &layout, local, k, metric, &mut backend)
                .map_err(|e| format!("exact_knn failed: {e}"))?;
        let want = range.start * k..range.end * k;
        if lists.indices != want_indices[want.clone()] {
            let first = lists
                .indices
                .iter()
                .zip(&want_indices[want.clone()])
                .position(|(a, b)| a != b)
                .unwrap_or(0);
            return Err(format!(
                "{metric:?} tiles {shape:?}: global row {} neighbour {} is {:?}, oracle {}",
                range.start + first / k,
                first % k,
                lists.indices.get(first),
                want_indices[want.start + first]
            ));
        }
        let same_bits = lists
            .distances
            .iter()
            .zip(&want_distances[want])
            .all(|(a, b)| a.to_bits() == b.to_bits());
        if !same_bits {
            return Err(format!(
                "{metric:?} tiles {shape:?}: distances differ from the oracle"
            ));
        }
    }
    Ok(())
}

pub(super) fn check_knn_ring_cosine(comm: &dyn Comm) -> Result<(), String> {
    check_knn_against_oracle(comm, 601, 21, 7, Metric::Cosine)
}

pub(super) fn check_knn_ring_l2(comm: &dyn Comm) -> Result<(), String> {
    check_knn_against_oracle(comm, 433, 16, 16, Metric::L2)
}

pub(super) fn check_knn_ring_ip(comm: &dyn Comm) -> Result<(), String> {
    check_knn_against_oracle(comm, 250, 9, 5, Metric::Ip)
}

/// Three rows on up to four ranks: some ranks own no rows and still pass blocks on; k = 2 is the
/// largest valid k, and k = 3 is a config error on every rank.
pub(super) fn check_knn_fewer_rows_than_ranks(comm: &dyn Comm) -> Result<(), String> {
    check_knn_against_oracle(comm, 3, 4, 2, Metric::L2)?;
    let rows = knn_rows(3, 4, 1, false);
    let layout = RowLayout::new(3, comm.size());
    let local = rows.slice(ndarray::s![layout.range(comm.rank()), ..]);
    let mut backend = embsolve::backend::cpu::CpuKnn::new();
    match embsolve::distributed::knn::exact_knn(comm, &layout, local, 3, Metric::L2, &mut backend) {
        Err(e)
            if e.kind == embsolve_kernels::error::ErrorKind::Config
                && e.message.contains("knn.k") =>
        {
            Ok(())
        }
        Err(e) => Err(format!("k = n_rows gave the wrong error: {e}")),
        Ok(_) => Err("k = n_rows was accepted".into()),
    }
}
