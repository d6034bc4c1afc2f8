//! GPU kNN benchmark: exact kNN of N rows (default 1,000,000 x 128, k = 16, cosine) on one GPU,
//! the rows delivered in blocks as the ring pass would. Prints one JSON line: time of the kNN
//! phase (upload, tiles, top-k, CPU re-rank), effective TFLOP/s (2 N^2 D / time), the exact-fallback
//! count, and the agreement with a CPU brute force on sampled queries (must be all of them).
//!
//! `gpu_knn_bench [--n N] [--dim D] [--k K] [--blocks B] [--precision fp32|tf32] [--check Q]
//!            [--threads T] [--seed S]`

use embsolve_cuda::knn::KnnTileConfig;
use embsolve_cuda::{probe, ExactTopK, Gpu, KnnTileEngine, Metric, Precision};
use std::time::Instant;

struct Args {
    n: usize,
    dim: usize,
    k: usize,
    blocks: usize,
    precision: Precision,
    check: usize,
    threads: usize,
    seed: u64,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        n: 1_000_000,
        dim: 128,
        k: 16,
        blocks: 4,
        precision: Precision::Fp32,
        check: 256,
        threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
        seed: 1,
    };
    let mut words = std::env::args().skip(1);
    while let Some(flag) = words.next() {
        let value = words
            .next()
            .ok_or_else(|| format!("{flag} needs a value"))?;
        let number = || {
            value
                .parse::<usize>()
                .map_err(|_| format!("{flag}: not a number: {value}"))
        };
        match flag.as_str() {
            "--n" => args.n = number()?,
            "--dim" => args.dim = number()?,
            "--k" => args.k = number()?,
            "--blocks" => args.blocks = number()?.max(1),
            "--check" => args.check = number()?,
            "--threads" => args.threads = number()?.max(1),
            "--seed" => args.seed = number()? as u64,
            "--precision" => {
                args.precision = match value.as_str() {
                    "fp32" => Precision::Fp32,
                    "tf32" => Precision::Tf32,
                    _ => return Err(format!("--precision fp32|tf32, not {value}")),
                }
            }
            _ => return Err(format!("unknown flag {flag}")),
        }
    }
    Ok(args)
}

fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn uniform(state: &mut u64) -> f32 {
    ((splitmix(state) >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
}

/// Unit rows around 64 centres, generated in parallel by row chunks (seeded per chunk).
fn make_rows(n: usize, dim: usize, seed: u64, threads: usize) -> Vec<f32> {
    let mut state = seed;
    let centres: Vec<f32> = (0..64 * dim).map(|_| uniform(&mut state)).collect();
    let mut rows = vec![0f32; n * dim];
    let per_thread = n.div_ceil(threads).max(1);
    std::thread::scope(|scope| {
        for (chunk, part) in rows.chunks_mut(per_thread * dim).enumerate() {
            let centres = &centres;
            scope.spawn(move || {
                let mut state = seed ^ (chunk as u64).wrapping_mul(0x2545_f491_4f6c_dd1d);
                for row in part.chunks_exact_mut(dim) {
                    let centre = (splitmix(&mut state) % 64) as usize;
                    for (d, x) in row.iter_mut().enumerate() {
                        *x = centres[centre * dim + d] + 0.5 * uniform(&mut state);
                    }
                    let norm = row.iter().map(|x| x * x).sum::<f32>().sqrt();
                    row.iter_mut().for_each(|x| *x /= norm);
                }
            });
        }
    });
    rows
}

fn cosine_distance(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let norm_a = a.iter().map(|x| x * x).sum::<f32>().sqrt();
    let norm_b = b.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm_a == 0.0 || norm_b == 0.0 {
        1.0
    } else {
        1.0 - dot / (norm_a * norm_b)
    }
}

fn main() {
    let args = match parse_args() {
        Ok(args) => args,
        Err(message) => {
            eprintln!("gpu_knn_bench: {message}");
            std::process::exit(2);
        }
    };
    if let Err(reason) = probe() {
        eprintln!("gpu_knn_bench: {reason}");
        std::process::exit(2);
    }
    let gpu = match Gpu::open(0) {
        Ok(gpu) => gpu,
        Err(error) => {
            eprintln!("gpu_knn_bench: {error}");
            std::process::exit(1);
        }
    };
    eprintln!("gpu_knn_bench: {}", gpu.describe());
    let (n, dim, k) = (args.n, args.dim, args.k);
    let rows = make_rows(n, dim, args.seed, args.threads);

    let start = Instant::now();
    let config = KnnTileConfig {
        precision: args.precision,
        ..KnnTileConfig::default()
    };
    let mut engine = KnnTileEngine::begin(&gpu, &rows, dim, 0, k, Metric::Cosine, config)
        .unwrap_or_else(|e| panic!("begin: {e}"));
    let mut lists = ExactTopK::new(n, k);
    let mut gpu_seconds = 0.0;
    let mut fallbacks = 0;
    let block_rows = n.div_ceil(args.blocks);
    for block_start in (0..n).step_by(block_rows) {
        let block_end = (block_start + block_rows).min(n);
        let block = &rows[block_start * dim..block_end * dim];
        let tiles = Instant::now();
        let candidates = engine
            .add_block(block, block_start as u64)
            .unwrap_or_else(|e| panic!("block {block_start}: {e}"));
        gpu_seconds += tiles.elapsed().as_secs_f64();
        let exact = |q: usize, r: usize| {
            cosine_distance(
                &rows[q * dim..(q + 1) * dim],
                &block[r * dim..(r + 1) * dim],
            )
        };
        fallbacks += lists
            .merge_block(&candidates, &exact, args.threads)
            .unwrap_or_else(|e| panic!("merge: {e}"))
            .fallback_queries;
    }
    let (indices, distances) = lists.into_lists().unwrap_or_else(|e| panic!("lists: {e}"));
    let seconds = start.elapsed().as_secs_f64();
    let flop = 2.0 * (n as f64) * (n as f64) * dim as f64;

    // CPU brute force on sampled queries: the lists must be identical.
    let check = args.check.min(n);
    let sample: Vec<usize> = (0..check).map(|i| i * n / check.max(1)).collect();
    let per_thread = check.div_ceil(args.threads).max(1);
    let mut agree = 0;
    std::thread::scope(|scope| {
        let handles: Vec<_> = sample
            .chunks(per_thread)
            .map(|queries| {
                let (rows, indices, distances) = (&rows, &indices, &distances);
                scope.spawn(move || {
                    let mut agree = 0;
                    for &q in queries {
                        let query = &rows[q * dim..(q + 1) * dim];
                        let mut all: Vec<(f32, u64)> = rows
                            .chunks_exact(dim)
                            .enumerate()
                            .filter(|&(r, _)| r != q)
                            .map(|(r, row)| (cosine_distance(query, row), r as u64))
                            .collect();
                        all.select_nth_unstable_by(k, |a, b| {
                            a.0.partial_cmp(&b.0).unwrap().then(a.1.cmp(&b.1))
                        });
                        all.truncate(k);
                        all.sort_by(|a, b| a.0.partial_cmp(&b.0).unwrap().then(a.1.cmp(&b.1)));
                        let same = all.iter().enumerate().all(|(j, &(d, r))| {
                            indices[q * k + j] == r && distances[q * k + j] == d
                        });
                        agree += usize::from(same);
                    }
                    agree
                })
            })
            .collect();
        for handle in handles {
            agree += handle.join().unwrap_or(0);
        }
    });
    println!(
        "{{\"n\": {n}, \"dim\": {dim}, \"k\": {k}, \"blocks\": {}, \"precision\": \"{:?}\", \
         \"device\": \"{}\", \"knn_seconds\": {seconds:.3}, \"gpu_seconds\": {gpu_seconds:.3}, \
         \"effective_tflops\": {:.2}, \"fallback_query_blocks\": {fallbacks}, \
         \"checked_queries\": {check}, \"identical_to_cpu\": {agree}}}",
        args.blocks,
        args.precision,
        gpu.name(),
        flop / seconds / 1e12,
    );
    if agree != check {
        std::process::exit(1);
    }
}
