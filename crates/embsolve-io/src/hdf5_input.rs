//! HDF5 datasets, read by hyperslab: one file, or a directory of `.h5` shards (sorted names or
//! `manifest.json` order), each holding a 2-D `rows x dim` dataset (`input.column`, f16/f32/f64)
//! and optionally a 1-D id dataset (int64 or variable-length strings) and a 1-D label dataset.

use super::input_error;
use super::manifest::Manifest;
use super::{shard_files, Columns, DatasetInfo, Format, IdKind, IdValues, Piece, Shard};
use embsolve_kernels::error::{Error, Result};
use hdf5::types::{FloatSize, TypeDescriptor, VarLenAscii, VarLenUnicode};
use ndarray::s;
use std::ops::Range;
use std::path::Path;

fn open(path: &Path) -> Result<hdf5::File> {
    hdf5::File::open(path).map_err(|e| input_error(path, format!("cannot open as HDF5: {e}")))
}

/// The name of a float dataset's element type (float16 is recognised by size: the crate has no
/// descriptor for it, but HDF5 converts it to f32 on read).
fn float_dtype(path: &Path, dataset: &hdf5::Dataset, name: &str) -> Result<String> {
    let dtype = dataset
        .dtype()
        .map_err(|e| input_error(path, format!("dataset {name:?}: {e}")))?;
    match dtype.to_descriptor() {
        Ok(TypeDescriptor::Float(FloatSize::U4)) => Ok("float32".into()),
        Ok(TypeDescriptor::Float(FloatSize::U8)) => Ok("float64".into()),
        Ok(other) => Err(input_error(
            path,
            format!("dataset {name:?} has dtype {other}; expected float16, float32 or float64"),
        )),
        Err(_) if dtype.size() == 2 && dtype.conv_to::<f32>().is_some() => Ok("float16".into()),
        Err(e) => Err(input_error(
            path,
            format!("dataset {name:?}: unsupported dtype: {e}"),
        )),
    }
}

fn id_kind(path: &Path, dataset: &hdf5::Dataset, name: &str) -> Result<IdKind> {
    let descriptor = dataset
        .dtype()
        .and_then(|d| d.to_descriptor())
        .map_err(|e| input_error(path, format!("dataset {name:?}: {e}")))?;
    match descriptor {
        TypeDescriptor::Integer(_) | TypeDescriptor::Unsigned(_) => Ok(IdKind::Int),
        TypeDescriptor::VarLenUnicode | TypeDescriptor::VarLenAscii => Ok(IdKind::String),
        other => Err(input_error(
            path,
            format!(
                "dataset {name:?} has dtype {other}; ids must be integers or variable-length strings"
            ),
        )),
    }
}

fn one_d_len(path: &Path, dataset: &hdf5::Dataset, name: &str, n_rows: usize) -> Result<()> {
    let shape = dataset.shape();
    if shape != [n_rows] {
        return Err(input_error(
            path,
            format!("dataset {name:?} has shape {shape:?}, expected ({n_rows},)"),
        ));
    }
    Ok(())
}

