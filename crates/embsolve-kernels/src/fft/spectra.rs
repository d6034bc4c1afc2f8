//! The batched "windows -> power spectra" computation, behind the `PowerSpectra` trait so a GPU
//! engine (batched cuFFT R2C plans) can replace the CPU one. The CPU engine plans one real FFT per
//! window length (realfft), gives every rayon task its own input/output/scratch buffers, and
//! writes one power spectrum per window. DNA windows without N take three transforms: the four
//! indicators sum to 1, so the T spectrum is minus the sum of the others at every k >= 1.

use super::{ChannelMap, SpectrumShape};
use crate::error::Result;
use rayon::prelude::*;
use realfft::num_complex::Complex;
use realfft::{RealFftPlanner, RealToComplex};
use std::sync::Arc;

/// Windows of a token span -> power spectra. For window w (tokens `tokens[starts[w]..][..window]`)
/// the engine writes `power[w*n_freqs..(w+1)*n_freqs]`: for k = 1..=window/2,
/// `sum over channels |DFT_k(channel values)|^2 / window`, and 0 at k = 0 (the window mean of every
/// channel is removed, which only changes the DC bin). Every engine must give the same values to
/// single-precision rounding.
pub trait PowerSpectra {
    fn name(&self) -> &'static str;
    fn shape(&self) -> &SpectrumShape;
    /// Fill `power` (`starts.len() * n_freqs`) for the windows starting at `starts` in `tokens`.
    fn compute(&mut self, tokens: &[u8], starts: &[usize], power: &mut [f32]) -> Result<()>;
}

/// Windows handed to one rayon task at a time (each task reuses its buffers for all of them).
const WINDOWS_PER_TASK: usize = 64;

/// The CPU engine: realfft planned once, rayon over windows.
pub struct CpuPowerSpectra {
    map: ChannelMap,
    shape: SpectrumShape,
    fft: Arc<dyn RealToComplex<f32>>,
}

/// One task's buffers: a real input and a complex output per channel, and the FFT scratch.
struct Buffers {
    inputs: Vec<Vec<f32>>,
    outputs: Vec<Vec<Complex<f32>>>,
    scratch: Vec<Complex<f32>>,
}

impl CpuPowerSpectra {
    pub fn new(map: ChannelMap, shape: SpectrumShape) -> Self {
        let fft = RealFftPlanner::<f32>::new().plan_fft_forward(shape.window);
        CpuPowerSpectra { map, shape, fft }
    }

    fn buffers(&self) -> Buffers {
        Buffers {
            inputs: (0..self.map.n_channels())
                .map(|_| self.fft.make_input_vec())
                .collect(),
            outputs: (0..self.map.n_channels())
                .map(|_| self.fft.make_output_vec())
                .collect(),
            scratch: self.fft.make_scratch_vec(),
        }
    }

    /// The power spectrum of one window into `out` (`n_freqs` values).
    fn window(&self, window_tokens: &[u8], buffers: &mut Buffers, out: &mut [f32]) {
        let Buffers {
            inputs,
            outputs,
            scratch,
        } = buffers;
        let mut transforms = inputs.len();
        match self.map {
            ChannelMap::DnaIndicators => {
                let [a, c, g, t] = &mut inputs[..] else {
                    unreachable!("the DNA map has four channels")
                };
                let mut any_other = false;
                let channels = a
                    .iter_mut()
                    .zip(c.iter_mut())
                    .zip(g.iter_mut().zip(t.iter_mut()));
                for (&token, ((a, c), (g, t))) in window_tokens.iter().zip(channels) {
                    *a = f32::from(token == 0);
                    *c = f32::from(token == 1);
                    *g = f32::from(token == 2);
                    *t = f32::from(token == 3);
                    any_other |= token > 3;
                }
                // Without N the channels sum to 1, whose DFT is 0 at k >= 1: X_T = -(X_A+X_C+X_G).
                if !any_other {
                    transforms = 3;
                }
            }
            ChannelMap::ProteinHydropathy => {
                for (x, &token) in inputs[0].iter_mut().zip(window_tokens) {
                    *x = self.map.value(0, token);
                }
            }
        }
        for (input, output) in inputs.iter_mut().zip(outputs.iter_mut()).take(transforms) {
            self.fft
                .process_with_scratch(input, output, scratch)
                .expect("buffers are sized by the plan");
        }
        let scale = 1.0 / self.shape.window as f32;
        if transforms < inputs.len() {
            let [a, c, g] = &outputs[..3] else {
                unreachable!("three transforms")
            };
            for (p, (za, (zc, zg))) in out.iter_mut().zip(a.iter().zip(c.iter().zip(g))) {
                let zt = za + zc + zg;
                *p = (za.norm_sqr() + zc.norm_sqr() + zg.norm_sqr() + zt.norm_sqr()) * scale;
            }
        } else {
            for (k, p) in out.iter_mut().enumerate() {
                let sum: f32 = outputs[..transforms].iter().map(|o| o[k].norm_sqr()).sum();
                *p = sum * scale;
            }
        }
        out[0] = 0.0;
    }
}

