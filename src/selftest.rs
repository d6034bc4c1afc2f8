//! `embsolve selftest`: multi-rank checks run under `mpirun -n P`. Every rank solves a seeded
//! problem distributed and checks its slice against the serial whole-problem answer; a failure
//! names the check and the rank.

use crate::comm::{Comm, SerialComm};
use crate::dist::allreduce_exact;
use crate::kernels::exact::ExactSum;
use crate::layout::RowLayout;

/// One named check: Ok, or a message saying what differed.
pub type Check = fn(&dyn Comm) -> Result<(), String>;

/// Every registered check.
pub fn checks() -> Vec<(&'static str, Check)> {
    vec![
        ("exact_allreduce", check_exact_allreduce),
        ("io_read_blocks", check_io_read_blocks),
        ("knn_ring_cosine", check_knn_ring_cosine),
        ("knn_ring_l2", check_knn_ring_l2),
        ("knn_ring_ip", check_knn_ring_ip),
        ("knn_fewer_rows_than_ranks", check_knn_fewer_rows_than_ranks),
    ]
}

/// Run every check (or those whose name contains `filter`); returns the number of failures.
pub fn run(comm: &dyn Comm, filter: Option<&str>) -> usize {
    let mut failures = 0;
    for (name, check) in checks() {
        if filter.is_some_and(|f| !name.contains(f)) {
            continue;
        }
        let outcome = check(comm);
        let mut failed = [outcome.is_err() as u64];
        comm.allreduce_sum_u64(&mut failed);
        if let Err(message) = &outcome {
            eprintln!(
                "selftest {name}: FAILED on rank {} of {}: {message}",
                comm.rank(),
                comm.size()
            );
        }
        if failed[0] > 0 {
            failures += 1;
        } else if comm.rank() == 0 {
            println!("selftest {name}: ok on {} ranks", comm.size());
        }
    }
    failures
}

/// Exact sums of a distributed vector equal the serial sum bit for bit.
fn check_exact_allreduce(comm: &dyn Comm) -> Result<(), String> {
    let n = 10_007;
    let value = |i: usize| ((i * 2_654_435_761) % 1000) as f64 * 1e-3 - 0.4;
    let layout = RowLayout::new(n, comm.size());
    let mut local = [ExactSum::default()];
    layout
        .range(comm.rank())
        .for_each(|i| local[0].add(value(i)));
    allreduce_exact(comm, &mut local);
    let mut serial = [ExactSum::default()];
    (0..n).for_each(|i| serial[0].add(value(i)));
    allreduce_exact(&SerialComm, &mut serial);
    if local != serial {
        return Err(format!(
            "distributed {:?} != serial {:?}",
            local[0], serial[0]
        ));
    }
    Ok(())
}

