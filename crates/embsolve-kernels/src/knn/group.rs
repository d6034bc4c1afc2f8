//! A group of queries and its lists: the thresholds a GEMM key must pass (with the filter's error
//! margin), the scans of a tile by rows or by columns, the offer of a candidate (its canonical
//! distance and the insertion into the list), and the plain pass of the group against a block.

use super::distance::exact_distance;
use super::gemm::gemm_tile;
use super::scan::{next_candidate, next_column_candidate};
use super::{BlockView, Params};
use crate::types::Metric;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};

/// A run of consecutive queries (in the search's order) with their lists: the unit of parallel
/// work and of locking.
pub(super) struct Group {
    /// Position of the first query in the search's order.
    pub(super) first: usize,
    pub(super) n_queries: usize,
    /// Global row of each query.
    pub(super) ids: Vec<u64>,
    pub(super) query_norms: Vec<f32>,
    /// `|q|^2` (used by l2 only).
    pub(super) query_sq_norms: Vec<f32>,
    /// Running lists, `n_queries x k`, sorted by (distance, row).
    pub(super) distances: Vec<f32>,
    pub(super) indices: Vec<u64>,
    /// Per query: the smallest GEMM key that can still enter the list (see the module doc).
    pub(super) thresholds: Vec<f32>,
    /// Pairs whose canonical distance was computed (for tuning and the bench).
    pub(super) exact_evaluations: u64,
}

/// True when (distance, row) comes before (other distance, other row): the list order.
#[inline]
fn precedes(distance: f32, row: u64, other_distance: f32, other_row: u64) -> bool {
    distance < other_distance || (distance == other_distance && row < other_row)
}

impl Group {
    /// The plain pass: this group's queries against every row of `block`, one GEMM tile of
    /// `ref_rows` reference rows at a time, skipping the tiles the balls rule out for every query
    /// of the group. `counts`: (skipped, computed) tiles.
    pub(super) fn add_block(
        &mut self,
        params: &Params,
        block: &BlockView,
        tile: &mut [f32],
        counts: (&AtomicU64, &AtomicU64),
    ) {
        self.reset_thresholds(params, block.max_norm);
        let dim = params.dim;
        let stride = params.shape.ref_rows;
        let mine = &block.queries[self.first * dim..(self.first + self.n_queries) * dim];
        for (ref_tile, ref_first) in (0..block.n_rows).step_by(stride).enumerate() {
            if self.rules_out(params, block, ref_tile) {
                counts.0.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            counts.1.fetch_add(1, Ordering::Relaxed);
            let n_ref = stride.min(block.n_rows - ref_first);
            gemm_tile(
                tile,
                stride,
                mine,
                self.n_queries,
                &block.rows[ref_first * dim..(ref_first + n_ref) * dim],
                n_ref,
                dim,
            );
            let rows = 0..self.n_queries;
            self.scan_tile_rows(params, block, tile, stride, rows, ref_first, n_ref);
        }
    }

    /// True when tile `tile` of the block's balls is ruled out for every query of this group,
    /// at the current thresholds.
    pub(super) fn rules_out(&self, params: &Params, block: &BlockView, tile: usize) -> bool {
        let dim = params.dim;
        (0..self.n_queries).all(|q| {
            let row = self.first + q;
            block.balls.rules_out(
                params.metric,
                params.margin,
                &block.queries[row * dim..(row + 1) * dim],
                self.query_norms[q],
                self.query_sq_norms[q],
                self.thresholds[q],
                tile,
            )
        })
    }

    /// The thresholds for a new block (they depend on the block's largest norm).
    pub(super) fn reset_thresholds(&mut self, params: &Params, block_max_norm: f32) {
        for q in 0..self.n_queries {
            self.thresholds[q] = self.threshold(params, q, block_max_norm);
        }
    }

    /// Row side: tile row `q - rows.start` holds query q's GEMM keys against block rows
    /// `ref_first..+n_ref`; offer every key that passes q's threshold.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn scan_tile_rows(
        &mut self,
        params: &Params,
        block: &BlockView,
        tile: &[f32],
        stride: usize,
        rows: Range<usize>,
        ref_first: usize,
        n_ref: usize,
    ) {
        let offsets = &block.half_sq_norms[ref_first..ref_first + n_ref];
        let offsets = (params.metric == Metric::L2).then_some(offsets);
        for (tile_row, q) in rows.enumerate() {
            let keys = &tile[tile_row * stride..tile_row * stride + n_ref];
            let mut from = 0;
            while let Some(found) =
                next_candidate(keys, offsets, from, self.thresholds[q], params.features)
            {
                self.offer(params, q, block, ref_first + found);
                from = found + 1;
            }
        }
    }

