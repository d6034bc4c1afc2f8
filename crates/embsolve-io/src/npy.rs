//! NumPy `.npy` datasets, read by row block (a seek to the first row, one read of the block).
//!
//! Layouts:
//! - a single `rows x dim` `.npy` file (no ids or labels);
//! - a directory of `.npy` shards (as Ray `write_numpy` writes one column), in sorted name order;
//! - a directory with one subdirectory per column, as `embsolve generate --format npy` writes it:
//!   `DIR/<column>/part-00000.npy` (`rows x dim`), and optionally `DIR/<id_column>/part-00000.npy`
//!   (int64, or fixed-width unicode `<U`/bytes `|S` strings) and `DIR/<label_column>/part-00000.npy`
//!   (integers or strings), the same file names with the same row counts, plus `manifest.json`
//!   whose `files` list the embedding shards (`<column>/part-00000.npy`).
//!
//! Numeric dtypes only (float16/32/64 and integers, either byte order, C order); an object array
//! (what `write_numpy` makes of a ragged column) or a Fortran-order array is an input error.

use super::input_error;
use super::manifest::Manifest;
use super::{shard_files, Columns, DatasetInfo, Format, IdKind, IdValues, Piece, Shard};
use embsolve_kernels::error::{Error, Result};
use half::f16;
use std::io::{Read, Seek, SeekFrom, Write};
use std::ops::Range;
use std::path::{Path, PathBuf};

/// Element type of an array.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Float,
    Int,
    Unsigned,
    /// Fixed-width UTF-32 strings (`<U n`).
    Unicode,
    /// Fixed-width byte strings (`|S n`).
    Bytes,
}

/// A parsed `.npy` header.
#[derive(Debug, Clone, PartialEq)]
pub struct Header {
    pub kind: Kind,
    pub item_size: usize,
    pub big_endian: bool,
    pub shape: Vec<usize>,
    /// Byte offset of the first element.
    pub data_offset: u64,
    pub descr: String,
}

impl Header {
    pub fn n_rows(&self) -> usize {
        self.shape.first().copied().unwrap_or(1)
    }
    /// Elements per row (product of the trailing dimensions).
    pub fn row_len(&self) -> usize {
        self.shape.iter().skip(1).product()
    }
    pub fn dtype_name(&self) -> String {
        match (self.kind, self.item_size) {
            (Kind::Float, 2) => "float16".into(),
            (Kind::Float, 4) => "float32".into(),
            (Kind::Float, 8) => "float64".into(),
            (Kind::Int, n) => format!("int{}", n * 8),
            (Kind::Unsigned, n) => format!("uint{}", n * 8),
            _ => self.descr.clone(),
        }
    }
}

/// Read and check the header of `path`.
pub fn read_header(path: &Path) -> Result<Header> {
    let mut file =
        std::fs::File::open(path).map_err(|e| input_error(path, format!("cannot open: {e}")))?;
    let mut preamble = [0u8; 10];
    file.read_exact(&mut preamble)
        .map_err(|_| input_error(path, "not a .npy file (too short)"))?;
    if &preamble[..6] != b"\x93NUMPY" {
        return Err(input_error(path, "not a .npy file (bad magic)"));
    }
    let (header_len, prefix) = match preamble[6] {
        1 => (u16::from_le_bytes([preamble[8], preamble[9]]) as usize, 10),
        2 | 3 => {
            let mut rest = [0u8; 2];
            file.read_exact(&mut rest)
                .map_err(|_| input_error(path, "truncated .npy header"))?;
            (
                u32::from_le_bytes([preamble[8], preamble[9], rest[0], rest[1]]) as usize,
                12,
            )
        }
        v => return Err(input_error(path, format!("unsupported .npy version {v}"))),
    };
    let mut text = vec![0u8; header_len];
    file.read_exact(&mut text)
        .map_err(|_| input_error(path, "truncated .npy header"))?;
    let text = String::from_utf8_lossy(&text);
    let mut header = parse_header(&text).map_err(|m| input_error(path, m))?;
    header.data_offset = (prefix + header_len) as u64;
    let expected =
        header.data_offset + (header.shape.iter().product::<usize>() * header.item_size) as u64;
    let actual = file.metadata().map_err(|e| input_error(path, e))?.len();
    if actual < expected {
        return Err(input_error(
            path,
            format!("truncated: {actual} bytes, the header promises {expected}"),
        ));
    }
    Ok(header)
}

