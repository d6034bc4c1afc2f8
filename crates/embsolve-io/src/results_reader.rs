//! Reading `results.h5` back for `embsolve report`: whatever datasets are present, as plain
//! vectors (large per-row datasets are subsampled to a bounded number of points).

use embsolve_kernels::error::{Error, Result};
use std::path::Path;

/// The parts of a results file the report draws.
#[derive(Debug, Default, Clone)]
pub struct ResultsData {
    pub n_rows: usize,
    pub eigenvalues: Option<Vec<f64>>,
    pub n_clusters: Option<usize>,
    pub spectral_labels: Option<Vec<i32>>,
    /// Two embedding coordinates (columns 1 and 2) and the cluster of up to `max_points` rows.
    pub embedding_2d: Option<Vec<(f32, f32, i32)>>,
    pub component_labels: Option<Vec<i64>>,
    pub leiden_labels: Option<Vec<i64>>,
    /// Modularity (or CPM quality) of the Leiden communities.
    pub leiden_modularity: Option<f64>,
    pub pagerank: Option<Vec<f64>>,
    pub fft_mean_power: Option<Vec<f64>>,
    /// (start, score) of the windows of the first sequence with windows.
    pub period3_track: Option<Vec<(i64, f32)>>,
}

fn read_vec<T: hdf5::H5Type>(file: &hdf5::File, name: &str) -> Option<Vec<T>> {
    file.dataset(name).ok().and_then(|d| d.read_raw::<T>().ok())
}

/// Read what the report needs from `path`, keeping at most `max_points` embedding rows.
pub fn read(path: &Path, max_points: usize) -> Result<ResultsData> {
    hdf5::silence_errors(true);
    let file = hdf5::File::open(path)
        .map_err(|e| Error::input(format!("cannot open {}: {e}", path.display())))?;
    let mut data = ResultsData {
        n_rows: file
            .dataset("ids")
            .ok()
            .map(|d| d.shape().first().copied().unwrap_or(0))
            .unwrap_or(0),
        eigenvalues: read_vec::<f64>(&file, "spectral/eigenvalues"),
        spectral_labels: read_vec::<i32>(&file, "spectral/labels"),
        component_labels: read_vec::<i64>(&file, "components/labels"),
        leiden_labels: read_vec::<i64>(&file, "leiden/labels"),
        pagerank: read_vec::<f64>(&file, "pagerank/scores"),
        fft_mean_power: read_vec::<f64>(&file, "fft/mean_power").or_else(|| {
            read_vec::<f32>(&file, "fft/mean_power").map(|v| v.into_iter().map(f64::from).collect())
        }),
        ..Default::default()
    };
    if let Ok(labels) = file.dataset("leiden/labels") {
        data.leiden_modularity = labels
            .attr("modularity")
            .ok()
            .and_then(|a| a.read_scalar::<f64>().ok());
    }
    if let Ok(labels) = file.dataset("spectral/labels") {
        data.n_clusters = labels
            .attr("n_clusters")
            .ok()
            .and_then(|a| a.read_scalar::<i64>().ok())
            .map(|k| k as usize);
    }
    if let (Ok(embedding), Some(labels)) = (
        file.dataset("spectral/embedding"),
        data.spectral_labels.as_ref(),
    ) {
        let shape = embedding.shape();
        if shape.len() == 2 && shape[1] >= 3 && shape[0] > 0 {
            let n = shape[0];
            let stride = n.div_ceil(max_points.max(1));
            let all = embedding.read_2d::<f32>().map_err(|e| {
                Error::input(format!("{}: spectral/embedding: {e}", path.display()))
            })?;
            data.embedding_2d = Some(
                (0..n)
                    .step_by(stride)
                    .map(|i| (all[[i, 1]], all[[i, 2]], labels[i]))
                    .collect(),
            );
        }
    }
    data.period3_track = read_period3_track(&file);
    Ok(data)
}

/// The (start, score) windows of the first sequence in `/fft/period3` (a group of `seq`, `start`,
/// `score` datasets, or an n x 3 dataset of seq, start, score).
fn read_period3_track(file: &hdf5::File) -> Option<Vec<(i64, f32)>> {
    let (seq, start, score): (Vec<i64>, Vec<i64>, Vec<f32>) =
        if let Ok(group) = file.group("fft/period3") {
            (
                group.dataset("seq").ok()?.read_raw().ok()?,
                group.dataset("start").ok()?.read_raw().ok()?,
                group.dataset("score").ok()?.read_raw().ok()?,
            )
        } else {
            let table = file.dataset("fft/period3").ok()?.read_2d::<f64>().ok()?;
            (
                table.column(0).iter().map(|&v| v as i64).collect(),
                table.column(1).iter().map(|&v| v as i64).collect(),
                table.column(2).iter().map(|&v| v as f32).collect(),
            )
        };
    let first = *seq.first()?;
    Some(
        seq.iter()
            .zip(start.iter().zip(&score))
            .take_while(|(s, _)| **s == first)
            .map(|(_, (&st, &sc))| (st, sc))
            .collect(),
    )
}
