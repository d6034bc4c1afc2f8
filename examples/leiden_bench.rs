//! Leiden communities of a graph given as CSR files, for bench/leiden_bench.py: reads
//! `indptr.i64`, `indices.i64`, `weights.f64` (little-endian, symmetric) from a directory, runs the
//! kernels crate's Leiden (modularity), writes `labels.i64` there and prints a JSON line with the
//! time, the modularity and the number of communities.
//!
//! Usage: leiden_bench DIR RESOLUTION MAX_ITERATIONS SEED

use embsolve_kernels::csr::Csr;
use embsolve_kernels::leiden::{leiden, LeidenParams, Objective};
use std::path::Path;
use std::time::Instant;

fn read_raw<T: bytemuck::Pod>(path: &Path) -> Vec<T> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    bytemuck::pod_collect_to_vec(&bytes)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 5 {
        eprintln!("usage: leiden_bench DIR RESOLUTION MAX_ITERATIONS SEED");
        std::process::exit(2);
    }
    let dir = Path::new(&args[1]);
    let number = |i: usize| -> f64 {
        args[i]
            .parse()
            .unwrap_or_else(|_| panic!("argument {i} is not a number: {}", args[i]))
    };
    let row_ptr: Vec<usize> = read_raw::<i64>(&dir.join("indptr.i64"))
        .into_iter()
        .map(|v| v as usize)
        .collect();
    let cols: Vec<u32> = read_raw::<i64>(&dir.join("indices.i64"))
        .into_iter()
        .map(|v| v as u32)
        .collect();
    let values: Vec<f64> = read_raw(&dir.join("weights.f64"));
    let graph = Csr {
        n_cols: row_ptr.len() - 1,
        row_ptr,
        cols,
        values,
    };
    let params = LeidenParams {
        objective: Objective::Modularity,
        resolution: number(2),
        max_iterations: number(3) as usize,
        seed: number(4) as u64,
    };
    let start = Instant::now();
    let outcome = leiden(&graph, &params);
    let leiden_s = start.elapsed().as_secs_f64();
    let labels: Vec<u8> = outcome
        .labels
        .iter()
        .flat_map(|&l| (l as i64).to_le_bytes())
        .collect();
    std::fs::write(dir.join("labels.i64"), labels).expect("write labels");
    let json = serde_json::json!({
        "n_nodes": graph.n_cols,
        "n_entries": graph.cols.len(),
        "leiden_s": leiden_s,
        "modularity": outcome.quality,
        "n_communities": outcome.n_communities,
        "iterations": outcome.iterations,
        "converged": outcome.converged,
    });
    println!("{json}");
}