/// Parse the Python-literal header dict: `{'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }`.
fn parse_header(text: &str) -> std::result::Result<Header, String> {
    let value_after = |key: &str| -> std::result::Result<&str, String> {
        let at = text
            .find(&format!("'{key}'"))
            .ok_or_else(|| format!("the .npy header has no {key:?}"))?;
        let rest = &text[at + key.len() + 2..];
        let colon = rest
            .find(':')
            .ok_or_else(|| format!("bad .npy header near {key:?}"))?;
        Ok(rest[colon + 1..].trim_start())
    };
    let descr_text = value_after("descr")?;
    if !descr_text.starts_with('\'') {
        return Err(format!(
            "structured dtype {} is not supported (numeric arrays only)",
            descr_text.split('}').next().unwrap_or(descr_text).trim()
        ));
    }
    let descr: String = descr_text[1..].chars().take_while(|&c| c != '\'').collect();
    if value_after("fortran_order")?.starts_with("True") {
        return Err(
            "Fortran-order arrays are not supported; save it in C order (np.ascontiguousarray)"
                .into(),
        );
    }
    let shape_text = value_after("shape")?;
    let close = shape_text.find(')').ok_or("bad shape in the .npy header")?;
    let shape = shape_text[1..close]
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.trim_end_matches('L').parse::<usize>())
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|_| format!("bad shape {:?} in the .npy header", &shape_text[..=close]))?;
    let (order, code) = descr.split_at(descr.len().min(1));
    let big_endian = order == ">";
    let mut chars = code.chars();
    let kind_char = chars.next().unwrap_or('?');
    let size: usize = chars.as_str().parse().unwrap_or(0);
    let (kind, item_size) =
        match kind_char {
            'f' if matches!(size, 2 | 4 | 8) => (Kind::Float, size),
            'i' if matches!(size, 1 | 2 | 4 | 8) => (Kind::Int, size),
            'u' if matches!(size, 1 | 2 | 4 | 8) => (Kind::Unsigned, size),
            'U' if size > 0 => (Kind::Unicode, 4 * size),
            'S' if size > 0 => (Kind::Bytes, size),
            'O' => return Err(
                "object array (pickled Python objects, e.g. a ragged column from write_numpy): \
                 only numeric arrays are supported"
                    .into(),
            ),
            _ => return Err(format!("unsupported dtype {descr:?} (numeric arrays only)")),
        };
    Ok(Header {
        kind,
        item_size,
        big_endian,
        shape,
        data_offset: 0,
        descr,
    })
}

fn read_bytes(path: &Path, header: &Header, rows: Range<usize>) -> Result<Vec<u8>> {
    let row_bytes = header.row_len() * header.item_size;
    let mut file =
        std::fs::File::open(path).map_err(|e| input_error(path, format!("cannot open: {e}")))?;
    file.seek(SeekFrom::Start(
        header.data_offset + (rows.start * row_bytes) as u64,
    ))
    .map_err(|e| input_error(path, e))?;
    let mut bytes = vec![0u8; rows.len() * row_bytes];
    file.read_exact(&mut bytes)
        .map_err(|e| input_error(path, format!("rows {}..{}: {e}", rows.start, rows.end)))?;
    Ok(bytes)
}

fn element<const N: usize>(chunk: &[u8], big_endian: bool) -> [u8; N] {
    let mut bytes = [0u8; N];
    bytes.copy_from_slice(chunk);
    if big_endian {
        bytes.reverse();
    }
    bytes
}

