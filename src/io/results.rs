//! `results.h5`.

use crate::error::{Error, Result};
use crate::results::{GlobalResults, LocalResults};
use std::path::Path;

pub fn create(path: &Path, global: &GlobalResults) -> Result<()> {
    let _ = (path, global);
    Err(Error::internal("results writer is not built yet"))
}

pub fn write_local(path: &Path, global: &GlobalResults, local: &LocalResults) -> Result<()> {
    let _ = (path, global, local);
    Err(Error::internal("results writer is not built yet"))
}
