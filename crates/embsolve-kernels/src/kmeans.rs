//! k-means on rows distributed over ranks, written against `Reduce`: seeded k-means++ starts
//! (weighted sampling by exponential keys of (seed, global row), so the choice does not depend on
//! the rank count), Lloyd iterations with exact centroid sums, ties to the lower cluster id, and
//! labels renamed so cluster 0 holds the smallest global row, cluster 1 the next, and so on.
//! The labels are therefore identical for any rank or thread count.

use crate::exact::{to_fixed, ExactSum};
use crate::lanczos::hashed_uniform;
use crate::linop::Reduce;
use rayon::prelude::*;

/// Rows per parallel chunk.
const CHUNK_ROWS: usize = 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KmeansParams {
    pub n_clusters: usize,
    pub seed: u64,
    /// Independent k-means++ starts; the one with the smallest inertia wins (lower start on ties).
    pub n_init: usize,
    /// Most Lloyd iterations per start.
    pub max_iter: usize,
}

#[derive(Debug, Clone)]
pub struct KmeansOutcome {
    /// Canonical label of each local row.
    pub labels: Vec<u32>,
    /// Centroids in canonical label order, row-major (n_clusters x dim).
    pub centroids: Vec<f64>,
    /// Sum of squared distances to the assigned centroids.
    pub inertia: f64,
    /// Lloyd iterations of the winning start.
    pub iterations: usize,
}

/// Squared Euclidean distance, summed in four lanes (coordinate j into lane j mod 4, then
/// (l0 + l1) + (l2 + l3)): a fixed order that compiles to vector code.
#[inline]
fn distance2(a: &[f64], b: &[f64]) -> f64 {
    distance2_within(a, b, f64::INFINITY, true).expect("nothing exceeds infinity")
}

/// [`distance2`], or `None` as soon as the running sum shows it exceeds `bound` (or equals it,
/// unless `equal_counts`). The lanes only grow and rounding is monotone, so a running sum never
/// exceeds the final one: the answer is the same as comparing the full distance.
#[inline]
fn distance2_within(a: &[f64], b: &[f64], bound: f64, equal_counts: bool) -> Option<f64> {
    let mut lanes = [0.0f64; 4];
    let split = a.len() - a.len() % 4;
    let beyond = |lanes: &[f64; 4]| {
        let sum = (lanes[0] + lanes[1]) + (lanes[2] + lanes[3]);
        sum > bound || (sum == bound && !equal_counts)
    };
    for (x, y) in a[..split].chunks_exact(4).zip(b[..split].chunks_exact(4)) {
        for lane in 0..4 {
            let d = x[lane] - y[lane];
            lanes[lane] += d * d;
        }
        if beyond(&lanes) {
            return None;
        }
    }
    for (lane, (x, y)) in a[split..].iter().zip(&b[split..]).enumerate() {
        lanes[lane] += (x - y) * (x - y);
    }
    Some((lanes[0] + lanes[1]) + (lanes[2] + lanes[3]))
}

/// The nearest centroid (lower id on ties) and the squared distance. Centroid `hint` (the
/// row's current cluster, if valid) is measured first so the others can stop early; the answer
/// is the same as scanning in id order.
#[inline]
fn nearest(point: &[f64], centroids: &[f64], dim: usize, hint: u32) -> (u32, f64) {
    let k = centroids.len() / dim.max(1);
    let centroid = |c: usize| &centroids[c * dim..(c + 1) * dim];
    let first = if (hint as usize) < k {
        hint as usize
    } else {
        0
    };
    let mut best = (first as u32, distance2(point, centroid(first)));
    if best.1.is_nan() {
        // No bound to prune with: the plain scan.
        let mut best = (0u32, f64::INFINITY);
        for c in 0..k {
            let d = distance2(point, centroid(c));
            if d < best.1 {
                best = (c as u32, d);
            }
        }
        return best;
    }
    for c in 0..k {
        if c == first {
            continue;
        }
        let lower = (c as u32) < best.0;
        if let Some(d) = distance2_within(point, centroid(c), best.1, lower) {
            if d < best.1 || (d == best.1 && lower) {
                best = (c as u32, d);
            }
        }
    }
    best
}

