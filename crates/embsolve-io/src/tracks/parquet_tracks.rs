//! Parquet token tracks: the token column of a shard (a Ray ragged tensor or a plain list of
//! integers), the scan of its sequence lengths from the `shape` column or the list offsets, the
//! reader of a token span by row groups and row selection, and the generator's shard writer.

use super::{TrackFormat, TrackSource};
use arrow_array::cast::AsArray;
use arrow_array::types::{
    Int16Type, Int32Type, Int64Type, Int8Type, UInt16Type, UInt32Type, UInt64Type, UInt8Type,
};
use arrow_array::{Array, ArrayRef, Int64Array, Int8Array, LargeListArray, ListArray, RecordBatch};
use arrow_array::{OffsetSizeTrait, StructArray};
use arrow_buffer::OffsetBuffer;
use arrow_schema::{DataType, Field, Fields, Schema};
use embsolve_kernels::error::{Error, Result};
use parquet::arrow::arrow_reader::{
    ArrowReaderOptions, ParquetRecordBatchReaderBuilder, RowSelection, RowSelector,
};
use parquet::arrow::{ArrowWriter, ProjectionMask};
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;
use std::collections::HashMap;
use std::fs::File;
use std::ops::Range;
use std::path::Path;
use std::sync::Arc;

/// Tokens per Parquet row group the generator aims for (whole sequences, at least one).
const TOKENS_PER_ROW_GROUP: usize = 1 << 16;
/// Name of the Ray extension type of ragged tensors.
const RAGGED_TENSOR: &str = "ray.data.arrow_variable_shaped_tensor";

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

pub(super) fn scan_parquet(path: &Path) -> Result<TrackSource> {
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

pub(super) fn read_parquet_span(
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

pub(super) fn write_parquet_shard(path: &Path, tracks: &[Vec<u8>], first_id: usize) -> Result<()> {
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
