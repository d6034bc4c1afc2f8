//! What the bench examples share: their numeric command-line arguments and the graph they read, a
//! CSR in three little-endian files (`indptr.i64`, `indices.i64`, `weights.f64`) that the Python
//! benchmarks write from SciPy.

use std::path::{Path, PathBuf};

/// The directory (first argument) and the numeric arguments after it; exits 2 with `usage`
/// unless there are exactly `n_numbers` of them.
pub struct Args {
    pub dir: PathBuf,
    values: Vec<String>,
}

impl Args {
    pub fn parse(usage: &str, n_numbers: usize) -> Args {
        let mut args = std::env::args().skip(1);
        let dir = args.next().map(PathBuf::from);
        let values: Vec<String> = args.collect();
        match dir {
            Some(dir) if values.len() == n_numbers => Args { dir, values },
            _ => {
                eprintln!("usage: {usage}");
                std::process::exit(2);
            }
        }
    }

    /// Numeric argument `i` (0 = the first after the directory).
    pub fn number(&self, i: usize) -> f64 {
        self.values[i]
            .parse()
            .unwrap_or_else(|_| panic!("argument {} is not a number: {}", i + 2, self.values[i]))
    }
}

fn read_raw<T: bytemuck::Pod>(path: &Path) -> Vec<T> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    bytemuck::pod_collect_to_vec(&bytes)
}

/// The CSR in `dir`: row offsets, column of each entry, weight of each entry.
pub fn read_csr(dir: &Path) -> (Vec<usize>, Vec<usize>, Vec<f64>) {
    let as_usize = |name: &str| -> Vec<usize> {
        read_raw::<i64>(&dir.join(name))
            .into_iter()
            .map(|v| v as usize)
            .collect()
    };
    (
        as_usize("indptr.i64"),
        as_usize("indices.i64"),
        read_raw(&dir.join("weights.f64")),
    )
}
