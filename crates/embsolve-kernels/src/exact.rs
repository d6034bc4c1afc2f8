//! Order-independent sums: values are accumulated as 128-bit fixed point (resolution 2^-64,
//! range +-2^63), so a reduction gives the same bits whatever the rank or thread count. Used where
//! results must not depend on the number of ranks (means, covariances, k-means centroids, Lanczos
//! dot products).

/// Fixed-point scale: one unit is 2^-64.
const SCALE: f64 = 18446744073709551616.0; // 2^64

/// An exact, associative accumulator of f64 values (each rounded toward zero to 2^-64).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExactSum(pub i128);

impl ExactSum {
    #[inline]
    pub fn add(&mut self, value: f64) {
        self.0 = self.0.wrapping_add(to_fixed(value));
    }

    #[inline]
    pub fn merge(&mut self, other: ExactSum) {
        self.0 = self.0.wrapping_add(other.0);
    }

    pub fn value(&self) -> f64 {
        self.0 as f64 / SCALE
    }
}

/// `value` in units of 2^-64, truncated toward zero. Values beyond +-2^63 saturate (callers keep
/// sums far below that: embeddings, unit vectors, probabilities).
///
/// Computed with two cheap i64 conversions where the value allows (exact: the fraction of an f64
/// is an f64), else with one to i128 (a slow library call on x86-64).
#[inline(always)]
pub fn to_fixed(value: f64) -> i128 {
    let high = value * (1u64 << (64 - LOW_BITS)) as f64;
    if high.abs() < (1u64 << 62) as f64 {
        let high_int = high as i64;
        let low = ((high - high_int as f64) * (1u64 << LOW_BITS) as f64) as i64;
        ((high_int as i128) << LOW_BITS) + low as i128
    } else {
        (value * SCALE) as i128
    }
}

/// Bits of the low part in `to_fixed`.
const LOW_BITS: i32 = 40;

/// Rounding constants of `GridSum`: adding and subtracting `GRID_HIGH` rounds a term of magnitude
/// at most 2 to a multiple of 2^-32 (the ulp of 1.5 * 2^20), `GRID_LOW` rounds the rest (below
/// 2^-33) to a multiple of 2^-64 (the ulp of 1.5 * 2^-12).
const GRID_HIGH: f64 = 1572864.0; // 1.5 * 2^20
const GRID_LOW: f64 = 0.0003662109375; // 1.5 * 2^-12

/// Most terms one `GridSum` may take and stay exact (the high sum needs 49 bits, the low 47).
pub const GRID_SUM_TERMS: usize = 1 << 16;

/// A term of magnitude at most 2 as (multiple of 2^-32, multiple of 2^-64); see `GridSum`.
#[inline(always)]
pub fn grid_split(term: f64) -> (f64, f64) {
    debug_assert!(
        term.abs() <= 2.0 || term.is_nan(),
        "GridSum term {term} exceeds 2"
    );
    let high = (term + GRID_HIGH) - GRID_HIGH;
    let low = ((term - high) + GRID_LOW) - GRID_LOW;
    (high, low)
}

/// A fast exact block accumulator for terms of magnitude at most 2 (products of unit-vector
/// entries and data scaled by a power of two to at most 1).
/// Each term is split into a multiple of 2^-32 and a multiple of 2^-64 (the rest, below 2^-65, is
/// dropped, as `to_fixed` drops it, so the rounding depends only on the term); plain f64 sums of
/// such grid values are exact for up to `GRID_SUM_TERMS` terms, so the block total is independent
/// of the order of the terms. `exact()` turns it into an `ExactSum` (exactly) for the reduction
/// across blocks, threads and ranks. It needs only f64 adds, which vectorise, where
/// `ExactSum::add` converts each term to 128-bit fixed point.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct GridSum {
    high: f64,
    low: f64,
}

impl GridSum {
    #[inline(always)]
    pub fn add(&mut self, term: f64) {
        let (high, low) = grid_split(term);
        self.high += high;
        self.low += low;
    }

    /// A block sum from separately accumulated parts of `grid_split` (for kernels that keep the
    /// parts in separate arrays, which vectorises better).
    pub fn from_parts(high: f64, low: f64) -> Self {
        GridSum { high, low }
    }

    /// The block total as a fixed-point sum (exact: both parts lie on the 2^-64 grid).
    pub fn exact(&self) -> ExactSum {
        ExactSum(to_fixed(self.high).wrapping_add(to_fixed(self.low)))
    }
}

