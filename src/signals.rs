//! SIGTERM / SIGINT (Slurm's scancel, time limit, preemption) set a flag; the pipeline checks it
//! collectively at safe points so every rank stops at the same place.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::sync::OnceLock;

static FLAG: OnceLock<Arc<AtomicBool>> = OnceLock::new();

/// Install the handlers once per process.
pub fn install() {
    FLAG.get_or_init(|| {
        let flag = Arc::new(AtomicBool::new(false));
        for signal in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
            let _ = signal_hook::flag::register(signal, Arc::clone(&flag));
        }
        flag
    });
}

/// True once this process received SIGTERM or SIGINT.
pub fn requested() -> bool {
    FLAG.get()
        .map(|f| f.load(Ordering::SeqCst))
        .unwrap_or(false)
}
