//! Failure agreement: the one way a local outcome becomes a collective one, so that no rank waits
//! alone in a collective and every rank leaves with the same exit status.

use crate::Comm;
use embsolve_kernels::error::{Error, ErrorKind, Result};

/// Make a local outcome collective. Every rank calls this at the same point. If any rank failed,
/// every rank returns an error with the same exit status: the rank holding the decisive error
/// keeps it (and so prints it, once), the others return `Peer` (silent).
///
/// The decisive error is the first, by rank, of the most actionable class present: an error of the
/// user's making (bad usage, config or input: status 2) over an internal failure (status 1), and a
/// rank's own error over a `Peer` it carries from an earlier agreement. So when rank 0 fails
/// internally and rank 1 rejects its input, every rank exits 2 and the input error is the one
/// printed.
pub fn agree<T>(comm: &dyn Comm, outcome: Result<T>) -> Result<T> {
    let n_ranks = comm.size() as u64;
    let mut decisive = [match &outcome {
        Ok(_) => u64::MAX,
        Err(error) => class(error) * n_ranks + comm.rank() as u64,
    }];
    if comm.size() > 1 {
        comm.allreduce_min_u64(&mut decisive);
    }
    if decisive[0] == u64::MAX {
        return outcome;
    }
    let decisive_rank = (decisive[0] % n_ranks) as usize;
    let status = status_of_class(decisive[0] / n_ranks);
    match outcome {
        Err(mut error) if decisive_rank == comm.rank() => {
            if comm.size() > 1 && error.kind != ErrorKind::Peer {
                error.message = format!("rank {}: {}", comm.rank(), error.message);
            }
            Err(error)
        }
        _ => Err(Error::peer(decisive_rank, status)),
    }
}

/// Precedence of an error in agreement (smaller wins): own status-2 errors, own status-1 errors,
/// then carried `Peer` errors of status 2 and 1.
fn class(error: &Error) -> u64 {
    let own = error.kind != ErrorKind::Peer;
    match (own, error.exit_status() == 2) {
        (true, true) => 0,
        (true, false) => 1,
        (false, true) => 2,
        (false, false) => 3,
    }
}

fn status_of_class(class: u64) -> i32 {
    if class % 2 == 0 {
        2
    } else {
        1
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SerialComm;

    #[test]
    fn success_passes_through_and_a_local_error_keeps_its_message() {
        assert_eq!(agree(&SerialComm, Ok(7)).unwrap(), 7);
        let error =
            agree::<()>(&SerialComm, Err(Error::input("row 3 of a.npy is NaN"))).unwrap_err();
        assert_eq!(error.kind, ErrorKind::Input);
        assert_eq!(error.exit_status(), 2);
        assert_eq!(error.message, "row 3 of a.npy is NaN");
    }

    #[test]
    fn classes_put_input_errors_first_and_peers_last() {
        assert!(class(&Error::input("x")) < class(&Error::internal("y")));
        assert!(class(&Error::internal("y")) < class(&Error::peer(0, 2)));
        assert!(class(&Error::peer(0, 2)) < class(&Error::peer(0, 1)));
        for kind in [
            Error::input("x"),
            Error::internal("y"),
            Error::peer(1, 2),
            Error::peer(1, 1),
        ] {
            assert_eq!(status_of_class(class(&kind)), kind.exit_status());
        }
    }
}
