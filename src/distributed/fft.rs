//! FFT analysis of token tracks over ranks. Rank 0 scans the dataset (sequence lengths only) and
//! every rank receives the lengths; the `TrackPlan` then gives each rank a contiguous block of the
//! global windows, so a long sequence is split across ranks by position and every window is
//! computed exactly once. A rank reads only its token span (its first window's start to its last
//! window's end, so the overlap a straddling window needs comes with it).
//!
//! Per window: the power spectrum of the channel signals, its period-3 score, and its mean power
//! in `bins` bands. Per sequence: the feature row `ln(mean over its windows of band power)` (NaN
//! for a sequence shorter than one window), from exact per-sequence sums that ranks sharing a
//! sequence send to its owner. Globally: `/fft/mean_power` (band power averaged over all windows,
//! exact sums) and a histogram of scores. Every value is independent of the rank and thread count.

use crate::config::FftSection;
use crate::pipeline::agree;
use crate::record::ResultsRecord;
use embsolve_comm::{self as comm, Comm};
use embsolve_kernels::error::Result;
use embsolve_kernels::exact::{from_limbs, to_limbs, ExactSum};
use embsolve_kernels::fft::plan::TrackPlan;
use embsolve_kernels::fft::spectra::{CpuPowerSpectra, PowerSpectra};
use embsolve_kernels::fft::{histogram, period3_score, pool_bands, ChannelMap, SpectrumShape};
use embsolve_kernels::results::FftSummary;
use embsolve_kernels::results::{GlobalResults, LocalResults};
use ndarray::Array2;
use rayon::prelude::*;
use std::ops::Range;
use std::path::Path;

/// Windows whose spectra are held at once (bounds the power buffer: 8192 x n_freqs f32).
const WINDOWS_PER_BATCH: usize = 8192;
/// Bins of the period-3 score histogram (from 0 to the largest score over all ranks).
const SCORE_HISTOGRAM_BINS: usize = 50;
/// Floor under the mean band power before the logarithm (a window of only N has no power).
const POWER_FLOOR: f64 = 1e-12;

pub struct FftOutcome {
    pub summary: FftSummary,
    /// First global sequence of this rank's feature rows.
    pub seq_start: usize,
    /// This rank's sequences x bins.
    pub features: Array2<f32>,
    /// First global window of this rank's windows.
    pub window_start: usize,
    /// (sequence, start, score) of this rank's windows, in global window order.
    pub period3: Vec<(i64, i64, f32)>,
}

/// The `[fft]` phase: scan and read `params.tracks`, analyse, reduce. Collective.
pub fn run(comm: &dyn Comm, params: &FftSection) -> Result<FftOutcome> {
    let map = ChannelMap::for_alphabet(params.alphabet);
    let path = Path::new(&params.tracks);
    let scanned = if comm.rank() == 0 {
        embsolve_io::tracks::scan_tracks(path).map(Some)
    } else {
        Ok(None)
    };
    let scanned = agree(comm, scanned)?;
    let info: embsolve_io::tracks::TracksInfo = comm::broadcast_json(comm, 0, scanned.as_ref());
    let lengths = info.lengths();
    log::info!(
        "fft: {} sequences, {} tokens in {} files",
        lengths.len(),
        lengths.iter().sum::<u64>(),
        info.sources.len()
    );
    analyse(comm, &lengths, map, params, |span| {
        embsolve_io::tracks::read_tokens(&info, span, map.max_token())
    })
}