pub(crate) fn scan(
    path: &Path,
    manifest: Option<&Manifest>,
    columns: &Columns,
) -> Result<DatasetInfo> {
    hdf5::silence_errors(true);
    let files = shard_files(path, manifest, Format::Hdf5)?;
    let mut shards = Vec::with_capacity(files.len());
    let mut dim = None;
    let mut dtype = String::new();
    let mut ids: Option<Option<IdKind>> = None;
    let want_labels = !columns.label_column.is_empty();
    for file_path in files {
        let file = open(&file_path)?;
        let dataset = file
            .dataset(&columns.column)
            .map_err(|_| input_error(&file_path, format!("no dataset {:?}", columns.column)))?;
        let shape = dataset.shape();
        if shape.len() != 2 {
            return Err(input_error(
                &file_path,
                format!(
                    "dataset {:?} has shape {shape:?}; expected 2-D (rows x dim)",
                    columns.column
                ),
            ));
        }
        let this_dtype = float_dtype(&file_path, &dataset, &columns.column)?;
        match dim {
            None => {
                dim = Some(shape[1]);
                dtype = this_dtype;
            }
            Some(d) if d != shape[1] => {
                return Err(input_error(
                    &file_path,
                    format!(
                        "dataset {:?} has dimension {}, the first shard has {d}",
                        columns.column, shape[1]
                    ),
                ))
            }
            Some(_) => {}
        }
        let n_rows = shape[0];
        let this_ids = match file.dataset(&columns.id_column) {
            Ok(id_dataset) if !columns.id_column.is_empty() => {
                one_d_len(&file_path, &id_dataset, &columns.id_column, n_rows)?;
                Some(id_kind(&file_path, &id_dataset, &columns.id_column)?)
            }
            _ => None,
        };
        super::agree_id_kind(&mut ids, this_ids, &file_path, &columns.id_column)?;
        if want_labels {
            let labels = file.dataset(&columns.label_column).map_err(|_| {
                input_error(
                    &file_path,
                    format!("no label dataset {:?}", columns.label_column),
                )
            })?;
            one_d_len(&file_path, &labels, &columns.label_column, n_rows)?;
        }
        shards.push(Shard {
            path: file_path,
            row_start: 0,
            n_rows,
            row_groups: Vec::new(),
            id_path: None,
            label_path: None,
        });
    }
    let n_rows = super::number_rows(&mut shards);
    let id_kind = ids.flatten();
    Ok(DatasetInfo {
        n_rows,
        dim: dim.unwrap_or(0),
        format: Format::Hdf5,
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

/// Elements per hyperslab read (bounds the transient copy of a block read).
const ELEMENTS_PER_READ: usize = 1 << 22;

pub(crate) fn read(
    info: &DatasetInfo,
    shard: &Shard,
    rows: Range<usize>,
    values: &mut Vec<f32>,
) -> Result<Piece> {
    hdf5::silence_errors(true);
    let path = &shard.path;
    let file = open(path)?;
    let dataset = file
        .dataset(&info.column)
        .map_err(|_| input_error(path, format!("no dataset {:?}", info.column)))?;
    let shape = dataset.shape();
    if shape != [shard.n_rows, info.dim] {
        return Err(input_error(
            path,
            format!(
                "dataset {:?} has shape {shape:?}, the scan found ({}, {})",
                info.column, shard.n_rows, info.dim
            ),
        ));
    }
    let step = (ELEMENTS_PER_READ / info.dim.max(1)).max(1);
    let mut start = rows.start;
    while start < rows.end {
        let end = rows.end.min(start + step);
        let block = dataset
            .read_slice_2d::<f32, _>(s![start..end, ..])
            .map_err(|e| {
                input_error(
                    path,
                    format!("dataset {:?} rows {start}..{end}: {e}", info.column),
                )
            })?;
        values.extend(block.iter());
        start = end;
    }
    let ids = match (&info.id_column, info.id_kind) {
        (Some(name), Some(kind)) => {
            let ids = file
                .dataset(name)
                .map_err(|_| input_error(path, format!("no id dataset {name:?}")))?;
            let slice = s![rows.start..rows.end];
            let read_error = |e: hdf5::Error| input_error(path, format!("dataset {name:?}: {e}"));
            Some(match kind {
                IdKind::Int => IdValues::Int(
                    ids.read_slice_1d::<i64, _>(slice)
                        .map_err(read_error)?
                        .to_vec(),
                ),
                IdKind::String => {
                    let strings: Vec<String> = match ids.read_slice_1d::<VarLenUnicode, _>(slice) {
                        Ok(v) => v.iter().map(|s| s.as_str().to_owned()).collect(),
                        Err(_) => ids
                            .read_slice_1d::<VarLenAscii, _>(slice)
                            .map_err(read_error)?
                            .iter()
                            .map(|s| s.as_str().to_owned())
                            .collect(),
                    };
                    IdValues::Str(strings)
                }
            })
        }
        _ => None,
    };
    let labels = match &info.label_column {
        Some(name) => {
            let labels = file
                .dataset(name)
                .map_err(|_| input_error(path, format!("no label dataset {name:?}")))?;
            let slice = s![rows.start..rows.end];
            let values = match labels.read_slice_1d::<i64, _>(slice) {
                Ok(v) => v.to_vec(),
                Err(_) => labels
                    .read_slice_1d::<VarLenUnicode, _>(slice)
                    .map_err(|e| input_error(path, format!("dataset {name:?}: {e}")))?
                    .iter()
                    .map(|s| super::label_from_str(s.as_str()))
                    .collect(),
            };
            Some(values)
        }
        None => None,
    };
    Ok(Piece { ids, labels })
}

/// Write one HDF5 shard for `embsolve generate`: `column` (rows x dim f32), `id`, `label`.
pub(crate) fn write_shard(
    path: &Path,
    column: &str,
    values: ndarray::ArrayView2<f32>,
    ids: &[i64],
    labels: &[i64],
) -> Result<()> {
    hdf5::silence_errors(true);
    let output_error = |e: hdf5::Error| Error::output(format!("{}: {e}", path.display()));
    let file = hdf5::File::create(path).map_err(output_error)?;
    let chunk_rows = values.nrows().clamp(1, 4096);
    file.new_dataset::<f32>()
        .shape(values.dim())
        .chunk((chunk_rows, values.ncols().max(1)))
        .create(column)
        .and_then(|d| d.write(&values))
        .map_err(output_error)?;
    file.new_dataset_builder()
        .with_data(ids)
        .create("id")
        .map_err(output_error)?;
    file.new_dataset_builder()
        .with_data(labels)
        .create("label")
        .map_err(output_error)?;
    file.flush().map_err(output_error)
}
