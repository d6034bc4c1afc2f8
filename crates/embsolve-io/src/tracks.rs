//! Token tracks for the FFT solver (SPEC "Token tracks"): a scan that learns every sequence's
//! length from metadata-sized reads, a reader of one global token span (the concatenation of all
//! sequences, so a long sequence can be split across ranks by position), and the synthetic DNA
//! generator with planted coding segments behind `embsolve generate --kind tracks`.
//!
//! Sources: Parquet (`ray.data.arrow_variable_shaped_tensor`, i.e. struct<data: (large_)list<int>,
//! shape: list<int64>>, or a plain (large_)list<int> column; the column named `tokens`, else the
//! only column of such a type) and HDF5 (`/tokens` 1-D with `/offsets` n+1). A path is a file, or
//! a directory of shards ordered by its `manifest.json` `files`, else by sorted file names.

use embsolve_kernels::error::{Error, Result};
use arrow_array::cast::AsArray;
use arrow_array::types::{
    Int16Type, Int32Type, Int64Type, Int8Type, UInt16Type, UInt32Type, UInt64Type, UInt8Type,
};
use arrow_array::{Array, ArrayRef, Int64Array, Int8Array, LargeListArray, ListArray, RecordBatch};
use arrow_array::{OffsetSizeTrait, StructArray};
use arrow_buffer::OffsetBuffer;
use arrow_schema::{DataType, Field, Fields, Schema};
use parquet::arrow::arrow_reader::{
    ArrowReaderOptions, ParquetRecordBatchReaderBuilder, RowSelection, RowSelector,
};
use parquet::arrow::{ArrowWriter, ProjectionMask};
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::fs::File;
use std::ops::Range;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

/// Tokens read from HDF5 per hyperslab (bounds the conversion buffer).
const HDF5_CHUNK: u64 = 1 << 22;
/// Tokens per Parquet row group the generator aims for (whole sequences, at least one).
const TOKENS_PER_ROW_GROUP: usize = 1 << 16;
/// Name of the Ray extension type of ragged tensors.
const RAGGED_TENSOR: &str = "ray.data.arrow_variable_shaped_tensor";

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

// ---------------------------------------------------------------- Parquet

fn parquet_builder(path: &Path) -> Result<ParquetRecordBatchReaderBuilder<File>> {
    let file = File::open(path).map_err(|e| Error::input(format!("{}: {e}", path.display())))?;
    let options = ArrowReaderOptions::new().with_skip_arrow_metadata(true);
    ParquetRecordBatchReaderBuilder::try_new_with_options(file, options)
        .map_err(|e| Error::input(format!("{}: {e}", path.display())))
}

fn is_integer(data_type: &DataType) -> bool {
    matches!(
        data_type,
        DataType::Int8
            | DataType::Int16
            | DataType::Int32
            | DataType::Int64
            | DataType::UInt8
            | DataType::UInt16
            | DataType::UInt32
            | DataType::UInt64
    )
}

fn is_int_list(data_type: &DataType) -> bool {
    match data_type {
        DataType::List(item) | DataType::LargeList(item) => is_integer(item.data_type()),
        _ => false,
    }
}

fn is_ragged_tensor(data_type: &DataType) -> bool {
    match data_type {
        DataType::Struct(fields) => {
            fields
                .find("data")
                .is_some_and(|(_, f)| is_int_list(f.data_type()))
                && fields
                    .find("shape")
                    .is_some_and(|(_, f)| is_int_list(f.data_type()))
        }
        _ => false,
    }
}

