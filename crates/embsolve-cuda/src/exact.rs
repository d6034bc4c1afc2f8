//! Exact top-k lists on the CPU, fed by GPU candidates: every candidate is re-ranked with the
//! caller's exact distance, and a per-query bound proves that no row outside the candidates can
//! enter the list; where the bound cannot prove it, the whole block is evaluated exactly for that
//! query. The lists are therefore those of an exact search with the same distance function:
//! nearest first, ties to the smaller global row, self excluded.

use crate::error::{GpuError, Result};
use crate::kernels::NO_ROW;
use crate::knn::Metric;

/// The GPU's candidates for one block of reference rows.
#[derive(Debug, Clone, PartialEq)]
pub struct BlockCandidates {
    pub metric: Metric,
    pub n_queries: usize,
    /// Candidates kept per query.
    pub n_keep: usize,
    /// Global row of the block's first row.
    pub block_start: u64,
    pub n_block_rows: usize,
    /// Global row of query 0 (to exclude self matches).
    pub query_start: u64,
    /// `rows[q * n_keep + c]`: candidate c of query q as a row within the block (`NO_ROW` = empty).
    pub rows: Vec<u32>,
    /// The approximate keys of the candidates, same layout (smaller is nearer).
    pub keys: Vec<f32>,
    /// Per query: every row of the block that is not a candidate has an exact key (the distance
    /// mapped by [`Metric::key_of_distance`]) at least this large.
    pub outside_key_bound: Vec<f64>,
}

/// How a block merge went.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MergeStats {
    /// Queries whose bound did not prove the candidates complete: the block was evaluated exactly.
    pub fallback_queries: usize,
    /// Exact distance evaluations done on the CPU.
    pub exact_evaluations: u64,
}

impl MergeStats {
    pub fn add(&mut self, other: MergeStats) {
        self.fallback_queries += other.fallback_queries;
        self.exact_evaluations += other.exact_evaluations;
    }
}

/// Running exact top-k lists of a set of queries.
#[derive(Debug, Clone)]
pub struct ExactTopK {
    k: usize,
    n_queries: usize,
    distances: Vec<f32>,
    rows: Vec<u64>,
    lengths: Vec<usize>,
}

/// `(distance_a, row_a)` before `(distance_b, row_b)`: nearer first, ties to the smaller row.
#[inline]
pub fn pair_before(distance_a: f32, row_a: u64, distance_b: f32, row_b: u64) -> bool {
    distance_a < distance_b || (distance_a == distance_b && row_a < row_b)
}

/// Insert into one sorted list of capacity `distances.len()`.
#[inline]
fn offer(distances: &mut [f32], rows: &mut [u64], length: &mut usize, distance: f32, row: u64) {
    let k = distances.len();
    let mut pos = if *length == k {
        if !pair_before(distance, row, distances[k - 1], rows[k - 1]) {
            return;
        }
        k - 1
    } else {
        *length += 1;
        *length - 1
    };
    while pos > 0 && pair_before(distance, row, distances[pos - 1], rows[pos - 1]) {
        distances[pos] = distances[pos - 1];
        rows[pos] = rows[pos - 1];
        pos -= 1;
    }
    distances[pos] = distance;
    rows[pos] = row;
}

impl ExactTopK {
    pub fn new(n_queries: usize, k: usize) -> ExactTopK {
        ExactTopK {
            k,
            n_queries,
            distances: vec![f32::INFINITY; n_queries * k],
            rows: vec![u64::MAX; n_queries * k],
            lengths: vec![0; n_queries],
        }
    }

    pub fn k(&self) -> usize {
        self.k
    }

    /// Offer one exact distance to query `query`'s list.
    pub fn offer(&mut self, query: usize, distance: f32, row: u64) {
        let range = query * self.k..(query + 1) * self.k;
        offer(
            &mut self.distances[range.clone()],
            &mut self.rows[range],
            &mut self.lengths[query],
            distance,
            row,
        );
    }