/// The analysis of sequences of `lengths`, reading this rank's span through `read_span`
/// (global token positions). Collective.
pub fn analyse(
    comm: &dyn Comm,
    lengths: &[u64],
    map: ChannelMap,
    params: &FftSection,
    read_span: impl FnOnce(Range<u64>) -> Result<Vec<u8>>,
) -> Result<FftOutcome> {
    let (rank, n_ranks) = (comm.rank(), comm.size());
    let shape = SpectrumShape::new(params.window, params.bins);
    let plan = TrackPlan::new(lengths, params.window, params.step, n_ranks);
    let span = plan.token_span(rank);
    let clock = std::time::Instant::now();
    let tokens = agree(comm, read_span(span.clone()))?;
    let read_s = clock.elapsed().as_secs_f64();
    let mut engine = CpuPowerSpectra::new(map, shape.clone());
    let local = agree(
        comm,
        local_windows(&plan, rank, &tokens, span.start, &mut engine),
    )?;
    drop(tokens);
    log::debug!(
        "fft rank {rank}: read {} tokens in {read_s:.3} s, {} windows in {:.3} s",
        span.end - span.start,
        local.period3.len(),
        clock.elapsed().as_secs_f64() - read_s
    );

    // Scores: histogram over 0..(global max score).
    let mut max_score = [local
        .period3
        .iter()
        .map(|&(_, _, s)| f64::from(s))
        .fold(0.0, f64::max)];
    comm.allreduce_max_f64(&mut max_score);
    let top = if max_score[0] > 0.0 {
        max_score[0]
    } else {
        1.0
    };
    let score_edges: Vec<f64> = (0..=SCORE_HISTOGRAM_BINS)
        .map(|i| top * i as f64 / SCORE_HISTOGRAM_BINS as f64)
        .collect();
    let mut score_counts = vec![0u64; SCORE_HISTOGRAM_BINS];
    histogram(
        local.period3.iter().map(|&(_, _, s)| s),
        &score_edges,
        &mut score_counts,
    );
    comm.allreduce_sum_u64(&mut score_counts);

    // Band power: global totals, and per-sequence sums gathered at each sequence's owner.
    let bins = shape.bins();
    let mut totals = vec![ExactSum::default(); bins];
    for (_, sums) in &local.sequence_sums {
        for (total, &sum) in totals.iter_mut().zip(sums) {
            total.merge(sum);
        }
    }
    crate::distributed::allreduce_exact(comm, &mut totals);
    let n_windows = plan.n_windows();
    let mean_power: Vec<f64> = totals
        .iter()
        .map(|t| {
            if n_windows > 0 {
                t.value() / n_windows as f64
            } else {
                0.0
            }
        })
        .collect();

    let owned = plan.owned_sequences(rank);
    let owned_sums = sequence_sums_at_owners(comm, &plan, &local.sequence_sums, bins, &owned);
    let mut features = Array2::<f32>::from_elem((owned.len(), bins), f32::NAN);
    for (row, seq) in owned.clone().enumerate() {
        let count = plan.window_offsets[seq + 1] - plan.window_offsets[seq];
        if count == 0 {
            continue;
        }
        for (b, sum) in owned_sums[row].iter().enumerate() {
            let mean = sum.value() / count as f64;
            features[[row, b]] = mean.max(POWER_FLOOR).ln() as f32;
        }
    }

    Ok(FftOutcome {
        summary: FftSummary {
            mean_power,
            bins,
            n_sequences: plan.n_sequences(),
            n_windows: n_windows as usize,
            score_edges,
            score_counts,
        },
        seq_start: owned.start,
        features,
        window_start: plan.windows(rank).start as usize,
        period3: local.period3,
    })
}

/// What a rank computes from its own windows.
struct LocalWindows {
    /// (sequence, start, score) per window, in global window order.
    period3: Vec<(i64, i64, f32)>,
    /// Exact band-power sums over this rank's windows of each sequence it touches, ascending.
    sequence_sums: Vec<(usize, Vec<ExactSum>)>,
}

/// Band powers are summed as fixed point with this many fractional bits (i64 per window, i128
/// sums: exact and fast; 2^-32 is far below f32 feature resolution).
const BAND_FRACTION_BITS: u32 = 32;

/// Spectra, scores and band sums of `rank`'s windows; `tokens` holds global positions
/// `token_offset..`.
fn local_windows(
    plan: &TrackPlan,
    rank: usize,
    tokens: &[u8],
    token_offset: u64,
    engine: &mut dyn PowerSpectra,
) -> Result<LocalWindows> {
    let shape = engine.shape().clone();
    let (n_freqs, bins) = (shape.n_freqs, shape.bins());
    let windows = plan.windows(rank);
    let n_local = (windows.end - windows.start) as usize;
    let mut period3 = Vec::with_capacity(n_local);
    let mut fixed_sums: Vec<(usize, Vec<i128>)> = Vec::new();
    let batch = WINDOWS_PER_BATCH.min(n_local.max(1));
    let mut power = vec![0.0f32; batch * n_freqs];
    let mut scores = vec![0.0f32; batch];
    let mut fixed_bands = vec![0i64; batch * bins];
    let mut starts = Vec::with_capacity(batch);
    let mut window_seqs = Vec::with_capacity(batch);
    let scale = f64::from(1u32 << (BAND_FRACTION_BITS - 1)) * 2.0;
    let mut next = windows.start;
    while next < windows.end {
        let end = (next + batch as u64).min(windows.end);
        starts.clear();
        window_seqs.clear();
        for global_window in next..end {
            let (seq, start) = plan.window_at(global_window);
            starts.push((plan.offsets[seq] + start - token_offset) as usize);
            window_seqs.push((seq, start));
        }
        let count = starts.len();
        let power = &mut power[..count * n_freqs];
        engine.compute(tokens, &starts, power)?;
        power
            .par_chunks(n_freqs * 64)
            .zip(scores[..count].par_chunks_mut(64))
            .zip(fixed_bands[..count * bins].par_chunks_mut(bins * 64))
            .for_each(|((spectra, scores), fixed)| {
                let mut bands = vec![0.0f64; bins];
                for ((spectrum, score), fixed) in spectra
                    .chunks_exact(n_freqs)
                    .zip(scores.iter_mut())
                    .zip(fixed.chunks_exact_mut(bins))
                {
                    *score = period3_score(spectrum, &shape);
                    pool_bands(spectrum, &shape, &mut bands);
                    for (f, &band) in fixed.iter_mut().zip(&bands) {
                        *f = (band * scale) as i64;
                    }
                }
            });
        for ((&(seq, start), &score), fixed) in window_seqs
            .iter()
            .zip(&scores[..count])
            .zip(fixed_bands.chunks_exact(bins))
        {
            period3.push((seq as i64, start as i64, score));
            if !matches!(fixed_sums.last(), Some((last, _)) if *last == seq) {
                fixed_sums.push((seq, vec![0i128; bins]));
            }
            let sums = &mut fixed_sums.last_mut().expect("pushed above").1;
            for (sum, &f) in sums.iter_mut().zip(fixed) {
                *sum += i128::from(f);
            }
        }
        next = end;
    }
    let sequence_sums = fixed_sums
        .into_iter()
        .map(|(seq, sums)| {
            let exact = sums
                .iter()
                .map(|&s| ExactSum(s << (64 - BAND_FRACTION_BITS)))
                .collect();
            (seq, exact)
        })
        .collect();
    Ok(LocalWindows {
        period3,
        sequence_sums,
    })
}

