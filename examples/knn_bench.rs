//! Benchmark driver for the ring-pass exact kNN (used by `bench/knn_bench.py`): reads this rank's
//! row block of a float32 `.npy` file, runs `dist::knn::exact_knn` with the CPU backend, and writes
//! the max-over-ranks time, the GEMM kernel's own rate on the same tiles and the lists (rank 0).
//!
//! `mpirun -n P target/release/examples/knn_bench DATA.npy K METRIC THREADS OUT_PREFIX`
//! writes `OUT_PREFIX.json` and `OUT_PREFIX.indices.npy` (n x k int64).
//!
//! With `EMBSOLVE_BENCH_SELF=REPEATS` each rank also times its own block against itself, `REPEATS`
//! times each way: as one block (the symmetric pass) and as two halves (the plain pass, as for
//! another rank's block), and reports the fastest of each (`self_block` in the JSON).

use embsolve::backend::cpu::CpuKnn;
use embsolve::config::Metric;
use embsolve_comm::{allgatherv, Comm, MpiComm};
use embsolve_kernels::knn::{gemm_tile, KnnSearch, TileShape};
use embsolve_kernels::layout::RowLayout;
use ndarray::Array2;
use rayon::prelude::*;
use std::io::{Read, Seek, SeekFrom, Write};
use std::time::Instant;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 6 {
        eprintln!("usage: knn_bench DATA.npy K METRIC THREADS OUT_PREFIX");
        std::process::exit(2);
    }
    let comm = MpiComm::init().expect("MPI initialises");
    let k: usize = args[2].parse().expect("K is an integer");
    let metric = match args[3].as_str() {
        "cosine" => Metric::Cosine,
        "l2" => Metric::L2,
        "ip" => Metric::Ip,
        other => panic!("unknown metric {other}"),
    };
    let threads: usize = args[4].parse().expect("THREADS is an integer");
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build_global()
        .expect("one rayon pool");

    let (n_rows, dim, data_offset) = npy_header(&args[1]);
    let layout = RowLayout::new(n_rows, comm.size());
    let range = layout.range(comm.rank());
    let local = read_block(&args[1], data_offset, dim, range.clone());

    // Tile shape: the default, or EMBSOLVE_BENCH_TILE=QUERYxREF (tuning).
    let shape = std::env::var("EMBSOLVE_BENCH_TILE")
        .ok()
        .and_then(|v| {
            let (q, r) = v.split_once('x')?;
            Some(TileShape {
                query_rows: q.parse().ok()?,
                ref_rows: r.parse().ok()?,
            })
        })
        .unwrap_or_default();
    // The kNN phase as the pipeline runs it (ring pass, CPU backend).
    comm.barrier();
    let start = Instant::now();
    let mut backend = CpuKnn::with_tile_shape(shape);
    let lists = embsolve::distributed::knn::exact_knn(
        &comm,
        &layout,
        local.view(),
        k,
        metric,
        &mut backend,
    )
    .expect("knn succeeds");
    let mut seconds = [start.elapsed().as_secs_f64()];
    let knn_cpu = cpu_seconds();
    let mut knn_cpu_all = [knn_cpu];
    comm.allreduce_sum_f64(&mut knn_cpu_all);
    comm.allreduce_max_f64(&mut seconds);

    // The GEMM kernel alone, on the same tiles and threads: this rank's queries against all rows
    // (this rank's block reused P times, so no communication is timed).
    comm.barrier();
    let gemm_start = Instant::now();
    gemm_only(
        local.as_slice().expect("contiguous"),
        dim,
        comm.size(),
        threads,
        shape,
    );
    let mut gemm_seconds = [gemm_start.elapsed().as_secs_f64()];
    let gemm_cpu = cpu_seconds() - knn_cpu;
    comm.allreduce_max_f64(&mut gemm_seconds);

    let self_block = std::env::var("EMBSOLVE_BENCH_SELF")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .map(|repeats| self_block_times(&comm, &local, range.start, k, metric, shape, repeats));

    let mut evaluations = [backend.exact_evaluations()];
    comm.allreduce_sum_u64(&mut evaluations);
    let (skipped, computed) = backend.tile_counts();
    let mut tiles = [skipped, computed];
    comm.allreduce_sum_u64(&mut tiles);
    let (indices, _) = allgatherv(&comm, &lists.indices);
    if comm.rank() == 0 {
        let flops = 2.0 * (n_rows as f64) * (n_rows as f64) * dim as f64;
        let local_rows = layout.max_local_rows() as f64;
        let gemm_flops = 2.0 * local_rows * n_rows as f64 * dim as f64;
        let report = serde_json::json!({
            "n_rows": n_rows, "dim": dim, "k": k, "metric": args[3], "ranks": comm.size(),
            "threads_per_rank": threads, "knn_s": seconds[0],
            "gflops": flops / seconds[0] / 1e9,
            "gemm_only_s": gemm_seconds[0],
            "gemm_only_gflops_per_rank": gemm_flops / gemm_seconds[0] / 1e9,
            "gemm_only_gflops": gemm_flops * comm.size() as f64 / gemm_seconds[0] / 1e9,
            "exact_evaluations": evaluations[0],
            "rank0_cpu_s": {"knn": knn_cpu, "gemm_only": gemm_cpu},
            "knn_cpu_s_all_ranks": knn_cpu_all[0],
            "exact_evaluations_per_query": evaluations[0] as f64 / n_rows as f64,
            "tile": [shape.query_rows, shape.ref_rows],
            "tiles_ruled_out": tiles[0], "tiles_computed": tiles[1],
            "self_block": self_block,
        });
        let mut file = std::fs::File::create(format!("{}.json", args[5])).expect("json");
        writeln!(file, "{}", serde_json::to_string_pretty(&report).unwrap()).unwrap();
        let as_i64: Vec<i64> = indices.iter().map(|&i| i as i64).collect();
        write_npy_i64(&format!("{}.indices.npy", args[5]), &as_i64, n_rows, k);
        println!("{report}");
    }
}

