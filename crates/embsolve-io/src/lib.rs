//! The only home of HDF5, Parquet and Arrow: dataset scanning (metadata only), readers by row
//! block, the synthetic-data generator's writers, and the results writer.
//!
//! A dataset is an ordered list of shards (files), each holding a run of consecutive global rows.
//! Rank 0 runs [`scan`] (footers, HDF5 shapes, `.npy` headers, `manifest.json`: no row data except
//! one row to learn the dimension of a Parquet list column) and broadcasts the [`DatasetInfo`];
//! every rank then calls [`read_rows`] for its own row block, which opens only the shards, row
//! groups or hyperslabs that overlap it ([`plan_shards`], [`parquet::plan_row_groups`]) and checks
//! every row it reads (length, finiteness).

pub mod atomic;
pub mod generate;
pub mod hdf5_input;
pub mod manifest;
pub mod npy;
pub mod parquet;
pub mod results;
pub mod results_reader;
pub mod source;
pub mod tracks;

use crate::source::{InputFormat, InputSection};
use embsolve_kernels::error::{Error, Result};
use embsolve_kernels::results::Ids;
use ndarray::Array2;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::ops::Range;
use std::path::{Path, PathBuf};

/// The on-disk format of a dataset.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Parquet,
    Hdf5,
    Npy,
}

impl Format {
    pub fn name(self) -> &'static str {
        match self {
            Format::Parquet => "parquet",
            Format::Hdf5 => "hdf5",
            Format::Npy => "npy",
        }
    }

    fn from_extension(path: &Path) -> Option<Format> {
        let ext = path.extension()?.to_str()?.to_ascii_lowercase();
        match ext.as_str() {
            "parquet" | "pq" => Some(Format::Parquet),
            "h5" | "hdf5" | "he5" => Some(Format::Hdf5),
            "npy" => Some(Format::Npy),
            _ => None,
        }
    }
}

/// The kind of the id column.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum IdKind {
    Int,
    String,
}

/// One file of a dataset and the global rows it holds.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Shard {
    pub path: PathBuf,
    /// First global row of this shard.
    pub row_start: usize,
    pub n_rows: usize,
    /// Parquet: rows of each row group, in order (empty for other formats).
    #[serde(default)]
    pub row_groups: Vec<usize>,
    /// npy: the id and label files that go with this shard.
    #[serde(default)]
    pub id_path: Option<PathBuf>,
    #[serde(default)]
    pub label_path: Option<PathBuf>,
}

impl Shard {
    fn rows(&self) -> Range<usize> {
        self.row_start..self.row_start + self.n_rows
    }
}

/// What a dataset holds, from metadata alone (rank 0 scans, every rank receives it).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DatasetInfo {
    pub n_rows: usize,
    pub dim: usize,
    pub format: Format,
    /// Element type on disk: float16, float32 or float64 (npy may also hold integers).
    pub dtype: String,
    /// The path the dataset was opened from.
    pub path: PathBuf,
    pub shards: Vec<Shard>,
    /// Embedding column (Parquet) or dataset (HDF5).
    pub column: String,
    /// The id column/dataset when present, and its kind.
    pub id_column: Option<String>,
    pub id_kind: Option<IdKind>,
    /// The label column/dataset when present.
    pub label_column: Option<String>,
    /// Whether the order of the shards came from `manifest.json`.
    pub from_manifest: bool,
}

/// This rank's rows.
#[derive(Debug, Clone)]
pub struct RowBlock {
    pub embeddings: Array2<f32>,
    pub ids: Ids,
    pub labels: Option<Vec<i64>>,
}

/// What a format reader returns for one shard piece besides its values (which it appends to
/// the caller's buffer): ids and labels.
pub(crate) struct Piece {
    pub ids: Option<IdValues>,
    pub labels: Option<Vec<i64>>,
}

pub(crate) enum IdValues {
    Int(Vec<i64>),
    Str(Vec<String>),
}

