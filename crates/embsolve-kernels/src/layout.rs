//! Row blocks: which rank owns which global rows, and the global <-> local mapping.
//! Pure functions of (n_rows, n_ranks); every rank computes the same plan without talking.

use std::ops::Range;

/// A contiguous block distribution of `n_rows` over `n_ranks`; the first `n_rows % n_ranks` ranks
/// hold one row more. A rank may own zero rows (more ranks than rows).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RowLayout {
    pub n_rows: usize,
    pub n_ranks: usize,
}

impl RowLayout {
    pub fn new(n_rows: usize, n_ranks: usize) -> Self {
        assert!(n_ranks > 0, "a layout needs at least one rank");
        RowLayout { n_rows, n_ranks }
    }

    /// First global row of `rank`.
    pub fn start(&self, rank: usize) -> usize {
        let base = self.n_rows / self.n_ranks;
        let extra = self.n_rows % self.n_ranks;
        rank * base + rank.min(extra)
    }

    /// Global rows owned by `rank`.
    pub fn range(&self, rank: usize) -> Range<usize> {
        self.start(rank)..self.start(rank + 1).min(self.n_rows)
    }

    /// Number of rows owned by `rank`.
    pub fn local_rows(&self, rank: usize) -> usize {
        self.range(rank).len()
    }

    /// The largest block, for sizing ring buffers.
    pub fn max_local_rows(&self) -> usize {
        self.n_rows.div_ceil(self.n_ranks)
    }

    /// The rank that owns `global_row`.
    pub fn owner(&self, global_row: usize) -> usize {
        debug_assert!(global_row < self.n_rows);
        let base = self.n_rows / self.n_ranks;
        let extra = self.n_rows % self.n_ranks;
        let split = extra * (base + 1);
        if global_row < split {
            global_row / (base + 1)
        } else {
            extra + (global_row - split) / base.max(1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_cover_rows_once_and_owner_agrees() {
        for n_rows in [0usize, 1, 2, 5, 7, 100, 101] {
            for n_ranks in 1..=9 {
                let layout = RowLayout::new(n_rows, n_ranks);
                let mut next = 0;
                for rank in 0..n_ranks {
                    let range = layout.range(rank);
                    assert_eq!(range.start, next, "n={n_rows} p={n_ranks} rank={rank}");
                    for row in range.clone() {
                        assert_eq!(layout.owner(row), rank, "n={n_rows} p={n_ranks} row={row}");
                    }
                    assert!(range.len() <= layout.max_local_rows());
                    next = range.end;
                }
                assert_eq!(next, n_rows);
            }
        }
    }
}
