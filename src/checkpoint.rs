//! Checkpoints of finished stages, so `embsolve run --resume` skips them after a preemption,
//! time limit or crash. Each rank keeps its own slice of a stage in
//! `output.dir/checkpoint/<stage>.rank<r>-of-<P>.bin`, written atomically and stamped with a hash
//! of the input files and the config. A stage counts as finished only when every rank holds a file
//! with the current stamp (a collective check), so a crash in the middle of saving is harmless.

use crate::config::RunConfig;
use embsolve_comm::Comm;
use embsolve_kernels::error::{Error, Result};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

const MAGIC: &[u8; 8] = b"EMBSCKP2";
/// Magic, stamp, payload length, payload CRC-32 (then the payload).
const HEADER: usize = 8 + 32 + 8 + 4;

/// The hash of what a run's results depend on: the input files (paths, sizes, modification times),
/// the resolved config (output section excluded) and the number of ranks.
pub fn stamp(config: &RunConfig, n_ranks: usize) -> Result<[u8; 32]> {
    let mut hasher = Sha256::new();
    let mut relevant = config.clone();
    relevant.output.checkpoint = true;
    relevant.output.dir = PathBuf::new();
    relevant.run.threads = 0;
    hasher.update(relevant.to_toml().as_bytes());
    hasher.update((n_ranks as u64).to_le_bytes());
    let mut inputs = vec![config.input.path.clone()];
    if config.fft.enabled {
        inputs.push(PathBuf::from(&config.fft.tracks));
    }
    for root in inputs {
        for (path, size, modified) in file_fingerprints(&root)? {
            hasher.update(path.as_bytes());
            hasher.update(size.to_le_bytes());
            hasher.update(modified.to_le_bytes());
        }
    }
    Ok(hasher.finalize().into())
}

/// (relative path, size, mtime ns) of every file under `root` (or of `root` itself), sorted.
fn file_fingerprints(root: &Path) -> Result<Vec<(String, u64, u128)>> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(path) = stack.pop() {
        let meta = std::fs::metadata(&path)
            .map_err(|e| Error::input(format!("{}: {e}", path.display())))?;
        if meta.is_dir() {
            let entries = std::fs::read_dir(&path)
                .map_err(|e| Error::input(format!("{}: {e}", path.display())))?;
            for entry in entries.flatten() {
                stack.push(entry.path());
            }
        } else {
            let modified = meta
                .modified()
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map(|d| d.as_nanos())
                .unwrap_or(0);
            let relative = path
                .strip_prefix(root)
                .unwrap_or(&path)
                .to_string_lossy()
                .into_owned();
            out.push((relative, meta.len(), modified));
        }
    }
    out.sort();
    Ok(out)
}

/// Checkpoints of one run on one rank.
pub struct Checkpoints {
    dir: PathBuf,
    stamp: [u8; 32],
    rank: usize,
    n_ranks: usize,
    enabled: bool,
    resume: bool,
}

impl Checkpoints {
    /// Set up the store (collective). With `resume`, checkpoints written for another input, config
    /// or rank count are a clear error (exit 2); without it, earlier checkpoints are ignored and
    /// overwritten as stages finish.
    pub fn open(
        comm: &dyn Comm,
        out_dir: &Path,
        stamp: [u8; 32],
        enabled: bool,
        resume: bool,
    ) -> Result<Checkpoints> {
        let dir = out_dir.join("checkpoint");
        let store = Checkpoints {
            dir,
            stamp,
            rank: comm.rank(),
            n_ranks: comm.size(),
            enabled,
            resume,
        };
        if comm.rank() == 0 && enabled {
            std::fs::create_dir_all(&store.dir).map_err(|e| {
                Error::output(format!("cannot create {}: {e}", store.dir.display()))
            })?;
            let stamp_file = store.dir.join("stamp");
            let hex: String = stamp.iter().map(|b| format!("{b:02x}")).collect();
            if resume {
                if let Ok(previous) = std::fs::read_to_string(&stamp_file) {
                    let (previous_hex, previous_ranks) = previous
                        .trim()
                        .split_once(' ')
                        .unwrap_or((previous.trim(), "?"));
                    if previous_hex != hex {
                        return Err(Error::config(format!(
                            "--resume: the checkpoints in {} were written for another input or config \
                             (or {previous_ranks} ranks; this run has {}); remove them or run without --resume",
                            store.dir.display(),
                            comm.size()
                        )));
                    }
                }
            }
            embsolve_io::atomic::write_atomic(
                &stamp_file,
                format!("{hex} {}\n", comm.size()).as_bytes(),
            )?;
        }
        Ok(store)
    }

