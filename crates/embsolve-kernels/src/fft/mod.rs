//! Windowed spectral analysis of token tracks: channel maps (tokens -> numeric signals), the
//! spectrum shape of one window length, the period-3 score, band pooling, and the plan that splits
//! windows and sequences over ranks. `spectra` holds the batched "windows -> power spectra"
//! engine (the seam a GPU backend replaces).

pub mod plan;
pub mod spectra;

use crate::types::Alphabet;

/// DNA tokens: A=0 C=1 G=2 T=3; anything else (N) is 4 and belongs to no channel.
pub const DNA_OTHER: u8 = 4;
/// Protein tokens: the 20 amino acids in the order ACDEFGHIKLMNPQRSTVWY; anything else is 20.
pub const PROTEIN_OTHER: u8 = 20;

/// Kyte-Doolittle hydropathy of the protein tokens (ACDEFGHIKLMNPQRSTVWY, then "other" = 0).
pub const KYTE_DOOLITTLE: [f32; 21] = [
    1.8, 2.5, -3.5, -3.5, 2.8, -0.4, -3.2, 4.5, -3.9, 3.8, 1.9, -3.5, -1.6, -3.5, -4.5, -0.8, -0.7,
    4.2, -0.9, -1.3, 0.0,
];

/// How tokens become numeric channels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChannelMap {
    /// Four indicator channels (A, C, G, T); token 4 (N) contributes to none.
    DnaIndicators,
    /// One channel: Kyte-Doolittle hydropathy per residue; "other" is 0.
    ProteinHydropathy,
}

impl ChannelMap {
    pub fn for_alphabet(alphabet: Alphabet) -> Self {
        match alphabet {
            Alphabet::Dna => ChannelMap::DnaIndicators,
            Alphabet::Protein => ChannelMap::ProteinHydropathy,
        }
    }

    pub fn n_channels(self) -> usize {
        match self {
            ChannelMap::DnaIndicators => 4,
            ChannelMap::ProteinHydropathy => 1,
        }
    }

    /// The largest valid token (the "other" token).
    pub fn max_token(self) -> u8 {
        match self {
            ChannelMap::DnaIndicators => DNA_OTHER,
            ChannelMap::ProteinHydropathy => PROTEIN_OTHER,
        }
    }

    /// Value of `token` in `channel`.
    #[inline]
    pub fn value(self, channel: usize, token: u8) -> f32 {
        match self {
            ChannelMap::DnaIndicators => f32::from(usize::from(token) == channel),
            ChannelMap::ProteinHydropathy => KYTE_DOOLITTLE[usize::from(token.min(PROTEIN_OTHER))],
        }
    }
}

/// The spectrum of one window length: `n_freqs = window/2 + 1` frequencies, the bin of frequency
/// 1/3 (exact when `window` is a multiple of 3, else the nearest bin), and the `bins` bands the
/// non-zero frequencies 1..=window/2 are pooled into (with `m = window/2`, band b holds frequencies
/// `1 + b*m/bins .. 1 + (b+1)*m/bins`; the DC bin, 0 by construction, is in none).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpectrumShape {
    pub window: usize,
    pub n_freqs: usize,
    pub period3_bin: usize,
    pub bands: Vec<(usize, usize)>,
}

impl SpectrumShape {
    /// `window >= 3` and `1 <= bins <= window/2` (checked by the config).
    pub fn new(window: usize, bins: usize) -> Self {
        assert!(window >= 3, "window must be at least 3");
        let n_freqs = window / 2 + 1;
        let n_nonzero = n_freqs - 1;
        assert!(
            bins >= 1 && bins <= n_nonzero,
            "bins must be in 1..=window/2"
        );
        let bands = (0..bins)
            .map(|b| (1 + b * n_nonzero / bins, 1 + (b + 1) * n_nonzero / bins))
            .collect();
        SpectrumShape {
            window,
            n_freqs,
            period3_bin: (window + 1) / 3,
            bands,
        }
    }

    pub fn bins(&self) -> usize {
        self.bands.len()
    }
}

/// Period-3 score of one power spectrum (`n_freqs` values, DC = 0): the power at frequency 1/3
/// divided by the mean power over the non-zero frequencies 1..=window/2. A window without any
/// non-zero-frequency power (constant signal) scores 0.
#[inline]
pub fn period3_score(power: &[f32], shape: &SpectrumShape) -> f32 {
    let total: f64 = power[1..].iter().map(|&p| f64::from(p)).sum();
    let mean = total / (shape.n_freqs - 1) as f64;
    if mean > 0.0 {
        (f64::from(power[shape.period3_bin]) / mean) as f32
    } else {
        0.0
    }
}

