//! Parquet datasets as Ray Data writes them, read by row group: the embedding column as
//! `large_list<float>` (`ray.data.arrow_tensor_v2`), `list<float>` (`ray.data.arrow_tensor`) or
//! `fixed_size_list<float>` (`arrow.fixed_shape_tensor`), float32, float16 or float64, any codec
//! the crate was built with (snappy, zstd). The embedded Arrow schema is never trusted (older Ray
//! pickled its extension metadata, which Arrow cannot decode): files are opened with
//! `skip_arrow_metadata`, and the dimension comes from the data, every row checked.

use super::input_error;
use super::manifest::Manifest;
use super::{shard_files, Columns, DatasetInfo, Format, IdKind, IdValues, Piece, Shard};
use arrow_array::cast::AsArray;
use arrow_array::types::{
    Float16Type, Float32Type, Float64Type, Int16Type, Int32Type, Int64Type, Int8Type, UInt16Type,
    UInt32Type, UInt64Type, UInt8Type,
};
use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema};
use embsolve_kernels::error::{Error, Result};
use parquet::arrow::arrow_reader::{
    ArrowReaderOptions, ParquetRecordBatchReaderBuilder, RowSelection, RowSelector,
};
use parquet::arrow::ProjectionMask;
use std::ops::Range;
use std::path::Path;
use std::sync::Arc;

/// Rows per decoded batch (bounds the transient memory of a read).
const BATCH_ROWS: usize = 8192;

fn open(path: &Path) -> Result<ParquetRecordBatchReaderBuilder<std::fs::File>> {
    let file =
        std::fs::File::open(path).map_err(|e| input_error(path, format!("cannot open: {e}")))?;
    let options = ArrowReaderOptions::new().with_skip_arrow_metadata(true);
    ParquetRecordBatchReaderBuilder::try_new_with_options(file, options)
        .map_err(|e| input_error(path, format!("not a readable Parquet file: {e}")))
}

fn column_index(path: &Path, schema: &Schema, name: &str) -> Result<usize> {
    schema.index_of(name).map_err(|_| {
        let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
        input_error(
            path,
            format!("no column {name:?} (columns: {})", names.join(", ")),
        )
    })
}

/// The element type of a tensor column, or an error naming the file.
fn tensor_element(path: &Path, field: &Field) -> Result<&'static str> {
    let item = match field.data_type() {
        DataType::List(item) | DataType::LargeList(item) | DataType::FixedSizeList(item, _) => item,
        other => {
            return Err(input_error(
                path,
                format!(
                    "column {:?} has type {other}; expected a list of floats (a Ray tensor column)",
                    field.name()
                ),
            ))
        }
    };
    match item.data_type() {
        DataType::Float16 | DataType::FixedSizeBinary(2) => Ok("float16"),
        DataType::Float32 => Ok("float32"),
        DataType::Float64 => Ok("float64"),
        other => Err(input_error(
            path,
            format!(
                "column {:?} holds {other}; expected float16, float32 or float64",
                field.name()
            ),
        )),
    }
}

/// The row groups to read for rows `local` of a file whose row groups hold `group_rows` rows,
/// and the rows to skip at the start of the first of them: a pure function (the read plan).
pub fn plan_row_groups(group_rows: &[usize], local: Range<usize>) -> (Vec<usize>, usize) {
    let mut groups = Vec::new();
    let mut skip = 0;
    let mut start = 0;
    if local.is_empty() {
        return (groups, skip);
    }
    for (idx, &n) in group_rows.iter().enumerate() {
        let end = start + n;
        if n > 0 && start < local.end && local.start < end {
            if groups.is_empty() {
                skip = local.start.saturating_sub(start);
            }
            groups.push(idx);
        }
        start = end;
    }
    (groups, skip)
}

