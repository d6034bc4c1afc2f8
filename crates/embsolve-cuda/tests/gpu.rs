//! The GPU path against the CPU: identical kNN lists (every metric, FP32 and TF32 tiles, several
//! tiles per block, blocks as the ring delivers them, exact ties) and FFT power within 1e-4
//! relative. Each test prints SKIP with the reason and returns when no GPU is usable here, unless
//! `EMBSOLVE_REQUIRE_GPU=1` (set by the GPU bundle's run.sh), which turns a skip into a failure.

mod common;

use common::{brute_force, clustered_rows, exact_distance, skip, Rng, METRICS};
use embsolve_cuda::kernels::NO_ROW;
use embsolve_cuda::knn::{candidates_from_keys, KnnTileConfig};
use embsolve_cuda::{probe, BatchedRealFft, ExactTopK, Gpu, KnnTileEngine, Metric, Precision};

fn gpu_or_skip(test: &str) -> Option<Gpu> {
    if let Err(reason) = probe() {
        skip(test, &reason);
        return None;
    }
    match Gpu::open(0) {
        Ok(gpu) => {
            println!("{test}: {}", gpu.describe());
            Some(gpu)
        }
        Err(error) => panic!("{test}: CUDA probed usable but the device did not open: {error}"),
    }
}

/// kNN of queries `query_start..query_start + n_queries` among all `rows`, on the GPU, with the
/// rows delivered in blocks of `block_rows`.
#[allow(clippy::too_many_arguments)]
fn gpu_knn(
    gpu: &Gpu,
    rows: &[f32],
    dim: usize,
    query_start: usize,
    n_queries: usize,
    k: usize,
    metric: Metric,
    block_rows: usize,
    config: KnnTileConfig,
) -> (Vec<u64>, Vec<f32>, usize) {
    let queries = &rows[query_start * dim..(query_start + n_queries) * dim];
    let mut engine =
        KnnTileEngine::begin(gpu, queries, dim, query_start as u64, k, metric, config).unwrap();
    let mut lists = ExactTopK::new(n_queries, k);
    let mut fallbacks = 0;
    let n_rows = rows.len() / dim;
    for block_start in (0..n_rows).step_by(block_rows) {
        let block_end = (block_start + block_rows).min(n_rows);
        let block = &rows[block_start * dim..block_end * dim];
        let candidates = engine.add_block(block, block_start as u64).unwrap();
        let exact = |q: usize, r: usize| {
            exact_distance(
                &queries[q * dim..(q + 1) * dim],
                &block[r * dim..(r + 1) * dim],
                metric,
            )
        };
        fallbacks += lists
            .merge_block(&candidates, &exact, 4)
            .unwrap()
            .fallback_queries;
    }
    let (indices, distances) = lists.into_lists().unwrap();
    (indices, distances, fallbacks)
}

#[test]
fn gpu_knn_lists_equal_the_cpu_lists() {
    let Some(gpu) = gpu_or_skip("gpu_knn_lists_equal_the_cpu_lists") else {
        return;
    };
    let dim = 37;
    let n_rows = 1203;
    let mut rng = Rng::new(21);
    for normalize in [true, false] {
        let rows = clustered_rows(&mut rng, n_rows, dim, normalize);
        for metric in METRICS {
            for precision in [Precision::Fp32, Precision::Tf32] {
                // Small tiles: several query tiles and several row tiles per block.
                let config = KnnTileConfig {
                    precision,
                    max_tile_queries: 97,
                    max_tile_rows: 200,
                    ..KnnTileConfig::default()
                };
                for &(query_start, n_queries, block_rows) in
                    &[(0, 300, 1203), (300, 301, 401), (1000, 203, 333)]
                {
                    let queries = &rows[query_start * dim..(query_start + n_queries) * dim];
                    let expected = brute_force(queries, query_start as u64, &rows, dim, 16, metric);
                    let (indices, distances, fallbacks) = gpu_knn(
                        &gpu,
                        &rows,
                        dim,
                        query_start,
                        n_queries,
                        16,
                        metric,
                        block_rows,
                        config,
                    );
                    let what = format!(
                        "{metric:?} {precision:?} normalize={normalize} queries {query_start}.. \
                         blocks of {block_rows} ({fallbacks} fallbacks)"
                    );
                    assert_eq!(indices, expected.0, "{what}");
                    assert_eq!(distances, expected.1, "{what}");
                    println!("ok {what}");
                }
            }
        }
    }
}

