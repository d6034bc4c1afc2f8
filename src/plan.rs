//! The memory plan of a run: the peak bytes per rank predicted from the dataset's shape and the
//! config alone (before any row is read), set against the memory a rank can see. `embsolve run`
//! refuses a plan that does not fit (exit 2, naming the key to change); `embsolve plan` prints it.
//!
//! The model counts what the phases hold, not what a particular allocator does: the rank's row
//! block, the kNN lists, the symmetrised graph, and, on top of those, the largest transient of one
//! phase (the ring's visiting blocks or the partitioned search's cell store and probe rounds, the
//! whole graph that Leiden gathers on every rank, the Lanczos basis). Phases run one after the
//! other, so the peak is the resident part plus the largest transient.

use crate::config::{KnnMethod, RunConfig};
use crate::distributed::partitioned::{resolve_partitions, ROUND_ROWS};
use embsolve_kernels::error::{Error, Result};
use serde::Serialize;

/// Bytes of the process itself (binary, MPI and HDF5 libraries, thread stacks, allocator slack).
pub const PROCESS_BYTES: u64 = 96 << 20;
/// A run is refused when its predicted peak exceeds this fraction of the visible memory: the
/// model leaves room for what it does not count (allocator fragmentation, MPI buffers).
pub const FIT_FRACTION: f64 = 0.9;
/// Bytes per stored graph entry that Leiden holds at its peak: the gathered graph (column u32 +
/// weight f64), the gather's send and receive buffers, the per-level copies and aggregates
/// (measured: 445 MiB over the resident part for 4.9 million entries, 200,000 rows, one rank).
const LEIDEN_BYTES_PER_ENTRY: u64 = 88;
/// Bytes per stored entry of a rank's symmetrised CSR (global column u64 + weight f64).
const CSR_BYTES_PER_ENTRY: u64 = 16;

/// One line of the plan.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct PlanItem {
    pub what: String,
    /// The key that makes this item smaller.
    pub key: String,
    pub bytes: u64,
}

/// The predicted memory of one rank.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct MemoryPlan {
    pub n_rows: usize,
    pub dim: usize,
    pub n_ranks: usize,
    /// Rows of the largest row block.
    pub local_rows: usize,
    /// Held from the read to the write.
    pub resident: Vec<PlanItem>,
    /// One phase at a time; the largest counts.
    pub transient: Vec<PlanItem>,
    pub peak_bytes: u64,
}

impl MemoryPlan {
    /// The plan of `config` on `n_ranks` ranks for a dataset of `n_rows` x `dim` (f32 on input).
    pub fn new(config: &RunConfig, n_rows: usize, dim: usize, n_ranks: usize) -> MemoryPlan {
        let n_ranks = n_ranks.max(1);
        let local_rows = n_rows.div_ceil(n_ranks);
        let m = local_rows as u64;
        let n = n_rows as u64;
        let d = dim as u64;
        let k = config.knn.k as u64;
        let block = m * d * 4;
        let item = |what: &str, key: &str, bytes: u64| PlanItem {
            what: what.to_string(),
            key: key.to_string(),
            bytes,
        };

        let mut resident = vec![
            item("process (libraries, stacks)", "", PROCESS_BYTES),
            item("row block (f32)", "run ranks", block),
            item("kNN lists (u64 row + f32 distance)", "knn.k", m * k * 12),
            item(
                "symmetrised graph (CSR, up to 2k entries per row)",
                "knn.k",
                m * 2 * k * CSR_BYTES_PER_ENTRY + (m + 1) * 8,
            ),
        ];
        if config.preprocess.pca_dim > 0 {
            resident.push(item(
                "PCA projection (f32)",
                "preprocess.pca_dim",
                m * config.preprocess.pca_dim as u64 * 4,
            ));
        }

        let mut transient = vec![item(
            "reading (decoded batch beside the block)",
            "run ranks",
            block,
        )];
        match config.knn.method {
            KnnMethod::Exact => transient.push(item(
                "exact kNN ring (visiting block sent and received)",
                "knn.method",
                2 * block,
            )),
            KnnMethod::Partitioned => {
                let cells = resolve_partitions(n_rows, config.knn.partitions) as u64;
                let probes = config.knn.probes.max(1) as u64;
                // The rows received for the rank's cells and the cell store (cells are dealt by
                // size: 1.5 blocks on the most loaded rank), the home lists found, sent and
                // received, one round of further probes sent and received, and the centroids.
                let lists = m * k * 12;
                let store = block + block + block / 2 + 3 * lists;
                let shipped = (m * probes.saturating_sub(1)).min(ROUND_ROWS as u64);
                transient.push(item(
                    "partitioned kNN (cell store, lists in transit, one probe round, centroids)",
                    "knn.partitions",
                    store + 2 * shipped * (d * 4 + 8 + k * 12) + cells * d * 4 * 2,
                ));
            }
        }
        if config.leiden.enabled {
            transient.push(item(
                "Leiden (the whole graph gathered on every rank)",
                "leiden.enabled",
                n * 2 * k * LEIDEN_BYTES_PER_ENTRY + n * 8 * 4,
            ));
        }
        if config.spectral.enabled {
            let n_eigs = config.spectral.n_eigs as u64;
            let basis = (2 * n_eigs).max(n_eigs + 24) + 25;
            transient.push(item(
                "spectral (Lanczos basis, f64)",
                "spectral.n_eigs",
                m * basis * 8 + m * n_eigs * 8,
            ));
        }
        let held: u64 = resident.iter().map(|i| i.bytes).sum();
        let largest = transient.iter().map(|i| i.bytes).max().unwrap_or(0);
        MemoryPlan {
            n_rows,
            dim,
            n_ranks,
            local_rows,
            resident,
            transient,
            peak_bytes: held + largest,
        }
    }

