//! Files that appear complete or not at all: written under a temporary name, then renamed.

use embsolve_kernels::error::{Error, Result};
use std::path::{Path, PathBuf};

/// Write `bytes` to `path` through a temporary file and a rename, so a crash never leaves a
/// file that looks complete.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = partial_path(path);
    std::fs::write(&tmp, bytes)
        .map_err(|e| Error::output(format!("cannot write {}: {e}", tmp.display())))?;
    std::fs::rename(&tmp, path)
        .map_err(|e| Error::output(format!("cannot rename to {}: {e}", path.display())))
}

/// The temporary name a file is written under before its rename.
pub fn partial_path(path: &Path) -> PathBuf {
    let mut name = path
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(".partial");
    path.with_file_name(name)
}