/// Read rows `local` of the columns `indices` of `path`, batch by batch.
fn read_batches(
    path: &Path,
    group_rows: &[usize],
    indices: &[usize],
    local: Range<usize>,
    mut each: impl FnMut(&RecordBatch, usize) -> Result<()>,
) -> Result<()> {
    let builder = open(path)?;
    let actual: Vec<usize> = builder
        .metadata()
        .row_groups()
        .iter()
        .map(|g| g.num_rows() as usize)
        .collect();
    if actual != group_rows {
        return Err(input_error(path, "row groups changed since the scan"));
    }
    let (groups, skip) = plan_row_groups(group_rows, local.clone());
    let mask = ProjectionMask::roots(builder.parquet_schema(), indices.iter().copied());
    let selection = RowSelection::from(vec![
        RowSelector::skip(skip),
        RowSelector::select(local.len()),
    ]);
    let reader = builder
        .with_projection(mask)
        .with_row_groups(groups)
        .with_row_selection(selection)
        .with_batch_size(local.len().clamp(1, BATCH_ROWS))
        .build()
        .map_err(|e| input_error(path, e))?;
    let mut row = local.start;
    for batch in reader {
        let batch = batch.map_err(|e| input_error(path, format!("near row {row}: {e}")))?;
        each(&batch, row)?;
        row += batch.num_rows();
    }
    if row != local.end {
        return Err(input_error(
            path,
            format!(
                "rows {}..{} requested, {} read",
                local.start,
                local.end,
                row - local.start
            ),
        ));
    }
    Ok(())
}

/// Offsets (into the child values) of each row of a list-like array, or an error.
fn row_offsets(path: &Path, column: &str, array: &dyn Array) -> Result<(Vec<usize>, ArrayRef)> {
    match array.data_type() {
        DataType::List(_) => {
            let list = array.as_list::<i32>();
            let offsets = list.value_offsets().iter().map(|&o| o as usize).collect();
            Ok((offsets, list.values().clone()))
        }
        DataType::LargeList(_) => {
            let list = array.as_list::<i64>();
            let offsets = list.value_offsets().iter().map(|&o| o as usize).collect();
            Ok((offsets, list.values().clone()))
        }
        DataType::FixedSizeList(_, width) => {
            let list = array.as_fixed_size_list();
            let width = *width as usize;
            let first = list.offset() * width;
            let offsets = (0..=list.len()).map(|i| first + i * width).collect();
            Ok((offsets, list.values().clone()))
        }
        other => Err(input_error(
            path,
            format!("column {column:?} has type {other}; expected a list of floats"),
        )),
    }
}

/// Child values `range` as f32.
fn values_f32(
    path: &Path,
    column: &str,
    values: &dyn Array,
    range: Range<usize>,
) -> Result<Vec<f32>> {
    let values = values.slice(range.start, range.len());
    Ok(match values.data_type() {
        DataType::Float32 => values.as_primitive::<Float32Type>().values().to_vec(),
        DataType::Float16 => values
            .as_primitive::<Float16Type>()
            .values()
            .iter()
            .map(|v| v.to_f32())
            .collect(),
        DataType::Float64 => values
            .as_primitive::<Float64Type>()
            .values()
            .iter()
            .map(|&v| v as f32)
            .collect(),
        DataType::FixedSizeBinary(2) => {
            let binary = values.as_fixed_size_binary();
            (0..binary.len())
                .map(|i| {
                    let b = binary.value(i);
                    half::f16::from_le_bytes([b[0], b[1]]).to_f32()
                })
                .collect()
        }
        other => {
            return Err(input_error(
                path,
                format!("column {column:?} holds {other}; expected floats"),
            ))
        }
    })
}

