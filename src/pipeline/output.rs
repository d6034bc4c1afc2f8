//! Writing the results once: `results.h5` by every rank in turn into one file that rank 0 renames
//! into place, then `run.json` (last, so a present `run.json` means a complete run). A previous
//! run's `run.json` is removed before the new `results.h5` replaces the old one, so the two never
//! describe different runs.

use embsolve_comm::{agree, Comm};
use embsolve_io::atomic::{partial_path, write_atomic};
use embsolve_kernels::error::{Error, Result};
use embsolve_kernels::results::{GlobalResults, LocalResults};
use std::path::Path;

use crate::record::RunSummary;

/// `results.h5`: rank 0 creates the file with every dataset, then each rank in turn writes its
/// slices (one writer at a time, no rank holds another's rows), then rank 0 renames it into place.
pub fn write_results(
    comm: &dyn Comm,
    dir: &Path,
    global: &GlobalResults,
    local: &LocalResults,
) -> Result<()> {
    let final_path = dir.join("results.h5");
    let tmp = partial_path(&final_path);
    let created = if comm.rank() == 0 {
        embsolve_io::results::create(&tmp, global)
    } else {
        Ok(())
    };
    agree(comm, created)?;
    let mut outcome = Ok(());
    for writer in 0..comm.size() {
        if writer == comm.rank() {
            outcome = embsolve_io::results::write_local(&tmp, global, local);
        }
        comm.barrier();
    }
    agree(comm, outcome)?;
    let renamed = if comm.rank() == 0 {
        remove_previous_run_json(dir).and_then(|()| {
            std::fs::rename(&tmp, &final_path).map_err(|e| {
                Error::output(format!("cannot rename to {}: {e}", final_path.display()))
            })
        })
    } else {
        Ok(())
    };
    agree(comm, renamed)
}

/// Remove `dir/run.json` if present (a missing file is fine).
fn remove_previous_run_json(dir: &Path) -> Result<()> {
    let path = dir.join("run.json");
    match std::fs::remove_file(&path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Error::output(format!(
            "cannot remove the previous {}: {e}",
            path.display()
        ))),
        _ => Ok(()),
    }
}

/// `run.json`, written by rank 0 (collective: every rank learns the outcome).
pub fn write_run_json(comm: &dyn Comm, dir: &Path, summary: &RunSummary) -> Result<()> {
    let written = if comm.rank() == 0 {
        let json = serde_json::to_vec_pretty(summary).expect("summary serialises");
        write_atomic(&dir.join("run.json"), &json)
    } else {
        Ok(())
    };
    agree(comm, written)
}

/// Rank 0 creates the output directory and checks it is writable; the others wait for the verdict.
pub fn prepare_output_dir(comm: &dyn Comm, dir: &Path) -> Result<()> {
    if comm.rank() != 0 {
        return Ok(());
    }
    std::fs::create_dir_all(dir).map_err(|e| {
        Error::config(format!(
            "output.dir {} cannot be created: {e}",
            dir.display()
        ))
    })?;
    let probe = dir.join(".embsolve-write-probe");
    std::fs::write(&probe, b"")
        .map_err(|e| Error::config(format!("output.dir {} is not writable: {e}", dir.display())))?;
    let _ = std::fs::remove_file(&probe);
    Ok(())
}