/// Choose one global row by weighted sampling without replacement keys: row r gets
/// ln(u_r) / weight_r with u_r in (0, 1] from (seed, stream, global row); the largest key wins
/// (smallest global row on ties). Returns the chosen row's coordinates on every rank.
fn sample_row(
    points: &[f64],
    dim: usize,
    weights: Option<&[f64]>,
    reduce: &dyn Reduce,
    row_start: usize,
    seed: u64,
    stream: u64,
) -> Vec<f64> {
    let n_local = points.len() / dim.max(1);
    let uniform =
        |row: usize| 1.0 - (hashed_uniform(seed, stream, (row_start + row) as u64) + 1.0) / 2.0;
    let weight = |row: usize| weights.map_or(1.0, |w| w[row]);
    // The largest key, smallest row on ties: an associative choice, so any split gives it.
    let better = |a: (f64, usize), b: (f64, usize)| {
        if b.0 > a.0 || (b.0 == a.0 && b.1 < a.1) {
            b
        } else {
            a
        }
    };
    // Each chunk in row order with its running best. ln(u) <= u - 1, so a row whose bound
    // (u - 1) / w lies clearly below the best key cannot win and its logarithm is skipped: the
    // computed key is within a few ulps of the true one, far inside the 1e-12 relative margin.
    let best = (0..n_local)
        .into_par_iter()
        .with_min_len(CHUNK_ROWS)
        .fold(
            || None,
            |best: Option<(f64, usize)>, row| {
                let w = weight(row);
                if w.is_nan() || w <= 0.0 {
                    return best.or(Some((f64::NEG_INFINITY, row)));
                }
                let u = uniform(row);
                if let Some((key, _)) = best {
                    // (u - 1) / w < key (1 + 1e-12), multiplied through by w > 0.
                    if key > f64::NEG_INFINITY && u - 1.0 < key * w * (1.0 + 1e-12) {
                        return best;
                    }
                }
                let candidate = (u.ln() / w, row);
                Some(best.map_or(candidate, |b| better(b, candidate)))
            },
        )
        .reduce(
            || None,
            |a, b| match (a, b) {
                (Some(a), Some(b)) => Some(better(a, b)),
                (a, None) => a,
                (None, b) => b,
            },
        );
    let mut global_key = [best.map_or(f64::NEG_INFINITY, |b| b.0)];
    reduce.max_f64(&mut global_key);
    let mut chosen = [match best {
        Some((k, row)) if k == global_key[0] => -((row_start + row) as f64),
        _ => f64::NEG_INFINITY,
    }];
    reduce.max_f64(&mut chosen);
    let mut coordinates = vec![0.0; dim];
    if chosen[0].is_finite() {
        let row = (-chosen[0]) as usize;
        if (row_start..row_start + n_local).contains(&row) {
            let local = row - row_start;
            coordinates.copy_from_slice(&points[local * dim..(local + 1) * dim]);
        }
    }
    // Only the owner contributes: the sum is its values exactly.
    reduce.sum_f64(&mut coordinates);
    coordinates
}

/// Squared distances are compared with this relative slack when a bound decides: far above the
/// rounding of a sum of squares, far below any real gap.
const BOUND_SLACK: f64 = 1e-9;

