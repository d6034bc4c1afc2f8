//! The candidate scans of the fused selection: the first GEMM key of a tile row that passes a
//! threshold (the row side), or that passes its own column's threshold (the column side of the
//! symmetric pass). Each kernel is compiled for the baseline target and with AVX2 and chosen by
//! [`Features`] (`crate::simd`); both give the same answer.

use crate::simd::{self, Features};

/// Keys compared per filter step in the fused selection.
const SCAN_CHUNK: usize = 32;

/// First position `>= from` whose key (`keys[j]`, minus `offsets[j]` for l2) is `>= threshold`.
/// Compares 32 keys per step; uses AVX2 when `features` has it (same answer either way).
#[inline]
pub(super) fn next_candidate(
    keys: &[f32],
    offsets: Option<&[f32]>,
    from: usize,
    threshold: f32,
    features: Features,
) -> Option<usize> {
    match offsets {
        Some(offsets) => scan_row::<true>(features, keys, offsets, from, threshold),
        None => scan_row::<false>(features, keys, keys, from, threshold),
    }
}

simd::dispatch! {
    /// [`next_candidate`] with the l2 offsets (`L2`) or without (`offsets` unused).
    #[inline(always)]
    fn scan_row<const L2: bool>(
        keys: &[f32],
        offsets: &[f32],
        from: usize,
        threshold: f32,
    ) -> Option<usize> {
        let key = |j: usize| {
            if L2 {
                keys[j] - offsets[j]
            } else {
                keys[j]
            }
        };
        let n = keys.len();
        let mut start = from;
        while start + SCAN_CHUNK <= n {
            let chunk: &[f32; SCAN_CHUNK] = keys[start..start + SCAN_CHUNK]
                .try_into()
                .expect("chunk length");
            let hit = if L2 {
                let offset: &[f32; SCAN_CHUNK] = offsets[start..start + SCAN_CHUNK]
                    .try_into()
                    .expect("chunk length");
                let mut hit = false;
                for j in 0..SCAN_CHUNK {
                    hit |= chunk[j] - offset[j] >= threshold;
                }
                hit
            } else {
                let mut hit = false;
                for value in chunk {
                    hit |= *value >= threshold;
                }
                hit
            };
            if hit {
                return (start..start + SCAN_CHUNK).find(|&j| key(j) >= threshold);
            }
            start += SCAN_CHUNK;
        }
        (start..n).find(|&j| key(j) >= threshold)
    }
}

/// Column side of the symmetric pass: the first position `j >= from` whose key (`keys[j]`, minus
/// the row's `offset` for l2) is `>= thresholds[j]`. Compares 32 keys with 32 thresholds per
/// step; uses AVX2 when `features` has it (same answer either way).
#[inline]
pub(super) fn next_column_candidate(
    keys: &[f32],
    offset: Option<f32>,
    thresholds: &[f32],
    from: usize,
    features: Features,
) -> Option<usize> {
    let thresholds = &thresholds[..keys.len()];
    match offset {
        Some(offset) => scan_columns::<true>(features, keys, offset, thresholds, from),
        None => scan_columns::<false>(features, keys, 0.0, thresholds, from),
    }
}

simd::dispatch! {
    /// [`next_column_candidate`] with the row's l2 offset (`L2`) or without (`offset` unused).
    #[inline(always)]
    fn scan_columns<const L2: bool>(
        keys: &[f32],
        offset: f32,
        thresholds: &[f32],
        from: usize,
    ) -> Option<usize> {
        let key = |value: f32| if L2 { value - offset } else { value };
        let passes = |j: usize| key(keys[j]) >= thresholds[j];
        let n = keys.len();
        let mut start = from;
        while start + SCAN_CHUNK <= n {
            let chunk: &[f32; SCAN_CHUNK] = keys[start..start + SCAN_CHUNK]
                .try_into()
                .expect("chunk length");
            let limits: &[f32; SCAN_CHUNK] = thresholds[start..start + SCAN_CHUNK]
                .try_into()
                .expect("chunk length");
            let mut hit = false;
            for j in 0..SCAN_CHUNK {
                hit |= key(chunk[j]) >= limits[j];
            }
            if hit {
                return (start..start + SCAN_CHUNK).find(|&j| passes(j));
            }
            start += SCAN_CHUNK;
        }
        (start..n).find(|&j| passes(j))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn column_scan_simd_and_portable_agree() {
        let mut rng = ChaCha8Rng::seed_from_u64(61);
        for n in [1usize, 31, 32, 33, 95, 256] {
            for _ in 0..50 {
                let mut keys: Vec<f32> = (0..n).map(|_| rng.gen_range(-1.0..1.0)).collect();
                let thresholds: Vec<f32> = (0..n)
                    .map(|_| match rng.gen_range(0..10) {
                        0 => f32::NEG_INFINITY,
                        _ => rng.gen_range(0.5..1.2),
                    })
                    .collect();
                keys[rng.gen_range(0..n)] = f32::NAN;
                let offset = rng.gen_range(-0.3f32..0.3);
                for with_offset in [None, Some(offset)] {
                    let mut from = 0;
                    let mut simd_hits = Vec::new();
                    while let Some(j) = next_column_candidate(
                        &keys,
                        with_offset,
                        &thresholds,
                        from,
                        Features::detect(),
                    ) {
                        simd_hits.push(j);
                        from = j + 1;
                    }
                    let want: Vec<usize> = (0..n)
                        .filter(|&j| keys[j] - with_offset.unwrap_or(0.0) >= thresholds[j])
                        .collect();
                    let portable: Vec<usize> = (0..n)
                        .filter(|&j| {
                            next_column_candidate(
                                &keys,
                                with_offset,
                                &thresholds,
                                j,
                                Features::baseline(),
                            ) == Some(j)
                        })
                        .collect();
                    assert_eq!(simd_hits, want, "n={n} offset {with_offset:?}");
                    assert_eq!(portable, want, "n={n} offset {with_offset:?}");
                }
            }
        }
    }
}