/// Every rank reads its row block of generated Parquet, HDF5 and npy datasets (rank 0 scans and
/// broadcasts the dataset description, as the pipeline does) and compares it with the same rows
/// of a serial read of the whole dataset.
fn check_io_read_blocks(comm: &dyn Comm) -> Result<(), String> {
    use crate::config::{InputFormat, InputSection};
    use crate::io::{self, generate, Format};
    let dir: std::path::PathBuf = crate::comm::broadcast_json(
        comm,
        0,
        Some(&std::env::temp_dir().join(format!("embsolve-selftest-io-{}", std::process::id()))),
    );
    let mut outcome = Ok(());
    for (format, shards) in [(Format::Parquet, 7), (Format::Hdf5, 3), (Format::Npy, 4)] {
        let path = dir.join(format.name());
        let made = if comm.rank() == 0 {
            generate::blobs(&generate::BlobsParams {
                n_rows: 1001,
                dim: 5,
                clusters: 3,
                noise: 0.5,
                seed: 5,
                format,
                shards,
                half: format == Format::Parquet,
                out: path.clone(),
            })
            .map(|_| ())
        } else {
            Ok(())
        };
        comm.barrier();
        let input = InputSection {
            path: path.clone(),
            format: InputFormat::Auto,
            column: "embedding".into(),
            id_column: "id".into(),
            label_column: "label".into(),
        };
        let scanned = if comm.rank() == 0 {
            Some(made.and_then(|()| io::scan(&input)).map_err(|e| e.message))
        } else {
            None
        };
        let scanned: Result<io::DatasetInfo, String> =
            crate::comm::broadcast_json(comm, 0, scanned.as_ref());
        let checked = scanned.and_then(|info| {
            let layout = RowLayout::new(info.n_rows, comm.size());
            let range = layout.range(comm.rank());
            let block = io::read_rows(&info, &input, range.clone()).map_err(|e| e.message)?;
            let whole = io::read_rows(&info, &input, 0..info.n_rows).map_err(|e| e.message)?;
            let expected = whole.embeddings.slice(ndarray::s![range.clone(), ..]);
            if block.embeddings != expected {
                return Err(format!(
                    "{}: rows {range:?} differ from the serial read",
                    format.name()
                ));
            }
            let ids: Vec<i64> = range.clone().map(|r| r as i64).collect();
            if block.ids != crate::results::Ids::Int(ids) {
                return Err(format!(
                    "{}: ids of rows {range:?} are wrong",
                    format.name()
                ));
            }
            let labels = whole.labels.as_ref().map(|l| l[range.clone()].to_vec());
            if block.labels != labels {
                return Err(format!(
                    "{}: labels of rows {range:?} differ",
                    format.name()
                ));
            }
            Ok(())
        });
        if outcome.is_ok() {
            outcome = checked;
        }
    }
    comm.barrier();
    if comm.rank() == 0 {
        let _ = std::fs::remove_dir_all(&dir);
    }
    outcome
}
// ---- kNN checks ----

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
fn check_knn_against_oracle(
    comm: &dyn Comm,
    n_rows: usize,
    dim: usize,
    k: usize,
    metric: crate::config::Metric,
) -> Result<(), String> {
    use crate::backend::cpu::CpuKnn;
    use crate::kernels::knn::TileShape;
    let rows = knn_rows(
        n_rows,
        dim,
        17 + n_rows as u64,
        metric == crate::config::Metric::Cosine,
    );
    let layout = RowLayout::new(n_rows, comm.size());
    let range = layout.range(comm.rank());
    let local = rows.slice(ndarray::s![range.clone(), ..]);
    let (want_indices, want_distances) =
        crate::kernels::reference::knn_naive(rows.view(), k, metric);
    for shape in [
        TileShape::default(),
        TileShape {
            query_rows: 5,
            ref_rows: 9,
        },
    ] {
        let mut backend = CpuKnn::with_tile_shape(shape);
        let lists = crate::dist::knn::exact_knn(comm, &layout, local, k, metric, &mut backend)
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

fn check_knn_ring_cosine(comm: &dyn Comm) -> Result<(), String> {
    check_knn_against_oracle(comm, 601, 21, 7, crate::config::Metric::Cosine)
}

fn check_knn_ring_l2(comm: &dyn Comm) -> Result<(), String> {
    check_knn_against_oracle(comm, 433, 16, 16, crate::config::Metric::L2)
}

fn check_knn_ring_ip(comm: &dyn Comm) -> Result<(), String> {
    check_knn_against_oracle(comm, 250, 9, 5, crate::config::Metric::Ip)
}

/// Three rows on up to four ranks: some ranks own no rows and still pass blocks on; k = 2 is the
/// largest valid k, and k = 3 is a config error on every rank.
fn check_knn_fewer_rows_than_ranks(comm: &dyn Comm) -> Result<(), String> {
    check_knn_against_oracle(comm, 3, 4, 2, crate::config::Metric::L2)?;
    let rows = knn_rows(3, 4, 1, false);
    let layout = RowLayout::new(3, comm.size());
    let local = rows.slice(ndarray::s![layout.range(comm.rank()), ..]);
    let mut backend = crate::backend::cpu::CpuKnn::new();
    match crate::dist::knn::exact_knn(
        comm,
        &layout,
        local,
        3,
        crate::config::Metric::L2,
        &mut backend,
    ) {
        Err(e) if e.kind == crate::error::ErrorKind::Config && e.message.contains("knn.k") => {
            Ok(())
        }
        Err(e) => Err(format!("k = n_rows gave the wrong error: {e}")),
        Ok(_) => Err("k = n_rows was accepted".into()),
    }
}
// ---- end of kNN checks ----