/// Scan the dataset at `input.path` (metadata only) and describe it.
pub fn scan(input: &InputSection) -> Result<DatasetInfo> {
    let path = &input.path;
    let metadata = std::fs::metadata(path)
        .map_err(|e| Error::input(format!("{}: cannot open input: {e}", path.display())))?;
    let manifest = if metadata.is_dir() {
        manifest::load(path)?
    } else {
        None
    };
    let format = resolve_format(input, metadata.is_dir(), manifest.as_ref())?;
    let columns = Columns::resolve(input, manifest.as_ref());
    let info = match format {
        Format::Parquet => parquet::scan(path, manifest.as_ref(), &columns)?,
        Format::Hdf5 => hdf5_input::scan(path, manifest.as_ref(), &columns)?,
        Format::Npy => npy::scan(path, manifest.as_ref(), &columns)?,
    };
    if let Some(m) = &manifest {
        m.check_against(path, &info)?;
    }
    if info.n_rows == 0 {
        return Err(Error::input(format!(
            "{}: the dataset has no rows",
            path.display()
        )));
    }
    if info.dim == 0 {
        return Err(Error::input(format!(
            "{}: column {:?} has dimension 0",
            path.display(),
            info.column
        )));
    }
    Ok(info)
}

/// Read global rows `rows` (this rank's block): only the shards that overlap it are opened.
pub fn read_rows(info: &DatasetInfo, input: &InputSection, rows: Range<usize>) -> Result<RowBlock> {
    let _ = input;
    if rows.end > info.n_rows || rows.start > rows.end {
        return Err(Error::internal(format!(
            "rows {}..{} outside the {} rows of {}",
            rows.start,
            rows.end,
            info.n_rows,
            info.path.display()
        )));
    }
    let n_local = rows.len();
    let mut values = Vec::with_capacity(n_local * info.dim);
    let mut int_ids = Vec::new();
    let mut str_ids = Vec::new();
    let mut labels = info.label_column.as_ref().map(|_| Vec::new());
    // Pieces are decoded in parallel, a wave of one per thread at a time (so at most that many
    // decoded pieces wait to be copied), and appended in row order; the first error in row
    // order is the one reported.
    let pieces = read_units(info, rows.clone());
    let threads = rayon::current_num_threads().max(1);
    for wave in pieces.chunks(threads) {
        let decoded: Vec<Result<(Vec<f32>, Piece)>> = wave
            .par_iter()
            .map(|(shard_idx, local)| {
                let shard = &info.shards[*shard_idx];
                let mut part = Vec::with_capacity(local.len() * info.dim);
                let piece = match info.format {
                    Format::Parquet => parquet::read(info, shard, local.clone(), &mut part)?,
                    Format::Hdf5 => hdf5_input::read(info, shard, local.clone(), &mut part)?,
                    Format::Npy => npy::read(info, shard, local.clone(), &mut part)?,
                };
                check_piece(info, shard, local.clone(), &part, &piece)?;
                Ok((part, piece))
            })
            .collect();
        for result in decoded {
            let (part, piece) = result?;
            values.extend_from_slice(&part);
            match piece.ids {
                Some(IdValues::Int(v)) => int_ids.extend(v),
                Some(IdValues::Str(v)) => str_ids.extend(v),
                None => {}
            }
            if let (Some(all), Some(part)) = (labels.as_mut(), piece.labels) {
                all.extend(part);
            }
        }
    }
    let ids = match info.id_kind {
        None => Ids::RowNumbers,
        Some(IdKind::Int) => Ids::Int(int_ids),
        Some(IdKind::String) => Ids::Str(str_ids),
    };
    let embeddings = Array2::from_shape_vec((n_local, info.dim), values)
        .map_err(|e| Error::internal(format!("{}: {e}", info.path.display())))?;
    Ok(RowBlock {
        embeddings,
        ids,
        labels,
    })
}