/// Append the rows of a tensor column to `out`, checking each row's length against `dim`.
fn append_embedding(
    path: &Path,
    column: &str,
    array: &dyn Array,
    dim: usize,
    first_row: usize,
    out: &mut Vec<f32>,
) -> Result<()> {
    let (offsets, values) = row_offsets(path, column, array)?;
    for row in 0..array.len() {
        if array.is_null(row) {
            return Err(input_error(
                path,
                format!("row {}: column {column:?} is null", first_row + row),
            ));
        }
        let len = offsets[row + 1] - offsets[row];
        if len != dim {
            return Err(input_error(
                path,
                format!(
                    "row {}: column {column:?} has {len} values, expected {dim} (every row must have the same dimension)",
                    first_row + row
                ),
            ));
        }
    }
    let range = offsets[0]..offsets[array.len()];
    if values.null_count() > 0 {
        let nulls = values.logical_nulls();
        if let Some(at) = range
            .clone()
            .find(|&i| nulls.as_ref().is_some_and(|n| n.is_null(i)))
        {
            let row = offsets.partition_point(|&o| o <= at) - 1;
            return Err(input_error(
                path,
                format!(
                    "row {}: column {column:?} holds a null value",
                    first_row + row
                ),
            ));
        }
    }
    out.extend(values_f32(path, column, values.as_ref(), range)?);
    Ok(())
}

/// Ids are kept as int64: an unsigned id above 2^63 - 1 is an error, not a negative id.
fn ids_fit_int64(path: &Path, name: &str, array: &dyn Array, first_row: usize) -> Result<()> {
    if let Some(a) = array.as_primitive_opt::<UInt64Type>() {
        if let Some((row, v)) = a
            .values()
            .iter()
            .enumerate()
            .find(|(_, &v)| v > i64::MAX as u64)
        {
            return Err(input_error(
                path,
                format!(
                    "row {}: id {v} in column {name:?} is above 2^63 - 1 (ids are int64)",
                    first_row + row
                ),
            ));
        }
    }
    Ok(())
}

fn int_values(array: &dyn Array) -> Option<Vec<i64>> {
    macro_rules! ints {
        ($($t:ty),*) => {
            $(if let Some(a) = array.as_primitive_opt::<$t>() {
                return Some(a.values().iter().map(|&v| v as i64).collect());
            })*
        };
    }
    ints!(Int64Type, Int32Type, Int16Type, Int8Type, UInt64Type, UInt32Type, UInt16Type, UInt8Type);
    None
}

fn string_values(array: &dyn Array) -> Option<Vec<String>> {
    match array.data_type() {
        DataType::Utf8 => Some(
            array
                .as_string::<i32>()
                .iter()
                .map(|s| s.unwrap_or("").to_owned())
                .collect(),
        ),
        DataType::LargeUtf8 => Some(
            array
                .as_string::<i64>()
                .iter()
                .map(|s| s.unwrap_or("").to_owned())
                .collect(),
        ),
        DataType::Utf8View => Some(
            array
                .as_string_view()
                .iter()
                .map(|s| s.unwrap_or("").to_owned())
                .collect(),
        ),
        _ => None,
    }
}

fn id_kind_of(path: &Path, field: &Field) -> Result<IdKind> {
    match field.data_type() {
        DataType::Int8
        | DataType::Int16
        | DataType::Int32
        | DataType::Int64
        | DataType::UInt8
        | DataType::UInt16
        | DataType::UInt32
        | DataType::UInt64 => Ok(IdKind::Int),
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => Ok(IdKind::String),
        other => Err(input_error(
            path,
            format!(
                "column {:?} has type {other}; ids and labels must be integers or strings",
                field.name()
            ),
        )),
    }
}

fn no_nulls(path: &Path, column: &str, array: &dyn Array, first_row: usize) -> Result<()> {
    if array.null_count() > 0 {
        let row = (0..array.len()).find(|&i| array.is_null(i)).unwrap_or(0);
        return Err(input_error(
            path,
            format!("row {}: column {column:?} is null", first_row + row),
        ));
    }
    Ok(())
}

/// The dimension of the first row of `path` (one data page read), if the file has rows.
fn first_row_dim(
    path: &Path,
    column: &str,
    index: usize,
    group_rows: &[usize],
) -> Result<Option<usize>> {
    if group_rows.iter().all(|&n| n == 0) {
        return Ok(None);
    }
    let mut dim = None;
    read_batches(path, group_rows, &[index], 0..1, |batch, row| {
        let (offsets, _) = row_offsets(path, column, batch.column(0).as_ref())?;
        if batch.column(0).is_null(0) {
            return Err(input_error(
                path,
                format!("row {row}: column {column:?} is null"),
            ));
        }
        dim = Some(offsets[1] - offsets[0]);
        Ok(())
    })?;
    Ok(dim)
}

