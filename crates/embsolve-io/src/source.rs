//! What to read: the `[input]` section of a run (a file, a directory of shards or a dataset with a
//! manifest, its format and column names).

use serde::{Deserialize, Serialize};
use std::path::PathBuf;

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum InputFormat {
    Auto,
    Parquet,
    Hdf5,
    Npy,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct InputSection {
    pub path: PathBuf,
    #[serde(default = "default_format")]
    pub format: InputFormat,
    #[serde(default = "default_column")]
    pub column: String,
    #[serde(default = "default_id_column")]
    pub id_column: String,
    #[serde(default)]
    pub label_column: String,
}

fn default_format() -> InputFormat {
    InputFormat::Auto
}
fn default_column() -> String {
    "embedding".into()
}
fn default_id_column() -> String {
    "id".into()
}