/// Decode numeric elements as f64 (exact for every float and for integers below 2^53).
fn decode_numbers(bytes: &[u8], header: &Header) -> Result<Vec<f64>> {
    let be = header.big_endian;
    let size = header.item_size;
    let values = bytes.chunks_exact(size).map(|c| match (header.kind, size) {
        (Kind::Float, 2) => f64::from(f16::from_le_bytes(element::<2>(c, be)).to_f32()),
        (Kind::Float, 4) => f64::from(f32::from_le_bytes(element::<4>(c, be))),
        (Kind::Float, 8) => f64::from_le_bytes(element::<8>(c, be)),
        (Kind::Int, 1) => f64::from(c[0] as i8),
        (Kind::Int, 2) => f64::from(i16::from_le_bytes(element::<2>(c, be))),
        (Kind::Int, 4) => f64::from(i32::from_le_bytes(element::<4>(c, be))),
        (Kind::Int, 8) => i64::from_le_bytes(element::<8>(c, be)) as f64,
        (Kind::Unsigned, 1) => f64::from(c[0]),
        (Kind::Unsigned, 2) => f64::from(u16::from_le_bytes(element::<2>(c, be))),
        (Kind::Unsigned, 4) => f64::from(u32::from_le_bytes(element::<4>(c, be))),
        (Kind::Unsigned, 8) => u64::from_le_bytes(element::<8>(c, be)) as f64,
        _ => f64::NAN,
    });
    Ok(values.collect())
}

fn decode_f32(bytes: &[u8], header: &Header) -> Result<Vec<f32>> {
    let be = header.big_endian;
    match (header.kind, header.item_size, be) {
        (Kind::Float, 4, false) => Ok(bytes
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(element::<4>(c, false)))
            .collect()),
        (Kind::Float, 2, _) => Ok(bytes
            .chunks_exact(2)
            .map(|c| f16::from_le_bytes(element::<2>(c, be)).to_f32())
            .collect()),
        _ => Ok(decode_numbers(bytes, header)?
            .into_iter()
            .map(|v| v as f32)
            .collect()),
    }
}

/// Integers of `bytes` (rows from `first_row` of `path`) as int64; an unsigned 64-bit value above
/// 2^63 - 1 is an error naming its row, not a negative number.
fn decode_integers(
    path: &Path,
    bytes: &[u8],
    header: &Header,
    first_row: usize,
) -> Result<Vec<i64>> {
    match header.kind {
        Kind::Unsigned if header.item_size == 8 => {
            let be = header.big_endian;
            bytes
                .chunks_exact(8)
                .enumerate()
                .map(|(row, c)| {
                    let v = u64::from_le_bytes(element::<8>(c, be));
                    i64::try_from(v).map_err(|_| {
                        input_error(
                            path,
                            format!(
                                "row {}: {v} is above 2^63 - 1 (kept as int64)",
                                first_row + row
                            ),
                        )
                    })
                })
                .collect()
        }
        Kind::Int | Kind::Unsigned => {
            if header.item_size == 8 {
                let be = header.big_endian;
                return Ok(bytes
                    .chunks_exact(8)
                    .map(|c| i64::from_le_bytes(element::<8>(c, be)))
                    .collect());
            }
            Ok(decode_numbers(bytes, header)?
                .into_iter()
                .map(|v| v as i64)
                .collect())
        }
        _ => Err(input_error(
            path,
            format!("dtype {:?} is not an integer", header.descr),
        )),
    }
}

fn decode_strings(path: &Path, bytes: &[u8], header: &Header) -> Result<Vec<String>> {
    match header.kind {
        Kind::Unicode => bytes
            .chunks_exact(header.item_size)
            .map(|c| {
                c.chunks_exact(4)
                    .map(|u| element::<4>(u, header.big_endian))
                    .map(u32::from_le_bytes)
                    .take_while(|&u| u != 0)
                    .map(|u| char::from_u32(u).ok_or_else(|| input_error(path, "invalid UTF-32")))
                    .collect()
            })
            .collect(),
        Kind::Bytes => Ok(bytes
            .chunks_exact(header.item_size)
            .map(|c| {
                let end = c.iter().position(|&b| b == 0).unwrap_or(c.len());
                String::from_utf8_lossy(&c[..end]).into_owned()
            })
            .collect()),
        _ => Err(input_error(
            path,
            format!("dtype {:?} is not a string", header.descr),
        )),
    }
}