pub(crate) fn scan(
    path: &Path,
    manifest: Option<&Manifest>,
    columns: &Columns,
) -> Result<DatasetInfo> {
    let files = shard_files(path, manifest, Format::Parquet)?;
    let mut shards = Vec::with_capacity(files.len());
    let mut dim: Option<(usize, std::path::PathBuf)> = None;
    let mut dtype = String::new();
    let mut ids: Option<Option<IdKind>> = None;
    let want_labels = !columns.label_column.is_empty();
    for file_path in files {
        let builder = open(&file_path)?;
        let schema = builder.schema().clone();
        let index = column_index(&file_path, &schema, &columns.column)?;
        let element = tensor_element(&file_path, schema.field(index))?;
        let group_rows: Vec<usize> = builder
            .metadata()
            .row_groups()
            .iter()
            .map(|g| g.num_rows() as usize)
            .collect();
        drop(builder);
        if let Some(this_dim) = first_row_dim(&file_path, &columns.column, index, &group_rows)? {
            match &dim {
                None => {
                    dim = Some((this_dim, file_path.clone()));
                    dtype = element.to_string();
                }
                Some((d, first)) if *d != this_dim => {
                    return Err(input_error(
                        &file_path,
                        format!(
                            "column {:?} has dimension {this_dim}, but {} has {d}",
                            columns.column,
                            first.display()
                        ),
                    ))
                }
                Some(_) => {}
            }
        }
        let this_ids = match schema.index_of(&columns.id_column) {
            Ok(i) if !columns.id_column.is_empty() => {
                Some(id_kind_of(&file_path, schema.field(i))?)
            }
            _ => None,
        };
        super::agree_id_kind(&mut ids, this_ids, &file_path, &columns.id_column)?;
        if want_labels {
            let i = column_index(&file_path, &schema, &columns.label_column)?;
            id_kind_of(&file_path, schema.field(i))?;
        }
        shards.push(Shard {
            path: file_path,
            row_start: 0,
            n_rows: group_rows.iter().sum(),
            row_groups: group_rows,
            id_path: None,
            label_path: None,
        });
    }
    let n_rows = super::number_rows(&mut shards);
    let id_kind = ids.flatten();
    Ok(DatasetInfo {
        n_rows,
        dim: dim.map(|(d, _)| d).unwrap_or(0),
        format: Format::Parquet,
        dtype,
        path: path.to_path_buf(),
        shards,
        column: columns.column.clone(),
        id_column: id_kind.map(|_| columns.id_column.clone()),
        id_kind,
        label_column: want_labels.then(|| columns.label_column.clone()),
        from_manifest: manifest.is_some(),
    })
}