    fn path(&self, stage: &str) -> PathBuf {
        self.dir
            .join(format!("{stage}.rank{}-of-{}.bin", self.rank, self.n_ranks))
    }

    /// Keep this rank's slice of `stage` (atomically). A no-op when checkpoints are off.
    pub fn save<T: Checkpointed>(&self, stage: &str, value: &T) -> Result<()> {
        if !self.enabled {
            return Ok(());
        }
        let mut payload = Payload::default();
        value.encode(&mut payload);
        let mut bytes = Vec::with_capacity(payload.bytes.len() + 64);
        bytes.extend_from_slice(MAGIC);
        bytes.extend_from_slice(&self.stamp);
        bytes.extend_from_slice(&(payload.bytes.len() as u64).to_le_bytes());
        bytes.extend_from_slice(&crc32fast::hash(&payload.bytes).to_le_bytes());
        bytes.extend_from_slice(&payload.bytes);
        embsolve_io::atomic::write_atomic(&self.path(stage), &bytes)
    }

    /// This rank's slice of `stage`, decoded, if every rank has a valid one and the run resumes
    /// (collective: all ranks get Some or all get None).
    pub fn load<T: Checkpointed>(&self, comm: &dyn Comm, stage: &str) -> Option<T> {
        let mine = if self.enabled && self.resume {
            self.read(stage)
                .and_then(|mut payload| T::decode(&mut payload))
        } else {
            None
        };
        let mut all = [mine.is_some() as u64];
        comm.allreduce_min_u64(&mut all);
        if all[0] == 1 {
            if comm.rank() == 0 {
                log::info!("{stage}: resumed from {}", self.dir.display());
            }
            mine
        } else {
            None
        }
    }

    /// This rank's payload of `stage` when its file is whole and of this run; a file of this run
    /// that is truncated or fails its checksum is reported (the stage is recomputed).
    fn read(&self, stage: &str) -> Option<Payload> {
        let path = self.path(stage);
        let bytes = std::fs::read(&path).ok()?;
        if bytes.len() < 40 || &bytes[..8] != MAGIC || bytes[8..40] != self.stamp {
            return None;
        }
        let damaged = |why: &str| {
            log::warn!(
                "checkpoint {} is damaged ({why}): {stage} is recomputed",
                path.display()
            );
            None
        };
        if bytes.len() < HEADER {
            return damaged("truncated header");
        }
        let len = u64::from_le_bytes(bytes[40..48].try_into().ok()?) as usize;
        let crc = u32::from_le_bytes(bytes[48..52].try_into().ok()?);
        if bytes.len() != HEADER + len {
            return damaged(&format!(
                "{} payload bytes, the header says {len}",
                bytes.len() - HEADER
            ));
        }
        if crc32fast::hash(&bytes[HEADER..]) != crc {
            return damaged("checksum mismatch");
        }
        Some(Payload {
            bytes: bytes[HEADER..].to_vec(),
            cursor: 0,
        })
    }
}

/// A stage result that carries its own checkpoint encoding: `decode` reads back exactly what
/// `encode` wrote (each implementation has a round-trip test, see [`assert_round_trip`]).
pub trait Checkpointed: Sized {
    fn encode(&self, payload: &mut Payload);
    /// `None` when the payload is short or malformed (the stage is then recomputed).
    fn decode(payload: &mut Payload) -> Option<Self>;
}

/// Test helper: `value` survives encode -> decode unchanged, and a truncated payload is refused.
#[cfg(test)]
pub fn assert_round_trip<T: Checkpointed + PartialEq + std::fmt::Debug>(value: &T) {
    let mut payload = Payload::default();
    value.encode(&mut payload);
    let mut whole = payload.clone();
    assert_eq!(T::decode(&mut whole).as_ref(), Some(value));
    if payload.bytes.len() >= 8 {
        let mut truncated = Payload {
            bytes: payload.bytes[..payload.bytes.len() - 1].to_vec(),
            cursor: 0,
        };
        assert!(
            T::decode(&mut truncated).is_none(),
            "a truncated payload decoded"
        );
    }
}

