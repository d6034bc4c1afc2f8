//! `run.json` as a typed record: what scripts read after a run (its shape is the contract in
//! SPEC.md). Each phase fills its own part, in the `publish` function of its module under
//! `distributed/`.

use crate::telemetry::Span;
use serde::Serialize;
use std::collections::BTreeMap;

/// Summary of a finished run (what `run.json` holds).
#[derive(Debug, Clone, Serialize)]
pub struct RunSummary {
    pub version: String,
    pub n_rows: usize,
    pub dim: usize,
    pub n_ranks: usize,
    pub backend: String,
    pub threads_per_rank: usize,
    pub phases: BTreeMap<String, Span>,
    pub peak_rss_bytes: MinMax,
    pub results: ResultsRecord,
}

/// Max and min over ranks.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct MinMax {
    pub max: u64,
    pub min: u64,
}

/// The solvers' answers. A solver that did not run leaves its fields out.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ResultsRecord {
    pub knn: KnnRecord,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub n_components: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pagerank_iterations: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub leiden: Option<embsolve_kernels::results::LeidenSummary>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub n_clusters: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub eigenvalues: Option<Vec<f64>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lanczos_iterations: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lanczos_converged: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub spectral: Option<SpectralRecord>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fft_windows: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fft_sequences: Option<usize>,
    /// Adjusted Rand index of each clustering against `input.label_column` (only with labels).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ari: Option<AriRecord>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct KnnRecord {
    pub method: String,
    /// Measured recall@k on a sample (approximate methods only; exact lists have recall 1).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recall_estimate: Option<f64>,
    /// 95% confidence interval of `recall_estimate`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recall_interval: Option<[f64; 2]>,
    /// Rows searched exactly for the estimate.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recall_sample: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub partitions: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub probes: Option<usize>,
    /// True when `probes` was chosen to meet `knn.recall` on the sample.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub probes_from_recall: Option<bool>,
    /// Rows whose probed cells held fewer than k other rows, searched exactly.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exact_rows: Option<u64>,
    /// True when `knn.recall` needed more probes than the exact search costs, so the exact
    /// lists were computed (recall 1).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exact_fallback: Option<bool>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct SpectralRecord {
    pub converged: bool,
    pub largest_residual: f64,
    pub iterations: usize,
    /// "config" (`spectral.n_clusters` given) or "eigengap" (chosen automatically).
    pub n_clusters_from: String,
    /// The automatic choice and the scores it saw (only when chosen automatically).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub eigengap: Option<EigengapRecord>,
}

/// The eigengap rule's choice: `log_ratios[i]` = ln((1 - lambda_{k+1}) / (1 - lambda_k)) for
/// k = `first_k` + i (null between two component eigenvalues; the gap after the last component
/// eigenvalue counts as ln 10).
#[derive(Debug, Clone, Default, Serialize)]
pub struct EigengapRecord {
    pub n_clusters: usize,
    pub first_k: usize,
    pub log_ratios: Vec<Option<f64>>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct AriRecord {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub components: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub leiden: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub spectral: Option<f64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absent_solvers_leave_their_keys_out() {
        let record = ResultsRecord {
            knn: KnnRecord {
                method: "exact".into(),
                ..Default::default()
            },
            n_components: Some(3),
            ..Default::default()
        };
        let json = serde_json::to_value(&record).unwrap();
        assert_eq!(json["knn"]["method"], "exact");
        assert_eq!(json["n_components"], 3);
        assert!(json.get("eigenvalues").is_none());
        assert!(json.get("ari").is_none());
        assert!(json["knn"].get("recall_estimate").is_none());
    }
}