/// Mean power of each band of one power spectrum, written to `bands` (length `shape.bins()`).
#[inline]
pub fn pool_bands(power: &[f32], shape: &SpectrumShape, bands: &mut [f64]) {
    for (out, &(lo, hi)) in bands.iter_mut().zip(&shape.bands) {
        let sum: f64 = power[lo..hi].iter().map(|&p| f64::from(p)).sum();
        *out = sum / (hi - lo) as f64;
    }
}

/// Number of windows of a sequence of `length` tokens: starts 0, step, 2*step, ... while
/// `start + window <= length`.
#[inline]
pub fn n_windows(length: u64, window: usize, step: usize) -> u64 {
    if length < window as u64 {
        0
    } else {
        (length - window as u64) / step as u64 + 1
    }
}

/// Histogram of `scores` over `edges` (n+1 ascending edges; the last bin includes its right edge;
/// values outside are not counted).
pub fn histogram(scores: impl Iterator<Item = f32>, edges: &[f64], counts: &mut [u64]) {
    let n_bins = counts.len();
    if n_bins == 0 || edges.len() != n_bins + 1 {
        return;
    }
    let (lo, hi) = (edges[0], edges[n_bins]);
    let width = hi - lo;
    for score in scores {
        let s = f64::from(score);
        if !(s >= lo && s <= hi) {
            continue;
        }
        let bin = if width > 0.0 {
            (((s - lo) / width * n_bins as f64) as usize).min(n_bins - 1)
        } else {
            0
        };
        counts[bin] += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reference;

    #[test]
    fn score_and_bands_match_the_naive_dft() {
        let shape = SpectrumShape::new(240, 16);
        let tokens: Vec<u8> = (0..240u32).map(|i| ((i * 7 + i / 5) % 5) as u8).collect();
        let naive = reference::window_power_spectrum(&tokens, ChannelMap::DnaIndicators);
        let power: Vec<f32> = naive.iter().map(|&p| p as f32).collect();
        let score = period3_score(&power, &shape);
        let expected = reference::period3_score(&naive, shape.period3_bin);
        assert!((f64::from(score) - expected).abs() <= 1e-5 * expected.abs().max(1.0));
        let mut bands = vec![0.0; 16];
        pool_bands(&power, &shape, &mut bands);
        // Bands tile the non-zero frequencies: their weighted sum is the total power (DC is 0).
        let total: f64 = bands
            .iter()
            .zip(&shape.bands)
            .map(|(b, &(lo, hi))| b * (hi - lo) as f64)
            .sum();
        let naive_total: f64 = naive.iter().sum();
        assert!((total - naive_total).abs() <= 1e-4 * naive_total);
    }

    #[test]
    fn shapes_windows_and_histograms() {
        let shape = SpectrumShape::new(240, 120);
        assert_eq!(shape.period3_bin, 80);
        assert!(shape.bands.iter().all(|&(lo, hi)| hi == lo + 1));
        assert_eq!((shape.bands[0].0, shape.bands[119].1), (1, 121));
        // Uneven bands still tile 1..=window/2 without gaps, and none holds the DC bin.
        for (window, bins) in [(240, 64), (101, 7), (8, 4), (8, 1)] {
            let bands = SpectrumShape::new(window, bins).bands;
            assert_eq!(bands[0].0, 1, "window {window} bins {bins}");
            assert_eq!(
                bands[bins - 1].1,
                window / 2 + 1,
                "window {window} bins {bins}"
            );
            assert!(bands.windows(2).all(|pair| pair[0].1 == pair[1].0));
            assert!(bands.iter().all(|&(lo, hi)| hi > lo));
        }
        assert_eq!(SpectrumShape::new(100, 7).period3_bin, 33);
        assert_eq!(SpectrumShape::new(101, 7).period3_bin, 34);
        assert_eq!(n_windows(239, 240, 60), 0);
        assert_eq!(n_windows(240, 240, 60), 1);
        assert_eq!(n_windows(299, 240, 60), 1);
        assert_eq!(n_windows(300, 240, 60), 2);
        let mut counts = [0u64; 4];
        histogram(
            [0.0f32, 0.5, 1.0, 3.9, 4.0, 5.0, -1.0].into_iter(),
            &[0.0, 1.0, 2.0, 3.0, 4.0],
            &mut counts,
        );
        assert_eq!(counts, [2, 1, 0, 2]);
    }
}
