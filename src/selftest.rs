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
        ("fft_tracks", check_fft_tracks),
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

/// The FFT analysis on ranks equals the serial one bit for bit: this rank's period-3 windows and
/// feature rows are the matching slices of the serial answer, and the global spectra agree. The
/// lengths include a sequence longer than every rank's span together at 4 ranks' window share.
fn check_fft_tracks(comm: &dyn Comm) -> Result<(), String> {
    use crate::config::{Alphabet, FftSection};
    use crate::kernels::fft::ChannelMap;
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
        crate::dist::fft::analyse(c, &lengths, ChannelMap::DnaIndicators, &params, read)
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
    let counts = crate::comm::allgather_u64(comm, distributed.period3.len() as u64);
    let owned = crate::comm::allgather_u64(comm, n_local as u64);
    if counts.iter().sum::<u64>() != s.n_windows as u64
        || owned.iter().sum::<u64>() != lengths.len() as u64
    {
        return Err(format!(
            "windows per rank {counts:?}, sequences per rank {owned:?}"
        ));
    }
    Ok(())
}
