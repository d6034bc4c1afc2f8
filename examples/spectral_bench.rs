//! Spectral clustering of a graph given as CSR files, for bench/spectral_bench.py: reads
//! `indptr.i64`, `indices.i64`, `weights.f64` (little-endian) from a directory, finds the
//! eigenpairs of D^-1/2 W D^-1/2 one connected component at a time and runs k-means, on one
//! process with the rayon threads (the solver `embsolve run` uses), writes `labels.i32` there and
//! prints a JSON line with the timings.
//!
//! Usage: spectral_bench DIR N_EIGS N_CLUSTERS TOL MAX_ITER SEED

use embsolve::config::SpectralSection;
use embsolve::distributed::component_spectrum::{component_spectrum, ComponentGraph};
use embsolve::distributed::spectral::cluster_eigenpairs;
use embsolve_comm::SerialComm;
use embsolve_kernels::csr::Csr;
use embsolve_kernels::lanczos::LanczosParams;
use embsolve_kernels::linop::SerialReduce;
use embsolve_kernels::unionfind::UnionFind;
use std::time::Instant;

#[path = "common/csr_files.rs"]
mod csr_files;
use csr_files::{read_csr, Args};

/// The normalised adjacency of a CSR graph.
struct NormalizedCsr {
    indptr: Vec<usize>,
    indices: Vec<usize>,
    values: Vec<f64>,
    degrees: Vec<f64>,
}

impl NormalizedCsr {
    fn new(indptr: Vec<usize>, indices: Vec<usize>, weights: Vec<f64>) -> Self {
        let n = indptr.len() - 1;
        let degrees: Vec<f64> = (0..n)
            .map(|r| weights[indptr[r]..indptr[r + 1]].iter().sum())
            .collect();
        let scale: Vec<f64> = degrees
            .iter()
            .map(|&d| if d > 0.0 { 1.0 / d.sqrt() } else { 0.0 })
            .collect();
        let mut values = weights;
        for r in 0..n {
            for e in indptr[r]..indptr[r + 1] {
                values[e] *= scale[r] * scale[indices[e]];
            }
        }
        NormalizedCsr {
            indptr,
            indices,
            values,
            degrees,
        }
    }
}

fn main() {
    env_logger::init();
    let args = Args::parse("spectral_bench DIR N_EIGS N_CLUSTERS TOL MAX_ITER SEED", 5);
    let params = SpectralSection {
        n_eigs: args.number(0) as usize,
        n_clusters: args.number(1) as usize,
        tol: args.number(2),
        max_iter: args.number(3) as usize,
        seed: args.number(4) as u64,
        ..Default::default()
    };
    let start = Instant::now();
    let (indptr, indices, weights) = read_csr(&args.dir);
    let operator = NormalizedCsr::new(indptr, indices, weights);
    let n_rows = operator.degrees.len();
    let load_s = start.elapsed().as_secs_f64();

    let start = Instant::now();
    let mut sets = UnionFind::new(n_rows);
    for row in 0..n_rows {
        for &col in &operator.indices[operator.indptr[row]..operator.indptr[row + 1]] {
            sets.union(row as u32, col as u32);
        }
    }
    let labels: Vec<i64> = sets.roots().iter().map(|&r| i64::from(r)).collect();
    let matrix = Csr {
        n_cols: n_rows,
        row_ptr: operator.indptr.clone(),
        cols: operator.indices.iter().map(|&c| c as u32).collect(),
        values: operator.values.clone(),
    };
    let columns: Vec<u64> = (0..n_rows as u64).collect();
    let graph = ComponentGraph {
        n_rows,
        row_start: 0,
        labels: &labels,
        degrees: &operator.degrees,
        normalized: &matrix,
        columns: &columns,
        operator: &matrix,
    };
    let lanczos_params = LanczosParams {
        n_eigs: params.n_eigs,
        tol: params.tol,
        max_iter: params.max_iter,
        seed: params.seed,
    };
    let eigen = component_spectrum(&SerialComm, &graph, &lanczos_params);
    let eigen_s = start.elapsed().as_secs_f64();
    let largest_residual = eigen.residuals.iter().fold(0.0f64, |m, &r| m.max(r));
    let outcome = cluster_eigenpairs(eigen, &SerialReduce, n_rows, 0, &params);
    let spectral_s = start.elapsed().as_secs_f64();

    let labels: Vec<u8> = outcome
        .labels
        .iter()
        .flat_map(|l| l.to_le_bytes())
        .collect();
    std::fs::write(args.dir.join("labels.i32"), labels).expect("write labels");
    let json = serde_json::json!({
        "n_rows": n_rows,
        "threads": rayon::current_num_threads(),
        "load_s": load_s,
        "eigen_s": eigen_s,
        "spectral_s": spectral_s,
        "largest_residual": largest_residual,
        "iterations": outcome.iterations,
        "converged": outcome.converged,
        "n_clusters": outcome.n_clusters,
        "eigenvalues": outcome.eigenvalues,
    });
    println!("{json}");
}