/// Send the band sums of sequences owned by other ranks to their owners (one all-to-all of
/// records `[seq, limbs...]`) and return the complete sums of the `owned` sequences.
fn sequence_sums_at_owners(
    comm: &dyn Comm,
    plan: &TrackPlan,
    local: &[(usize, Vec<ExactSum>)],
    bins: usize,
    owned: &Range<usize>,
) -> Vec<Vec<ExactSum>> {
    let record = 1 + 3 * bins;
    let mut send_counts = vec![0usize; comm.size()];
    let mut send = Vec::new();
    let mut complete = vec![vec![ExactSum::default(); bins]; owned.len()];
    // `local` is ascending in seq and owners ascend with seq, so records are in rank order.
    for (seq, sums) in local {
        let owner = plan.owner(*seq);
        if owner == comm.rank() {
            for (total, &sum) in complete[seq - owned.start].iter_mut().zip(sums) {
                total.merge(sum);
            }
        } else {
            send.push(*seq as u64);
            send.extend(sums.iter().flat_map(|s| to_limbs(s.0)));
            send_counts[owner] += record;
        }
    }
    let (received, _) = comm::alltoallv(comm, &send, &send_counts);
    for chunk in received.chunks_exact(record) {
        let seq = chunk[0] as usize;
        for (b, limbs) in chunk[1..].chunks_exact(3).enumerate() {
            let sum = ExactSum(from_limbs([limbs[0], limbs[1], limbs[2]]));
            complete[seq - owned.start][b].merge(sum);
        }
    }
    complete
}

/// The FFT stage's part of the results.
pub fn publish(
    outcome: FftOutcome,
    record: &mut ResultsRecord,
    global: &mut GlobalResults,
    local: &mut LocalResults,
) {
    record.fft_windows = Some(outcome.summary.n_windows);
    record.fft_sequences = Some(outcome.summary.n_sequences);
    global.fft = Some(outcome.summary);
    local.fft_seq_start = outcome.seq_start;
    local.fft_features = Some(outcome.features);
    local.fft_window_start = outcome.window_start;
    local.fft_period3 = Some(outcome.period3);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Alphabet;
    use embsolve_comm::SerialComm;

    #[test]
    fn serial_analysis_matches_window_by_window_kernels() {
        let lengths = [500u64, 100, 1000, 0, 240];
        let total: u64 = lengths.iter().sum();
        let tokens: Vec<u8> = (0..total).map(|i| ((i * 31 + i / 7) % 5) as u8).collect();
        let params = FftSection {
            enabled: true,
            tracks: String::new(),
            alphabet: Alphabet::Dna,
            window: 96,
            step: 40,
            bins: 8,
        };
        let outcome = analyse(
            &SerialComm,
            &lengths,
            ChannelMap::DnaIndicators,
            &params,
            |span| Ok(tokens[span.start as usize..span.end as usize].to_vec()),
        )
        .unwrap();
        // 500 -> 11 windows, 100 -> 1, 1000 -> 23, 240 -> 4.
        assert_eq!(outcome.summary.n_windows, 11 + 1 + 23 + 4);
        assert_eq!(outcome.period3.len(), 39);
        assert_eq!(outcome.period3[11], (1, 0, outcome.period3[11].2));
        assert_eq!(outcome.period3[12].0, 2);
        assert_eq!(outcome.features.dim(), (5, 8));
        assert!(outcome.features.row(3).iter().all(|v| v.is_nan()));
        assert_eq!(outcome.summary.score_counts.iter().sum::<u64>(), 39);
        // Sequence 1 has one window: its feature row is ln of that window's band means.
        let shape = SpectrumShape::new(96, 8);
        let naive = embsolve_kernels::reference::window_power_spectrum(
            &tokens[500..596],
            ChannelMap::DnaIndicators,
        );
        for (b, &(lo, hi)) in shape.bands.iter().enumerate() {
            let mean = naive[lo..hi].iter().sum::<f64>() / (hi - lo) as f64;
            let fast = f64::from(outcome.features[[1, b]]);
            assert!(
                (fast - mean.ln()).abs() < 1e-4,
                "band {b}: {fast} vs {}",
                mean.ln()
            );
        }
        let score = embsolve_kernels::reference::period3_score(&naive, shape.period3_bin);
        assert!((f64::from(outcome.period3[11].2) - score).abs() < 1e-4 * score.max(1.0));
    }
}
