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