    /// The transient item that sets the peak.
    pub fn largest_transient(&self) -> Option<&PlanItem> {
        self.transient.iter().max_by_key(|i| i.bytes)
    }

    /// Ok when the peak fits `visible` bytes per rank (with `FIT_FRACTION`), else a config error
    /// that names the key to change.
    pub fn check_fits(&self, visible: &VisibleMemory) -> Result<()> {
        let allowed = (visible.bytes as f64 * FIT_FRACTION) as u64;
        if self.peak_bytes <= allowed {
            return Ok(());
        }
        let largest = self.largest_transient();
        let block_heavy = self
            .resident
            .iter()
            .find(|i| i.key == "run ranks")
            .map_or(0, |i| i.bytes);
        let (key, advice) = match largest {
            Some(item) if item.key == "leiden.enabled" && item.bytes > block_heavy => (
                "leiden.enabled",
                "Leiden gathers the whole graph on every rank: set leiden.enabled = false or \
                 lower knn.k"
                    .to_string(),
            ),
            Some(item) if item.key == "spectral.n_eigs" && item.bytes > block_heavy => (
                "spectral.n_eigs",
                "lower spectral.n_eigs or run on more ranks".to_string(),
            ),
            Some(item) if item.key == "knn.method" => (
                "knn.method",
                format!(
                    "run on more ranks (each holds n/P rows), or with knn.method = \"{}\" \
                     (no visiting blocks), or state the memory a rank really has with \
                     run.memory_per_rank",
                    KnnMethod::Partitioned.name()
                ),
            ),
            _ => (
                "run.memory_per_rank",
                "run on more ranks (each holds n/P rows), or state the memory a rank really \
                 has with run.memory_per_rank"
                    .to_string(),
            ),
        };
        Err(Error::config(format!(
            "the memory plan does not fit (key `{key}`): {} rows x {} on {} rank(s) needs about \
             {} per rank (largest phase: {}), but a rank can use {} ({}); {advice}",
            self.n_rows,
            self.dim,
            self.n_ranks,
            human_bytes(self.peak_bytes),
            largest.map_or("none", |i| i.what.as_str()),
            human_bytes(allowed),
            visible.source,
        )))
    }

    /// The plan as lines for the log and `embsolve plan`.
    pub fn lines(&self) -> Vec<String> {
        let mut out = vec![format!(
            "memory plan: {} rows x {} on {} rank(s), {} rows per rank: peak {} per rank",
            self.n_rows,
            self.dim,
            self.n_ranks,
            self.local_rows,
            human_bytes(self.peak_bytes)
        )];
        for item in &self.resident {
            out.push(format!(
                "  held       {:>10}  {}",
                human_bytes(item.bytes),
                item.what
            ));
        }
        for item in &self.transient {
            out.push(format!(
                "  one phase  {:>10}  {}",
                human_bytes(item.bytes),
                item.what
            ));
        }
        out
    }
}

