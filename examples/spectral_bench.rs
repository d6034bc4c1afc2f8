//! Spectral clustering of a graph given as CSR files, for bench/spectral_bench.py: reads
//! `indptr.i64`, `indices.i64`, `weights.f64` (little-endian) from a directory, runs Lanczos and
//! k-means on D^-1/2 W D^-1/2 on one process with the rayon threads (the connected components'
//! eigenvalue-1 vectors known in advance, as `embsolve run` does), writes `labels.i32` there and
//! prints a JSON line with the timings.
//!
//! Usage: spectral_bench DIR N_EIGS N_CLUSTERS TOL MAX_ITER SEED

use embsolve::comm::SerialComm;
use embsolve::config::SpectralSection;
use embsolve::dist::spectral::{component_eigenpairs, spectral_on_operator};
use embsolve::kernels::linop::{LinOp, SerialReduce};
use embsolve::kernels::unionfind::UnionFind;
use rayon::prelude::*;
use std::path::Path;
use std::time::Instant;

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

impl LinOp for NormalizedCsr {
    fn local_len(&self) -> usize {
        self.indptr.len() - 1
    }
    fn apply(&self, x: &[f64], y: &mut [f64]) {
        y.par_chunks_mut(1024).enumerate().for_each(|(chunk, ys)| {
            for (offset, yi) in ys.iter_mut().enumerate() {
                let r = chunk * 1024 + offset;
                let range = self.indptr[r]..self.indptr[r + 1];
                *yi = self.indices[range.clone()]
                    .iter()
                    .zip(&self.values[range])
                    .map(|(&c, &v)| v * x[c])
                    .sum();
            }
        });
    }
}

fn read_raw<T: bytemuck::Pod>(path: &Path) -> Vec<T> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    bytemuck::pod_collect_to_vec(&bytes)
}

fn main() {
    env_logger::init();
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 7 {
        eprintln!("usage: spectral_bench DIR N_EIGS N_CLUSTERS TOL MAX_ITER SEED");
        std::process::exit(2);
    }
    let dir = Path::new(&args[1]);
    let number = |i: usize| -> f64 {
        args[i]
            .parse()
            .unwrap_or_else(|_| panic!("argument {i} is not a number: {}", args[i]))
    };
    let params = SpectralSection {
        n_eigs: number(2) as usize,
        n_clusters: number(3) as usize,
        tol: number(4),
        max_iter: number(5) as usize,
        seed: number(6) as u64,
        ..Default::default()
    };
    let start = Instant::now();
    let indptr: Vec<usize> = read_raw::<i64>(&dir.join("indptr.i64"))
        .into_iter()
        .map(|v| v as usize)
        .collect();
    let indices: Vec<usize> = read_raw::<i64>(&dir.join("indices.i64"))
        .into_iter()
        .map(|v| v as usize)
        .collect();
    let weights: Vec<f64> = read_raw(&dir.join("weights.f64"));
    let operator = NormalizedCsr::new(indptr, indices, weights);
    let n_rows = operator.local_len();
    let load_s = start.elapsed().as_secs_f64();

    let start = Instant::now();
    let mut sets = UnionFind::new(n_rows);
    for row in 0..n_rows {
        for &col in &operator.indices[operator.indptr[row]..operator.indptr[row + 1]] {
            sets.union(row as u32, col as u32);
        }
    }
    let labels: Vec<i64> = sets.roots().iter().map(|&r| i64::from(r)).collect();
    let known = component_eigenpairs(&SerialComm, &labels, &operator.degrees, params.n_eigs);
    let outcome = spectral_on_operator(&operator, &SerialReduce, n_rows, 0, &params, Some(&known));
    let spectral_s = start.elapsed().as_secs_f64();

    let labels: Vec<u8> = outcome
        .labels
        .iter()
        .flat_map(|l| l.to_le_bytes())
        .collect();
    std::fs::write(dir.join("labels.i32"), labels).expect("write labels");
    let json = serde_json::json!({
        "n_rows": n_rows,
        "threads": rayon::current_num_threads(),
        "load_s": load_s,
        "spectral_s": spectral_s,
        "iterations": outcome.iterations,
        "converged": outcome.converged,
        "n_clusters": outcome.n_clusters,
        "eigenvalues": outcome.eigenvalues,
    });
    println!("{json}");
}