#[test]
fn gpu_candidates_equal_the_kernel_model_on_exact_integer_data() {
    // Small integers: every dot product and key is exact in FP32 on both sides, so the kernel's
    // candidates (with all their ties) must be exactly the CPU model's.
    let Some(gpu) = gpu_or_skip("gpu_candidates_equal_the_kernel_model_on_exact_integer_data")
    else {
        return;
    };
    let dim = 16;
    let n_rows = 700;
    let mut rng = Rng::new(4);
    let rows: Vec<f32> = (0..n_rows * dim)
        .map(|_| (rng.below(3) as f32) - 1.0)
        .collect();
    for metric in [Metric::InnerProduct, Metric::L2] {
        let config = KnnTileConfig {
            max_tile_queries: 64,
            max_tile_rows: 150,
            n_candidates: 24,
            ..KnnTileConfig::default()
        };
        let query_start = 100;
        let n_queries = 250;
        let queries = &rows[query_start * dim..(query_start + n_queries) * dim];
        let mut engine =
            KnnTileEngine::begin(&gpu, queries, dim, query_start as u64, 8, metric, config)
                .unwrap();
        for block_start in [0usize, 350] {
            let block = &rows[block_start * dim..(block_start + 350) * dim];
            let got = engine.add_block(block, block_start as u64).unwrap();
            let mut keys = vec![0f32; n_queries * 350];
            for q in 0..n_queries {
                for r in 0..350 {
                    let query = &queries[q * dim..(q + 1) * dim];
                    let row = &block[r * dim..(r + 1) * dim];
                    let dot: f32 = query.iter().zip(row).map(|(a, b)| a * b).sum();
                    keys[q * 350 + r] = match metric {
                        Metric::L2 => {
                            query.iter().map(|a| a * a).sum::<f32>()
                                + row.iter().map(|b| b * b).sum::<f32>()
                                - 2.0 * dot
                        }
                        _ => -dot,
                    };
                }
            }
            let margins = vec![0.0; n_queries];
            let model = candidates_from_keys(
                &keys,
                350,
                query_start as u64,
                block_start as u64,
                metric,
                24,
                &margins,
            );
            assert_eq!(got.rows, model.rows, "{metric:?} block {block_start}");
            assert_eq!(got.keys, model.keys, "{metric:?} block {block_start}");
            assert!(got.rows.iter().all(|&r| r != NO_ROW));
        }
    }
}

#[test]
fn gpu_power_spectra_match_a_direct_dft() {
    let Some(gpu) = gpu_or_skip("gpu_power_spectra_match_a_direct_dft") else {
        return;
    };
    let mut rng = Rng::new(8);
    for &(n, batch, n_windows) in &[(64usize, 7usize, 23usize), (240, 64, 64), (255, 5, 3)] {
        let windows: Vec<f32> = (0..n * n_windows).map(|_| rng.symmetric()).collect();
        let mut fft = BatchedRealFft::new(&gpu, n, batch).unwrap();
        let bins = fft.bins();
        let mut power = vec![0f32; n_windows * bins];
        fft.power(&windows, &mut power).unwrap();
        for w in 0..n_windows {
            let signal = &windows[w * n..(w + 1) * n];
            let direct: Vec<f64> = (0..bins)
                .map(|f| {
                    let (mut re, mut im) = (0f64, 0f64);
                    for (t, &x) in signal.iter().enumerate() {
                        let angle = -2.0 * std::f64::consts::PI * (f * t) as f64 / n as f64;
                        re += f64::from(x) * angle.cos();
                        im += f64::from(x) * angle.sin();
                    }
                    re * re + im * im
                })
                .collect();
            let scale = direct.iter().copied().fold(0.0, f64::max);
            for f in 0..bins {
                let error = (f64::from(power[w * bins + f]) - direct[f]).abs() / scale;
                assert!(
                    error < 1e-4,
                    "n {n} window {w} bin {f}: relative error {error}"
                );
            }
        }
    }
}

#[test]
fn opening_a_device_for_any_local_rank_works_or_says_why() {
    match probe() {
        Err(reason) => {
            skip(
                "opening_a_device_for_any_local_rank_works_or_says_why",
                &reason,
            );
            assert!(
                Gpu::open(3).is_err(),
                "open must fail where the probe fails"
            );
        }
        Ok(count) => {
            let gpu = Gpu::open(count + 1).unwrap();
            assert_eq!(gpu.ordinal(), 1 % count);
        }
    }
}