/// The embedding shards and the per-column directories (when the dataset has them).
fn layout(
    path: &Path,
    manifest: Option<&Manifest>,
    columns: &Columns,
) -> Result<(Vec<PathBuf>, Option<PathBuf>)> {
    if manifest.is_none() && path.is_dir() {
        let column_dir = path.join(&columns.column);
        if column_dir.is_dir() {
            return Ok((
                shard_files(&column_dir, None, Format::Npy)?,
                Some(path.to_path_buf()),
            ));
        }
    }
    let files = shard_files(path, manifest, Format::Npy)?;
    let root = (path.is_dir() && manifest.is_some()).then(|| path.to_path_buf());
    Ok((files, root))
}

/// The file of `column` that goes with the embedding shard `shard_path`.
fn sidecar(root: &Path, column: &str, shard_path: &Path) -> Option<PathBuf> {
    let candidate = root.join(column).join(shard_path.file_name()?);
    candidate.is_file().then_some(candidate)
}

pub(crate) fn scan(
    path: &Path,
    manifest: Option<&Manifest>,
    columns: &Columns,
) -> Result<DatasetInfo> {
    let (files, root) = layout(path, manifest, columns)?;
    let mut shards = Vec::with_capacity(files.len());
    let mut dim = None;
    let mut dtype = String::new();
    let mut id_kind = None;
    let look_for_ids = !columns.id_column.is_empty() && root.is_some();
    // The first shard without an id file, and whether any shard has one.
    let mut missing_ids: Option<PathBuf> = None;
    let labels_everywhere = !columns.label_column.is_empty();
    for file in files {
        let header = read_header(&file)?;
        if header.shape.len() != 2 {
            return Err(input_error(
                &file,
                format!(
                    "expected a 2-D array (rows x dim), found shape {:?}",
                    header.shape
                ),
            ));
        }
        if !matches!(header.kind, Kind::Float | Kind::Int | Kind::Unsigned) {
            return Err(input_error(
                &file,
                format!("dtype {:?} is not numeric", header.descr),
            ));
        }
        match dim {
            None => {
                dim = Some(header.row_len());
                dtype = header.dtype_name();
            }
            Some(d) if d != header.row_len() => {
                return Err(input_error(
                    &file,
                    format!(
                        "dimension {} differs from the first shard's {d}",
                        header.row_len()
                    ),
                ))
            }
            Some(_) => {}
        }
        let mut shard = Shard {
            path: file.clone(),
            row_start: 0,
            n_rows: header.n_rows(),
            row_groups: Vec::new(),
            id_path: None,
            label_path: None,
        };
        if let Some(root) = &root {
            if look_for_ids {
                shard.id_path = sidecar(root, &columns.id_column, &file);
                match &shard.id_path {
                    Some(id_path) => {
                        let kind = check_sidecar(id_path, &header, true)?;
                        if id_kind.is_some_and(|k| k != kind) {
                            return Err(input_error(id_path, "id kind differs across shards"));
                        }
                        id_kind = Some(kind);
                    }
                    None => {
                        missing_ids.get_or_insert_with(|| file.clone());
                    }
                }
            }
            if labels_everywhere {
                shard.label_path = sidecar(root, &columns.label_column, &file);
                match &shard.label_path {
                    Some(label_path) => {
                        check_sidecar(label_path, &header, false)?;
                    }
                    None => {
                        return Err(input_error(
                            &file,
                            format!(
                                "no {:?} file for the label column {:?}",
                                root.join(&columns.label_column).display(),
                                columns.label_column
                            ),
                        ))
                    }
                }
            }
        } else if labels_everywhere {
            return Err(input_error(
                path,
                format!(
                    "label column {:?} requested, but a plain .npy dataset has no label files \
                     (use DIR/{}/ and DIR/{}/ subdirectories)",
                    columns.label_column, columns.column, columns.label_column
                ),
            ));
        }
        shards.push(shard);
    }
    // Ids from files for every shard or for none (then row numbers): a shard whose id file is
    // missing while others have one is an error, not a silent switch to row numbers.
    if let (Some(file), Some(root), Some(_)) = (&missing_ids, &root, id_kind) {
        let expected = root
            .join(&columns.id_column)
            .join(file.file_name().unwrap_or_default());
        return Err(input_error(
            file,
            format!(
                "no id file {} for this shard, while other shards have one in {}",
                expected.display(),
                root.join(&columns.id_column).display()
            ),
        ));
    }
    if missing_ids.is_some() || !look_for_ids {
        id_kind = None;
        for shard in &mut shards {
            shard.id_path = None;
        }
    }
    let n_rows = super::number_rows(&mut shards);
    Ok(DatasetInfo {
        n_rows,
        dim: dim.unwrap_or(0),
        format: Format::Npy,
        dtype,
        path: path.to_path_buf(),
        shards,
        column: columns.column.clone(),
        id_column: id_kind.map(|_| columns.id_column.clone()),
        id_kind,
        label_column: labels_everywhere.then(|| columns.label_column.clone()),
        from_manifest: manifest.is_some(),
    })
}

