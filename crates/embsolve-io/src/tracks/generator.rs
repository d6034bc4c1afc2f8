//! The synthetic DNA track generator behind `embsolve generate --kind tracks`: sequences with
//! planted coding segments (a period-3 base composition), written as Parquet or HDF5 shards with
//! a manifest and the ground truth.

use super::hdf5_tracks::write_hdf5_shard;
use super::parquet_tracks::write_parquet_shard;
use embsolve_kernels::error::{Error, Result};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::path::{Path, PathBuf};

/// Base probabilities (A, C, G, T) at codon positions 1, 2, 3 of planted coding segments: a
/// position-dependent composition like real genes (G-rich first positions, GC-rich third), which
/// gives the period-3 signal.
const CODON_POSITION_BASES: [[f64; 4]; 3] = [
    [0.32, 0.14, 0.40, 0.14],
    [0.32, 0.22, 0.14, 0.32],
    [0.16, 0.34, 0.34, 0.16],
];
/// Fraction of background bases that are N (token 4).
const N_RATE: f64 = 0.001;

/// One synthetic sequence: tokens and its coding segments (start, end), end exclusive.
fn synthetic_sequence(rng: &mut ChaCha8Rng, length: usize) -> (Vec<u8>, Vec<(usize, usize)>) {
    let mut tokens = Vec::with_capacity(length);
    let mut segments = Vec::new();
    let cumulative: Vec<[f64; 4]> = CODON_POSITION_BASES
        .iter()
        .map(|p| [p[0], p[0] + p[1], p[0] + p[1] + p[2], 1.0])
        .collect();
    while tokens.len() < length {
        // Background gap, then a coding segment of whole codons.
        let gap = rng.gen_range(100..=900).min(length - tokens.len());
        for _ in 0..gap {
            let token = if rng.gen_bool(N_RATE) {
                4
            } else {
                rng.gen_range(0..4u8)
            };
            tokens.push(token);
        }
        let room = length - tokens.len();
        let codons = rng.gen_range(100..=600usize).min(room / 3);
        if codons < 40 {
            continue;
        }
        let start = tokens.len();
        for i in 0..codons * 3 {
            let u: f64 = rng.gen();
            let table = &cumulative[i % 3];
            tokens.push(table.iter().position(|&c| u < c).unwrap_or(3) as u8);
        }
        segments.push((start, tokens.len()));
    }
    (tokens, segments)
}

/// `embsolve generate --kind tracks`: `n_sequences` synthetic DNA tracks of about `length` bases
/// (uniform in length/2 ..= 3*length/2) with planted coding segments, written to the directory
/// `out` as `shards` files (`format` parquet: ragged-tensor column `tokens` and `id`; hdf5:
/// `/tokens`, `/offsets`), plus `manifest.json` and the ground truth `coding.csv`
/// (seq,start,end: global sequence number, end exclusive). One shard to an `out` ending in
/// `.parquet`, `.h5` or `.hdf5` writes that single file and the truth as `OUT.coding.csv`.
pub fn generate_tracks(
    n_sequences: usize,
    length: usize,
    seed: u64,
    format: &str,
    shards: usize,
    out: &Path,
) -> Result<()> {
    if n_sequences == 0 || length == 0 {
        return Err(Error::usage(
            "generate --kind tracks needs --n >= 1 and --length >= 1",
        ));
    }
    let file_extension = match format {
        "parquet" => "parquet",
        "hdf5" => "h5",
        other => {
            return Err(Error::usage(format!(
                "generate --kind tracks writes parquet or hdf5, not {other:?}"
            )))
        }
    };
    let shards = shards.clamp(1, n_sequences);
    // One shard to a PATH named like a track file: that file, and the truth beside it.
    let single_file =
        shards == 1 && matches!(super::extension(out).as_str(), "parquet" | "h5" | "hdf5");
    let dir = if single_file {
        out.parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."))
    } else {
        out
    };
    std::fs::create_dir_all(dir).map_err(|e| Error::output(format!("{}: {e}", dir.display())))?;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut truth = String::from("seq,start,end\n");
    let mut files = Vec::new();
    let mut seq = 0usize;
    for shard in 0..shards {
        let shard_rows = n_sequences / shards + usize::from(shard < n_sequences % shards);
        let mut tracks = Vec::with_capacity(shard_rows);
        for _ in 0..shard_rows {
            let this_length = rng.gen_range(length.div_ceil(2)..=length + length / 2);
            let (tokens, segments) = synthetic_sequence(&mut rng, this_length);
            for (start, end) in segments {
                truth.push_str(&format!("{seq},{start},{end}\n"));
            }
            tracks.push(tokens);
            seq += 1;
        }
        let name = format!("part-{shard:05}.{file_extension}");
        let path = if single_file {
            out.to_path_buf()
        } else {
            out.join(&name)
        };
        let first_id = seq - shard_rows;
        match format {
            "parquet" => write_parquet_shard(&path, &tracks, first_id),
            _ => write_hdf5_shard(&path, &tracks, first_id),
        }?;
        files.push(serde_json::json!({"path": name, "rows": shard_rows}));
    }
    let write = |name: &str, text: &str| {
        let path = out.join(name);
        std::fs::write(&path, text).map_err(|e| Error::output(format!("{}: {e}", path.display())))
    };
    if single_file {
        let mut truth_path = out.as_os_str().to_owned();
        truth_path.push(".coding.csv");
        let truth_path = PathBuf::from(truth_path);
        return std::fs::write(&truth_path, &truth)
            .map_err(|e| Error::output(format!("{}: {e}", truth_path.display())));
    }
    write("coding.csv", &truth)?;
    let manifest = serde_json::json!({
        "format": format,
        "column": "tokens",
        "id_column": "id",
        "n_rows": n_sequences,
        "files": files,
        "producer": {"tool": "embsolve generate", "kind": "tracks", "alphabet": "dna",
                     "length": length, "seed": seed},
    });
    write(
        "manifest.json",
        &serde_json::to_string_pretty(&manifest).map_err(|e| Error::internal(e.to_string()))?,
    )
}
