//! The only home of HDF5, Parquet and Arrow: dataset scanning (metadata only), readers by row
//! block, the synthetic-data generator's writers, and the results writer.

pub mod results;
pub mod results_reader;
pub mod tracks;

use crate::config::InputSection;
use crate::error::{Error, Result};
use crate::results::Ids;
use ndarray::Array2;
use serde::{Deserialize, Serialize};
use std::ops::Range;

/// What a dataset holds, from metadata alone (rank 0 scans, every rank receives it).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DatasetInfo {
    pub n_rows: usize,
    pub dim: usize,
}

/// This rank's rows.
#[derive(Debug, Clone)]
pub struct RowBlock {
    pub embeddings: Array2<f32>,
    pub ids: Ids,
    pub labels: Option<Vec<i64>>,
}

pub fn scan(input: &InputSection) -> Result<DatasetInfo> {
    Err(Error::input(format!(
        "{}: readers are not built yet",
        input.path.display()
    )))
}

pub fn read_rows(info: &DatasetInfo, input: &InputSection, rows: Range<usize>) -> Result<RowBlock> {
    let _ = (info, input, rows);
    Err(Error::internal("readers are not built yet"))
}