/// Exact dot product of two slices.
pub fn dot(a: &[f64], b: &[f64]) -> ExactSum {
    let mut acc = ExactSum::default();
    for (x, y) in a.iter().zip(b) {
        acc.add(x * y);
    }
    acc
}

/// Split into three limbs of 43, 43 and 42 bits (two's complement), each summable in a u64 over
/// up to 2^20 ranks without overflow.
pub fn to_limbs(value: i128) -> [u64; 3] {
    let bits = value as u128;
    [
        (bits & ((1 << 43) - 1)) as u64,
        ((bits >> 43) & ((1 << 43) - 1)) as u64,
        (bits >> 86) as u64,
    ]
}

/// Inverse of `to_limbs` after limb-wise summation (wrapping, two's complement).
pub fn from_limbs(limbs: [u64; 3]) -> i128 {
    let total = (limbs[0] as u128)
        .wrapping_add((limbs[1] as u128) << 43)
        .wrapping_add((limbs[2] as u128) << 86);
    total as i128
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn to_fixed_matches_the_direct_conversion() {
        let direct = |value: f64| (value * SCALE) as i128;
        let mut state = 0x2545_F491_4F6C_DD1Du64;
        for i in 0..20_000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let unit = (state >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0;
            let value = unit * 10f64.powi(i % 60 - 40);
            assert_eq!(to_fixed(value), direct(value), "value {value}");
        }
        for value in [
            0.0,
            -0.0,
            1.0,
            -1.0,
            0.5,
            1e-25,
            -3e-19,
            5.4e-20,
            12345.678,
            -2e15,
            1e30,
            4e18,
            -9.2e18,
            f64::MAX,
            f64::MIN,
        ] {
            assert_eq!(to_fixed(value), direct(value), "value {value}");
        }
    }

    #[test]
    fn grid_sum_is_exact_and_block_independent() {
        // Terms over many magnitudes, with their exact fixed-point value (to 2^-64, rounded to
        // nearest per grid: within 2^-64 of truncation per term).
        let terms: Vec<f64> = (0..20_000u64)
            .map(|i| {
                let unit = ((i.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 11) as f64)
                    / (1u64 << 53) as f64
                    * 2.0
                    - 1.0;
                unit * 2f64.powi(-((i % 60) as i32))
            })
            .collect();
        let whole = {
            let mut acc = GridSum::default();
            terms.iter().for_each(|&t| acc.add(t));
            acc.exact()
        };
        for block in [1usize, 7, 512, 4096] {
            let mut total = ExactSum::default();
            for chunk in terms.rchunks(block) {
                let mut acc = GridSum::default();
                chunk.iter().for_each(|&t| acc.add(t));
                total.merge(acc.exact());
            }
            assert_eq!(total, whole, "blocks of {block}");
        }
        let fixed: i128 = terms.iter().map(|&t| to_fixed(t)).sum();
        assert!((whole.0 - fixed).abs() <= terms.len() as i128 * 2);
        let plain: f64 = terms.iter().sum();
        assert!((whole.value() - plain).abs() < 1e-12);
    }

    #[test]
    fn sum_is_order_independent_and_limbs_round_trip() {
        let values: Vec<f64> = (0..1000)
            .map(|i| ((i * 7919) % 1000) as f64 * 1e-3 - 0.37)
            .collect();
        let mut forward = ExactSum::default();
        values.iter().for_each(|&v| forward.add(v));
        let mut backward = ExactSum::default();
        values.iter().rev().for_each(|&v| backward.add(v));
        assert_eq!(forward, backward);
        let naive: f64 = values.iter().sum();
        assert!((forward.value() - naive).abs() < 1e-9);
        for v in [0i128, 1, -1, i128::MAX / 3, -(1i128 << 100), forward.0] {
            assert_eq!(from_limbs(to_limbs(v)), v);
        }
        // Limb-wise sums of several parts recombine to the total.
        let parts = [ExactSum(5 << 90), ExactSum(-(3 << 50)), ExactSum(-7)];
        let mut limbs = [0u64; 3];
        for p in parts {
            for (l, x) in limbs.iter_mut().zip(to_limbs(p.0)) {
                *l += x;
            }
        }
        assert_eq!(from_limbs(limbs), (5i128 << 90) - (3 << 50) - 7);
    }
}
