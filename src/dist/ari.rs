//! Adjusted Rand index over distributed label vectors.

use crate::comm::Comm;

pub fn adjusted_rand_index(comm: &dyn Comm, truth: &[i64], predicted: &[i64]) -> f64 {
    let _ = (comm, truth, predicted);
    f64::NAN
}