impl PowerSpectra for CpuPowerSpectra {
    fn name(&self) -> &'static str {
        "cpu"
    }

    fn shape(&self) -> &SpectrumShape {
        &self.shape
    }

    fn compute(&mut self, tokens: &[u8], starts: &[usize], power: &mut [f32]) -> Result<()> {
        let n_freqs = self.shape.n_freqs;
        let window = self.shape.window;
        assert_eq!(power.len(), starts.len() * n_freqs, "power buffer size");
        let engine = &*self;
        starts
            .par_chunks(WINDOWS_PER_TASK)
            .zip(power.par_chunks_mut(WINDOWS_PER_TASK * n_freqs))
            .for_each_init(
                || engine.buffers(),
                |buffers, (chunk_starts, chunk_power)| {
                    for (&start, out) in chunk_starts.iter().zip(chunk_power.chunks_mut(n_freqs)) {
                        engine.window(&tokens[start..start + window], buffers, out);
                    }
                },
            );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reference;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    fn check_against_naive(map: ChannelMap, window: usize, n_tokens: usize, seed: u64) {
        check_tokens_against_naive(map, window, n_tokens, seed, map.max_token());
    }

    fn check_tokens_against_naive(
        map: ChannelMap,
        window: usize,
        n_tokens: usize,
        seed: u64,
        max_token: u8,
    ) {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let tokens: Vec<u8> = (0..n_tokens)
            .map(|_| rng.gen_range(0..=max_token))
            .collect();
        let shape = SpectrumShape::new(window, 8.min(window / 2));
        let n_freqs = shape.n_freqs;
        let starts: Vec<usize> = (0..=n_tokens - window).step_by(window / 3 + 1).collect();
        let mut power = vec![f32::NAN; starts.len() * n_freqs];
        let mut engine = CpuPowerSpectra::new(map, shape);
        engine.compute(&tokens, &starts, &mut power).unwrap();
        for (w, &start) in starts.iter().enumerate() {
            let naive = reference::window_power_spectrum(&tokens[start..start + window], map);
            let largest = naive.iter().cloned().fold(0.0, f64::max);
            for (k, (&fast, &slow)) in power[w * n_freqs..(w + 1) * n_freqs]
                .iter()
                .zip(&naive)
                .enumerate()
            {
                let error = (f64::from(fast) - slow).abs() / largest;
                assert!(
                    error <= 1e-4,
                    "{map:?} window {window} start {start} bin {k}: {fast} vs {slow}"
                );
            }
        }
    }

    #[test]
    fn dna_spectra_match_the_naive_dft() {
        for (window, seed) in [(240, 1), (96, 2), (101, 3), (8, 4)] {
            check_against_naive(ChannelMap::DnaIndicators, window, 2000, seed);
        }
    }

    #[test]
    fn dna_spectra_without_n_match_the_naive_dft() {
        // No token 4: the engine derives the T channel from A, C and G.
        for (window, seed) in [(240, 7), (99, 8)] {
            check_tokens_against_naive(ChannelMap::DnaIndicators, window, 2000, seed, 3);
        }
    }

    #[test]
    fn protein_spectra_match_the_naive_dft() {
        for (window, seed) in [(120, 5), (63, 6)] {
            check_against_naive(ChannelMap::ProteinHydropathy, window, 1000, seed);
        }
    }

    #[test]
    fn a_pure_period_three_signal_puts_its_power_at_one_third() {
        let tokens: Vec<u8> = (0..240).map(|i| [0u8, 1, 2][i % 3]).collect();
        let shape = SpectrumShape::new(240, 4);
        let mut power = vec![0.0; shape.n_freqs];
        let mut engine = CpuPowerSpectra::new(ChannelMap::DnaIndicators, shape.clone());
        engine.compute(&tokens, &[0], &mut power).unwrap();
        let score = super::super::period3_score(&power, &shape);
        // All non-DC power sits at bin 80: the score is n_freqs - 1 = 120.
        assert!((score - 120.0).abs() < 1e-3, "score {score}");
    }
}