/// k-means++ starting centroids, and each row's nearest of them (a hint for the first assignment).
/// A new centroid can only come closer to row p than p's nearest centroid j when
/// |new - c_j| < 2 |p - c_j| (triangle inequality), so rows with
/// |new - c_j|^2 >= 4 |p - c_j|^2 (with slack) are skipped: the distances are the same as
/// measuring every row.
fn seed_centroids(
    points: &[f64],
    dim: usize,
    reduce: &dyn Reduce,
    row_start: usize,
    params: &KmeansParams,
    start: usize,
) -> (Vec<f64>, Vec<u32>) {
    let k = params.n_clusters;
    let stream = |c: usize| 1 + (start * k + c) as u64;
    let mut centroids = sample_row(points, dim, None, reduce, row_start, params.seed, stream(0));
    let mut closest: Vec<f64> = points
        .par_chunks(dim)
        .map(|p| distance2(p, &centroids[..dim]))
        .collect();
    let mut nearest = vec![0u32; closest.len()];
    for c in 1..k {
        let chosen = sample_row(
            points,
            dim,
            Some(&closest),
            reduce,
            row_start,
            params.seed,
            stream(c),
        );
        // Squared distance of the new centroid to each earlier one, with the slack.
        let gaps: Vec<f64> = centroids
            .chunks_exact(dim)
            .map(|centroid| distance2(centroid, &chosen) / (4.0 * (1.0 + BOUND_SLACK)))
            .collect();
        closest
            .par_iter_mut()
            .zip(nearest.par_iter_mut())
            .zip(points.par_chunks(dim))
            .with_min_len(CHUNK_ROWS)
            .for_each(|((d, near), p)| {
                if gaps[*near as usize] > *d {
                    return;
                }
                // (`distance2_within` may return a full sum that is not below the bound.)
                match distance2_within(p, &chosen, *d, false) {
                    Some(x) if x < *d || d.is_nan() => {
                        *d = x;
                        *near = c as u32;
                    }
                    _ => {}
                }
            });
        centroids.extend_from_slice(&chosen);
    }
    (centroids, nearest)
}

/// Assign every row; returns the exact changes of the per-cluster sums (k x dim) and counts that
/// the rows which changed cluster make, then the inertia and the number of changed rows. The
/// sums are fixed point, so updating them by the changes gives the same bits as summing afresh.
fn assign(
    points: &[f64],
    dim: usize,
    centroids: &[f64],
    labels: &mut [u32],
    hints: &[u32],
    k: usize,
) -> Vec<ExactSum> {
    // Layout: k*dim coordinate sums, k counts, inertia, number of changed labels.
    let len = k * dim + k + 2;
    let totals = points
        .par_chunks(CHUNK_ROWS * dim)
        .zip(labels.par_chunks_mut(CHUNK_ROWS))
        .zip(hints.par_chunks(CHUNK_ROWS))
        .map(|((rows, chunk_labels), chunk_hints)| {
            let mut acc = vec![0i128; len];
            for ((point, label), &hint) in rows
                .chunks_exact(dim)
                .zip(chunk_labels.iter_mut())
                .zip(chunk_hints)
            {
                let hint = if *label == u32::MAX { hint } else { *label };
                let (c, d) = nearest(point, centroids, dim, hint);
                acc[len - 2] = acc[len - 2].wrapping_add(to_fixed(d));
                if c == *label {
                    continue;
                }
                acc[len - 1] += to_fixed(1.0);
                if *label != u32::MAX {
                    let old = *label as usize;
                    for (a, &x) in acc[old * dim..(old + 1) * dim].iter_mut().zip(point) {
                        *a = a.wrapping_sub(to_fixed(x));
                    }
                    acc[k * dim + old] -= to_fixed(1.0);
                }
                *label = c;
                let c = c as usize;
                for (a, &x) in acc[c * dim..(c + 1) * dim].iter_mut().zip(point) {
                    *a = a.wrapping_add(to_fixed(x));
                }
                acc[k * dim + c] += to_fixed(1.0);
            }
            acc
        })
        .reduce(
            || vec![0i128; len],
            |mut a, b| {
                a.iter_mut()
                    .zip(b)
                    .for_each(|(x, y)| *x = x.wrapping_add(y));
                a
            },
        );
    totals.into_iter().map(ExactSum).collect()
}

