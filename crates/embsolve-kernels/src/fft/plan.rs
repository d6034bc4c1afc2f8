//! Which rank computes which windows and owns which sequences: a pure function of the sequence
//! lengths, window, step and rank count, computed once and identically on every rank.
//!
//! Windows are numbered globally (sequence by sequence, start ascending). Rank r computes the
//! contiguous block of windows `RowLayout(n_windows, P).range(r)` — so every window is computed
//! exactly once, and a long sequence is split across ranks by position. Its boundary `B_r` is the
//! global token position (in the concatenation of all sequences) of its first window (the total
//! token count for a rank without windows, 0 for rank 0). Rank r owns the sequences whose first
//! token lies in `[B_r, B_{r+1})` (the last rank: from `B_{P-1}` on); only the first sequence a
//! rank touches can belong to an earlier rank, so partial sums travel at most one sequence a rank.

use super::n_windows;
use crate::layout::RowLayout;
use std::ops::Range;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackPlan {
    pub window: usize,
    pub step: usize,
    pub n_ranks: usize,
    /// Token offsets of the sequences in the concatenation (n_sequences + 1).
    pub offsets: Vec<u64>,
    /// Prefix sums of the windows per sequence (n_sequences + 1).
    pub window_offsets: Vec<u64>,
    /// Rank boundaries `B_r` (global token positions, n_ranks values, ascending).
    pub boundaries: Vec<u64>,
}

impl TrackPlan {
    pub fn new(lengths: &[u64], window: usize, step: usize, n_ranks: usize) -> Self {
        assert!(window > 0 && step > 0 && n_ranks > 0);
        let mut offsets = Vec::with_capacity(lengths.len() + 1);
        let mut window_offsets = Vec::with_capacity(lengths.len() + 1);
        let (mut tokens, mut windows) = (0u64, 0u64);
        offsets.push(0);
        window_offsets.push(0);
        for &length in lengths {
            tokens += length;
            windows += n_windows(length, window, step);
            offsets.push(tokens);
            window_offsets.push(windows);
        }
        let mut plan = TrackPlan {
            window,
            step,
            n_ranks,
            offsets,
            window_offsets,
            boundaries: Vec::new(),
        };
        plan.boundaries = (0..n_ranks)
            .map(|rank| {
                let windows = plan.windows(rank);
                if rank == 0 {
                    0
                } else if windows.is_empty() {
                    tokens
                } else {
                    plan.window_position(windows.start)
                }
            })
            .collect();
        plan
    }

    pub fn n_sequences(&self) -> usize {
        self.offsets.len() - 1
    }

    pub fn n_windows(&self) -> u64 {
        self.window_offsets[self.n_sequences()]
    }

    pub fn n_tokens(&self) -> u64 {
        self.offsets[self.n_sequences()]
    }

    pub fn sequence_length(&self, seq: usize) -> u64 {
        self.offsets[seq + 1] - self.offsets[seq]
    }

    /// Global windows computed by `rank`.
    pub fn windows(&self, rank: usize) -> Range<u64> {
        let layout = RowLayout::new(self.n_windows() as usize, self.n_ranks);
        let range = layout.range(rank);
        range.start as u64..range.end as u64
    }

    /// The sequence and start (within it) of a global window.
    pub fn window_at(&self, global_window: u64) -> (usize, u64) {
        debug_assert!(global_window < self.n_windows());
        let seq = self.window_offsets.partition_point(|&w| w <= global_window) - 1;
        let start = (global_window - self.window_offsets[seq]) * self.step as u64;
        (seq, start)
    }

    /// Global token position of a window's first token.
    pub fn window_position(&self, global_window: u64) -> u64 {
        let (seq, start) = self.window_at(global_window);
        self.offsets[seq] + start
    }

    /// Global token positions `rank` reads: its first window's start to its last window's end.
    pub fn token_span(&self, rank: usize) -> Range<u64> {
        let windows = self.windows(rank);
        if windows.is_empty() {
            return 0..0;
        }
        let first = self.window_position(windows.start);
        let last = self.window_position(windows.end - 1);
        first..last + self.window as u64
    }

    /// Sequences whose feature rows `rank` owns (contiguous, in global order).
    pub fn owned_sequences(&self, rank: usize) -> Range<usize> {
        let n = self.n_sequences();
        let first_at = |position: u64| self.offsets[..n].partition_point(|&o| o < position);
        let start = first_at(self.boundaries[rank]);
        let end = if rank + 1 == self.n_ranks {
            n
        } else {
            first_at(self.boundaries[rank + 1])
        };
        start..end.max(start)
    }

    /// The rank that owns sequence `seq`'s feature row.
    pub fn owner(&self, seq: usize) -> usize {
        let position = self.offsets[seq];
        self.boundaries.partition_point(|&b| b <= position) - 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_are_covered_once_and_sequences_owned_once() {
        let lengths = [0u64, 100, 500, 239, 240, 5000, 0, 10, 301, 0];
        for n_ranks in 1..=7 {
            let plan = TrackPlan::new(&lengths, 240, 60, n_ranks);
            let mut next_window = 0;
            let mut next_seq = 0;
            for rank in 0..n_ranks {
                let windows = plan.windows(rank);
                assert_eq!(windows.start, next_window, "p={n_ranks} rank={rank}");
                next_window = windows.end;
                let span = plan.token_span(rank);
                for w in windows.clone() {
                    let (seq, start) = plan.window_at(w);
                    assert!(start + 240 <= lengths[seq]);
                    let position = plan.offsets[seq] + start;
                    assert!(span.start <= position && position + 240 <= span.end);
                    // A window's sequence is owned by this rank or an earlier one.
                    assert!(plan.owner(seq) <= rank);
                }
                let owned = plan.owned_sequences(rank);
                assert_eq!(owned.start, next_seq, "p={n_ranks} rank={rank}");
                next_seq = owned.end;
                for seq in owned {
                    assert_eq!(plan.owner(seq), rank, "p={n_ranks} seq={seq}");
                }
            }
            assert_eq!(next_window, plan.n_windows());
            assert_eq!(next_seq, lengths.len());
        }
        let plan = TrackPlan::new(&lengths, 240, 60, 1);
        // 500 -> 5 windows, 240 -> 1, 5000 -> 80, 301 -> 2.
        assert_eq!(plan.n_windows(), 5 + 1 + 80 + 2);
        assert_eq!(plan.window_at(5), (4, 0));
        assert_eq!(plan.window_at(6), (5, 0));
        assert_eq!(plan.window_at(7), (5, 60));
    }
}
