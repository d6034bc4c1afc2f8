//! `embsolve selftest`: multi-rank checks run under `mpirun -n P`. Every rank solves a seeded
//! problem distributed and checks its slice against the serial whole-problem answer; a failure
//! names the check and the rank.

use crate::comm::{Comm, SerialComm};
use crate::dist::allreduce_exact;
use crate::kernels::exact::ExactSum;
use crate::layout::RowLayout;

/// One named check: Ok, or a message saying what differed.
pub type Check = fn(&dyn Comm) -> Result<(), String>;

/// Every registered check.
pub fn checks() -> Vec<(&'static str, Check)> {
    vec![("exact_allreduce", check_exact_allreduce)]
}

/// Run every check (or those whose name contains `filter`); returns the number of failures.
pub fn run(comm: &dyn Comm, filter: Option<&str>) -> usize {
    let mut failures = 0;
    for (name, check) in checks() {
        if filter.is_some_and(|f| !name.contains(f)) {
            continue;
        }
        let outcome = check(comm);
        let mut failed = [outcome.is_err() as u64];
        comm.allreduce_sum_u64(&mut failed);
        if let Err(message) = &outcome {
            eprintln!(
                "selftest {name}: FAILED on rank {} of {}: {message}",
                comm.rank(),
                comm.size()
            );
        }
        if failed[0] > 0 {
            failures += 1;
        } else if comm.rank() == 0 {
            println!("selftest {name}: ok on {} ranks", comm.size());
        }
    }
    failures
}

/// Exact sums of a distributed vector equal the serial sum bit for bit.
fn check_exact_allreduce(comm: &dyn Comm) -> Result<(), String> {
    let n = 10_007;
    let value = |i: usize| ((i * 2_654_435_761) % 1000) as f64 * 1e-3 - 0.4;
    let layout = RowLayout::new(n, comm.size());
    let mut local = [ExactSum::default()];
    layout
        .range(comm.rank())
        .for_each(|i| local[0].add(value(i)));
    allreduce_exact(comm, &mut local);
    let mut serial = [ExactSum::default()];
    (0..n).for_each(|i| serial[0].add(value(i)));
    allreduce_exact(&SerialComm, &mut serial);
    if local != serial {
        return Err(format!(
            "distributed {:?} != serial {:?}",
            local[0], serial[0]
        ));
    }
    Ok(())
}