pub(crate) fn read(
    info: &DatasetInfo,
    shard: &Shard,
    local: Range<usize>,
    values: &mut Vec<f32>,
) -> Result<Piece> {
    let path = &shard.path;
    let schema = open(path)?.schema().clone();
    let embedding_index = column_index(path, &schema, &info.column)?;
    let id_index = match &info.id_column {
        Some(name) => Some(column_index(path, &schema, name)?),
        None => None,
    };
    let label_index = match &info.label_column {
        Some(name) => Some(column_index(path, &schema, name)?),
        None => None,
    };
    // Projected columns come back in file order; remember where each landed.
    let mut indices: Vec<usize> = [Some(embedding_index), id_index, label_index]
        .into_iter()
        .flatten()
        .collect();
    indices.sort_unstable();
    indices.dedup();
    let position = |i: usize| indices.iter().position(|&x| x == i).unwrap_or(0);
    let embedding_at = position(embedding_index);
    let id_at = id_index.map(position);
    let label_at = label_index.map(position);

    let mut int_ids = Vec::new();
    let mut str_ids = Vec::new();
    let mut labels = Vec::new();
    read_batches(
        path,
        &shard.row_groups,
        &indices,
        local,
        |batch, first_row| {
            append_embedding(
                path,
                &info.column,
                batch.column(embedding_at).as_ref(),
                info.dim,
                first_row,
                values,
            )?;
            if let (Some(at), Some(name)) = (id_at, &info.id_column) {
                let column = batch.column(at).as_ref();
                no_nulls(path, name, column, first_row)?;
                match info.id_kind {
                    Some(IdKind::Int) => {
                        ids_fit_int64(path, name, column, first_row)?;
                        int_ids.extend(int_values(column).ok_or_else(|| {
                            input_error(path, format!("column {name:?} is not integer"))
                        })?)
                    }
                    _ => str_ids.extend(string_values(column).ok_or_else(|| {
                        input_error(path, format!("column {name:?} is not a string"))
                    })?),
                }
            }
            if let (Some(at), Some(name)) = (label_at, &info.label_column) {
                let column = batch.column(at).as_ref();
                no_nulls(path, name, column, first_row)?;
                match int_values(column) {
                    Some(v) => labels.extend(v),
                    None => labels.extend(
                        string_values(column)
                            .ok_or_else(|| {
                                input_error(
                                    path,
                                    format!("column {name:?}: labels must be integers or strings"),
                                )
                            })?
                            .iter()
                            .map(|s| super::label_from_str(s)),
                    ),
                }
            }
            Ok(())
        },
    )?;
    let ids = match info.id_kind {
        Some(IdKind::Int) => Some(IdValues::Int(int_ids)),
        Some(IdKind::String) => Some(IdValues::Str(str_ids)),
        None => None,
    };
    Ok(Piece {
        ids,
        labels: info.label_column.as_ref().map(|_| labels),
    })
}

/// Writes one Parquet shard the way Ray Data's `write_parquet` does: the embedding as
/// `large_list<float|halffloat>` tagged `ray.data.arrow_tensor_v2`, `id` and `label` int64,
/// snappy, `rows_per_group` rows per row group.
pub struct ShardWriter {
    writer: parquet::arrow::ArrowWriter<std::fs::File>,
    schema: Arc<Schema>,
    dim: usize,
    half: bool,
    path: std::path::PathBuf,
}

impl ShardWriter {
    pub fn create(
        path: &Path,
        column: &str,
        dim: usize,
        half: bool,
        rows_per_group: usize,
    ) -> Result<ShardWriter> {
        use parquet::basic::Compression;
        use parquet::file::properties::WriterProperties;
        let item = Arc::new(Field::new(
            "element",
            if half {
                DataType::Float16
            } else {
                DataType::Float32
            },
            true,
        ));
        let metadata: std::collections::HashMap<String, String> = [
            (
                "ARROW:extension:name".to_string(),
                "ray.data.arrow_tensor_v2".to_string(),
            ),
            ("ARROW:extension:metadata".to_string(), format!("[{dim}]")),
        ]
        .into_iter()
        .collect();
        let schema = Arc::new(Schema::new(vec![
            Field::new(column, DataType::LargeList(item), true).with_metadata(metadata),
            Field::new("id", DataType::Int64, true),
            Field::new("label", DataType::Int64, true),
        ]));
        let props = WriterProperties::builder()
            .set_compression(Compression::SNAPPY)
            .set_max_row_group_row_count(Some(rows_per_group.max(1)))
            .build();
        let output_error =
            |e: &dyn std::fmt::Display| Error::output(format!("{}: {e}", path.display()));
        let file = std::fs::File::create(path).map_err(|e| output_error(&e))?;
        let writer = parquet::arrow::ArrowWriter::try_new(file, schema.clone(), Some(props))
            .map_err(|e| output_error(&e))?;
        Ok(ShardWriter {
            writer,
            schema,
            dim,
            half,
            path: path.to_path_buf(),
        })
    }

