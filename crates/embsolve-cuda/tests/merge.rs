//! The exact re-rank without a GPU: candidates chosen from perturbed keys (as the GPU's rounding
//! would perturb them) must give exactly the brute-force lists, for any block split and thread
//! count, including data with exact ties; the bound must trigger the fallback where needed.

mod common;

use common::{brute_force, clustered_rows, exact_distance, Rng, METRICS};
use embsolve_cuda::knn::{candidates_from_keys, key_margin};
use embsolve_cuda::{ExactTopK, MergeStats, Metric, Precision};

fn norm(row: &[f32]) -> f64 {
    row.iter()
        .map(|&x| f64::from(x) * f64::from(x))
        .sum::<f64>()
        .sqrt()
}

fn exact_key(query: &[f32], row: &[f32], metric: Metric) -> f64 {
    metric.key_of_distance(exact_distance(query, row, metric))
}

/// Search `rows` for the queries `query_start..` with blocks of `block_rows`, candidates from keys
/// perturbed by up to `noise` of the margin, and `threads` merge threads.
#[allow(clippy::too_many_arguments)]
fn search(
    rows: &[f32],
    dim: usize,
    query_start: usize,
    n_queries: usize,
    k: usize,
    n_keep: usize,
    metric: Metric,
    block_rows: usize,
    noise: f64,
    threads: usize,
    seed: u64,
) -> (Vec<u64>, Vec<f32>, MergeStats) {
    let mut rng = Rng::new(seed);
    let queries = &rows[query_start * dim..(query_start + n_queries) * dim];
    let n_rows = rows.len() / dim;
    let mut lists = ExactTopK::new(n_queries, k);
    let mut stats = MergeStats::default();
    for block_start in (0..n_rows).step_by(block_rows) {
        let block_end = (block_start + block_rows).min(n_rows);
        let block = &rows[block_start * dim..block_end * dim];
        let n_block = block_end - block_start;
        let max_row_norm = block.chunks_exact(dim).map(norm).fold(0.0, f64::max);
        let margins: Vec<f64> = queries
            .chunks_exact(dim)
            .map(|q| key_margin(metric, Precision::Fp32, dim, norm(q), max_row_norm))
            .collect();
        let mut keys = vec![0f32; n_queries * n_block];
        for (q, query) in queries.chunks_exact(dim).enumerate() {
            for (r, row) in block.chunks_exact(dim).enumerate() {
                let shift = noise * margins[q] * f64::from(rng.symmetric()) / 4.0;
                keys[q * n_block + r] = (exact_key(query, row, metric) + shift) as f32;
            }
        }
        // The f32 rounding of the keys themselves is covered by widening the margin by 1 ulp.
        let widened: Vec<f64> = margins
            .iter()
            .zip(queries.chunks_exact(dim))
            .map(|(m, q)| m + 4.0 * f64::from(f32::EPSILON) * (1.0 + norm(q) * max_row_norm))
            .collect();
        let candidates = candidates_from_keys(
            &keys,
            n_block,
            query_start as u64,
            block_start as u64,
            metric,
            n_keep,
            &widened,
        );
        let exact = |q: usize, r: usize| {
            exact_distance(
                &queries[q * dim..(q + 1) * dim],
                &block[r * dim..(r + 1) * dim],
                metric,
            )
        };
        stats.add(lists.merge_block(&candidates, &exact, threads).unwrap());
    }
    let (indices, distances) = lists.into_lists().unwrap();
    (indices, distances, stats)
}

#[test]
fn merged_lists_equal_brute_force_for_every_metric_split_and_thread_count() {
    let dim = 24;
    let n_rows = 157;
    let mut rng = Rng::new(7);
    let rows = clustered_rows(&mut rng, n_rows, dim, false);
    for metric in METRICS {
        for &(query_start, n_queries) in &[(0, 40), (61, 53), (120, 37)] {
            let queries = &rows[query_start * dim..(query_start + n_queries) * dim];
            let expected = brute_force(queries, query_start as u64, &rows, dim, 5, metric);
            for &(block_rows, threads) in &[(157, 1), (50, 3), (23, 2), (7, 4)] {
                let (indices, distances, _) = search(
                    &rows,
                    dim,
                    query_start,
                    n_queries,
                    5,
                    8,
                    metric,
                    block_rows,
                    1.0,
                    threads,
                    11,
                );
                assert_eq!(
                    indices, expected.0,
                    "{metric:?} queries {query_start}.. blocks of {block_rows}, {threads} threads"
                );
                assert_eq!(distances, expected.1);
            }
        }
    }
}

#[test]
fn duplicates_beyond_the_candidates_force_an_exact_fallback() {
    // 30 copies of one row: every query among them has 29 neighbours at distance 0, more than the
    // 6 candidates, so the bound cannot prove completeness and the block is evaluated exactly.
    let dim = 8;
    let mut rng = Rng::new(3);
    let mut rows = clustered_rows(&mut rng, 60, dim, true);
    let copy: Vec<f32> = rows[..dim].to_vec();
    for row in 1..30 {
        rows[row * dim..(row + 1) * dim].copy_from_slice(&copy);
    }
    for metric in METRICS {
        let queries = &rows[..20 * dim];
        let expected = brute_force(queries, 0, &rows, dim, 4, metric);
        let (indices, distances, stats) = search(&rows, dim, 0, 20, 4, 6, metric, 60, 1.0, 2, 5);
        assert_eq!(indices, expected.0, "{metric:?}");
        assert_eq!(distances, expected.1, "{metric:?}");
        assert!(stats.fallback_queries > 0, "{metric:?}: expected fallbacks");
    }
}

#[test]
fn keys_without_any_relation_to_distances_still_give_exact_lists() {
    // Noise far beyond the margin would break the proof; an infinite margin (bound -inf) makes every
    // query fall back, so the lists stay exact whatever the candidates were.
    let dim = 6;
    let mut rng = Rng::new(9);
    let rows = clustered_rows(&mut rng, 45, dim, false);
    let queries = &rows[10 * dim..30 * dim];
    let expected = brute_force(queries, 10, &rows, dim, 3, Metric::L2);
    let mut lists = ExactTopK::new(20, 3);
    let keys: Vec<f32> = (0..20 * 45).map(|_| rng.symmetric()).collect();
    let margins = vec![f64::INFINITY; 20];
    let candidates = candidates_from_keys(&keys, 45, 10, 0, Metric::L2, 4, &margins);
    let exact = |q: usize, r: usize| {
        exact_distance(
            &queries[q * dim..(q + 1) * dim],
            &rows[r * dim..(r + 1) * dim],
            Metric::L2,
        )
    };
    let stats = lists.merge_block(&candidates, &exact, 3).unwrap();
    assert_eq!(stats.fallback_queries, 20);
    assert_eq!(lists.into_lists().unwrap(), expected);
}

#[test]
fn tf32_margin_is_wider_than_fp32_and_grows_with_dim() {
    let fp32 = key_margin(Metric::Cosine, Precision::Fp32, 128, 1.0, 1.0);
    let tf32 = key_margin(Metric::Cosine, Precision::Tf32, 128, 1.0, 1.0);
    assert!(tf32 > 10.0 * fp32, "{tf32} vs {fp32}");
    assert!(
        key_margin(Metric::L2, Precision::Fp32, 512, 1.0, 1.0)
            > key_margin(Metric::L2, Precision::Fp32, 64, 1.0, 1.0)
    );
    assert!(
        key_margin(Metric::InnerProduct, Precision::Fp32, 64, 2.0, 3.0)
            > key_margin(Metric::InnerProduct, Precision::Fp32, 64, 1.0, 1.0)
    );
}