/// Every value finite, and ids/labels present for every row.
fn check_piece(
    info: &DatasetInfo,
    shard: &Shard,
    local: Range<usize>,
    values: &[f32],
    piece: &Piece,
) -> Result<()> {
    let n = local.len();
    if values.len() != n * info.dim {
        return Err(Error::input(format!(
            "{}: rows {}..{} hold {} values, expected {} x {}",
            shard.path.display(),
            local.start,
            local.end,
            values.len(),
            n,
            info.dim
        )));
    }
    if let Some(at) = values.iter().position(|v| !v.is_finite()) {
        let row = local.start + at / info.dim;
        return Err(Error::input(format!(
            "{}: row {row} (global row {}) of column {:?} holds a non-finite value ({}) at position {}",
            shard.path.display(),
            shard.row_start + row,
            info.column,
            values[at],
            at % info.dim
        )));
    }
    let id_count = match &piece.ids {
        Some(IdValues::Int(v)) => Some(v.len()),
        Some(IdValues::Str(v)) => Some(v.len()),
        None => None,
    };
    if info.id_kind.is_some() && id_count != Some(n) {
        return Err(Error::input(format!(
            "{}: rows {}..{}: the id column {:?} has {} values",
            shard.path.display(),
            local.start,
            local.end,
            info.id_column.as_deref().unwrap_or(""),
            id_count.unwrap_or(0)
        )));
    }
    if info.label_column.is_some() && piece.labels.as_ref().map(Vec::len) != Some(n) {
        return Err(Error::input(format!(
            "{}: rows {}..{}: the label column {:?} is missing or short",
            shard.path.display(),
            local.start,
            local.end,
            info.label_column.as_deref().unwrap_or("")
        )));
    }
    Ok(())
}

/// The pieces a block is read in: each overlapping shard's rows, a Parquet shard's split at its
/// row groups (the unit a Parquet reader decodes), as (shard, shard-local rows), in row order.
fn read_units(info: &DatasetInfo, rows: Range<usize>) -> Vec<(usize, Range<usize>)> {
    let mut units = Vec::new();
    for (shard_idx, local) in plan_shards(&info.shards, rows) {
        let shard = &info.shards[shard_idx];
        if info.format != Format::Parquet || shard.row_groups.is_empty() {
            units.push((shard_idx, local));
            continue;
        }
        let mut group_start = 0;
        for &group_rows in &shard.row_groups {
            let start = local.start.max(group_start);
            let end = local.end.min(group_start + group_rows);
            if start < end {
                units.push((shard_idx, start..end));
            }
            group_start += group_rows;
        }
    }
    units
}

/// The shards that overlap global rows `rows`, each with the overlapping rows local to the shard.
/// A pure function of the shard table: the read plan of a rank.
pub fn plan_shards(shards: &[Shard], rows: Range<usize>) -> Vec<(usize, Range<usize>)> {
    shards
        .iter()
        .enumerate()
        .filter_map(|(idx, shard)| {
            let range = shard.rows();
            let start = rows.start.max(range.start);
            let end = rows.end.min(range.end);
            (start < end).then(|| (idx, start - range.start..end - range.start))
        })
        .collect()
}

/// Which columns to read: the config's, with `manifest.json` filling an empty label column.
#[derive(Debug, Clone)]
pub(crate) struct Columns {
    pub column: String,
    pub id_column: String,
    pub label_column: String,
}

impl Columns {
    fn resolve(input: &InputSection, manifest: Option<&manifest::Manifest>) -> Columns {
        let label_column = if input.label_column.is_empty() {
            manifest
                .and_then(|m| m.label_column.clone())
                .unwrap_or_default()
        } else {
            input.label_column.clone()
        };
        Columns {
            column: input.column.clone(),
            id_column: input.id_column.clone(),
            label_column,
        }
    }
}