/// An id/label file must be 1-D with the shard's row count; returns the id kind it holds.
fn check_sidecar(path: &Path, embedding: &Header, ids: bool) -> Result<IdKind> {
    let header = read_header(path)?;
    if header.shape.len() != 1 || header.shape[0] != embedding.n_rows() {
        return Err(input_error(
            path,
            format!(
                "expected {} values (one per row), found shape {:?}",
                embedding.n_rows(),
                header.shape
            ),
        ));
    }
    match header.kind {
        Kind::Int | Kind::Unsigned => Ok(IdKind::Int),
        Kind::Unicode | Kind::Bytes => Ok(IdKind::String),
        Kind::Float if !ids => Ok(IdKind::Int),
        Kind::Float => Err(input_error(path, "float ids are not supported")),
    }
}

/// Rows per read: about 16 MiB of file bytes (bounds the transient copy of a block read).
fn rows_per_read(header: &Header) -> usize {
    ((16usize << 20) / (header.row_len() * header.item_size).max(1)).max(1)
}

pub(crate) fn read(
    info: &DatasetInfo,
    shard: &Shard,
    rows: Range<usize>,
    values: &mut Vec<f32>,
) -> Result<Piece> {
    let header = read_header(&shard.path)?;
    if header.row_len() != info.dim || header.n_rows() != shard.n_rows {
        return Err(input_error(
            &shard.path,
            format!(
                "shape {:?} changed since the scan ({} x {})",
                header.shape, shard.n_rows, info.dim
            ),
        ));
    }
    let step = rows_per_read(&header);
    let mut start = rows.start;
    while start < rows.end {
        let end = rows.end.min(start + step);
        let bytes = read_bytes(&shard.path, &header, start..end)?;
        values.extend(decode_f32(&bytes, &header)?);
        start = end;
    }
    let ids = match (&shard.id_path, info.id_kind) {
        (Some(id_path), Some(kind)) => {
            let id_header = read_header(id_path)?;
            let bytes = read_bytes(id_path, &id_header, rows.clone())?;
            Some(match kind {
                IdKind::Int => {
                    IdValues::Int(decode_integers(id_path, &bytes, &id_header, rows.start)?)
                }
                IdKind::String => IdValues::Str(decode_strings(id_path, &bytes, &id_header)?),
            })
        }
        _ => None,
    };
    let labels = match &shard.label_path {
        Some(label_path) if info.label_column.is_some() => {
            let label_header = read_header(label_path)?;
            let bytes = read_bytes(label_path, &label_header, rows.clone())?;
            Some(match label_header.kind {
                Kind::Unicode | Kind::Bytes => decode_strings(label_path, &bytes, &label_header)?
                    .iter()
                    .map(|s| super::label_from_str(s))
                    .collect(),
                Kind::Float => decode_numbers(&bytes, &label_header)?
                    .into_iter()
                    .map(|v| v as i64)
                    .collect(),
                _ => decode_integers(label_path, &bytes, &label_header, rows.start)?,
            })
        }
        _ => None,
    };
    Ok(Piece { ids, labels })
}

