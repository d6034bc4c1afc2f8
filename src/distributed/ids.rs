//! Row ids across ranks: duplicates are an input error (found by sending 128-bit id hashes to an
//! owner rank), and the id kind is agreed for the results file.

use embsolve_comm::{alltoallv, Comm};
use embsolve_kernels::error::{Error, Result};
use embsolve_kernels::results::{GlobalResults, Ids};
use std::hash::{Hash, Hasher};

fn hash128<T: Hash>(value: &T) -> (u64, u64) {
    let mut a = std::collections::hash_map::DefaultHasher::new();
    value.hash(&mut a);
    let mut b = std::collections::hash_map::DefaultHasher::new();
    0x9e37_79b9_7f4a_7c15u64.hash(&mut b);
    value.hash(&mut b);
    (a.finish(), b.finish())
}

/// Every rank sends (hash, global row) of its ids to the rank `hash % size`; a repeated hash there
/// is a duplicate. Collective; an error names the two global rows.
pub fn check_unique_ids(comm: &dyn Comm, ids: &Ids, row_start: usize) -> Result<()> {
    let hashes: Vec<(u64, u64)> = match ids {
        Ids::RowNumbers => Vec::new(),
        Ids::Int(v) => v.iter().map(|&x| (x as u64, 0)).collect(),
        Ids::Str(v) => v.iter().map(hash128).collect(),
    };
    let size = comm.size();
    let mut buckets: Vec<Vec<[u64; 3]>> = vec![Vec::new(); size];
    for (i, (h0, h1)) in hashes.iter().enumerate() {
        let owner = (h0.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 32) as usize % size;
        buckets[owner].push([*h0, *h1, (row_start + i) as u64]);
    }
    let counts: Vec<usize> = buckets.iter().map(Vec::len).collect();
    let flat: Vec<[u64; 3]> = buckets.into_iter().flatten().collect();
    let (mut received, _) = alltoallv(comm, &flat, &counts);
    received.sort_unstable();
    for pair in received.windows(2) {
        if pair[0][0] == pair[1][0] && pair[0][1] == pair[1][1] {
            let what = match ids {
                Ids::Int(_) => format!("id {}", pair[0][0] as i64),
                _ => "the same id".to_string(),
            };
            return Err(Error::input(format!(
                "duplicate ids: global rows {} and {} have {what}",
                pair[0][2], pair[1][2]
            )));
        }
    }
    Ok(())
}

/// Agree on the id kind (int, string or row numbers) and the longest string id (collective).
pub fn describe_ids(comm: &dyn Comm, ids: &Ids, global: &mut GlobalResults) {
    let (kind, max_len) = match ids {
        Ids::RowNumbers => (0u64, 0u64),
        Ids::Int(_) => (1, 0),
        Ids::Str(v) => (2, v.iter().map(|s| s.len() as u64).max().unwrap_or(0)),
    };
    let mut values = [kind, max_len];
    comm.allreduce_max_u64(&mut values);
    global.int_ids = values[0] == 1;
    global.string_ids = values[0] == 2;
    global.ids_max_len = values[1] as usize;
}
