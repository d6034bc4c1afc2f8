//! Configuration in two stages: TOML (plus `--set section.key=value` overrides) is parsed with
//! unknown keys rejected into `RunConfig`, then validated. The resolved config is passed down
//! explicitly and stored in `results.h5` as the `config` attribute.

pub use embsolve_io::source::{InputFormat, InputSection};
pub use embsolve_kernels::types::{
    Alphabet, EdgeWeight, GraphParams as GraphSection, Metric, Symmetrize,
};

use embsolve_kernels::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Largest `fft.window` (tokens): a window's spectrum and plan are held per thread.
pub const MAX_FFT_WINDOW: usize = 1 << 20;
/// `run.threads` may be up to 4 per visible core, and never less than this.
pub const MIN_THREAD_CAP: usize = 256;

/// The most threads a rank may be asked for: 4 per core it can see, at least `MIN_THREAD_CAP`.
pub fn max_threads() -> usize {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    (4 * cores).max(MIN_THREAD_CAP)
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RunConfig {
    #[serde(default)]
    pub run: RunSection,
    pub input: InputSection,
    #[serde(default)]
    pub preprocess: PreprocessSection,
    #[serde(default)]
    pub knn: KnnSection,
    #[serde(default)]
    pub graph: GraphSection,
    #[serde(default)]
    pub components: ComponentsSection,
    #[serde(default)]
    pub pagerank: PagerankSection,
    #[serde(default)]
    pub leiden: LeidenSection,
    #[serde(default)]
    pub spectral: SpectralSection,
    #[serde(default)]
    pub fft: FftSection,
    pub output: OutputSection,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RunSection {
    /// Threads per rank; 0 = SLURM_CPUS_PER_TASK if set, else cores on this node / local ranks.
    pub threads: usize,
    /// Memory one rank may use ("4GiB", "512M"); "auto" = the smallest of the Slurm allocation,
    /// the cgroup limit and the node's available memory, shared by the ranks on the node. A run
    /// whose memory plan does not fit is refused before it reads.
    pub memory_per_rank: String,
}

impl Default for RunSection {
    fn default() -> Self {
        RunSection {
            threads: 0,
            memory_per_rank: "auto".to_string(),
        }
    }
}

impl RunSection {
    /// `memory_per_rank` in bytes; 0 = detect (validated with the config).
    pub fn memory_per_rank_bytes(&self) -> u64 {
        crate::plan::parse_size(&self.memory_per_rank).unwrap_or(0)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct PreprocessSection {
    pub normalize: bool,
    pub center: bool,
    pub pca_dim: usize,
}

impl Default for PreprocessSection {
    fn default() -> Self {
        PreprocessSection {
            normalize: true,
            center: false,
            pca_dim: 0,
        }
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum BackendChoice {
    Auto,
    Cpu,
    Cuda,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct KnnSection {
    pub k: usize,
    pub metric: Metric,
    pub backend: BackendChoice,
    pub method: KnnMethod,
    /// `partitioned`: cells of the k-means partition; 0 = about sqrt(n).
    pub partitions: usize,
    /// `partitioned`: nearest cells searched per row; 0 = the fewest that meet `recall` on the
    /// certificate sample.
    pub probes: usize,
    /// `partitioned`: target recall@k for `probes = 0`, in (0, 1].
    pub recall: f64,
    /// `partitioned`: rows searched exactly to certify the recall (0 = no certificate; then
    /// `probes` must be given).
    pub recall_sample: usize,
    /// `partitioned`: seed of the training sample, the starting centroids and the certificate.
    pub seed: u64,
}

impl Default for KnnSection {
    fn default() -> Self {
        KnnSection {
            k: 16,
            metric: Metric::Cosine,
            backend: BackendChoice::Auto,
            method: KnnMethod::Exact,
            partitions: 0,
            probes: 0,
            recall: 0.95,
            recall_sample: 2000,
            seed: 0,
        }
    }
}

/// How the kNN lists are found.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum KnnMethod {
    /// Every pair of rows (ring pass): the exact lists.
    Exact,
    /// k-means cells, each row searched exactly in its nearest cells: approximate lists with a
    /// recall measured on an exact sample.
    Partitioned,
}

impl KnnMethod {
    pub fn name(self) -> &'static str {
        match self {
            KnnMethod::Exact => "exact",
            KnnMethod::Partitioned => "partitioned",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ComponentsSection {
    pub enabled: bool,
}

impl Default for ComponentsSection {
    fn default() -> Self {
        ComponentsSection { enabled: true }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct PagerankSection {
    pub enabled: bool,
    pub damping: f64,
    pub tol: f64,
    pub max_iter: usize,
}

impl Default for PagerankSection {
    fn default() -> Self {
        PagerankSection {
            enabled: true,
            damping: 0.85,
            tol: 1e-10,
            max_iter: 200,
        }
    }
}

/// What Leiden optimises.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LeidenObjective {
    Modularity,
    Cpm,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LeidenSection {
    pub enabled: bool,
    pub objective: LeidenObjective,
    pub resolution: f64,
    pub seed: u64,
    /// Passes at most; 0 = until a pass changes nothing.
    pub max_iterations: usize,
}

impl Default for LeidenSection {
    fn default() -> Self {
        LeidenSection {
            enabled: true,
            objective: LeidenObjective::Modularity,
            resolution: 1.0,
            seed: 0,
            max_iterations: 0,
        }
    }
}

impl LeidenSection {
    /// The kernel's parameters.
    pub fn params(&self) -> embsolve_kernels::leiden::LeidenParams {
        embsolve_kernels::leiden::LeidenParams {
            objective: match self.objective {
                LeidenObjective::Modularity => embsolve_kernels::leiden::Objective::Modularity,
                LeidenObjective::Cpm => embsolve_kernels::leiden::Objective::Cpm,
            },
            resolution: self.resolution,
            max_iterations: self.max_iterations,
            seed: self.seed,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SpectralSection {
    pub enabled: bool,
    pub n_eigs: usize,
    pub n_clusters: usize,
    pub tol: f64,
    pub max_iter: usize,
    pub seed: u64,
    /// An unconverged eigensolve is an error (exit 1, no labels) instead of a warning.
    pub require_converged: bool,
}

impl Default for SpectralSection {
    fn default() -> Self {
        SpectralSection {
            enabled: true,
            n_eigs: 16,
            n_clusters: 0,
            tol: 1e-8,
            max_iter: 500,
            seed: 0,
            require_converged: true,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct FftSection {
    pub enabled: bool,
    pub tracks: String,
    pub alphabet: Alphabet,
    pub window: usize,
    pub step: usize,
    pub bins: usize,
}

impl Default for FftSection {
    fn default() -> Self {
        FftSection {
            enabled: false,
            tracks: String::new(),
            alphabet: Alphabet::Dna,
            window: 240,
            step: 60,
            bins: 64,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct OutputSection {
    pub dir: PathBuf,
    #[serde(default = "yes")]
    pub write_knn: bool,
    #[serde(default = "yes")]
    pub checkpoint: bool,
}

fn yes() -> bool {
    true
}

impl RunConfig {
    /// Read `path`, apply `--set` overrides, reject unknown keys, validate. Relative
    /// `input.path`, `fft.tracks` and `output.dir` stay relative to the working directory.
    pub fn load(path: &Path, overrides: &[String]) -> Result<RunConfig> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::config(format!("cannot read config {}: {e}", path.display())))?;
        Self::from_toml_str(&text, overrides).map_err(|e| e.context(path.display()))
    }

    pub fn from_toml_str(text: &str, overrides: &[String]) -> Result<RunConfig> {
        let mut table: toml::Table = text
            .parse()
            .map_err(|e: toml::de::Error| Error::config(e.message().to_string()))?;
        for item in overrides {
            apply_override(&mut table, item)?;
        }
        let config: RunConfig = serde_path_to_error::deserialize(toml::Value::Table(table))
            .map_err(|e| {
                let key = e.path().to_string();
                let why = e.inner().message().trim().replace('\n', " ");
                Error::config(format!("`{key}`: {why}"))
            })?;
        config.validate()?;
        Ok(config)
    }

    /// The resolved configuration as TOML (all defaults filled in).
    pub fn to_toml(&self) -> String {
        toml::to_string(self).expect("config serialises")
    }

    /// The second stage: checks that need the data's shape or tie sections together, run once
    /// after the dataset is scanned and before any solver (the same verdict on every rank).
    pub fn check_against_data(&self, n_rows: usize, dim: usize) -> Result<()> {
        let bad = |key: &str, why: String| {
            Err(Error::config(format!("invalid value for `{key}`: {why}")))
        };
        if self.knn.k >= n_rows {
            return bad(
                "knn.k",
                format!(
                    "knn.k = {} must be smaller than the number of rows ({n_rows})",
                    self.knn.k
                ),
            );
        }
        if self.knn.method == KnnMethod::Partitioned && self.knn.partitions > n_rows {
            return bad(
                "knn.partitions",
                format!(
                    "{} is more than the number of rows ({n_rows})",
                    self.knn.partitions
                ),
            );
        }
        if self.preprocess.pca_dim > 0 && self.preprocess.pca_dim >= dim {
            return bad(
                "preprocess.pca_dim",
                format!(
                    "{} must be smaller than the input dimension {dim}",
                    self.preprocess.pca_dim
                ),
            );
        }
        if self.spectral.enabled && self.spectral.n_eigs > n_rows {
            return bad(
                "spectral.n_eigs",
                format!(
                    "{} exceeds the number of rows ({n_rows})",
                    self.spectral.n_eigs
                ),
            );
        }
        Ok(())
    }

    fn validate(&self) -> Result<()> {
        let bad =
            |key: &str, why: &str| Err(Error::config(format!("invalid value for `{key}`: {why}")));
        if self.input.path.as_os_str().is_empty() {
            return bad("input.path", "must not be empty");
        }
        if self.output.dir.as_os_str().is_empty() {
            return bad("output.dir", "must not be empty");
        }
        if self.input.column.is_empty() {
            return bad("input.column", "must not be empty");
        }
        if self.knn.k == 0 {
            return bad("knn.k", "must be at least 1");
        }
        if !(self.knn.recall > 0.0 && self.knn.recall <= 1.0) {
            return bad("knn.recall", "must be in (0, 1]");
        }
        if self.knn.partitions > 0 && self.knn.probes > self.knn.partitions {
            return bad(
                "knn.probes",
                &format!(
                    "{} is more than knn.partitions = {}",
                    self.knn.probes, self.knn.partitions
                ),
            );
        }
        if self.knn.method == KnnMethod::Partitioned
            && self.knn.probes == 0
            && self.knn.recall_sample == 0
        {
            return bad(
                "knn.probes",
                "0 (choose from knn.recall) needs a certificate sample: knn.recall_sample > 0",
            );
        }
        let most_threads = max_threads();
        if self.run.threads > most_threads {
            return bad(
                "run.threads",
                &format!(
                    "{} is more than {most_threads} (4 per core this process can see, at least \
                     {MIN_THREAD_CAP}); 0 picks one per core",
                    self.run.threads
                ),
            );
        }
        if let Err(why) = crate::plan::parse_size(&self.run.memory_per_rank) {
            return bad("run.memory_per_rank", &why);
        }
        if !(-1.0..=1.0).contains(&self.graph.min_similarity) {
            return bad("graph.min_similarity", "must be in [-1, 1]");
        }
        if self.knn.metric == Metric::L2 && self.graph.min_similarity > -1.0 {
            return bad(
                "graph.min_similarity",
                "applies to the cosine and ip metrics only (knn.metric = \"l2\")",
            );
        }
        if !(self.leiden.resolution.is_finite() && self.leiden.resolution > 0.0) {
            return bad("leiden.resolution", "must be a positive number");
        }
        if !(self.pagerank.damping > 0.0 && self.pagerank.damping < 1.0) {
            return bad("pagerank.damping", "must be in (0, 1)");
        }
        if self.pagerank.tol.is_nan() || self.pagerank.tol <= 0.0 {
            return bad("pagerank.tol", "must be positive");
        }
        if self.pagerank.max_iter == 0 {
            return bad("pagerank.max_iter", "must be at least 1");
        }
        if self.spectral.n_eigs < 2 {
            return bad("spectral.n_eigs", "must be at least 2");
        }
        if self.spectral.n_clusters > self.spectral.n_eigs {
            return bad("spectral.n_clusters", "must not exceed spectral.n_eigs");
        }
        if self.spectral.tol.is_nan() || self.spectral.tol <= 0.0 {
            return bad("spectral.tol", "must be positive");
        }
        if self.spectral.max_iter == 0 {
            return bad("spectral.max_iter", "must be at least 1");
        }
        if self.fft.enabled && self.fft.tracks.is_empty() {
            return bad("fft.tracks", "must name a dataset when fft.enabled = true");
        }
        if self.fft.window < 8 || self.fft.window > MAX_FFT_WINDOW {
            return bad(
                "fft.window",
                &format!("must be in 8..={MAX_FFT_WINDOW} (tokens per window)"),
            );
        }
        if self.fft.step == 0 {
            return bad("fft.step", "must be at least 1");
        }
        if self.fft.bins == 0 || self.fft.bins > self.fft.window / 2 {
            return bad(
                "fft.bins",
                "must be in 1..=window/2 (bands of the non-zero frequencies)",
            );
        }
        Ok(())
    }
}

/// Apply one `section.key=value` override; the value is read as TOML, else as a plain string.
fn apply_override(table: &mut toml::Table, item: &str) -> Result<()> {
    let (key, raw) = item
        .split_once('=')
        .ok_or_else(|| Error::config(format!("--set `{item}`: expected section.key=value")))?;
    let key = key.trim();
    let (section, field) = key
        .split_once('.')
        .ok_or_else(|| Error::config(format!("--set `{item}`: key must be section.key")))?;
    let raw = raw.trim();
    let value = format!("v = {raw}")
        .parse::<toml::Table>()
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(raw.to_string()));
    let entry = table
        .entry(section.to_string())
        .or_insert_with(|| toml::Value::Table(toml::Table::new()));
    let section_table = entry
        .as_table_mut()
        .ok_or_else(|| Error::config(format!("--set `{item}`: `{section}` is not a section")))?;
    section_table.insert(field.to_string(), value);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = "[input]\npath = \"data\"\n[output]\ndir = \"out\"\n";

    #[test]
    fn defaults_fill_every_key() {
        let config = RunConfig::from_toml_str(MINIMAL, &[]).unwrap();
        assert_eq!(config.knn.k, 16);
        assert_eq!(config.knn.metric, Metric::Cosine);
        assert!(config.preprocess.normalize);
        assert_eq!(config.spectral.n_eigs, 16);
        let again = RunConfig::from_toml_str(&config.to_toml(), &[]).unwrap();
        assert_eq!(config, again);
    }

    #[test]
    fn data_dependent_checks_name_the_key() {
        let config = RunConfig::from_toml_str(MINIMAL, &[]).unwrap();
        assert!(config.check_against_data(100, 8).is_ok());
        let err = config.check_against_data(16, 8).unwrap_err();
        assert_eq!(err.exit_status(), 2);
        assert!(err.message.contains("knn.k"), "{}", err.message);
        let pca = RunConfig::from_toml_str(MINIMAL, &["preprocess.pca_dim=8".into()]).unwrap();
        let err = pca.check_against_data(100, 8).unwrap_err();
        assert!(
            err.message.contains("preprocess.pca_dim"),
            "{}",
            err.message
        );
        let eigs = RunConfig::from_toml_str(MINIMAL, &["knn.k=2".into()]).unwrap();
        let err = eigs.check_against_data(10, 8).unwrap_err();
        assert!(err.message.contains("spectral.n_eigs"), "{}", err.message);
        let err = RunConfig::from_toml_str(
            MINIMAL,
            &["knn.metric=l2".into(), "graph.min_similarity=0.2".into()],
        )
        .unwrap_err();
        assert!(
            err.message.contains("graph.min_similarity"),
            "{}",
            err.message
        );
    }

    #[test]
    fn unknown_key_is_an_error_naming_it() {
        let err = RunConfig::from_toml_str(&format!("{MINIMAL}[knn]\nkk = 3\n"), &[]).unwrap_err();
        assert_eq!(err.exit_status(), 2);
        assert!(err.message.contains("kk"), "{}", err.message);
    }

    #[test]
    fn overrides_apply_and_are_validated() {
        let config =
            RunConfig::from_toml_str(MINIMAL, &["knn.k=8".into(), "knn.metric=l2".into()]).unwrap();
        assert_eq!(config.knn.k, 8);
        assert_eq!(config.knn.metric, Metric::L2);
        let err = RunConfig::from_toml_str(MINIMAL, &["knn.k=0".into()]).unwrap_err();
        assert!(err.message.contains("knn.k"));
        let err = RunConfig::from_toml_str(MINIMAL, &["knn.metric=hamming".into()]).unwrap_err();
        assert!(err.message.contains("hamming"), "{}", err.message);
        let err = RunConfig::from_toml_str(MINIMAL, &["nosuch.key=1".into()]).unwrap_err();
        assert!(err.message.contains("nosuch"), "{}", err.message);
    }
}