/// Writes a `.npy` file row by row: header first (shape known up front), then the data.
pub struct NpyWriter {
    file: std::io::BufWriter<std::fs::File>,
    path: PathBuf,
}

impl NpyWriter {
    /// `descr` is a NumPy dtype string such as `<f4`, `<f2` or `<i8`.
    pub fn create(path: &Path, descr: &str, shape: &[usize]) -> Result<NpyWriter> {
        let shape_text = match shape {
            [n] => format!("({n},)"),
            _ => format!(
                "({})",
                shape
                    .iter()
                    .map(usize::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        };
        let mut dict =
            format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape_text}, }}");
        let unpadded = 10 + dict.len() + 1;
        dict.push_str(&" ".repeat(unpadded.next_multiple_of(64) - unpadded));
        dict.push('\n');
        let file = std::fs::File::create(path)
            .map_err(|e| Error::output(format!("{}: cannot create: {e}", path.display())))?;
        let mut writer = NpyWriter {
            file: std::io::BufWriter::new(file),
            path: path.to_path_buf(),
        };
        let mut head = b"\x93NUMPY\x01\x00".to_vec();
        head.extend_from_slice(&(dict.len() as u16).to_le_bytes());
        head.extend_from_slice(dict.as_bytes());
        writer.write(&head)?;
        Ok(writer)
    }

    pub fn write(&mut self, bytes: &[u8]) -> Result<()> {
        self.file
            .write_all(bytes)
            .map_err(|e| Error::output(format!("{}: {e}", self.path.display())))
    }

    pub fn finish(mut self) -> Result<()> {
        self.file
            .flush()
            .map_err(|e| Error::output(format!("{}: {e}", self.path.display())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_parses_numpy_output() {
        let h =
            parse_header("{'descr': '<f4', 'fortran_order': False, 'shape': (100, 32), }").unwrap();
        assert_eq!((h.kind, h.item_size, h.big_endian), (Kind::Float, 4, false));
        assert_eq!(h.shape, vec![100, 32]);
        let h = parse_header("{'descr': '>i8', 'fortran_order': False, 'shape': (7,), }").unwrap();
        assert_eq!((h.kind, h.item_size, h.big_endian), (Kind::Int, 8, true));
        assert_eq!(h.shape, vec![7]);
        let h = parse_header("{'descr': '<U5', 'fortran_order': False, 'shape': (3,), }").unwrap();
        assert_eq!((h.kind, h.item_size), (Kind::Unicode, 20));
    }

    #[test]
    fn object_and_fortran_arrays_are_refused() {
        let err =
            parse_header("{'descr': '|O', 'fortran_order': False, 'shape': (3,), }").unwrap_err();
        assert!(err.contains("object array"), "{err}");
        let err =
            parse_header("{'descr': '<f4', 'fortran_order': True, 'shape': (3, 2), }").unwrap_err();
        assert!(err.contains("Fortran"), "{err}");
    }

    #[test]
    fn written_file_reads_back_by_rows() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.npy");
        let mut w = NpyWriter::create(&path, "<f2", &[4, 3]).unwrap();
        for v in 0..12 {
            w.write(&f16::from_f32(v as f32).to_le_bytes()).unwrap();
        }
        w.finish().unwrap();
        let header = read_header(&path).unwrap();
        assert_eq!(header.data_offset % 64, 0);
        assert_eq!(header.shape, vec![4, 3]);
        let bytes = read_bytes(&path, &header, 2..4).unwrap();
        assert_eq!(
            decode_f32(&bytes, &header).unwrap(),
            vec![6.0, 7.0, 8.0, 9.0, 10.0, 11.0]
        );
    }
}