/// The own block against itself, as one block (the symmetric pass) and as two halves (the plain
/// pass): the fastest of `repeats` runs each (max over ranks), the exact evaluations (sum over
/// ranks) and whether both gave the same lists on every rank.
fn self_block_times(
    comm: &MpiComm,
    local: &Array2<f32>,
    start: usize,
    k: usize,
    metric: Metric,
    shape: TileShape,
    repeats: usize,
) -> serde_json::Value {
    let rows = local.as_slice().expect("contiguous");
    let n_local = local.nrows();
    let half = n_local / 2;
    let dim = local.ncols();
    let threads = rayon::current_num_threads();
    let run = |split: bool| {
        let mut search = KnnSearch::new(local.view(), start, k, metric, threads, shape);
        comm.barrier();
        let begin = Instant::now();
        if split {
            search.add_block(&rows[..half * dim], start);
            search.add_block(&rows[half * dim..], start + half);
        } else {
            search.add_block(rows, start);
        }
        let mut seconds = [begin.elapsed().as_secs_f64()];
        comm.allreduce_max_f64(&mut seconds);
        let mut evaluations = [search.exact_evaluations()];
        comm.allreduce_sum_u64(&mut evaluations);
        (seconds[0], evaluations[0], search.finish().ok())
    };
    let mut best = [f64::INFINITY; 2];
    let mut evaluations = [0u64; 2];
    let mut same = true;
    for _ in 0..repeats.max(1) {
        let (symmetric_s, symmetric_evaluations, symmetric_lists) = run(false);
        let (plain_s, plain_evaluations, plain_lists) = run(true);
        same &= symmetric_lists.is_some() && symmetric_lists == plain_lists;
        best = [best[0].min(symmetric_s), best[1].min(plain_s)];
        evaluations = [symmetric_evaluations, plain_evaluations];
    }
    let mut differ = [u64::from(!same)];
    comm.allreduce_max_u64(&mut differ);
    serde_json::json!({
        "repeats": repeats.max(1),
        "symmetric_s": best[0], "plain_s": best[1],
        "symmetric_exact_evaluations": evaluations[0], "plain_exact_evaluations": evaluations[1],
        "same_lists": differ[0] == 0,
    })
}

