//! What a run produces, as plain data: the global values every rank agrees on, and each rank's
//! slice of the per-row results. `io::results` writes them to `results.h5`; `pipeline` builds them.

use ndarray::Array2;
use serde::Serialize;

/// Every phase `run.json` reports, in pipeline order.
pub const PHASES: [&str; 10] = [
    "read",
    "preprocess",
    "knn",
    "graph",
    "components",
    "pagerank",
    "leiden",
    "spectral",
    "fft",
    "write",
];

/// Row identifiers from the input.
#[derive(Debug, Clone, PartialEq)]
pub enum Ids {
    /// No id column: the global row number is the id.
    RowNumbers,
    Int(Vec<i64>),
    Str(Vec<String>),
}

impl Ids {
    pub fn len_or(&self, n_rows: usize) -> usize {
        match self {
            Ids::RowNumbers => n_rows,
            Ids::Int(v) => v.len(),
            Ids::Str(v) => v.len(),
        }
    }
}

/// Values reduced over all ranks (identical on every rank).
#[derive(Debug, Clone, Default)]
pub struct GlobalResults {
    pub version: String,
    pub config_toml: String,
    pub n_rows: usize,
    pub dim: usize,
    pub n_ranks: usize,
    /// Kind of ids: true when the input has string ids (longest string length in `ids_max_len`).
    pub string_ids: bool,
    pub ids_max_len: usize,
    pub int_ids: bool,
    pub stats_mean: Vec<f64>,
    pub norm_min: f64,
    pub norm_max: f64,
    pub knn_k: Option<usize>,
    pub n_components: Option<u64>,
    pub pagerank: Option<PagerankSummary>,
    pub leiden: Option<LeidenSummary>,
    pub spectral: Option<SpectralSummary>,
    pub fft: Option<FftSummary>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct PagerankSummary {
    pub iterations: usize,
    pub residual: f64,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct LeidenSummary {
    pub n_clusters: usize,
    /// The objective's value (modularity, or the CPM quality).
    pub modularity: f64,
    pub iterations: usize,
    pub converged: bool,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct SpectralSummary {
    pub eigenvalues: Vec<f64>,
    pub n_clusters: usize,
    pub n_eigs: usize,
    pub iterations: usize,
    pub converged: bool,
}

#[derive(Debug, Clone, Default)]
pub struct FftSummary {
    pub mean_power: Vec<f64>,
    pub bins: usize,
    /// Total sequences and total windows over all ranks.
    pub n_sequences: usize,
    pub n_windows: usize,
    /// Histogram of period-3 scores (edges and counts), for the report.
    pub score_edges: Vec<f64>,
    pub score_counts: Vec<u64>,
}

/// This rank's slice of the per-row (and per-sequence / per-window) results.
#[derive(Debug, Clone, Default)]
pub struct LocalResults {
    /// First global row of this rank's block.
    pub row_start: usize,
    pub n_local: usize,
    pub ids: Option<Ids>,
    /// n_local x k, global row numbers, nearest first.
    pub knn_indices: Option<Vec<i64>>,
    pub knn_distances: Option<Vec<f32>>,
    pub component_labels: Option<Vec<i64>>,
    pub pagerank_scores: Option<Vec<f64>>,
    /// Leiden community of each local row (the smallest global row of the community).
    pub leiden_labels: Option<Vec<i64>>,
    pub spectral_embedding: Option<Array2<f32>>,
    pub spectral_labels: Option<Vec<i32>>,
    /// First global sequence index of this rank's feature rows, and the rows (n_seq_local x bins).
    pub fft_seq_start: usize,
    pub fft_features: Option<Array2<f32>>,
    /// First global window index of this rank's windows, and (seq, start, score) per window.
    pub fft_window_start: usize,
    pub fft_period3: Option<Vec<(i64, i64, f32)>>,
}
