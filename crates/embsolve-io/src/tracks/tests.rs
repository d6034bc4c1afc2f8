//! Tests of the track readers: generated Parquet and HDF5 datasets read back identically by any
//! span, plain list columns, and the errors for bad tokens and missing paths.

use super::*;
use arrow_array::{ListArray, RecordBatch};
use arrow_buffer::OffsetBuffer;
use arrow_schema::{DataType, Field, Schema};
use parquet::arrow::ArrowWriter;
use std::fs::File;
use std::sync::Arc;

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