/// The token column: `tokens` when it has a track type, else the only column that has one.
fn find_token_column(schema: &Schema, path: &Path) -> Result<(usize, bool)> {
    let is_track = |f: &Field| is_int_list(f.data_type()) || is_ragged_tensor(f.data_type());
    let candidates: Vec<usize> = schema
        .fields()
        .iter()
        .enumerate()
        .filter(|(_, f)| is_track(f))
        .map(|(i, _)| i)
        .collect();
    let chosen = candidates
        .iter()
        .copied()
        .find(|&i| schema.field(i).name() == "tokens")
        .or(if candidates.len() == 1 {
            Some(candidates[0])
        } else {
            None
        });
    match chosen {
        Some(i) => Ok((i, is_ragged_tensor(schema.field(i).data_type()))),
        None => Err(Error::input(format!(
            "{}: no token column: expected a column `tokens` (or exactly one column) of type \
             {RAGGED_TENSOR} struct<data: list<int>, shape: list<int64>> or list<int>; found {}",
            path.display(),
            schema
                .fields()
                .iter()
                .map(|f| format!("{}: {}", f.name(), f.data_type()))
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}

/// Leaves of the Parquet schema under `column` (and under `column.child` when given).
fn leaves_under(
    builder: &ParquetRecordBatchReaderBuilder<File>,
    column: &str,
    child: Option<&str>,
) -> Vec<usize> {
    builder
        .parquet_schema()
        .columns()
        .iter()
        .enumerate()
        .filter(|(_, c)| {
            let parts = c.path().parts();
            parts.first().map(String::as_str) == Some(column)
                && match child {
                    Some(name) => parts.get(1).map(String::as_str) == Some(name),
                    None => true,
                }
        })
        .map(|(i, _)| i)
        .collect()
}

/// Row offsets and the values array of a (large) list array.
fn list_parts(array: &dyn Array) -> Option<(Vec<usize>, ArrayRef)> {
    fn parts<O: OffsetSizeTrait>(
        list: &arrow_array::GenericListArray<O>,
    ) -> (Vec<usize>, ArrayRef) {
        let offsets = list.value_offsets().iter().map(|o| o.as_usize()).collect();
        (offsets, list.values().clone())
    }
    match array.data_type() {
        DataType::List(_) => Some(parts(array.as_list::<i32>())),
        DataType::LargeList(_) => Some(parts(array.as_list::<i64>())),
        _ => None,
    }
}

/// The list array holding the tokens of a batch's token column.
fn token_list(batch: &RecordBatch, ragged: bool, path: &Path) -> Result<(Vec<usize>, ArrayRef)> {
    let column = batch.column(0);
    let list: &dyn Array = if ragged {
        column
            .as_struct_opt()
            .and_then(|s| s.column_by_name("data"))
            .map(|a| a.as_ref())
            .ok_or_else(|| {
                Error::input(format!("{}: ragged tensor without data", path.display()))
            })?
    } else {
        column.as_ref()
    };
    list_parts(list).ok_or_else(|| {
        Error::input(format!(
            "{}: token column is {}, not a list",
            path.display(),
            list.data_type()
        ))
    })
}

/// Append `values[range]` as tokens, each checked against `max_token`. `row` names the sequence
/// in errors.
fn append_tokens(
    values: &ArrayRef,
    range: Range<usize>,
    max_token: u8,
    row: usize,
    out: &mut Vec<u8>,
) -> Result<()> {
    macro_rules! copy {
        ($t:ty) => {{
            let array = values.as_primitive::<$t>();
            let slice = &array.values()[range.clone()];
            let before = out.len();
            out.extend(slice.iter().map(|&v| {
                #[allow(unused_comparisons)]
                let ok = v >= 0 && (v as u64) <= u64::from(max_token);
                if ok {
                    v as u8
                } else {
                    u8::MAX
                }
            }));
            if max_token < u8::MAX {
                if let Some(at) = out[before..].iter().position(|&t| t > max_token) {
                    return Err(Error::input(format!(
                        "sequence {row}: token {} at position {} is outside 0..={max_token}",
                        slice[at],
                        range.start + at
                    )));
                }
            }
        }};
    }
    if values.null_count() > 0 {
        return Err(Error::input(format!("sequence {row}: null tokens")));
    }
    match values.data_type() {
        DataType::Int8 => copy!(Int8Type),
        DataType::Int16 => copy!(Int16Type),
        DataType::Int32 => copy!(Int32Type),
        DataType::Int64 => copy!(Int64Type),
        DataType::UInt8 => copy!(UInt8Type),
        DataType::UInt16 => copy!(UInt16Type),
        DataType::UInt32 => copy!(UInt32Type),
        DataType::UInt64 => copy!(UInt64Type),
        other => {
            return Err(Error::input(format!(
                "sequence {row}: tokens of type {other}, expected integers"
            )))
        }
    }
    Ok(())
}

fn scan_parquet(path: &Path) -> Result<TrackSource> {
    let builder = parquet_builder(path)?;
    let (column, ragged) = find_token_column(builder.schema(), path)?;
    let name = builder.schema().field(column).name().clone();
    let row_groups: Vec<u64> = builder
        .metadata()
        .row_groups()
        .iter()
        .map(|g| g.num_rows() as u64)
        .collect();
    let leaves = if ragged {
        leaves_under(&builder, &name, Some("shape"))
    } else {
        leaves_under(&builder, &name, None)
    };
    let mask = ProjectionMask::leaves(builder.parquet_schema(), leaves);
    let reader = builder
        .with_projection(mask)
        .with_batch_size(65_536)
        .build()
        .map_err(|e| Error::input(format!("{}: {e}", path.display())))?;
    let mut lengths = Vec::new();
    for batch in reader {
        let batch = batch.map_err(|e| Error::input(format!("{}: {e}", path.display())))?;
        let column = batch.column(0);
        if ragged {
            let shape = column
                .as_struct_opt()
                .and_then(|s| s.column_by_name("shape"))
                .ok_or_else(|| {
                    Error::input(format!("{}: ragged tensor without shape", path.display()))
                })?;
            let (offsets, values) = list_parts(shape.as_ref()).ok_or_else(|| {
                Error::input(format!("{}: tensor shape is not a list", path.display()))
            })?;
            let mut dims = Vec::new();
            for row in 0..offsets.len() - 1 {
                dims.clear();
                append_dims(&values, offsets[row]..offsets[row + 1], &mut dims)
                    .map_err(|e| e.context(path.display()))?;
                lengths.push(dims.iter().product());
            }
        } else {
            let (offsets, _) = list_parts(column.as_ref()).ok_or_else(|| {
                Error::input(format!("{}: token column is not a list", path.display()))
            })?;
            lengths.extend(offsets.windows(2).map(|w| (w[1] - w[0]) as u64));
        }
    }
    Ok(TrackSource {
        path: path.to_path_buf(),
        format: TrackFormat::Parquet { column, ragged },
        lengths,
        row_groups,
    })
}

/// Tensor dimensions (non-negative integers) of one shape list.
fn append_dims(values: &ArrayRef, range: Range<usize>, dims: &mut Vec<u64>) -> Result<()> {
    let as_i64: Vec<i64> = match values.data_type() {
        DataType::Int64 => values.as_primitive::<Int64Type>().values()[range].to_vec(),
        DataType::Int32 => values.as_primitive::<Int32Type>().values()[range]
            .iter()
            .map(|&v| i64::from(v))
            .collect(),
        DataType::UInt64 => values.as_primitive::<UInt64Type>().values()[range]
            .iter()
            .map(|&v| v as i64)
            .collect(),
        other => {
            return Err(Error::input(format!(
                "tensor shape of type {other}, expected int64"
            )))
        }
    };
    for dim in as_i64 {
        if dim < 0 {
            return Err(Error::input(format!("negative tensor dimension {dim}")));
        }
        dims.push(dim as u64);
    }
    Ok(())
}

fn read_parquet_span(
    source: &TrackSource,
    column: usize,
    ragged: bool,
    local: Range<u64>,
    max_token: u8,
    first_seq: usize,
    out: &mut Vec<u8>,
) -> Result<()> {
    let path = &source.path;
    // Sequences (rows) overlapping the span, with their token offsets in the file.
    let mut row_offsets = Vec::with_capacity(source.lengths.len() + 1);
    row_offsets.push(0u64);
    for &length in &source.lengths {
        row_offsets.push(row_offsets.last().copied().unwrap_or(0) + length);
    }
    let first_row = row_offsets.partition_point(|&o| o <= local.start) - 1;
    let end_row = row_offsets.partition_point(|&o| o < local.end);
    // Row groups covering those rows, and a selection of the rows inside them.
    let mut groups = Vec::new();
    let mut selectors = Vec::new();
    let mut group_start = 0u64;
    for (g, &rows) in source.row_groups.iter().enumerate() {
        let group_end = group_start + rows;
        let lo = (first_row as u64).max(group_start);
        let hi = (end_row as u64).min(group_end);
        if lo < hi {
            groups.push(g);
            if lo > group_start {
                selectors.push(RowSelector::skip((lo - group_start) as usize));
            }
            selectors.push(RowSelector::select((hi - lo) as usize));
            if group_end > hi {
                selectors.push(RowSelector::skip((group_end - hi) as usize));
            }
        }
        group_start = group_end;
    }
    let builder = parquet_builder(path)?;
    let name = builder.schema().field(column).name().clone();
    let leaves = if ragged {
        leaves_under(&builder, &name, Some("data"))
    } else {
        leaves_under(&builder, &name, None)
    };
    let mask = ProjectionMask::leaves(builder.parquet_schema(), leaves);
    let reader = builder
        .with_projection(mask)
        .with_row_groups(groups)
        .with_row_selection(RowSelection::from(selectors))
        .with_batch_size(1024)
        .build()
        .map_err(|e| Error::input(format!("{e}")))?;
    let mut row = first_row;
    for batch in reader {
        let batch = batch.map_err(|e| Error::input(format!("{e}")))?;
        let (offsets, values) = token_list(&batch, ragged, path)?;
        for i in 0..batch.num_rows() {
            let (start, end) = (offsets[i], offsets[i + 1]);
            let length = (end - start) as u64;
            if length != source.lengths[row] {
                return Err(Error::input(format!(
                    "sequence {}: {length} tokens in the data but {} in its shape",
                    first_seq + row,
                    source.lengths[row]
                )));
            }
            let lo = local.start.max(row_offsets[row]) - row_offsets[row];
            let hi = local.end.min(row_offsets[row + 1]) - row_offsets[row];
            append_tokens(
                &values,
                start + lo as usize..start + hi as usize,
                max_token,
                first_seq + row,
                out,
            )?;
            row += 1;
        }
    }
    if row != end_row {
        return Err(Error::input(format!(
            "read sequences {first_row}..{row}, expected up to {end_row}"
        )));
    }
    Ok(())
}

// ---------------------------------------------------------------- HDF5

fn scan_hdf5(path: &Path) -> Result<TrackSource> {
    hdf5::silence_errors(true);
    let file =
        hdf5::File::open(path).map_err(|e| Error::input(format!("{}: {e}", path.display())))?;
    let tokens = file.dataset("tokens").map_err(|_| {
        Error::input(format!(
            "{}: no dataset /tokens (HDF5 tracks need /tokens and /offsets)",
            path.display()
        ))
    })?;
    let offsets = file
        .dataset("offsets")
        .map_err(|_| Error::input(format!("{}: no dataset /offsets", path.display())))?;
    if tokens.ndim() != 1 || offsets.ndim() != 1 {
        return Err(Error::input(format!(
            "{}: /tokens and /offsets must be 1-D",
            path.display()
        )));
    }
    let n_tokens = tokens.size() as i64;
    let offsets: Vec<i64> = offsets
        .read_raw()
        .map_err(|e| Error::input(format!("{}: /offsets: {e}", path.display())))?;
    if offsets.first() != Some(&0) || offsets.last() != Some(&n_tokens) {
        return Err(Error::input(format!(
            "{}: /offsets must start at 0 and end at the length of /tokens ({n_tokens})",
            path.display()
        )));
    }
    let mut lengths = Vec::with_capacity(offsets.len() - 1);
    for (seq, pair) in offsets.windows(2).enumerate() {
        if pair[1] < pair[0] {
            return Err(Error::input(format!(
                "{}: /offsets decreases at sequence {seq}",
                path.display()
            )));
        }
        lengths.push((pair[1] - pair[0]) as u64);
    }
    Ok(TrackSource {
        path: path.to_path_buf(),
        format: TrackFormat::Hdf5,
        lengths,
        row_groups: Vec::new(),
    })
}

fn read_hdf5_span(
    source: &TrackSource,
    local: Range<u64>,
    max_token: u8,
    out: &mut Vec<u8>,
) -> Result<()> {
    hdf5::silence_errors(true);
    let file = hdf5::File::open(&source.path).map_err(|e| Error::input(format!("{e}")))?;
    let tokens = file
        .dataset("tokens")
        .map_err(|e| Error::input(format!("/tokens: {e}")))?;
    let mut at = local.start;
    while at < local.end {
        let end = (at + HDF5_CHUNK).min(local.end);
        // i16 keeps negatives negative and clamps large values (still out of range).
        let chunk: Vec<i16> = tokens
            .read_slice_1d(hdf5::Selection::from(at as usize..end as usize))
            .map_err(|e| Error::input(format!("/tokens[{at}..{end}]: {e}")))?
            .to_vec();
        for (i, &value) in chunk.iter().enumerate() {
            if value < 0 || value > i16::from(max_token) {
                return Err(Error::input(format!(
                    "/tokens[{}] = {value} is outside 0..={max_token}",
                    at + i as u64
                )));
            }
        }
        out.extend(chunk.iter().map(|&v| v as u8));
        at = end;
    }
    Ok(())
}

// ---------------------------------------------------------------- generator

/// Base probabilities (A, C, G, T) at codon positions 1, 2, 3 of planted coding segments: a
/// position-dependent composition like real genes (G-rich first positions, GC-rich third), which
/// gives the period-3 signal.
const CODON_POSITION_BASES: [[f64; 4]; 3] = [
    [0.32, 0.14, 0.40, 0.14],
    [0.32, 0.22, 0.14, 0.32],
    [0.16, 0.34, 0.34, 0.16],
];
/// Fraction of background bases that are N (token 4).
const N_RATE: f64 = 0.001;

/// One synthetic sequence: tokens and its coding segments (start, end), end exclusive.
fn synthetic_sequence(rng: &mut ChaCha8Rng, length: usize) -> (Vec<u8>, Vec<(usize, usize)>) {
    let mut tokens = Vec::with_capacity(length);
    let mut segments = Vec::new();
    let cumulative: Vec<[f64; 4]> = CODON_POSITION_BASES
        .iter()
        .map(|p| [p[0], p[0] + p[1], p[0] + p[1] + p[2], 1.0])
        .collect();
    while tokens.len() < length {
        // Background gap, then a coding segment of whole codons.
        let gap = rng.gen_range(100..=900).min(length - tokens.len());
        for _ in 0..gap {
            let token = if rng.gen_bool(N_RATE) {
                4
            } else {
                rng.gen_range(0..4u8)
            };
            tokens.push(token);
        }
        let room = length - tokens.len();
        let codons = rng.gen_range(100..=600usize).min(room / 3);
        if codons < 40 {
            continue;
        }
        let start = tokens.len();
        for i in 0..codons * 3 {
            let u: f64 = rng.gen();
            let table = &cumulative[i % 3];
            tokens.push(table.iter().position(|&c| u < c).unwrap_or(3) as u8);
        }
        segments.push((start, tokens.len()));
    }
    (tokens, segments)
}

/// `embsolve generate --kind tracks`: `n_sequences` synthetic DNA tracks of about `length` bases
/// (uniform in length/2 ..= 3*length/2) with planted coding segments, written to the directory
/// `out` as `shards` files (`format` parquet: ragged-tensor column `tokens` and `id`; hdf5:
/// `/tokens`, `/offsets`), plus `manifest.json` and the ground truth `coding.csv`
/// (seq,start,end: global sequence number, end exclusive). One shard to an `out` ending in
/// `.parquet`, `.h5` or `.hdf5` writes that single file and the truth as `OUT.coding.csv`.
pub fn generate_tracks(
    n_sequences: usize,
    length: usize,
    seed: u64,
    format: &str,
    shards: usize,
    out: &Path,
) -> Result<()> {
    if n_sequences == 0 || length == 0 {
        return Err(Error::usage(
            "generate --kind tracks needs --n >= 1 and --length >= 1",
        ));
    }
    let file_extension = match format {
        "parquet" => "parquet",
        "hdf5" => "h5",
        other => {
            return Err(Error::usage(format!(
                "generate --kind tracks writes parquet or hdf5, not {other:?}"
            )))
        }
    };
    let shards = shards.clamp(1, n_sequences);
    // One shard to a PATH named like a track file: that file, and the truth beside it.
    let single_file =
        shards == 1 && matches!(self::extension(out).as_str(), "parquet" | "h5" | "hdf5");
    let dir = if single_file {
        out.parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."))
    } else {
        out
    };
    std::fs::create_dir_all(dir).map_err(|e| Error::output(format!("{}: {e}", dir.display())))?;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut truth = String::from("seq,start,end\n");
    let mut files = Vec::new();
    let mut seq = 0usize;
    for shard in 0..shards {
        let shard_rows = n_sequences / shards + usize::from(shard < n_sequences % shards);
        let mut tracks = Vec::with_capacity(shard_rows);
        for _ in 0..shard_rows {
            let this_length = rng.gen_range(length.div_ceil(2)..=length + length / 2);
            let (tokens, segments) = synthetic_sequence(&mut rng, this_length);
            for (start, end) in segments {
                truth.push_str(&format!("{seq},{start},{end}\n"));
            }
            tracks.push(tokens);
            seq += 1;
        }
        let name = format!("part-{shard:05}.{file_extension}");
        let path = if single_file {
            out.to_path_buf()
        } else {
            out.join(&name)
        };
        let first_id = seq - shard_rows;
        match format {
            "parquet" => write_parquet_shard(&path, &tracks, first_id),
            _ => write_hdf5_shard(&path, &tracks, first_id),
        }?;
        files.push(serde_json::json!({"path": name, "rows": shard_rows}));
    }
    let write = |name: &str, text: &str| {
        let path = out.join(name);
        std::fs::write(&path, text).map_err(|e| Error::output(format!("{}: {e}", path.display())))
    };
    if single_file {
        let mut truth_path = out.as_os_str().to_owned();
        truth_path.push(".coding.csv");
        let truth_path = PathBuf::from(truth_path);
        return std::fs::write(&truth_path, &truth)
            .map_err(|e| Error::output(format!("{}: {e}", truth_path.display())));
    }
    write("coding.csv", &truth)?;
    let manifest = serde_json::json!({
        "format": format,
        "column": "tokens",
        "id_column": "id",
        "n_rows": n_sequences,
        "files": files,
        "producer": {"tool": "embsolve generate", "kind": "tracks", "alphabet": "dna",
                     "length": length, "seed": seed},
    });
    write(
        "manifest.json",
        &serde_json::to_string_pretty(&manifest).map_err(|e| Error::internal(e.to_string()))?,
    )
}

fn write_parquet_shard(path: &Path, tracks: &[Vec<u8>], first_id: usize) -> Result<()> {
    let output = |e: &dyn std::fmt::Display| Error::output(format!("{}: {e}", path.display()));
    let data_field = Arc::new(Field::new("item", DataType::Int8, false));
    let shape_field = Arc::new(Field::new("item", DataType::Int64, false));
    let data = LargeListArray::new(
        data_field.clone(),
        OffsetBuffer::from_lengths(tracks.iter().map(Vec::len)),
        Arc::new(Int8Array::from_iter_values(
            tracks.iter().flatten().map(|&t| t as i8),
        )),
        None,
    );
    let shape = ListArray::new(
        shape_field.clone(),
        OffsetBuffer::from_lengths(vec![1; tracks.len()]),
        Arc::new(Int64Array::from_iter_values(
            tracks.iter().map(|t| t.len() as i64),
        )),
        None,
    );
    let fields = Fields::from(vec![
        Field::new("data", DataType::LargeList(data_field), false),
        Field::new("shape", DataType::List(shape_field), false),
    ]);
    let tensor = StructArray::new(
        fields.clone(),
        vec![Arc::new(data) as ArrayRef, Arc::new(shape)],
        None,
    );
    let metadata = HashMap::from([
        (
            "ARROW:extension:name".to_string(),
            RAGGED_TENSOR.to_string(),
        ),
        (
            "ARROW:extension:metadata".to_string(),
            r#"{"ndim": 1}"#.to_string(),
        ),
    ]);
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("tokens", DataType::Struct(fields), false).with_metadata(metadata),
    ]));
    let ids = Int64Array::from_iter_values((first_id..first_id + tracks.len()).map(|i| i as i64));
    let batch = RecordBatch::try_new(schema.clone(), vec![Arc::new(ids), Arc::new(tensor)])
        .map_err(|e| output(&e))?;
    let mean_length = tracks.iter().map(Vec::len).sum::<usize>() / tracks.len().max(1);
    let rows_per_group = (TOKENS_PER_ROW_GROUP / mean_length.max(1)).max(1);
    let props = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .set_max_row_group_row_count(Some(rows_per_group))
        .build();
    let file = File::create(path).map_err(|e| output(&e))?;
    let mut writer = ArrowWriter::try_new(file, schema, Some(props)).map_err(|e| output(&e))?;
    writer.write(&batch).map_err(|e| output(&e))?;
    writer.close().map_err(|e| output(&e))?;
    Ok(())
}

fn write_hdf5_shard(path: &Path, tracks: &[Vec<u8>], first_id: usize) -> Result<()> {
    let output = |e: &dyn std::fmt::Display| Error::output(format!("{}: {e}", path.display()));
    let tokens: Vec<u8> = tracks.iter().flatten().copied().collect();
    let mut offsets = vec![0i64];
    for track in tracks {
        offsets.push(offsets.last().copied().unwrap_or(0) + track.len() as i64);
    }
    let ids: Vec<i64> = (first_id..first_id + tracks.len())
        .map(|i| i as i64)
        .collect();
    let file = hdf5::File::create(path).map_err(|e| output(&e))?;
    file.new_dataset_builder()
        .with_data(&tokens)
        .create("tokens")
        .map_err(|e| output(&e))?;
    file.new_dataset_builder()
        .with_data(&offsets)
        .create("offsets")
        .map_err(|e| output(&e))?;
    file.new_dataset_builder()
        .with_data(&ids)
        .create("id")
        .map_err(|e| output(&e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all_tokens(info: &TracksInfo) -> Vec<u8> {
        let total: u64 = info.lengths().iter().sum();
        read_tokens(info, 0..total, 4).unwrap()
    }

    #[test]
    fn generated_parquet_and_hdf5_read_back_identically_by_any_span() {
        let dir = tempfile::tempdir().unwrap();
        let pq = dir.path().join("pq");
        let h5 = dir.path().join("h5");
        generate_tracks(150, 2000, 7, "parquet", 3, &pq).unwrap();
        generate_tracks(150, 2000, 7, "hdf5", 2, &h5).unwrap();
        let pq_info = scan_tracks(&pq).unwrap();
        let h5_info = scan_tracks(&h5).unwrap();
        assert_eq!(pq_info.sources.len(), 3);
        assert!(
            pq_info.sources[0].row_groups.len() > 1,
            "several row groups"
        );
        assert_eq!(pq_info.lengths(), h5_info.lengths());
        let lengths = pq_info.lengths();
        assert_eq!(lengths.len(), 150);
        assert!(lengths.iter().all(|&l| (1000..=3000).contains(&l)));
        let whole = all_tokens(&pq_info);
        assert_eq!(whole, all_tokens(&h5_info));
        assert!(whole.iter().all(|&t| t <= 4));
        let total = whole.len() as u64;
        for (lo, hi) in [
            (0, 1),
            (5, 90_000),
            (total / 3, total / 3 + 2),
            (total - 7, total),
        ] {
            let pq_span = read_tokens(&pq_info, lo..hi, 4).unwrap();
            assert_eq!(
                pq_span,
                &whole[lo as usize..hi as usize],
                "parquet {lo}..{hi}"
            );
            let h5_span = read_tokens(&h5_info, lo..hi, 4).unwrap();
            assert_eq!(h5_span, &whole[lo as usize..hi as usize], "hdf5 {lo}..{hi}");
        }
        let truth = std::fs::read_to_string(pq.join("coding.csv")).unwrap();
        assert!(truth.lines().count() > 100);
    }

    #[test]
    fn plain_list_columns_and_bad_tokens() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("plain.parquet");
        let item = Arc::new(Field::new("item", DataType::Int32, true));
        let list = ListArray::new(
            item.clone(),
            OffsetBuffer::from_lengths([3, 0, 2]),
            Arc::new(arrow_array::Int32Array::from(vec![0, 1, 2, 3, 7])),
            None,
        );
        let schema = Arc::new(Schema::new(vec![Field::new(
            "seq_tokens",
            DataType::List(item),
            true,
        )]));
        let batch = RecordBatch::try_new(schema.clone(), vec![Arc::new(list)]).unwrap();
        let mut writer = ArrowWriter::try_new(File::create(&path).unwrap(), schema, None).unwrap();
        writer.write(&batch).unwrap();
        writer.close().unwrap();
        let info = scan_tracks(&path).unwrap();
        assert_eq!(info.lengths(), vec![3, 0, 2]);
        assert_eq!(read_tokens(&info, 0..4, 20).unwrap(), vec![0, 1, 2, 3]);
        let error = read_tokens(&info, 0..5, 4).unwrap_err();
        assert_eq!(error.kind, embsolve_kernels::error::ErrorKind::Input);
        assert!(error.message.contains("sequence 2"), "{}", error.message);
        assert!(error.message.contains("plain.parquet"), "{}", error.message);
        let missing = scan_tracks(&dir.path().join("nope")).unwrap_err();
        assert!(missing.message.contains("nope"));
    }
}