fn resolve_format(
    input: &InputSection,
    is_dir: bool,
    manifest: Option<&manifest::Manifest>,
) -> Result<Format> {
    let path = &input.path;
    match input.format {
        InputFormat::Parquet => return Ok(Format::Parquet),
        InputFormat::Hdf5 => return Ok(Format::Hdf5),
        InputFormat::Npy => return Ok(Format::Npy),
        InputFormat::Auto => {}
    }
    if let Some(format) = manifest.and_then(|m| m.format) {
        return Ok(format);
    }
    if !is_dir {
        return Format::from_extension(path)
            .or_else(|| sniff(path))
            .ok_or_else(|| {
                Error::input(format!(
                    "{}: not a Parquet, HDF5 or .npy file (set input.format)",
                    path.display()
                ))
            });
    }
    if path.join(&input.column).is_dir() {
        return Ok(Format::Npy);
    }
    let files = list_data_files(path)?;
    let mut formats: Vec<Format> = files
        .iter()
        .filter_map(|f| Format::from_extension(f))
        .collect();
    formats.dedup();
    match formats.as_slice() {
        [] => Err(Error::input(format!(
            "{}: empty dataset directory (no .parquet, .h5 or .npy files and no manifest.json)",
            path.display()
        ))),
        [one] => Ok(*one),
        _ => Err(Error::input(format!(
            "{}: the directory mixes file formats; set input.format",
            path.display()
        ))),
    }
}

/// The format from a file's first bytes.
fn sniff(path: &Path) -> Option<Format> {
    use std::io::Read;
    let mut head = [0u8; 8];
    let mut file = std::fs::File::open(path).ok()?;
    file.read_exact(&mut head).ok()?;
    if head.starts_with(b"PAR1") {
        Some(Format::Parquet)
    } else if head == *b"\x89HDF\r\n\x1a\n" {
        Some(Format::Hdf5)
    } else if head.starts_with(b"\x93NUMPY") {
        Some(Format::Npy)
    } else {
        None
    }
}

/// Regular files of a directory (not hidden, not `_SUCCESS`-style markers), sorted by name.
pub(crate) fn list_data_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let entries = std::fs::read_dir(dir)
        .map_err(|e| Error::input(format!("{}: cannot list directory: {e}", dir.display())))?;
    let mut files = Vec::new();
    for entry in entries {
        let entry =
            entry.map_err(|e| Error::input(format!("{}: cannot list: {e}", dir.display())))?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') || name.starts_with('_') {
            continue;
        }
        let path = entry.path();
        if path.is_file() {
            files.push(path);
        }
    }
    files.sort_by(|a, b| a.file_name().cmp(&b.file_name()));
    Ok(files)
}

/// The shard files of a dataset: the manifest's list (in its order), a directory's files with
/// the format's extension (sorted by name), or the single file `path`.
pub(crate) fn shard_files(
    path: &Path,
    manifest: Option<&manifest::Manifest>,
    format: Format,
) -> Result<Vec<PathBuf>> {
    if let Some(m) = manifest {
        return m.file_paths(path);
    }
    if !path.is_dir() {
        return Ok(vec![path.to_path_buf()]);
    }
    let files: Vec<PathBuf> = list_data_files(path)?
        .into_iter()
        .filter(|f| Format::from_extension(f) == Some(format))
        .collect();
    if files.is_empty() {
        return Err(Error::input(format!(
            "{}: empty dataset directory (no {} files)",
            path.display(),
            format.name()
        )));
    }
    Ok(files)
}

/// An input error naming the file.
pub(crate) fn input_error(path: &Path, message: impl std::fmt::Display) -> Error {
    Error::input(format!("{}: {message}", path.display()))
}

/// Fold one shard's id kind (`None`: no id column) into the kind of the shards before it: every
/// shard must have the id column `id_column`, with one type, or none must.
pub(crate) fn agree_id_kind(
    seen: &mut Option<Option<IdKind>>,
    this: Option<IdKind>,
    file: &Path,
    id_column: &str,
) -> Result<()> {
    match seen {
        None => *seen = Some(this),
        Some(kind) if *kind == this => {}
        Some(_) => {
            return Err(input_error(
                file,
                format!("the id column {id_column:?} is missing or typed differently than in the first shard"),
            ))
        }
    }
    Ok(())
}

