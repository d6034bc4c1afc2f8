//! The one stage helper every phase goes through: time it, load it from the checkpoint or compute
//! it, agree on failure, save it, and reach the safe point.

use crate::checkpoint::{Checkpointed, Checkpoints};
use crate::config::RunConfig;
use crate::telemetry::PhaseTimers;
use embsolve_comm::{self as comm, agree, Comm};
use embsolve_kernels::error::{Error, Result};

/// Everything a phase needs: the communicator, the resolved config, this rank's threads, the
/// phase timers and the checkpoint store.
pub struct Context<'a> {
    pub comm: &'a dyn Comm,
    pub config: &'a RunConfig,
    pub threads: usize,
    pub timers: PhaseTimers,
    pub checkpoints: Checkpoints,
}

impl Context<'_> {
    /// A collective check for SIGTERM/SIGINT: every rank learns whether any rank was signalled.
    pub fn safe_point(&self) -> Result<()> {
        if comm::any(self.comm, crate::signals::requested()) {
            return Err(Error::interrupted());
        }
        Ok(())
    }

    /// A checkpointed phase (collective): its result from the checkpoint when every rank has it
    /// and the run resumes, else `compute`d and saved; failures agreed on; timed under `phase`;
    /// followed by the safe point.
    pub fn stage<T: Checkpointed>(
        &mut self,
        phase: &'static str,
        compute: impl FnOnce() -> Result<T>,
    ) -> Result<T> {
        let start = std::time::Instant::now();
        let value = match self.checkpoints.load::<T>(self.comm, phase) {
            Some(value) => value,
            None => {
                let value = agree(self.comm, compute())?;
                agree(self.comm, self.checkpoints.save(phase, &value))?;
                value
            }
        };
        self.timers.add(phase, start.elapsed().as_secs_f64());
        self.safe_point()?;
        Ok(value)
    }

    /// A phase that is cheap to redo (never checkpointed): computed, agreed on, timed, followed
    /// by the safe point.
    pub fn phase<T>(
        &mut self,
        phase: &'static str,
        compute: impl FnOnce() -> Result<T>,
    ) -> Result<T> {
        let start = std::time::Instant::now();
        let value = agree(self.comm, compute())?;
        self.timers.add(phase, start.elapsed().as_secs_f64());
        self.safe_point()?;
        Ok(value)
    }
}
