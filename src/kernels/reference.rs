//! Naive reference implementations: the oracles unit tests compare the fast kernels against.

// ---- FFT oracles: naive DFT power spectrum and period-3 score ----

use crate::kernels::fft::ChannelMap;

/// Power spectrum of one window by the naive O(n^2) DFT in f64: for k = 1..=n/2,
/// `sum over channels |sum_j x_c[j] e^{-2 pi i jk/n}|^2 / n`, and 0 at k = 0.
pub fn window_power_spectrum(tokens: &[u8], map: ChannelMap) -> Vec<f64> {
    let n = tokens.len();
    let mut power = vec![0.0; n / 2 + 1];
    for channel in 0..map.n_channels() {
        let x: Vec<f64> = tokens
            .iter()
            .map(|&t| f64::from(map.value(channel, t)))
            .collect();
        for (k, p) in power.iter_mut().enumerate().skip(1) {
            let (mut re, mut im) = (0.0, 0.0);
            for (j, &v) in x.iter().enumerate() {
                let angle = -2.0 * std::f64::consts::PI * ((j * k) % n) as f64 / n as f64;
                re += v * angle.cos();
                im += v * angle.sin();
            }
            *p += (re * re + im * im) / n as f64;
        }
    }
    power
}

/// Period-3 score of a naive power spectrum: power at `period3_bin` over the mean non-DC power.
pub fn period3_score(power: &[f64], period3_bin: usize) -> f64 {
    let mean = power[1..].iter().sum::<f64>() / (power.len() - 1) as f64;
    if mean > 0.0 {
        power[period3_bin] / mean
    } else {
        0.0
    }
}