/// Lay shards end to end: assign `row_start` in order.
pub(crate) fn number_rows(shards: &mut [Shard]) -> usize {
    let mut next = 0;
    for shard in shards {
        shard.row_start = next;
        next += shard.n_rows;
    }
    next
}

/// A stable integer for a string label (FNV-1a, 63 bits): equal strings get equal labels on every
/// rank, which is all the adjusted Rand index needs.
pub(crate) fn label_from_str(text: &str) -> i64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in text.as_bytes() {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    (hash >> 1) as i64
}

/// `embsolve inspect PATH`: scan with the default column names, reporting a `label` column when
/// there is one (the manifest's label column first).
pub fn inspect(path: &Path, column: &str) -> Result<DatasetInfo> {
    let input = |label_column: &str| InputSection {
        path: path.to_path_buf(),
        format: InputFormat::Auto,
        column: column.to_string(),
        id_column: "id".into(),
        label_column: label_column.into(),
    };
    match scan(&input("")) {
        Ok(info) if info.label_column.is_none() => Ok(scan(&input("label")).unwrap_or(info)),
        other => other,
    }
}

/// What a full read of a dataset found (`embsolve inspect --check K`).
#[derive(Debug, Clone, Serialize)]
pub struct ReadCheck {
    pub blocks: usize,
    pub rows_read: usize,
    /// Column means over all rows (f64 accumulation in row order).
    pub mean: Vec<f64>,
    /// The ids of the first and last row (strings as they are, ints as numbers).
    pub first_id: serde_json::Value,
    pub last_id: serde_json::Value,
    /// Sum of the integer labels (string labels are hashed), when there are labels.
    pub label_sum: Option<i64>,
}

/// Read every row of the dataset in `blocks` row blocks, as that many ranks would (each block
/// opens only what overlaps it), checking every row; returns column means and the end ids.
pub fn check_read(info: &DatasetInfo, blocks: usize) -> Result<ReadCheck> {
    let blocks = blocks.max(1);
    let input = InputSection {
        path: info.path.clone(),
        format: InputFormat::Auto,
        column: info.column.clone(),
        id_column: info.id_column.clone().unwrap_or_default(),
        label_column: info.label_column.clone().unwrap_or_default(),
    };
    let layout = embsolve_kernels::layout::RowLayout::new(info.n_rows, blocks);
    let mut sums = vec![0.0f64; info.dim];
    let mut rows_read = 0;
    let mut first_id = serde_json::Value::Null;
    let mut last_id = serde_json::Value::Null;
    let mut label_sum = info.label_column.as_ref().map(|_| 0i64);
    for block in 0..blocks {
        let range = layout.range(block);
        if range.is_empty() {
            continue;
        }
        let start = range.start;
        let rows = read_rows(info, &input, range)?;
        for row in rows.embeddings.rows() {
            for (sum, &v) in sums.iter_mut().zip(row) {
                *sum += f64::from(v);
            }
        }
        let n = rows.embeddings.nrows();
        let id_at = |i: usize| -> serde_json::Value {
            match &rows.ids {
                Ids::RowNumbers => (start + i).into(),
                Ids::Int(v) => v[i].into(),
                Ids::Str(v) => v[i].clone().into(),
            }
        };
        if rows_read == 0 {
            first_id = id_at(0);
        }
        last_id = id_at(n - 1);
        if let (Some(total), Some(labels)) = (label_sum.as_mut(), &rows.labels) {
            *total = labels.iter().fold(*total, |acc, &l| acc.wrapping_add(l));
        }
        rows_read += n;
    }
    let n = rows_read.max(1) as f64;
    Ok(ReadCheck {
        blocks,
        rows_read,
        mean: sums.iter().map(|s| s / n).collect(),
        first_id,
        last_id,
        label_sum,
    })
}

