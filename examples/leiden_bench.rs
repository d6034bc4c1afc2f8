//! Leiden communities of a graph given as CSR files, for bench/leiden_bench.py: reads
//! `indptr.i64`, `indices.i64`, `weights.f64` (little-endian, symmetric) from a directory, runs the
//! kernels crate's Leiden (modularity), writes `labels.i64` there and prints a JSON line with the
//! time, the modularity and the number of communities.
//!
//! Usage: leiden_bench DIR RESOLUTION MAX_ITERATIONS SEED

use embsolve_kernels::csr::Csr;
use embsolve_kernels::leiden::{leiden, LeidenParams, Objective};
use std::time::Instant;

#[path = "common/csr_files.rs"]
mod csr_files;
use csr_files::{read_csr, Args};

fn main() {
    let args = Args::parse("leiden_bench DIR RESOLUTION MAX_ITERATIONS SEED", 3);
    let (row_ptr, cols, values) = read_csr(&args.dir);
    let graph = Csr {
        n_cols: row_ptr.len() - 1,
        row_ptr,
        cols: cols.into_iter().map(|c| c as u32).collect(),
        values,
    };
    let params = LeidenParams {
        objective: Objective::Modularity,
        resolution: args.number(0),
        max_iterations: args.number(1) as usize,
        seed: args.number(2) as u64,
    };
    let start = Instant::now();
    let outcome = leiden(&graph, &params);
    let leiden_s = start.elapsed().as_secs_f64();
    let labels: Vec<u8> = outcome
        .labels
        .iter()
        .flat_map(|&l| (l as i64).to_le_bytes())
        .collect();
    std::fs::write(args.dir.join("labels.i64"), labels).expect("write labels");
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
