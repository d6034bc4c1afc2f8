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
#[inline]
pub fn to_fixed(value: f64) -> i128 {
    (value * SCALE) as i128
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
