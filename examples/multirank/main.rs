//! `multirank`: the multi-rank checks, run under `mpirun -n P` (or alone, as one rank). Every
//! rank solves seeded problems distributed and checks its slice against the serial whole-problem
//! answer (`checks/`); rank 0 prints one line per check.
//!
//! ```text
//! multirank [CHECK ...]   run every check, or those named
//! multirank --list        print the check names, one per line
//! multirank --agree-exit  fail on ranks 0 (internal) and 1 (input), agree, exit as embsolve does
//! ```
//!
//! Exit status: 0 when every check passed on every rank, 1 when one failed, 2 for an unknown
//! check name; `--agree-exit` exits with the agreed error's status.

mod checks;

use embsolve_comm::{Comm, MpiComm, SerialComm};
use embsolve_kernels::error::{Error, ErrorKind};

/// What the command line asks for.
enum Mode {
    List,
    AgreeExit,
    Run(Vec<String>),
}

fn parse_args() -> Mode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("--list") if args.len() == 1 => Mode::List,
        Some("--agree-exit") if args.len() == 1 => Mode::AgreeExit,
        _ => Mode::Run(args),
    }
}

/// MPI when a launcher started this process (or `EMBSOLVE_MPI=1`), else one rank without MPI.
fn open_comm() -> Box<dyn Comm> {
    if !embsolve_comm::launched_by_mpi() {
        return Box::new(SerialComm);
    }
    match MpiComm::init() {
        Some(comm) => Box::new(comm),
        None => {
            eprintln!("multirank: MPI was already initialised");
            std::process::exit(1);
        }
    }
}

/// Abort the whole MPI job on a panic so no rank waits forever for a dead peer.
fn abort_on_panic() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        default(info);
        embsolve_comm::abort_world(1);
    }));
}

/// Log warnings and errors (`EMBSOLVE_LOG` overrides), with the rank in each line.
fn init_logging(rank: usize, size: usize) {
    use std::io::Write;
    let mut builder =
        env_logger::Builder::from_env(env_logger::Env::default().filter_or("EMBSOLVE_LOG", "warn"));
    builder.format(move |buf, record| {
        writeln!(
            buf,
            "[multirank rank {rank}/{size} {}] {}",
            record.level(),
            record.args()
        )
    });
    let _ = builder.try_init();
}

/// Run the checks named (every check when `names` is empty); returns the exit status.
fn run_checks(comm: &dyn Comm, names: &[String]) -> i32 {
    let registry = checks::registry();
    let unknown: Vec<&str> = names
        .iter()
        .map(String::as_str)
        .filter(|name| !registry.iter().any(|(known, _)| known == name))
        .collect();
    if !unknown.is_empty() {
        // The same arguments on every rank: every rank leaves here, rank 0 says why.
        if comm.rank() == 0 {
            eprintln!(
                "multirank: unknown check {} (multirank --list prints the names)",
                unknown.join(", ")
            );
        }
        return 2;
    }
    let mut failures = 0;
    for (name, check) in registry {
        if !names.is_empty() && !names.iter().any(|wanted| wanted == name) {
            continue;
        }
        let outcome = check(comm);
        if let Err(message) = &outcome {
            eprintln!(
                "multirank {name}: FAILED on rank {} of {}: {message}",
                comm.rank(),
                comm.size()
            );
        }
        if embsolve_comm::any(comm, outcome.is_err()) {
            failures += 1;
        } else if comm.rank() == 0 {
            println!("multirank {name}: ok on {} ranks", comm.size());
        }
    }
    i32::from(failures > 0)
}

/// The mixed-status failure agreement: rank 0 fails internally (status 1), rank 1 rejects its
/// input (status 2), the others succeed. After `agree` every rank leaves with status 2 and only
/// rank 1 prints, as `embsolve` does. Rank 0 then prints every rank's status on stdout.
fn agree_exit(comm: &dyn Comm) -> i32 {
    let outcome = match comm.rank() {
        0 => Err(Error::internal("internal failure on rank 0")),
        1 => Err(Error::input("bad row 7 in shard part-001.parquet")),
        _ => Ok(()),
    };
    let status = match embsolve_comm::agree(comm, outcome) {
        Ok(()) => 0,
        Err(error) => {
            if error.kind != ErrorKind::Peer {
                eprintln!("embsolve: {error}");
            }
            error.exit_status()
        }
    };
    // Every rank's status, so a test can see all of them (mpirun reports only the first).
    let statuses = embsolve_comm::allgather_u64(comm, status as u64);
    if comm.rank() == 0 {
        println!("multirank agree-exit: statuses {statuses:?}");
    }
    status
}

fn main() {
    let mode = parse_args();
    let status = {
        let comm = open_comm();
        let comm = comm.as_ref();
        abort_on_panic();
        init_logging(comm.rank(), comm.size());
        match mode {
            Mode::List => {
                if comm.rank() == 0 {
                    for (name, _) in checks::registry() {
                        println!("{name}");
                    }
                }
                0
            }
            Mode::AgreeExit => agree_exit(comm),
            Mode::Run(names) => run_checks(comm, &names),
        }
        // MPI is finalised here, when the communicator drops.
    };
    std::process::exit(status);
}