/// A stage's data as a flat little-endian byte string: typed values appended, then read back in
/// the same order.
#[derive(Debug, Default, Clone)]
pub struct Payload {
    bytes: Vec<u8>,
    cursor: usize,
}

impl Payload {
    pub fn put_u64(&mut self, value: u64) -> &mut Self {
        self.bytes.extend_from_slice(&value.to_le_bytes());
        self
    }
    pub fn put_f64(&mut self, value: f64) -> &mut Self {
        self.put_u64(value.to_bits())
    }
    pub fn put_slice<T: bytemuck::Pod>(&mut self, values: &[T]) -> &mut Self {
        self.put_u64(values.len() as u64);
        self.bytes.extend_from_slice(bytemuck::cast_slice(values));
        self
    }

    pub fn u64(&mut self) -> Option<u64> {
        let raw = self.bytes.get(self.cursor..self.cursor + 8)?;
        self.cursor += 8;
        Some(u64::from_le_bytes(raw.try_into().ok()?))
    }
    pub fn f64(&mut self) -> Option<f64> {
        self.u64().map(f64::from_bits)
    }
    pub fn vec<T: bytemuck::Pod>(&mut self) -> Option<Vec<T>> {
        let n = self.u64()? as usize;
        let size = n.checked_mul(std::mem::size_of::<T>())?;
        let raw = self.bytes.get(self.cursor..self.cursor + size)?;
        self.cursor += size;
        Some(bytemuck::pod_collect_to_vec(raw))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use embsolve_comm::SerialComm;

    /// A stage of plain values for the store test.
    #[derive(Debug, Clone, PartialEq)]
    struct Sample {
        count: u64,
        rows: Vec<i64>,
        fraction: f64,
        weights: Vec<f32>,
    }

    impl Checkpointed for Sample {
        fn encode(&self, payload: &mut Payload) {
            payload
                .put_u64(self.count)
                .put_slice(&self.rows)
                .put_f64(self.fraction)
                .put_slice(&self.weights);
        }
        fn decode(payload: &mut Payload) -> Option<Self> {
            Some(Sample {
                count: payload.u64()?,
                rows: payload.vec()?,
                fraction: payload.f64()?,
                weights: payload.vec()?,
            })
        }
    }

    #[test]
    fn payload_round_trips_and_stamp_guards_resume() {
        let dir = tempfile::tempdir().unwrap();
        let comm = SerialComm;
        let store = Checkpoints::open(&comm, dir.path(), [7; 32], true, false).unwrap();
        let sample = Sample {
            count: 3,
            rows: vec![1, -2, 3],
            fraction: 0.25,
            weights: vec![1.5],
        };
        assert_round_trip(&sample);
        store.save("knn", &sample).unwrap();
        // Without --resume nothing is loaded.
        assert!(store.load::<Sample>(&comm, "knn").is_none());
        let resumed = Checkpoints::open(&comm, dir.path(), [7; 32], true, true).unwrap();
        assert_eq!(resumed.load::<Sample>(&comm, "knn"), Some(sample.clone()));
        assert!(resumed.load::<Sample>(&comm, "spectral").is_none());
        // A flipped payload byte or a cut file is not loaded.
        let file = dir.path().join("checkpoint").join("knn.rank0-of-1.bin");
        let whole = std::fs::read(&file).unwrap();
        let mut flipped = whole.clone();
        *flipped.last_mut().unwrap() ^= 0x10;
        std::fs::write(&file, &flipped).unwrap();
        assert!(resumed.load::<Sample>(&comm, "knn").is_none());
        std::fs::write(&file, &whole[..whole.len() - 3]).unwrap();
        assert!(resumed.load::<Sample>(&comm, "knn").is_none());
        std::fs::write(&file, &whole[..45]).unwrap();
        assert!(resumed.load::<Sample>(&comm, "knn").is_none());
        std::fs::write(&file, &whole).unwrap();
        assert_eq!(resumed.load::<Sample>(&comm, "knn"), Some(sample));
        let err = Checkpoints::open(&comm, dir.path(), [8; 32], true, true)
            .err()
            .unwrap();
        assert_eq!(err.exit_status(), 2);
        assert!(err.message.contains("--resume"), "{}", err.message);
    }
}
