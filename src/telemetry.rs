//! Phase timers (max and min over ranks), peak RSS, and progress lines from rank 0: a live bar on
//! a terminal, periodic log lines otherwise (Slurm logs).

use embsolve_comm::Comm;
use serde::Serialize;
use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

pub use embsolve_kernels::results::PHASES;

#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct Span {
    pub max_s: f64,
    pub min_s: f64,
}

/// Seconds spent by this rank in each phase.
#[derive(Debug, Default, Clone)]
pub struct PhaseTimers {
    seconds: BTreeMap<&'static str, f64>,
}

impl PhaseTimers {
    /// Time `f` as phase `name` (adds to earlier time of the same phase).
    pub fn time<T>(&mut self, name: &'static str, f: impl FnOnce() -> T) -> T {
        let start = Instant::now();
        let value = f();
        *self.seconds.entry(name).or_default() += start.elapsed().as_secs_f64();
        value
    }

    pub fn add(&mut self, name: &'static str, seconds: f64) {
        *self.seconds.entry(name).or_default() += seconds;
    }

    pub fn get(&self, name: &str) -> f64 {
        self.seconds.get(name).copied().unwrap_or(0.0)
    }

    /// Max and min over ranks of every phase in `PHASES` (collective).
    pub fn reduce(&self, comm: &dyn Comm) -> BTreeMap<String, Span> {
        let mut max: Vec<f64> = PHASES.iter().map(|p| self.get(p)).collect();
        let mut min = max.clone();
        comm.allreduce_max_f64(&mut max);
        comm.allreduce_min_f64(&mut min);
        PHASES
            .iter()
            .enumerate()
            .map(|(i, p)| {
                (
                    p.to_string(),
                    Span {
                        max_s: max[i],
                        min_s: min[i],
                    },
                )
            })
            .collect()
    }
}

/// Peak resident set size of this process in bytes (VmHWM).
pub fn peak_rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|rest| {
            rest.trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<u64>()
                .ok()
        })
        .map(|kb| kb * 1024)
        .unwrap_or(0)
}

/// Progress of one long phase, shown by rank 0 only: a bar on a terminal, else a log line at most
/// every `interval`. Other ranks get a silent instance.
pub struct Progress {
    phase: &'static str,
    total: u64,
    start: Instant,
    last: Instant,
    enabled: bool,
    terminal: bool,
    interval: Duration,
}

impl Progress {
    pub fn new(comm: &dyn Comm, phase: &'static str, total: u64) -> Progress {
        let enabled = comm.rank() == 0 && std::env::var_os("EMBSOLVE_NO_PROGRESS").is_none();
        let terminal = std::io::stderr().is_terminal();
        let now = Instant::now();
        Progress {
            phase,
            total: total.max(1),
            start: now,
            last: now,
            enabled,
            terminal,
            interval: Duration::from_secs(10),
        }
    }

    /// Report that `done` of `total` units are finished.
    pub fn update(&mut self, done: u64) {
        if !self.enabled {
            return;
        }
        let now = Instant::now();
        let finished = done >= self.total;
        let due = if self.terminal {
            now - self.last >= Duration::from_millis(200)
        } else {
            now - self.last >= self.interval
        };
        if !due && !finished {
            return;
        }
        self.last = now;
        let fraction = (done as f64 / self.total as f64).min(1.0);
        let elapsed = self.start.elapsed().as_secs_f64();
        let eta = if fraction > 0.0 {
            elapsed * (1.0 - fraction) / fraction
        } else {
            f64::NAN
        };
        if self.terminal {
            let width = 30;
            let filled = (fraction * width as f64).round() as usize;
            let mut err = std::io::stderr();
            let _ = write!(
                err,
                "\r{:>10} [{}{}] {:5.1}%  {:>6.1}s  eta {:>6.1}s",
                self.phase,
                "#".repeat(filled),
                " ".repeat(width - filled),
                fraction * 100.0,
                elapsed,
                eta
            );
            if finished {
                let _ = writeln!(err);
            }
        } else {
            log::info!(
                "{}: {done}/{} ({:.1}%), {elapsed:.1}s elapsed, eta {eta:.1}s",
                self.phase,
                self.total,
                fraction * 100.0
            );
        }
    }
}