    /// Column side: tile row r holds the GEMM keys of block row `ref_first + r` against this
    /// group's queries (the columns); the reference is now the tile row, so the l2 offset is that
    /// row's `|b|^2 / 2`, and each column is compared with its own query's threshold.
    pub(super) fn scan_tile_columns(
        &mut self,
        params: &Params,
        block: &BlockView,
        tile: &[f32],
        stride: usize,
        ref_first: usize,
        n_ref: usize,
    ) {
        let l2 = params.metric == Metric::L2;
        for r in 0..n_ref {
            let keys = &tile[r * stride..r * stride + self.n_queries];
            let offset = l2.then_some(block.half_sq_norms[ref_first + r]);
            let mut from = 0;
            while let Some(q) =
                next_column_candidate(keys, offset, &self.thresholds, from, params.features)
            {
                self.offer(params, q, block, ref_first + r);
                from = q + 1;
            }
        }
    }

    /// Compute the canonical distance of (query q, block row) and insert it if it belongs.
    #[inline(never)]
    fn offer(&mut self, params: &Params, q: usize, block: &BlockView, block_row: usize) {
        let row = block.ids[block_row];
        if row == self.ids[q] {
            return;
        }
        let dim = params.dim;
        let k = params.k;
        self.exact_evaluations += 1;
        let query_row = self.first + q;
        let query = &block.queries[query_row * dim..(query_row + 1) * dim];
        let reference = &block.rows[block_row * dim..(block_row + 1) * dim];
        let distance = exact_distance(params.metric, query, reference);
        let list_d = &mut self.distances[q * k..(q + 1) * k];
        let list_i = &mut self.indices[q * k..(q + 1) * k];
        if !precedes(distance, row, list_d[k - 1], list_i[k - 1]) {
            return;
        }
        let mut slot = k - 1;
        while slot > 0 && precedes(distance, row, list_d[slot - 1], list_i[slot - 1]) {
            list_d[slot] = list_d[slot - 1];
            list_i[slot] = list_i[slot - 1];
            slot -= 1;
        }
        list_d[slot] = distance;
        list_i[slot] = row;
        self.thresholds[q] = self.threshold(params, q, block.max_norm);
    }

    /// The smallest GEMM key that may still enter query q's list: the key of its k-th canonical
    /// distance, lowered by the error margin (module doc). Computed in f64, then rounded down.
    fn threshold(&self, params: &Params, q: usize, block_max_norm: f32) -> f32 {
        let kth = self.distances[q * params.k + params.k - 1];
        if !kth.is_finite() {
            return f32::NEG_INFINITY;
        }
        let kth = f64::from(kth);
        let norm_q = f64::from(self.query_norms[q]);
        let norm_b = f64::from(block_max_norm);
        let unit = f64::from(f32::EPSILON) / 2.0;
        let key = match params.metric {
            // dot >= -kth - margin
            Metric::Ip => -kth - params.margin * norm_q * norm_b - 4.0 * unit * kth.abs(),
            // dot >= 1 - kth - margin (plus the rounding of 1 - dot)
            Metric::Cosine => 1.0 - kth - params.margin * norm_q * norm_b - 4.0 * unit,
            // dot - |b|^2/2 >= (|q|^2 - kth^2 (1 + 8u) - margin (|q| + |b|)^2) / 2
            Metric::L2 => {
                let sq_q = f64::from(self.query_sq_norms[q]);
                let reach = (norm_q + norm_b) * (norm_q + norm_b);
                0.5 * (sq_q - kth * kth * (1.0 + 8.0 * unit) - params.margin * reach)
            }
        };
        let rounded = key as f32;
        if f64::from(rounded) > key {
            next_down(rounded)
        } else {
            rounded
        }
    }
}

/// The next float below `x` (finite `x`).
fn next_down(x: f32) -> f32 {
    if x == 0.0 {
        return -f32::from_bits(1);
    }
    let bits = x.to_bits();
    if x > 0.0 {
        f32::from_bits(bits - 1)
    } else {
        f32::from_bits(bits + 1)
    }
}