/// GEMM tiles only (no selection): `queries` against `passes` copies of themselves, split over
/// `threads` workers exactly like the kNN kernel.
fn gemm_only(queries: &[f32], dim: usize, passes: usize, threads: usize, shape: TileShape) {
    let n_queries = queries.len() / dim.max(1);
    (0..threads).into_par_iter().for_each(|w| {
        let first = w * n_queries / threads;
        let last = (w + 1) * n_queries / threads;
        let mine = &queries[first * dim..last * dim];
        let mut tile = vec![0.0f32; shape.query_rows * shape.ref_rows];
        let mut sink = 0.0f32;
        for _ in 0..passes {
            for ref_first in (0..n_queries).step_by(shape.ref_rows) {
                let n_ref = shape.ref_rows.min(n_queries - ref_first);
                let refs = &queries[ref_first * dim..(ref_first + n_ref) * dim];
                for query_first in (0..last - first).step_by(shape.query_rows) {
                    let n_query = shape.query_rows.min(last - first - query_first);
                    let q = &mine[query_first * dim..(query_first + n_query) * dim];
                    gemm_tile(&mut tile, shape.ref_rows, q, n_query, refs, n_ref, dim);
                    sink += tile[0];
                }
            }
        }
        std::hint::black_box(sink);
    });
}

/// (rows, dim, byte offset of the data) of a C-order little-endian float32 2-D `.npy` file.
fn npy_header(path: &str) -> (usize, usize, u64) {
    let mut file = std::fs::File::open(path).expect("open npy");
    let mut magic = [0u8; 10];
    file.read_exact(&mut magic).expect("npy magic");
    assert_eq!(&magic[..6], b"\x93NUMPY", "{path} is not .npy");
    let (header_len, offset) = if magic[6] == 1 {
        (u16::from_le_bytes([magic[8], magic[9]]) as usize, 10u64)
    } else {
        let mut rest = [0u8; 2];
        file.read_exact(&mut rest).unwrap();
        (
            u32::from_le_bytes([magic[8], magic[9], rest[0], rest[1]]) as usize,
            12u64,
        )
    };
    let mut header = vec![0u8; header_len];
    file.read_exact(&mut header).unwrap();
    let header = String::from_utf8_lossy(&header).to_string();
    assert!(
        header.contains("'<f4'"),
        "{path}: float32 little-endian expected: {header}"
    );
    assert!(
        header.contains("'fortran_order': False"),
        "{path}: C order expected"
    );
    let shape = &header[header.find("'shape': (").unwrap() + 10..];
    let shape = &shape[..shape.find(')').unwrap()];
    let dims: Vec<usize> = shape
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    (dims[0], dims[1], offset + header_len as u64)
}

fn read_block(path: &str, offset: u64, dim: usize, rows: std::ops::Range<usize>) -> Array2<f32> {
    let mut file = std::fs::File::open(path).expect("open npy");
    file.seek(SeekFrom::Start(offset + (rows.start * dim * 4) as u64))
        .unwrap();
    let mut bytes = vec![0u8; rows.len() * dim * 4];
    file.read_exact(&mut bytes).expect("read rows");
    let values: Vec<f32> = bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    Array2::from_shape_vec((rows.len(), dim), values).unwrap()
}

fn write_npy_i64(path: &str, values: &[i64], n_rows: usize, n_cols: usize) {
    let mut header =
        format!("{{'descr': '<i8', 'fortran_order': False, 'shape': ({n_rows}, {n_cols}), }}");
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut out = Vec::with_capacity(10 + header.len() + values.len() * 8);
    out.extend_from_slice(b"\x93NUMPY\x01\x00");
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    for v in values {
        out.extend_from_slice(&v.to_le_bytes());
    }
    std::fs::write(path, out).expect("write indices");
}

/// CPU seconds used by this process so far (all threads).
fn cpu_seconds() -> f64 {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage fills the struct it is given.
    let usage = unsafe {
        libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr());
        usage.assume_init()
    };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 * 1e-6;
    tv(usage.ru_utime) + tv(usage.ru_stime)
}
