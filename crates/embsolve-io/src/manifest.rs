//! `manifest.json` of a dataset directory (written by stage 1 and by `embsolve generate`): the
//! shard files in row order with their row counts, and what the dataset holds.

use super::{DatasetInfo, Format};
use embsolve_kernels::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::path::{Component, Path, PathBuf};

pub const FILE_NAME: &str = "manifest.json";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ManifestFile {
    pub path: String,
    pub rows: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Manifest {
    #[serde(default)]
    pub format: Option<Format>,
    #[serde(default)]
    pub column: Option<String>,
    #[serde(default)]
    pub id_column: Option<String>,
    #[serde(default, deserialize_with = "empty_is_none")]
    pub label_column: Option<String>,
    #[serde(default)]
    pub dim: Option<usize>,
    #[serde(default)]
    pub dtype: Option<String>,
    #[serde(default)]
    pub n_rows: Option<usize>,
    pub files: Vec<ManifestFile>,
    #[serde(default)]
    pub producer: serde_json::Value,
}

fn empty_is_none<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> std::result::Result<Option<String>, D::Error> {
    let value: Option<String> = Option::deserialize(deserializer)?;
    Ok(value.filter(|s| !s.is_empty()))
}

/// Read `dir/manifest.json` when there is one.
pub fn load(dir: &Path) -> Result<Option<Manifest>> {
    let path = dir.join(FILE_NAME);
    if !path.exists() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(&path)
        .map_err(|e| Error::input(format!("{}: cannot read: {e}", path.display())))?;
    let manifest: Manifest = serde_json::from_str(&text)
        .map_err(|e| Error::input(format!("{}: invalid manifest: {e}", path.display())))?;
    if manifest.files.is_empty() {
        return Err(Error::input(format!(
            "{}: the manifest lists no files",
            path.display()
        )));
    }
    for file in &manifest.files {
        check_relative(&path, &file.path)?;
    }
    check_distinct(&path, &manifest.files)?;
    Ok(Some(manifest))
}

/// Every file is listed once (`a.parquet` and `./a.parquet` are the same file): a repeated entry
/// would read its rows twice.
fn check_distinct(manifest_path: &Path, files: &[ManifestFile]) -> Result<()> {
    let mut seen = std::collections::HashMap::new();
    for (i, file) in files.iter().enumerate() {
        let normal: PathBuf = Path::new(&file.path)
            .components()
            .filter(|c| !matches!(c, Component::CurDir))
            .collect();
        if let Some(first) = seen.insert(normal, i) {
            return Err(Error::input(format!(
                "{}: file {:?} is listed twice (entries {first} and {i}); its rows would be \
                 read twice",
                manifest_path.display(),
                file.path
            )));
        }
    }
    Ok(())
}

/// A manifest path must stay inside the dataset directory: relative, no `..`.
fn check_relative(manifest_path: &Path, entry: &str) -> Result<()> {
    let relative = Path::new(entry);
    let escapes = entry.is_empty()
        || relative.components().any(|c| {
            matches!(
                c,
                Component::ParentDir | Component::RootDir | Component::Prefix(_)
            )
        });
    if escapes {
        return Err(Error::input(format!(
            "{}: file path {entry:?} escapes the dataset directory",
            manifest_path.display()
        )));
    }
    Ok(())
}

impl Manifest {
    /// The listed files, in manifest order, as paths under `dir`.
    pub fn file_paths(&self, dir: &Path) -> Result<Vec<PathBuf>> {
        let manifest_path = dir.join(FILE_NAME);
        let root = dir
            .canonicalize()
            .map_err(|e| Error::input(format!("{}: cannot resolve: {e}", dir.display())))?;
        self.files
            .iter()
            .map(|file| {
                check_relative(&manifest_path, &file.path)?;
                let path = dir.join(&file.path);
                let resolved = path.canonicalize().map_err(|e| {
                    Error::input(format!(
                        "{}: listed in {}: {e}",
                        path.display(),
                        manifest_path.display()
                    ))
                })?;
                if !resolved.starts_with(&root) {
                    return Err(Error::input(format!(
                        "{}: file path {:?} escapes the dataset directory",
                        manifest_path.display(),
                        file.path
                    )));
                }
                Ok(path)
            })
            .collect()
    }

    /// The files' row counts, dimension, dtype and total rows must match what the scan found.
    pub fn check_against(&self, dir: &Path, info: &DatasetInfo) -> Result<()> {
        let manifest_path = dir.join(FILE_NAME);
        for (file, shard) in self.files.iter().zip(&info.shards) {
            if file.rows != shard.n_rows {
                return Err(Error::input(format!(
                    "{}: manifest.json says {} rows, the file holds {}",
                    shard.path.display(),
                    file.rows,
                    shard.n_rows
                )));
            }
        }
        if let Some(n_rows) = self.n_rows {
            if n_rows != info.n_rows {
                return Err(Error::input(format!(
                    "{}: n_rows = {n_rows}, the files hold {}",
                    manifest_path.display(),
                    info.n_rows
                )));
            }
        }
        if let Some(dim) = self.dim {
            if dim != info.dim {
                return Err(Error::input(format!(
                    "{}: dim = {dim}, the data has {}",
                    manifest_path.display(),
                    info.dim
                )));
            }
        }
        Ok(())
    }
}

/// Write `dir/manifest.json` (last, through a temporary name, so a present manifest means a
/// complete dataset).
pub fn write(dir: &Path, manifest: &Manifest) -> Result<()> {
    let path = dir.join(FILE_NAME);
    let tmp = dir.join(format!(".{FILE_NAME}.partial"));
    let text = serde_json::to_string_pretty(manifest)
        .map_err(|e| Error::internal(format!("{}: {e}", path.display())))?;
    std::fs::write(&tmp, text + "\n")
        .and_then(|()| std::fs::rename(&tmp, &path))
        .map_err(|e| Error::output(format!("{}: cannot write: {e}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_paths_are_rejected() {
        let m = Path::new("d/manifest.json");
        assert!(check_relative(m, "part-0.parquet").is_ok());
        assert!(check_relative(m, "sub/part-0.parquet").is_ok());
        for bad in ["../x.parquet", "/etc/passwd", "a/../../x", ""] {
            let err = check_relative(m, bad).unwrap_err();
            assert!(err.message.contains("escapes"), "{bad}: {}", err.message);
        }
    }

    #[test]
    fn a_file_listed_twice_is_rejected() {
        let m = Path::new("d/manifest.json");
        let entry = |path: &str| ManifestFile {
            path: path.to_string(),
            rows: 5,
        };
        assert!(check_distinct(m, &[entry("a.parquet"), entry("b.parquet")]).is_ok());
        let err = check_distinct(
            m,
            &[entry("a.parquet"), entry("b.parquet"), entry("./a.parquet")],
        )
        .unwrap_err();
        assert!(
            err.message.contains("listed twice (entries 0 and 2)"),
            "{}",
            err.message
        );
        assert_eq!(err.exit_status(), 2);
    }

    #[test]
    fn spec_example_parses() {
        let text = r#"{"format": "parquet", "column": "embedding", "id_column": "id", "label_column": "",
            "dim": 128, "dtype": "float32", "n_rows": 1000,
            "files": [{"path": "part-000.parquet", "rows": 500}, {"path": "part-001.parquet", "rows": 500}],
            "producer": {"tool": "embsolve-ray", "alphabet": "protein", "k": 3, "method": "counts", "seed": 0}}"#;
        let m: Manifest = serde_json::from_str(text).unwrap();
        assert_eq!(m.format, Some(Format::Parquet));
        assert_eq!(m.label_column, None);
        assert_eq!(m.files[1].rows, 500);
    }
}