/// Floating-point operations of the kNN distance GEMMs on one rank (2 per multiply-add).
/// Exact: every pair once (the symmetric tiles), n^2 d / P. Partitioned: each row against the
/// rows of its probed cells (about n / cells each), plus the certificate sample against all rows.
pub fn knn_work(config: &RunConfig, n_rows: usize, dim: usize, n_ranks: usize) -> f64 {
    let n = n_rows as f64;
    let d = dim as f64;
    let p = n_ranks.max(1) as f64;
    match config.knn.method {
        KnnMethod::Exact => n * n * d / p,
        KnnMethod::Partitioned => {
            let cells = resolve_partitions(n_rows, config.knn.partitions) as f64;
            // probes = 0 picks the count on the sample; 4 is typical for recall 0.95-0.99.
            let probes = if config.knn.probes > 0 {
                config.knn.probes as f64
            } else {
                4.0
            };
            let sample = (config.knn.recall_sample as f64).min(n);
            (2.0 * n * (n / cells) * d * probes + 2.0 * sample * n * d) / p
        }
    }
}

/// The memory one rank may use, and where that figure came from.
#[derive(Debug, Clone, PartialEq)]
pub struct VisibleMemory {
    pub bytes: u64,
    pub source: String,
}

/// The memory a rank can see: `run.memory_per_rank` when set, else the smallest of the Slurm
/// allocation (`SLURM_MEM_PER_CPU` x threads, `SLURM_MEM_PER_NODE` / local ranks), the cgroup
/// limit / local ranks and the node's available memory / local ranks.
pub fn visible_memory(configured: u64, local_ranks: usize, threads: usize) -> VisibleMemory {
    if configured > 0 {
        return VisibleMemory {
            bytes: configured,
            source: "run.memory_per_rank".to_string(),
        };
    }
    let ranks = local_ranks.max(1) as u64;
    let mut candidates: Vec<(u64, String)> = Vec::new();
    let env_mib = |name: &str| {
        std::env::var(name)
            .ok()
            .and_then(|v| v.trim().parse::<u64>().ok())
            .filter(|&v| v > 0)
    };
    if let Some(mib) = env_mib("SLURM_MEM_PER_CPU") {
        candidates.push((
            mib * (1 << 20) * threads.max(1) as u64,
            format!("SLURM_MEM_PER_CPU={mib} MiB x {threads} thread(s)"),
        ));
    }
    if let Some(mib) = env_mib("SLURM_MEM_PER_NODE") {
        candidates.push((
            mib * (1 << 20) / ranks,
            format!("SLURM_MEM_PER_NODE={mib} MiB / {ranks} rank(s) on the node"),
        ));
    }
    if let Some(limit) = cgroup_limit() {
        candidates.push((limit / ranks, format!("cgroup limit / {ranks} rank(s)")));
    }
    if let Some(available) = meminfo_available() {
        candidates.push((
            available / ranks,
            format!("MemAvailable / {ranks} rank(s) on the node"),
        ));
    }
    candidates
        .into_iter()
        .min_by_key(|c| c.0)
        .map(|(bytes, source)| VisibleMemory { bytes, source })
        .unwrap_or(VisibleMemory {
            bytes: u64::MAX,
            source: "no limit found".to_string(),
        })
}

fn cgroup_limit() -> Option<u64> {
    for path in [
        "/sys/fs/cgroup/memory.max",
        "/sys/fs/cgroup/memory/memory.limit_in_bytes",
    ] {
        if let Ok(text) = std::fs::read_to_string(path) {
            if let Ok(v) = text.trim().parse::<u64>() {
                // cgroup v1 reports "no limit" as a huge page-aligned number.
                if v < (1u64 << 60) {
                    return Some(v);
                }
            }
        }
    }
    None
}

fn meminfo_available() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    text.lines()
        .find(|l| l.starts_with("MemAvailable:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kib| kib.parse::<u64>().ok())
        .map(|kib| kib * 1024)
}

/// A size as "512MiB", "4GiB", "4G", "4096M" or a plain byte count; 0 / "" / "auto" = detect.
pub fn parse_size(text: &str) -> std::result::Result<u64, String> {
    let t = text.trim();
    if t.is_empty() || t.eq_ignore_ascii_case("auto") {
        return Ok(0);
    }
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a size (for example \"4GiB\" or \"512M\")"))?;
    let scale: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        "t" | "tb" | "tib" => 1 << 40,
        _ => {
            return Err(format!(
                "{text:?} has an unknown unit (use K, M, G or T, binary)"
            ))
        }
    };
    if !value.is_finite() || value < 0.0 {
        return Err(format!("{text:?} is not a size"));
    }
    Ok((value * scale as f64) as u64)
}

