//! Kernels joined with `Comm`: the distributed algorithms. Each takes the communicator as an
//! argument (never the world) and this rank's slice; plans are computed once and reused.

pub mod ari;
pub mod component_spectrum;
pub mod components;
pub mod fft;
pub mod graph;
pub mod ids;
pub mod knn;
pub mod pagerank;
pub mod preprocess;
pub mod spectral;

use crate::comm::Comm;
use crate::kernels::exact::{from_limbs, to_limbs, ExactSum};
use crate::kernels::linop::Reduce;

/// Exact sums over all ranks (limb-wise u64 allreduce of 128-bit fixed point).
pub fn allreduce_exact(comm: &dyn Comm, values: &mut [ExactSum]) {
    if comm.size() == 1 || values.is_empty() {
        return;
    }
    let mut limbs: Vec<u64> = values.iter().flat_map(|v| to_limbs(v.0)).collect();
    comm.allreduce_sum_u64(&mut limbs);
    for (value, chunk) in values.iter_mut().zip(limbs.chunks_exact(3)) {
        *value = ExactSum(from_limbs([chunk[0], chunk[1], chunk[2]]));
    }
}

/// `Reduce` over a communicator.
pub struct CommReduce<'a>(pub &'a dyn Comm);

impl Reduce for CommReduce<'_> {
    fn sum_exact(&self, values: &mut [ExactSum]) {
        allreduce_exact(self.0, values);
    }
    fn sum_f64(&self, values: &mut [f64]) {
        self.0.allreduce_sum_f64(values);
    }
    fn max_f64(&self, values: &mut [f64]) {
        self.0.allreduce_max_f64(values);
    }
}
