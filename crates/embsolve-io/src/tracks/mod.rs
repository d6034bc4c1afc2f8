//! Token tracks for the FFT solver (SPEC "Token tracks"): a scan that learns every sequence's
//! length from metadata-sized reads, a reader of one global token span (the concatenation of all
//! sequences, so a long sequence can be split across ranks by position), and the synthetic DNA
//! generator with planted coding segments behind `embsolve generate --kind tracks`.
//!
//! Sources: Parquet (`ray.data.arrow_variable_shaped_tensor`, i.e. struct<data: (large_)list<int>,
//! shape: list<int64>>, or a plain (large_)list<int> column; the column named `tokens`, else the
//! only column of such a type) and HDF5 (`/tokens` 1-D with `/offsets` n+1). A path is a file, or
//! a directory of shards ordered by its `manifest.json` `files`, else by sorted file names.

mod generator;
mod hdf5_tracks;
mod parquet_tracks;
#[cfg(test)]
mod tests;

pub use generator::generate_tracks;

use embsolve_kernels::error::{Error, Result};
use hdf5_tracks::{read_hdf5_span, scan_hdf5};
use parquet_tracks::{read_parquet_span, scan_parquet};
use serde::{Deserialize, Serialize};
use std::ops::Range;
use std::path::{Component, Path, PathBuf};

/// One file of a track dataset.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TrackSource {
    pub path: PathBuf,
    pub format: TrackFormat,
    /// Length of each sequence of this file, in file order.
    pub lengths: Vec<u64>,
    /// Parquet: rows of each row group.
    pub row_groups: Vec<u64>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub enum TrackFormat {
    /// Parquet column `column` (index into the root schema); `ragged` = struct<data, shape>.
    Parquet {
        column: usize,
        ragged: bool,
    },
    Hdf5,
}

/// A track dataset: its files in order. Sequence numbers and token positions are global (all
/// files concatenated).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TracksInfo {
    pub root: PathBuf,
    pub sources: Vec<TrackSource>,
}

impl TracksInfo {
    /// Every sequence's length, in global order.
    pub fn lengths(&self) -> Vec<u64> {
        self.sources
            .iter()
            .flat_map(|s| s.lengths.iter().copied())
            .collect()
    }
}

/// Find the files of `path` and every sequence's length (reads Parquet `shape` columns or list
/// offsets, and HDF5 `/offsets`; never the whole token data of a ragged tensor).
pub fn scan_tracks(path: &Path) -> Result<TracksInfo> {
    let files = track_files(path)?;
    let mut sources = Vec::with_capacity(files.len());
    for file in files {
        let source = match extension(&file).as_str() {
            "parquet" => scan_parquet(&file),
            "h5" | "hdf5" => scan_hdf5(&file),
            other => Err(Error::input(format!(
                "{}: unknown track file type {other:?} (expected .parquet, .h5 or .hdf5)",
                file.display()
            ))),
        }?;
        sources.push(source);
    }
    Ok(TracksInfo {
        root: path.to_path_buf(),
        sources,
    })
}

/// The tokens at global positions `span` (the concatenation of all sequences), each checked to
/// be at most `max_token`.
pub fn read_tokens(info: &TracksInfo, span: Range<u64>, max_token: u8) -> Result<Vec<u8>> {
    let mut tokens = Vec::with_capacity((span.end - span.start) as usize);
    let mut file_start = 0u64;
    let mut first_seq = 0usize;
    for source in &info.sources {
        let file_tokens: u64 = source.lengths.iter().sum();
        let file_end = file_start + file_tokens;
        let lo = span.start.max(file_start);
        let hi = span.end.min(file_end);
        if lo < hi {
            let local = lo - file_start..hi - file_start;
            match source.format {
                TrackFormat::Hdf5 => read_hdf5_span(source, local, max_token, &mut tokens),
                TrackFormat::Parquet { column, ragged } => read_parquet_span(
                    source,
                    column,
                    ragged,
                    local,
                    max_token,
                    first_seq,
                    &mut tokens,
                ),
            }
            .map_err(|e| e.context(source.path.display()))?;
        }
        file_start = file_end;
        first_seq += source.lengths.len();
    }
    if tokens.len() as u64 != span.end - span.start {
        return Err(Error::internal(format!(
            "{}: read {} tokens for the span {span:?}",
            info.root.display(),
            tokens.len()
        )));
    }
    Ok(tokens)
}

fn extension(path: &Path) -> String {
    path.extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase()
}

/// The files of a dataset: `path` itself, its manifest's `files`, or its sorted track files.
fn track_files(path: &Path) -> Result<Vec<PathBuf>> {
    if path.is_file() {
        return Ok(vec![path.to_path_buf()]);
    }
    if !path.is_dir() {
        return Err(Error::input(format!(
            "{}: no such track file or directory",
            path.display()
        )));
    }
    let manifest = path.join("manifest.json");
    if manifest.is_file() {
        let text = std::fs::read_to_string(&manifest)
            .map_err(|e| Error::input(format!("{}: {e}", manifest.display())))?;
        let value: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| Error::input(format!("{}: {e}", manifest.display())))?;
        if let Some(files) = value.get("files").and_then(|f| f.as_array()) {
            let mut out = Vec::with_capacity(files.len());
            for (i, entry) in files.iter().enumerate() {
                let rel = entry
                    .get("path")
                    .and_then(|p| p.as_str())
                    .or_else(|| entry.as_str())
                    .ok_or_else(|| {
                        Error::input(format!("{}: files[{i}] has no path", manifest.display()))
                    })?;
                let rel_path = Path::new(rel);
                if rel_path
                    .components()
                    .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir))
                {
                    return Err(Error::input(format!(
                        "{}: files[{i}] path {rel:?} escapes the dataset directory",
                        manifest.display()
                    )));
                }
                out.push(path.join(rel_path));
            }
            return Ok(out);
        }
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(path)
        .map_err(|e| Error::input(format!("{}: {e}", path.display())))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && matches!(extension(p).as_str(), "parquet" | "h5" | "hdf5"))
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(Error::input(format!(
            "{}: no .parquet, .h5 or .hdf5 track files",
            path.display()
        )));
    }
    Ok(files)
}