/// Bytes for people: "1.5 GiB".
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(extra: &[&str]) -> RunConfig {
        let sets: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        RunConfig::from_toml_str("[input]\npath = \"x\"\n[output]\ndir = \"y\"\n", &sets).unwrap()
    }

    #[test]
    fn sizes_parse_with_binary_units() {
        assert_eq!(parse_size("auto").unwrap(), 0);
        assert_eq!(parse_size("").unwrap(), 0);
        assert_eq!(parse_size("512M").unwrap(), 512 << 20);
        assert_eq!(parse_size("4GiB").unwrap(), 4 << 30);
        assert_eq!(parse_size("1.5g").unwrap(), 3 << 29);
        assert_eq!(parse_size("1000").unwrap(), 1000);
        assert!(parse_size("4 parsecs").is_err());
        assert!(parse_size("-1G").is_err());
    }

    #[test]
    fn more_ranks_make_the_row_terms_smaller() {
        let c = config(&["leiden.enabled=false", "spectral.enabled=false"]);
        let one = MemoryPlan::new(&c, 1_000_000, 128, 1);
        let four = MemoryPlan::new(&c, 1_000_000, 128, 4);
        assert_eq!(one.local_rows, 1_000_000);
        assert_eq!(four.local_rows, 250_000);
        // Every term but the process scales with the rows per rank (the CSR's row pointers
        // have one more entry per rank).
        let per_rank = |p: &MemoryPlan| (p.peak_bytes - PROCESS_BYTES) as f64;
        assert!((per_rank(&one) / per_rank(&four) - 4.0).abs() < 1e-3);
        // The block of 1e6 x 128 f32 rows is 512 MB; the ring holds two more.
        let block = 1_000_000u64 * 128 * 4;
        assert!(one.peak_bytes > 3 * block && one.peak_bytes < 5 * block);
    }

    #[test]
    fn leiden_gather_does_not_shrink_with_ranks() {
        let c = config(&["spectral.enabled=false"]);
        let plan = MemoryPlan::new(&c, 10_000_000, 64, 64);
        let largest = plan.largest_transient().unwrap();
        assert_eq!(largest.key, "leiden.enabled");
        let err = plan
            .check_fits(&VisibleMemory {
                bytes: 2 << 30,
                source: "test".into(),
            })
            .unwrap_err();
        assert!(err.message.contains("leiden.enabled"), "{}", err.message);
    }

    #[test]
    fn a_plan_that_does_not_fit_names_a_key_and_the_figures() {
        let c = config(&["leiden.enabled=false", "spectral.enabled=false"]);
        let plan = MemoryPlan::new(&c, 1_000_000, 128, 1);
        let small = VisibleMemory {
            bytes: 1 << 30,
            source: "run.memory_per_rank".into(),
        };
        let err = plan.check_fits(&small).unwrap_err();
        assert!(err.message.contains("`knn.method`"), "{}", err.message);
        assert!(
            err.message.contains("1000000 rows x 128"),
            "{}",
            err.message
        );
        let big = VisibleMemory {
            bytes: 64 << 30,
            source: "test".into(),
        };
        plan.check_fits(&big).unwrap();
    }

    #[test]
    fn the_partitioned_method_holds_its_cell_store() {
        let exact = config(&["leiden.enabled=false", "spectral.enabled=false"]);
        let partitioned = config(&[
            "leiden.enabled=false",
            "spectral.enabled=false",
            "knn.method=\"partitioned\"",
            "knn.probes=1",
        ]);
        let a = MemoryPlan::new(&exact, 200_000, 128, 2);
        let b = MemoryPlan::new(&partitioned, 200_000, 128, 2);
        // The ring holds two visiting blocks; the partitioned search a received copy, the
        // store and lists in transit.
        assert!(b.peak_bytes > a.peak_bytes);
        assert_eq!(b.largest_transient().unwrap().key, "knn.partitions");
    }

    #[test]
    fn human_bytes_reads_well() {
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(3 << 29), "1.5 GiB");
    }
}
