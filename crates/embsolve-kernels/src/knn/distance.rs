//! The canonical distances: products (or squared differences) summed in one fixed order, so a
//! distance has the same bits on every CPU, SIMD width, tile and rank (the `knn` module doc says
//! why the lists then depend on nothing else).

use crate::simd::Features;
use crate::types::Metric;

/// Running sums of the canonical dot product (and of the squared distance).
const LANES: usize = 32;

/// The canonical dot product: 32 running sums (`acc[l]` takes elements `i ≡ l mod 32` in order),
/// separate multiply and add (never fused), then a fixed pairwise reduction tree. Same bits on
/// every CPU and SIMD width; AVX2 only makes it faster.
#[inline]
pub fn canonical_dot(a: &[f32], b: &[f32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if a.len() >= LANES && Features::detect().avx2() {
        // SAFETY: the CPU reports AVX2 (`Features::detect`).
        return unsafe { canonical_avx2::<false>(a, b) };
    }
    canonical_portable::<false>(a, b)
}

/// The canonical squared Euclidean distance, in the same order as [`canonical_dot`].
#[inline]
pub fn canonical_sq_distance(a: &[f32], b: &[f32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if a.len() >= LANES && Features::detect().avx2() {
        // SAFETY: the CPU reports AVX2 (`Features::detect`).
        return unsafe { canonical_avx2::<true>(a, b) };
    }
    canonical_portable::<true>(a, b)
}

/// The canonical sums with four 8-wide AVX registers: register `v` lane `j` is running sum
/// `8 v + j`, so every sum sees the same terms in the same order as in `canonical_portable`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn canonical_avx2<const DIFFERENCE: bool>(a: &[f32], b: &[f32]) -> f32 {
    use std::arch::x86_64::*;
    debug_assert_eq!(a.len(), b.len());
    let split = a.len() - a.len() % LANES;
    let mut acc = [_mm256_setzero_ps(); LANES / 8];
    let mut offset = 0;
    while offset < split {
        for (v, sum) in acc.iter_mut().enumerate() {
            // SAFETY: offset + 8 v + 8 <= split <= len of both slices.
            let x = _mm256_loadu_ps(a.as_ptr().add(offset + 8 * v));
            let y = _mm256_loadu_ps(b.as_ptr().add(offset + 8 * v));
            let term = if DIFFERENCE {
                let d = _mm256_sub_ps(x, y);
                _mm256_mul_ps(d, d)
            } else {
                _mm256_mul_ps(x, y)
            };
            *sum = _mm256_add_ps(*sum, term);
        }
        offset += LANES;
    }
    let mut sums = [0.0f32; LANES];
    for (v, sum) in acc.iter().enumerate() {
        _mm256_storeu_ps(sums.as_mut_ptr().add(8 * v), *sum);
    }
    finish_canonical::<DIFFERENCE>(&mut sums, &a[split..], &b[split..])
}

/// The tail (fewer than 32 elements) into the first running sums, then the fixed tree.
#[inline(always)]
fn finish_canonical<const DIFFERENCE: bool>(
    acc: &mut [f32; LANES],
    a_tail: &[f32],
    b_tail: &[f32],
) -> f32 {
    for (lane, (x, y)) in a_tail.iter().zip(b_tail).enumerate() {
        acc[lane] += if DIFFERENCE { (x - y) * (x - y) } else { x * y };
    }
    // Pairwise tree: lane l takes lane l + width, halving the width.
    let mut width = LANES / 2;
    while width > 0 {
        for lane in 0..width {
            acc[lane] += acc[lane + width];
        }
        width /= 2;
    }
    acc[0]
}

/// Products (or squared differences) summed in the canonical order.
#[inline(always)]
fn canonical_portable<const DIFFERENCE: bool>(a: &[f32], b: &[f32]) -> f32 {
    debug_assert_eq!(a.len(), b.len());
    let term = |x: f32, y: f32| {
        if DIFFERENCE {
            (x - y) * (x - y)
        } else {
            x * y
        }
    };
    let mut acc = [0.0f32; LANES];
    let split = a.len() - a.len() % LANES;
    for (ca, cb) in a[..split]
        .chunks_exact(LANES)
        .zip(b[..split].chunks_exact(LANES))
    {
        let ca: &[f32; LANES] = ca.try_into().expect("chunk length");
        let cb: &[f32; LANES] = cb.try_into().expect("chunk length");
        for lane in 0..LANES {
            acc[lane] += term(ca[lane], cb[lane]);
        }
    }
    finish_canonical::<DIFFERENCE>(&mut acc, &a[split..], &b[split..])
}

/// The distance stored in the lists (SPEC: `1 - cosine`, Euclidean distance, `-dot`).
#[inline]
pub fn exact_distance(metric: Metric, a: &[f32], b: &[f32]) -> f32 {
    match metric {
        Metric::Cosine => 1.0 - canonical_dot(a, b),
        // `+ 0.0` turns the -0.0 of a zero dot product into 0.0.
        Metric::Ip => -canonical_dot(a, b) + 0.0,
        Metric::L2 => canonical_sq_distance(a, b).sqrt(),
    }
}

/// `|row|^2`, in the canonical order.
#[inline]
pub(super) fn sum_sq(row: &[f32]) -> f32 {
    canonical_dot(row, row)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn canonical_dot_is_close_to_the_f64_dot() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        for dim in [1usize, 7, 8, 13, 128, 300] {
            let a: Vec<f32> = (0..dim).map(|_| rng.gen_range(-1.0..1.0)).collect();
            let b: Vec<f32> = (0..dim).map(|_| rng.gen_range(-1.0..1.0)).collect();
            let exact: f64 = a.iter().zip(&b).map(|(x, y)| *x as f64 * *y as f64).sum();
            let bound: f64 = a
                .iter()
                .zip(&b)
                .map(|(x, y)| (*x as f64 * *y as f64).abs())
                .sum();
            let tolerance = dim as f64 * f64::from(f32::EPSILON) * bound + 1e-30;
            assert!(
                (canonical_dot(&a, &b) as f64 - exact).abs() <= tolerance,
                "dim {dim}"
            );
            let sq: f64 = a
                .iter()
                .zip(&b)
                .map(|(x, y)| (*x as f64 - *y as f64).powi(2))
                .sum();
            let got = canonical_sq_distance(&a, &b) as f64;
            assert!(
                (got - sq).abs() <= dim as f64 * 4.0 * f64::from(f32::EPSILON) * sq,
                "dim {dim}"
            );
        }
    }

    #[test]
    fn simd_and_portable_canonical_sums_have_the_same_bits() {
        let mut rng = ChaCha8Rng::seed_from_u64(9);
        for dim in [1usize, 5, 31, 32, 33, 64, 100, 128, 301] {
            for _ in 0..20 {
                let a: Vec<f32> = (0..dim).map(|_| rng.gen_range(-3.0..3.0)).collect();
                let b: Vec<f32> = (0..dim).map(|_| rng.gen_range(-3.0..3.0)).collect();
                let dot = canonical_portable::<false>(&a, &b);
                let sq = canonical_portable::<true>(&a, &b);
                assert_eq!(canonical_dot(&a, &b).to_bits(), dot.to_bits(), "dim {dim}");
                assert_eq!(
                    canonical_sq_distance(&a, &b).to_bits(),
                    sq.to_bits(),
                    "dim {dim}"
                );
            }
        }
    }
}
