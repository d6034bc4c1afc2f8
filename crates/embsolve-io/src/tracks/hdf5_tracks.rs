//! HDF5 token tracks: `/tokens` (1-D) with `/offsets` (n + 1), the scan of the sequence lengths
//! from `/offsets`, the reader of a token span by hyperslabs, and the generator's shard writer.

use super::{TrackFormat, TrackSource};
use embsolve_kernels::error::{Error, Result};
use std::ops::Range;
use std::path::Path;

/// Tokens read from HDF5 per hyperslab (bounds the conversion buffer).
const HDF5_CHUNK: u64 = 1 << 22;

pub(super) fn scan_hdf5(path: &Path) -> Result<TrackSource> {
    hdf5::silence_errors(true);
    let file =
        hdf5::File::open(path).map_err(|e| Error::input(format!("{}: {e}", path.display())))?;
    let tokens = file.dataset("tokens").map_err(|_| {
        Error::input(format!(
            "{}: no dataset /tokens (HDF5 tracks need /tokens and /offsets)",
            path.display()
        ))
    })?;
    let offsets = file
        .dataset("offsets")
        .map_err(|_| Error::input(format!("{}: no dataset /offsets", path.display())))?;
    if tokens.ndim() != 1 || offsets.ndim() != 1 {
        return Err(Error::input(format!(
            "{}: /tokens and /offsets must be 1-D",
            path.display()
        )));
    }
    let n_tokens = tokens.size() as i64;
    let offsets: Vec<i64> = offsets
        .read_raw()
        .map_err(|e| Error::input(format!("{}: /offsets: {e}", path.display())))?;
    if offsets.first() != Some(&0) || offsets.last() != Some(&n_tokens) {
        return Err(Error::input(format!(
            "{}: /offsets must start at 0 and end at the length of /tokens ({n_tokens})",
            path.display()
        )));
    }
    let mut lengths = Vec::with_capacity(offsets.len() - 1);
    for (seq, pair) in offsets.windows(2).enumerate() {
        if pair[1] < pair[0] {
            return Err(Error::input(format!(
                "{}: /offsets decreases at sequence {seq}",
                path.display()
            )));
        }
        lengths.push((pair[1] - pair[0]) as u64);
    }
    Ok(TrackSource {
        path: path.to_path_buf(),
        format: TrackFormat::Hdf5,
        lengths,
        row_groups: Vec::new(),
    })
}

pub(super) fn read_hdf5_span(
    source: &TrackSource,
    local: Range<u64>,
    max_token: u8,
    out: &mut Vec<u8>,
) -> Result<()> {
    hdf5::silence_errors(true);
    let file = hdf5::File::open(&source.path).map_err(|e| Error::input(format!("{e}")))?;
    let tokens = file
        .dataset("tokens")
        .map_err(|e| Error::input(format!("/tokens: {e}")))?;
    let mut at = local.start;
    while at < local.end {
        let end = (at + HDF5_CHUNK).min(local.end);
        // i16 keeps negatives negative and clamps large values (still out of range).
        let chunk: Vec<i16> = tokens
            .read_slice_1d(hdf5::Selection::from(at as usize..end as usize))
            .map_err(|e| Error::input(format!("/tokens[{at}..{end}]: {e}")))?
            .to_vec();
        for (i, &value) in chunk.iter().enumerate() {
            if value < 0 || value > i16::from(max_token) {
                return Err(Error::input(format!(
                    "/tokens[{}] = {value} is outside 0..={max_token}",
                    at + i as u64
                )));
            }
        }
        out.extend(chunk.iter().map(|&v| v as u8));
        at = end;
    }
    Ok(())
}

pub(super) fn write_hdf5_shard(path: &Path, tracks: &[Vec<u8>], first_id: usize) -> Result<()> {
    let output = |e: &dyn std::fmt::Display| Error::output(format!("{}: {e}", path.display()));
    let tokens: Vec<u8> = tracks.iter().flatten().copied().collect();
    let mut offsets = vec![0i64];
    for track in tracks {
        offsets.push(offsets.last().copied().unwrap_or(0) + track.len() as i64);
    }
    let ids: Vec<i64> = (first_id..first_id + tracks.len())
        .map(|i| i as i64)
        .collect();
    let file = hdf5::File::create(path).map_err(|e| output(&e))?;
    file.new_dataset_builder()
        .with_data(&tokens)
        .create("tokens")
        .map_err(|e| output(&e))?;
    file.new_dataset_builder()
        .with_data(&offsets)
        .create("offsets")
        .map_err(|e| output(&e))?;
    file.new_dataset_builder()
        .with_data(&ids)
        .create("id")
        .map_err(|e| output(&e))?;
    Ok(())
}
