//! Exact sums across ranks, the row-block readers (Parquet, HDF5, npy) and the FFT analysis of
//! token tracks, each rank's part against the serial whole-problem answer.

use embsolve_comm::{allreduce_exact, Comm, SerialComm};
use embsolve_kernels::exact::ExactSum;
use embsolve_kernels::layout::RowLayout;

/// Exact sums of a distributed vector equal the serial sum bit for bit.
pub(super) fn check_exact_allreduce(comm: &dyn Comm) -> Result<(), String> {
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
pub(super) fn check_io_read_blocks(comm: &dyn Comm) -> Result<(), String> {
    use embsolve_io::source::{InputFormat, InputSection};
    use embsolve_io::{generate, Format};
    let dir: std::path::PathBuf = embsolve_comm::broadcast_json(
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
            Some(
                made.and_then(|()| embsolve_io::scan(&input))
                    .map_err(|e| e.message),
            )
        } else {
            None
        };
        let scanned: Result<embsolve_io::DatasetInfo, String> =
            embsolve_comm::broadcast_json(comm, 0, scanned.as_ref());
        let checked = scanned.and_then(|info| {
            let layout = RowLayout::new(info.n_rows, comm.size());
            let range = layout.range(comm.rank());
            let block =
                embsolve_io::read_rows(&info, &input, range.clone()).map_err(|e| e.message)?;
            let whole =
                embsolve_io::read_rows(&info, &input, 0..info.n_rows).map_err(|e| e.message)?;
            let expected = whole.embeddings.slice(ndarray::s![range.clone(), ..]);
            if block.embeddings != expected {
                return Err(format!(
                    "{}: rows {range:?} differ from the serial read",
                    format.name()
                ));
            }
            let ids: Vec<i64> = range.clone().map(|r| r as i64).collect();
            if block.ids != embsolve_kernels::results::Ids::Int(ids) {
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

/// The FFT analysis on ranks equals the serial one bit for bit: this rank's period-3 windows and
/// feature rows are the matching slices of the serial answer, and the global spectra agree. The
/// lengths include a sequence longer than every rank's span together at 4 ranks' window share.
pub(super) fn check_fft_tracks(comm: &dyn Comm) -> Result<(), String> {
    use embsolve::config::{Alphabet, FftSection};
    use embsolve_kernels::fft::ChannelMap;
    let lengths = [50u64, 3000, 10, 241, 20_000, 300, 0, 5000, 239, 1200];
    let total: u64 = lengths.iter().sum();
    let tokens: Vec<u8> = (0..total)
        .map(|i| ((i.wrapping_mul(2_654_435_761) >> 7) % 5) as u8)
        .collect();
    let params = FftSection {
        enabled: true,
        tracks: String::new(),
        alphabet: Alphabet::Dna,
        window: 120,
        step: 45,
        bins: 16,
    };
    let read =
        |span: std::ops::Range<u64>| Ok(tokens[span.start as usize..span.end as usize].to_vec());
    let fft = |c: &dyn Comm| {
        embsolve::distributed::fft::analyse(c, &lengths, ChannelMap::DnaIndicators, &params, read)
            .map_err(|e| e.to_string())
    };
    let distributed = fft(comm)?;
    let serial = fft(&SerialComm)?;
    let windows = distributed.window_start..distributed.window_start + distributed.period3.len();
    if serial.period3[windows.clone()] != distributed.period3[..] {
        return Err(format!(
            "period3 windows {windows:?} differ from the serial answer"
        ));
    }
    let (n_local, bins) = distributed.features.dim();
    let rows = distributed.seq_start..distributed.seq_start + n_local;
    let serial_rows = serial.features.slice(ndarray::s![rows.clone(), ..]);
    let same = serial_rows
        .iter()
        .zip(distributed.features.iter())
        .all(|(a, b)| a.to_bits() == b.to_bits());
    if bins != params.bins || !same {
        return Err(format!(
            "feature rows {rows:?} differ from the serial answer"
        ));
    }
    let (d, s) = (&distributed.summary, &serial.summary);
    if d.mean_power != s.mean_power
        || d.score_edges != s.score_edges
        || d.score_counts != s.score_counts
        || d.n_windows != s.n_windows
    {
        return Err("mean power or score histogram differs from the serial answer".into());
    }
    // Every window once, every sequence once, over all ranks.
    let counts = embsolve_comm::allgather_u64(comm, distributed.period3.len() as u64);
    let owned = embsolve_comm::allgather_u64(comm, n_local as u64);
    if counts.iter().sum::<u64>() != s.n_windows as u64
        || owned.iter().sum::<u64>() != lengths.len() as u64
    {
        return Err(format!(
            "windows per rank {counts:?}, sequences per rank {owned:?}"
        ));
    }
    Ok(())
}