/// One k-means++ start followed by Lloyd iterations: labels, centroids, exact inertia, iterations.
fn lloyd(
    points: &[f64],
    dim: usize,
    reduce: &dyn Reduce,
    row_start: usize,
    params: &KmeansParams,
    start: usize,
) -> (Vec<u32>, Vec<f64>, ExactSum, usize) {
    let k = params.n_clusters;
    let n_local = points.len() / dim;
    let (mut centroids, hints) = seed_centroids(points, dim, reduce, row_start, params, start);
    let mut labels = vec![u32::MAX; n_local];
    let mut inertia = ExactSum::default();
    let mut iterations = 0;
    let mut sums = vec![ExactSum::default(); k * dim + k];
    for _ in 0..params.max_iter.max(1) {
        let mut changes = assign(points, dim, &centroids, &mut labels, &hints, k);
        reduce.sum_exact(&mut changes);
        iterations += 1;
        let len = changes.len();
        inertia = changes[len - 2];
        let changed = changes[len - 1].value();
        sums.iter_mut()
            .zip(&changes)
            .for_each(|(s, c)| s.0 = s.0.wrapping_add(c.0));
        for c in 0..k {
            let count = sums[k * dim + c].value();
            if count > 0.0 {
                for j in 0..dim {
                    centroids[c * dim + j] = sums[c * dim + j].value() / count;
                }
            }
        }
        if changed == 0.0 {
            break;
        }
    }
    (labels, centroids, inertia, iterations)
}

