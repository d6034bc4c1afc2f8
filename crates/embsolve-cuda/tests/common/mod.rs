//! Shared helpers of the crate's tests: seeded data, the exact distance and a brute-force oracle.

#![allow(dead_code)]

use embsolve_cuda::Metric;

/// SplitMix64: a small seeded generator so the tests need no other crate.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// Uniform in [-1, 1).
    pub fn symmetric(&mut self) -> f32 {
        ((self.next_u64() >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}

/// Clustered rows with some exact duplicates (ties), optionally L2-normalised.
pub fn clustered_rows(rng: &mut Rng, n_rows: usize, dim: usize, normalize: bool) -> Vec<f32> {
    let n_centres = 5;
    let centres: Vec<f32> = (0..n_centres * dim).map(|_| rng.symmetric()).collect();
    let mut rows = vec![0f32; n_rows * dim];
    for row in 0..n_rows {
        if row > 0 && rng.below(8) == 0 {
            let source = rng.below(row as u64) as usize;
            let (done, rest) = rows.split_at_mut(row * dim);
            rest[..dim].copy_from_slice(&done[source * dim..(source + 1) * dim]);
            continue;
        }
        let centre = rng.below(n_centres as u64) as usize;
        for d in 0..dim {
            rows[row * dim + d] = centres[centre * dim + d] + 0.3 * rng.symmetric();
        }
        if normalize {
            let norm = rows[row * dim..(row + 1) * dim]
                .iter()
                .map(|x| x * x)
                .sum::<f32>()
                .sqrt();
            rows[row * dim..(row + 1) * dim]
                .iter_mut()
                .for_each(|x| *x /= norm);
        }
    }
    rows
}

/// The exact distance of the tests (f32, in index order).
pub fn exact_distance(a: &[f32], b: &[f32], metric: Metric) -> f32 {
    match metric {
        Metric::InnerProduct => -a.iter().zip(b).map(|(x, y)| x * y).sum::<f32>(),
        Metric::Cosine => {
            let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
            let norm_a = a.iter().map(|x| x * x).sum::<f32>().sqrt();
            let norm_b = b.iter().map(|x| x * x).sum::<f32>().sqrt();
            if norm_a == 0.0 || norm_b == 0.0 {
                1.0
            } else {
                1.0 - dot / (norm_a * norm_b)
            }
        }
        Metric::L2 => a
            .iter()
            .zip(b)
            .map(|(x, y)| (x - y) * (x - y))
            .sum::<f32>()
            .sqrt(),
    }
}

/// Brute force: for each query (global row `query_start + q`), the k nearest of all `rows`
/// (global rows from 0), nearest first, ties to the smaller row, self excluded.
pub fn brute_force(
    queries: &[f32],
    query_start: u64,
    rows: &[f32],
    dim: usize,
    k: usize,
    metric: Metric,
) -> (Vec<u64>, Vec<f32>) {
    let n_queries = queries.len() / dim;
    let mut indices = Vec::with_capacity(n_queries * k);
    let mut distances = Vec::with_capacity(n_queries * k);
    for (q, query) in queries.chunks_exact(dim).enumerate() {
        let mut all: Vec<(f32, u64)> = rows
            .chunks_exact(dim)
            .enumerate()
            .filter(|&(r, _)| r as u64 != query_start + q as u64)
            .map(|(r, row)| (exact_distance(query, row, metric), r as u64))
            .collect();
        all.sort_by(|a, b| a.0.partial_cmp(&b.0).unwrap().then(a.1.cmp(&b.1)));
        for &(distance, row) in all.iter().take(k) {
            indices.push(row);
            distances.push(distance);
        }
    }
    (indices, distances)
}

pub const METRICS: [Metric; 3] = [Metric::InnerProduct, Metric::Cosine, Metric::L2];

/// Print why a test skips, or fail it when `EMBSOLVE_REQUIRE_GPU=1` (the GPU bundle sets it, so a
/// GPU machine that cannot run a check reports a failure, not a skip).
pub fn skip(test: &str, reason: &str) {
    if std::env::var("EMBSOLVE_REQUIRE_GPU").as_deref() == Ok("1") {
        panic!("{test}: EMBSOLVE_REQUIRE_GPU=1 but {reason}");
    }
    println!("SKIP {test}: {reason}");
}