    /// Append rows: `values` is `ids.len() x dim`, row-major.
    pub fn write(&mut self, values: &[f32], ids: &[i64], labels: &[i64]) -> Result<()> {
        use arrow_array::{Float16Array, Float32Array, Int64Array, LargeListArray};
        use arrow_buffer::OffsetBuffer;
        let n = ids.len();
        let child: ArrayRef = if self.half {
            Arc::new(Float16Array::from(
                values
                    .iter()
                    .map(|&v| half::f16::from_f32(v))
                    .collect::<Vec<_>>(),
            ))
        } else {
            Arc::new(Float32Array::from(values.to_vec()))
        };
        let DataType::LargeList(item) = self.schema.field(0).data_type().clone() else {
            return Err(Error::internal("tensor column is not a large list"));
        };
        let output_error =
            |e: &dyn std::fmt::Display| Error::output(format!("{}: {e}", self.path.display()));
        let list = LargeListArray::try_new(
            item,
            OffsetBuffer::from_lengths(std::iter::repeat_n(self.dim, n)),
            child,
            None,
        )
        .map_err(|e| output_error(&e))?;
        let batch = RecordBatch::try_new(
            self.schema.clone(),
            vec![
                Arc::new(list),
                Arc::new(Int64Array::from(ids.to_vec())),
                Arc::new(Int64Array::from(labels.to_vec())),
            ],
        )
        .map_err(|e| output_error(&e))?;
        self.writer.write(&batch).map_err(|e| output_error(&e))
    }

    pub fn finish(self) -> Result<()> {
        let path = self.path;
        self.writer
            .close()
            .map(|_| ())
            .map_err(|e| Error::output(format!("{}: {e}", path.display())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn row_group_plan_reads_only_overlapping_groups() {
        let groups = [4, 4, 0, 4, 2];
        assert_eq!(plan_row_groups(&groups, 0..4), (vec![0], 0));
        assert_eq!(plan_row_groups(&groups, 3..5), (vec![0, 1], 3));
        assert_eq!(plan_row_groups(&groups, 8..9), (vec![3], 0));
        assert_eq!(plan_row_groups(&groups, 6..14), (vec![1, 3, 4], 2));
        assert_eq!(plan_row_groups(&groups, 13..14), (vec![4], 1));
        assert_eq!(plan_row_groups(&groups, 5..5), (vec![], 0));
    }

    #[test]
    fn written_shard_reads_back_by_row_block() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("part-00000.parquet");
        let dim = 3;
        let n = 10;
        let values: Vec<f32> = (0..n * dim).map(|v| v as f32 * 0.5).collect();
        let ids: Vec<i64> = (0..n as i64).map(|i| 100 + i).collect();
        let labels: Vec<i64> = (0..n as i64).map(|i| i % 3).collect();
        let mut w = ShardWriter::create(&path, "embedding", dim, false, 4).unwrap();
        w.write(&values[..6 * dim], &ids[..6], &labels[..6])
            .unwrap();
        w.write(&values[6 * dim..], &ids[6..], &labels[6..])
            .unwrap();
        w.finish().unwrap();

        let columns = Columns {
            column: "embedding".into(),
            id_column: "id".into(),
            label_column: "label".into(),
        };
        let info = scan(&path, None, &columns).unwrap();
        assert_eq!((info.n_rows, info.dim), (n, dim));
        assert_eq!(info.shards[0].row_groups, vec![4, 4, 2]);
        assert_eq!(info.dtype, "float32");
        let mut read_values = Vec::new();
        let piece = read(&info, &info.shards[0], 3..7, &mut read_values).unwrap();
        assert_eq!(read_values, values[3 * dim..7 * dim].to_vec());
        match piece.ids {
            Some(IdValues::Int(v)) => assert_eq!(v, vec![103, 104, 105, 106]),
            _ => panic!("int ids expected"),
        }
        assert_eq!(piece.labels, Some(vec![0, 1, 2, 0]));
    }
}