/// Cluster the rows of `points` (this rank's `n_local` x `dim` rows, row-major; global rows
/// `row_start..`). Collective over the ranks of `reduce`. `n_clusters` must be at least 1.
pub fn kmeans(
    points: &[f64],
    dim: usize,
    reduce: &dyn Reduce,
    row_start: usize,
    params: &KmeansParams,
) -> KmeansOutcome {
    let k = params.n_clusters.max(1);
    let params = KmeansParams {
        n_clusters: k,
        ..*params
    };
    let n_local = points.len().checked_div(dim).unwrap_or(0);
    let mut best: Option<(Vec<u32>, Vec<f64>, ExactSum, usize)> = None;
    for start in 0..params.n_init.max(1) {
        let candidate = lloyd(points, dim, reduce, row_start, &params, start);
        if best.as_ref().is_none_or(|b| candidate.2 .0 < b.2 .0) {
            best = Some(candidate);
        }
    }
    let (labels, centroids, inertia, iterations) = best.expect("at least one start");

    // Canonical names: clusters ordered by their smallest global row (empty clusters last).
    let mut first_row = vec![f64::NEG_INFINITY; k];
    for (row, &label) in labels.iter().enumerate().rev() {
        first_row[label as usize] = -((row_start + row) as f64);
    }
    reduce.max_f64(&mut first_row);
    let mut order: Vec<usize> = (0..k).collect();
    order.sort_by(|&a, &b| first_row[b].total_cmp(&first_row[a]).then(a.cmp(&b)));
    let mut rename = vec![0u32; k];
    for (new, &old) in order.iter().enumerate() {
        rename[old] = new as u32;
    }
    let labels: Vec<u32> = labels.iter().map(|&l| rename[l as usize]).collect();
    let mut ordered = vec![0.0; k * dim];
    for (new, &old) in order.iter().enumerate() {
        ordered[new * dim..(new + 1) * dim].copy_from_slice(&centroids[old * dim..(old + 1) * dim]);
    }
    debug_assert_eq!(labels.len(), n_local);
    KmeansOutcome {
        labels,
        centroids: ordered,
        inertia: inertia.value(),
        iterations,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::linop::SerialReduce;

    #[test]
    fn pruned_nearest_equals_the_plain_scan_for_any_hint_and_ties() {
        let dim = 7;
        // Centroids on a coarse grid, some repeated, so exact ties occur.
        let grid = |i: u64, s: u64| (hashed_uniform(5, s, i) * 2.0).round() * 0.5;
        let centroids: Vec<f64> = (0..9)
            .flat_map(|c| (0..dim).map(move |j| grid(c % 6, j as u64)))
            .collect();
        for i in 0..500u64 {
            let point: Vec<f64> = (0..dim).map(|j| grid(100 + i, j as u64)).collect();
            let mut plain = (0u32, f64::INFINITY);
            for (c, centroid) in centroids.chunks_exact(dim).enumerate() {
                let d = distance2(&point, centroid);
                if d < plain.1 {
                    plain = (c as u32, d);
                }
            }
            for hint in [0, 3, 5, 8, u32::MAX] {
                let pruned = nearest(&point, &centroids, dim, hint);
                assert_eq!(pruned.0, plain.0, "point {i} hint {hint}");
                assert_eq!(pruned.1.to_bits(), plain.1.to_bits());
            }
        }
    }

    /// Seeded Gaussian-ish blobs: `k` centres on a circle, `per` points each, round-robin order.
    fn blobs(k: usize, per: usize, spread: f64, seed: u64) -> (Vec<f64>, Vec<u32>) {
        let mut points = Vec::new();
        let mut truth = Vec::new();
        for i in 0..k * per {
            let c = i % k;
            let angle = c as f64 / k as f64 * std::f64::consts::TAU;
            let noise = |s: u64| {
                (0..4)
                    .map(|t| hashed_uniform(seed, s * 4 + t, i as u64))
                    .sum::<f64>()
                    * spread
            };
            points.push(angle.cos() * 5.0 + noise(0));
            points.push(angle.sin() * 5.0 + noise(1));
            truth.push(c as u32);
        }
        (points, truth)
    }

    /// Naive serial k-means from the same starts, the oracle: plain f64 sums, same tie rules.
    fn naive_lloyd(
        points: &[f64],
        dim: usize,
        mut centroids: Vec<f64>,
        max_iter: usize,
    ) -> Vec<u32> {
        let n = points.len() / dim;
        let k = centroids.len() / dim;
        let mut labels = vec![u32::MAX; n];
        for _ in 0..max_iter {
            let mut changed = false;
            for (r, label) in labels.iter_mut().enumerate() {
                let point = &points[r * dim..(r + 1) * dim];
                let mut best = (0u32, f64::INFINITY);
                for c in 0..k {
                    let d = distance2(point, &centroids[c * dim..(c + 1) * dim]);
                    if d < best.1 {
                        best = (c as u32, d);
                    }
                }
                changed |= best.0 != *label;
                *label = best.0;
            }
            for c in 0..k {
                let members: Vec<usize> = (0..n).filter(|&r| labels[r] == c as u32).collect();
                if !members.is_empty() {
                    for j in 0..dim {
                        centroids[c * dim + j] =
                            members.iter().map(|&r| points[r * dim + j]).sum::<f64>()
                                / members.len() as f64;
                    }
                }
            }
            if !changed {
                break;
            }
        }
        labels
    }

    fn same_partition(a: &[u32], b: &[u32]) -> bool {
        let mut map = std::collections::HashMap::new();
        let mut back = std::collections::HashMap::new();
        a.iter()
            .zip(b)
            .all(|(x, y)| *map.entry(*x).or_insert(*y) == *y && *back.entry(*y).or_insert(*x) == *x)
    }

    #[test]
    fn recovers_separated_blobs_with_canonical_labels() {
        let (points, truth) = blobs(6, 50, 0.3, 1);
        let params = KmeansParams {
            n_clusters: 6,
            seed: 0,
            n_init: 3,
            max_iter: 100,
        };
        let outcome = kmeans(&points, 2, &SerialReduce, 0, &params);
        assert!(same_partition(&outcome.labels, &truth));
        // Round-robin rows: row c is the first of cluster c, so canonical labels equal the truth.
        assert_eq!(outcome.labels, truth);
    }

    #[test]
    fn matches_naive_lloyd_from_the_same_start() {
        let (points, _) = blobs(5, 40, 1.5, 2);
        let params = KmeansParams {
            n_clusters: 5,
            seed: 11,
            n_init: 1,
            max_iter: 50,
        };
        let (start, _) = seed_centroids(&points, 2, &SerialReduce, 0, &params, 0);
        let expected = naive_lloyd(&points, 2, start, 50);
        let outcome = kmeans(&points, 2, &SerialReduce, 0, &params);
        assert!(same_partition(&outcome.labels, &expected));
    }

    /// Parameters of one start whose seeding is what a test looks at.
    fn seeding_only(n_clusters: usize, seed: u64) -> KmeansParams {
        KmeansParams {
            n_clusters,
            seed,
            n_init: 1,
            max_iter: 1,
        }
    }

    #[test]
    fn pruned_seeding_equals_measuring_every_row() {
        let (points, _) = blobs(12, 50, 0.4, 3);
        let dim = 2;
        for seed in 0..5 {
            let params = seeding_only(12, seed);
            let (centroids, nearest) = seed_centroids(&points, dim, &SerialReduce, 0, &params, 0);
            // The plain k-means++: every row measured against every new centroid.
            let stream = |c: usize| 1 + c as u64;
            let mut plain = sample_row(&points, dim, None, &SerialReduce, 0, seed, stream(0));
            let mut closest: Vec<f64> = points
                .chunks_exact(dim)
                .map(|p| distance2(p, &plain[..dim]))
                .collect();
            for c in 1..12 {
                let chosen = sample_row(
                    &points,
                    dim,
                    Some(&closest),
                    &SerialReduce,
                    0,
                    seed,
                    stream(c),
                );
                for (d, p) in closest.iter_mut().zip(points.chunks_exact(dim)) {
                    *d = d.min(distance2(p, &chosen));
                }

                plain.extend_from_slice(&chosen);
            }
            let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&centroids), bits(&plain), "seed {seed}");
            for (r, p) in points.chunks_exact(dim).enumerate() {
                let c = nearest[r] as usize;
                let d = distance2(p, &centroids[c * dim..(c + 1) * dim]);
                assert_eq!(d.to_bits(), closest[r].to_bits(), "seed {seed} row {r}");
            }
        }
    }

    #[test]
    fn sampling_picks_the_largest_key_of_all_rows() {
        let n = 3000usize;
        let points: Vec<f64> = (0..n).map(|r| r as f64).collect();
        for stream in 0..40u64 {
            // Weights over many scales, some zero, one NaN.
            let weights: Vec<f64> = (0..n)
                .map(|r| match r % 97 {
                    0 => 0.0,
                    5 if stream % 3 == 0 => f64::NAN,
                    m => (hashed_uniform(9, stream, r as u64) + 1.5).powi((m % 9) as i32),
                })
                .collect();
            let mut best = (f64::NEG_INFINITY, 0usize);
            for (r, &w) in weights.iter().enumerate() {
                let u = 1.0 - (hashed_uniform(4, stream, r as u64) + 1.0) / 2.0;
                let key = if w > 0.0 {
                    u.ln() / w
                } else {
                    f64::NEG_INFINITY
                };
                if key > best.0 {
                    best = (key, r);
                }
            }
            let chosen = sample_row(&points, 1, Some(&weights), &SerialReduce, 0, 4, stream);
            assert_eq!(chosen, vec![best.1 as f64], "stream {stream}");
        }
    }

    #[test]
    fn seeding_prefers_far_points() {
        // Two far groups: k-means++ with k = 2 takes one start in each for every seed.
        let mut points = vec![0.0; 40];
        for r in 0..20 {
            points[r * 2] = if r < 18 {
                0.01 * r as f64
            } else {
                100.0 + r as f64
            };
        }
        for seed in 0..20 {
            let params = seeding_only(2, seed);
            let (centroids, _) = seed_centroids(&points, 2, &SerialReduce, 0, &params, 0);
            let far = (centroids[0] > 50.0) as usize + (centroids[2] > 50.0) as usize;
            assert_eq!(far, 1, "seed {seed}: {centroids:?}");
        }
    }

    #[test]
    fn duplicate_points_and_more_clusters_than_distinct_rows() {
        let points = vec![1.0, 1.0, 1.0, 1.0, 2.0, 2.0];
        let params = KmeansParams {
            n_clusters: 3,
            seed: 0,
            n_init: 2,
            max_iter: 10,
        };
        let outcome = kmeans(&points, 2, &SerialReduce, 0, &params);
        assert_eq!(outcome.labels, vec![0, 0, 1]);
        assert!(outcome.inertia.abs() < 1e-12);
    }
}