    /// Merge one block: re-rank its candidates with `exact(query, block_row)` and fall back to
    /// the whole block for queries whose bound does not prove the candidates complete. Work is
    /// split over `threads` threads by query; the result does not depend on `threads`.
    pub fn merge_block<F>(
        &mut self,
        candidates: &BlockCandidates,
        exact: &F,
        threads: usize,
    ) -> Result<MergeStats>
    where
        F: Fn(usize, usize) -> f32 + Sync,
    {
        if candidates.n_queries != self.n_queries {
            return Err(GpuError::new(format!(
                "candidates for {} queries merged into lists of {} queries",
                candidates.n_queries, self.n_queries
            )));
        }
        let k = self.k;
        if k == 0 || self.n_queries == 0 {
            return Ok(MergeStats::default());
        }
        let threads = threads.clamp(1, self.n_queries);
        let per_thread = self.n_queries.div_ceil(threads);
        let mut stats = MergeStats::default();
        std::thread::scope(|scope| {
            let handles: Vec<_> = self
                .distances
                .chunks_mut(per_thread * k)
                .zip(self.rows.chunks_mut(per_thread * k))
                .zip(self.lengths.chunks_mut(per_thread))
                .enumerate()
                .map(|(chunk, ((distances, rows), lengths))| {
                    let first_query = chunk * per_thread;
                    scope.spawn(move || {
                        merge_queries(candidates, exact, k, first_query, distances, rows, lengths)
                    })
                })
                .collect();
            for handle in handles {
                match handle.join() {
                    Ok(part) => stats.add(part),
                    Err(panic) => std::panic::resume_unwind(panic),
                }
            }
        });
        Ok(stats)
    }

    /// The finished lists, `k` per query: global rows and distances.
    pub fn into_lists(self) -> Result<(Vec<u64>, Vec<f32>)> {
        if let Some(query) = self.lengths.iter().position(|&length| length < self.k) {
            return Err(GpuError::new(format!(
                "query {query} has only {} of k = {} neighbours",
                self.lengths[query], self.k
            )));
        }
        Ok((self.rows, self.distances))
    }
}

fn merge_queries<F>(
    candidates: &BlockCandidates,
    exact: &F,
    k: usize,
    first_query: usize,
    distances: &mut [f32],
    rows: &mut [u64],
    lengths: &mut [usize],
) -> MergeStats
where
    F: Fn(usize, usize) -> f32 + Sync,
{
    let mut stats = MergeStats::default();
    let n_keep = candidates.n_keep;
    let block_start = candidates.block_start;
    let block_end = block_start + candidates.n_block_rows as u64;
    let mut chosen: Vec<u32> = Vec::with_capacity(n_keep);
    for (local, length) in lengths.iter_mut().enumerate() {
        let query = first_query + local;
        let list_distances = &mut distances[local * k..(local + 1) * k];
        let list_rows = &mut rows[local * k..(local + 1) * k];
        let self_row = candidates.query_start + query as u64;
        let self_in_block = (block_start..block_end).contains(&self_row);

        chosen.clear();
        chosen.extend(
            candidates.rows[query * n_keep..(query + 1) * n_keep]
                .iter()
                .copied()
                .filter(|&row| row != NO_ROW),
        );
        chosen.sort_unstable();
        for &row in &chosen {
            let distance = exact(query, row as usize);
            stats.exact_evaluations += 1;
            offer(
                list_distances,
                list_rows,
                length,
                distance,
                block_start + row as u64,
            );
        }

        let eligible = candidates.n_block_rows - usize::from(self_in_block);
        if chosen.len() >= eligible {
            continue;
        }
        let proven = *length == k
            && candidates.outside_key_bound[query]
                > candidates.metric.key_of_distance(list_distances[k - 1]);
        if proven {
            continue;
        }
        stats.fallback_queries += 1;
        for row in 0..candidates.n_block_rows {
            let global_row = block_start + row as u64;
            if global_row == self_row || chosen.binary_search(&(row as u32)).is_ok() {
                continue;
            }
            let distance = exact(query, row);
            stats.exact_evaluations += 1;
            offer(list_distances, list_rows, length, distance, global_row);
        }
    }
    stats
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offer_keeps_nearest_first_with_ties_to_the_smaller_row() {
        let mut lists = ExactTopK::new(1, 3);
        for (distance, row) in [(0.5, 9), (0.2, 7), (0.5, 3), (0.9, 1), (0.2, 8)] {
            lists.offer(0, distance, row);
        }
        let (rows, distances) = lists.into_lists().unwrap();
        assert_eq!(rows, vec![7, 8, 3]);
        assert_eq!(distances, vec![0.2, 0.2, 0.5]);
    }

    #[test]
    fn short_lists_are_an_error_naming_the_query() {
        let mut lists = ExactTopK::new(2, 2);
        lists.offer(0, 1.0, 1);
        lists.offer(0, 2.0, 2);
        lists.offer(1, 1.0, 0);
        let error = lists.into_lists().unwrap_err();
        assert!(error.message.contains("query 1"), "{error}");
    }
}