/// A human summary of a dataset for `embsolve inspect`.
pub fn describe(info: &DatasetInfo) -> String {
    let mut text = format!(
        "path:    {}\nformat:  {}\nrows:    {}\ndim:     {}\ndtype:   {}\nshards:  {}{}\n",
        info.path.display(),
        info.format.name(),
        info.n_rows,
        info.dim,
        info.dtype,
        info.shards.len(),
        if info.from_manifest {
            " (order from manifest.json)"
        } else {
            ""
        }
    );
    text.push_str(&format!("column:  {}\n", info.column));
    match (&info.id_column, info.id_kind) {
        (Some(name), Some(kind)) => text.push_str(&format!(
            "ids:     yes ({name}, {})\n",
            match kind {
                IdKind::Int => "int64",
                IdKind::String => "string",
            }
        )),
        _ => text.push_str("ids:     no (row numbers)\n"),
    }
    match &info.label_column {
        Some(name) => text.push_str(&format!("labels:  yes ({name})\n")),
        None => text.push_str("labels:  no\n"),
    }
    for shard in &info.shards {
        let groups = if shard.row_groups.is_empty() {
            String::new()
        } else {
            format!(", {} row groups", shard.row_groups.len())
        };
        text.push_str(&format!(
            "  {} rows {}..{}{groups}\n",
            shard.path.display(),
            shard.row_start,
            shard.row_start + shard.n_rows
        ));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shards(rows: &[usize]) -> Vec<Shard> {
        let mut shards: Vec<Shard> = rows
            .iter()
            .enumerate()
            .map(|(i, &n)| Shard {
                path: PathBuf::from(format!("part-{i}")),
                row_start: 0,
                n_rows: n,
                row_groups: Vec::new(),
                id_path: None,
                label_path: None,
            })
            .collect();
        number_rows(&mut shards);
        shards
    }

    #[test]
    fn plan_opens_only_overlapping_shards() {
        let table = shards(&[10, 0, 5, 20]);
        assert_eq!(plan_shards(&table, 0..10), vec![(0, 0..10)]);
        assert_eq!(plan_shards(&table, 8..12), vec![(0, 8..10), (2, 0..2)]);
        assert_eq!(plan_shards(&table, 12..35), vec![(2, 2..5), (3, 0..20)]);
        assert_eq!(plan_shards(&table, 15..16), vec![(3, 0..1)]);
        assert!(plan_shards(&table, 7..7).is_empty());
    }

    #[test]
    fn parquet_blocks_are_read_in_row_group_pieces_in_row_order() {
        let mut table = shards(&[10, 6]);
        table[0].row_groups = vec![4, 4, 2];
        table[1].row_groups = vec![6];
        let mut info = DatasetInfo {
            n_rows: 16,
            dim: 1,
            format: Format::Parquet,
            dtype: "float32".into(),
            path: PathBuf::from("data"),
            shards: table,
            column: "embedding".into(),
            id_column: None,
            id_kind: None,
            label_column: None,
            from_manifest: false,
        };
        assert_eq!(
            read_units(&info, 3..13),
            vec![(0, 3..4), (0, 4..8), (0, 8..10), (1, 0..3)]
        );
        assert_eq!(read_units(&info, 5..6), vec![(0, 5..6)]);
        info.format = Format::Npy;
        assert_eq!(read_units(&info, 3..13), vec![(0, 3..10), (1, 0..3)]);
    }

    #[test]
    fn plans_of_all_ranks_cover_every_row_once() {
        let table = shards(&[7, 3, 11, 1, 9]);
        let n: usize = table.iter().map(|s| s.n_rows).sum();
        for size in 1..=5 {
            let layout = embsolve_kernels::layout::RowLayout::new(n, size);
            let mut seen = vec![0u32; n];
            for rank in 0..size {
                for (idx, local) in plan_shards(&table, layout.range(rank)) {
                    for row in local {
                        seen[table[idx].row_start + row] += 1;
                    }
                }
            }
            assert!(seen.iter().all(|&c| c == 1), "size {size}: {seen:?}");
        }
    }

    #[test]
    fn string_labels_are_stable() {
        assert_eq!(label_from_str("kinase"), label_from_str("kinase"));
        assert_ne!(label_from_str("kinase"), label_from_str("globin"));
        assert!(label_from_str("x") >= 0);
    }
}
