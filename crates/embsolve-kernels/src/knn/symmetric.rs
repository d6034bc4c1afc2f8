//! The symmetric pass's tile scheduler: the query set against itself as square tiles of whole
//! groups, pairs (I, J) with I <= J, each GEMM tile scanned by the rows of I and the columns of J
//! (the `knn` module doc has the argument).

use super::gemm::gemm_tile;
use super::group::Group;
use super::search::TileShape;
use super::{lock, BlockView, Params};
use std::ops::Range;
use std::sync::Mutex;

/// Tile rows scanned by both sides of the symmetric pass before moving on (the strip stays in
/// cache between the two scans).
const STRIP_ROWS: usize = 32;

/// True when the balls rule out tile pair (I, J) for both sides: no query of side I can find a
/// list member among J's rows, and no query of J among I's (one group lock at a time).
pub(super) fn pair_ruled_out(
    params: &Params,
    block: &BlockView,
    groups: &[Mutex<Group>],
    layout: SymmetricTiles,
    row_side: usize,
    column_side: usize,
) -> bool {
    let side_ruled_out = |side: usize, against: usize| {
        layout
            .groups(side)
            .all(|group| lock(&groups[group]).rules_out(params, block, against))
    };
    side_ruled_out(row_side, column_side) && side_ruled_out(column_side, row_side)
}

/// Tile pairs per thread that the symmetric pass aims for (work stealing evens them out).
const PAIRS_PER_THREAD: usize = 4;

/// The most groups per side of a symmetric tile: as many whole groups as fit in `ref_rows` (at
/// least one), so its GEMM tiles are about as large as the plain pass's.
pub(super) fn max_span(shape: TileShape, group_rows: usize) -> usize {
    (shape.ref_rows / group_rows).max(1)
}

/// The symmetric pass's tiles: the largest span up to [`max_span`] that still gives every thread
/// about [`PAIRS_PER_THREAD`] tile pairs of the triangle (else one group per side).
pub(super) fn symmetric_tiles(
    shape: TileShape,
    group_rows: usize,
    n_groups: usize,
    n_threads: usize,
) -> SymmetricTiles {
    let mut span = max_span(shape, group_rows);
    while span > 1 {
        let n_sides = n_groups.div_ceil(span);
        if n_sides * (n_sides + 1) / 2 >= PAIRS_PER_THREAD * n_threads {
            break;
        }
        span -= 1;
    }
    SymmetricTiles {
        group_rows,
        span,
        n_groups,
    }
}

/// The `pair`-th (row side, column side) of the upper triangle `I <= J` of `n_sides` tile sides,
/// row by row: (0, 0), (0, 1), .., (0, n - 1), (1, 1), ..
pub(super) fn upper_triangle_pair(pair: usize, n_sides: usize) -> (usize, usize) {
    let mut row_side = 0;
    let mut rest = pair;
    while rest >= n_sides - row_side {
        rest -= n_sides - row_side;
        row_side += 1;
    }
    (row_side, row_side + rest)
}

/// The groups of the symmetric pass's square tiles: `span` consecutive groups per side.
#[derive(Debug, Clone, Copy)]
pub(super) struct SymmetricTiles {
    group_rows: usize,
    span: usize,
    n_groups: usize,
}

impl SymmetricTiles {
    /// Rows per tile side (the last tile may hold fewer).
    pub(super) fn side_rows(&self) -> usize {
        self.span * self.group_rows
    }

    /// Tiles per side of the triangle.
    pub(super) fn n_sides(&self) -> usize {
        self.n_groups.div_ceil(self.span)
    }

    /// The groups of tile side `side`.
    pub(super) fn groups(&self, side: usize) -> Range<usize> {
        side * self.span..((side + 1) * self.span).min(self.n_groups)
    }
}

/// One tile pair of the symmetric pass: the GEMM of row side I against column side J (no lock
/// held), then, strip by strip of tile rows, the group of I that owns the strip scans its rows
/// (holding its own lock only) and, when I != J, each group of J scans its columns of the strip
/// (holding its own lock only). No two locks are ever held together.
pub(super) fn symmetric_tile(
    params: &Params,
    block: &BlockView,
    groups: &[Mutex<Group>],
    layout: SymmetricTiles,
    row_side: usize,
    column_side: usize,
    tile: &mut [f32],
) {
    let dim = params.dim;
    let stride = layout.side_rows();
    let row_first = row_side * stride;
    let n_row = stride.min(block.n_rows - row_first);
    let column_first = column_side * stride;
    let n_column = stride.min(block.n_rows - column_first);
    gemm_tile(
        tile,
        stride,
        &block.rows[row_first * dim..(row_first + n_row) * dim],
        n_row,
        &block.rows[column_first * dim..(column_first + n_column) * dim],
        n_column,
        dim,
    );
    if row_side == column_side {
        for (position, group) in layout.groups(row_side).enumerate() {
            let tile_row = position * layout.group_rows;
            let mut group = lock(&groups[group]);
            let queries = 0..group.n_queries;
            group.scan_tile_rows(
                params,
                block,
                &tile[tile_row * stride..],
                stride,
                queries,
                column_first,
                n_column,
            );
        }
        return;
    }
    // Strips of a few tile rows, each scanned by both sides while it is in cache.
    for (position, group) in layout.groups(row_side).enumerate() {
        let group_first = position * layout.group_rows;
        let n_group = layout.group_rows.min(n_row - group_first);
        for strip_first in (0..n_group).step_by(STRIP_ROWS) {
            let strip_rows = STRIP_ROWS.min(n_group - strip_first);
            let tile_row = group_first + strip_first;
            let strip = &tile[tile_row * stride..];
            lock(&groups[group]).scan_tile_rows(
                params,
                block,
                strip,
                stride,
                strip_first..strip_first + strip_rows,
                column_first,
                n_column,
            );
            for (position, column_group) in layout.groups(column_side).enumerate() {
                let tile_column = position * layout.group_rows;
                lock(&groups[column_group]).scan_tile_columns(
                    params,
                    block,
                    &strip[tile_column..],
                    stride,
                    row_first + tile_row,
                    strip_rows,
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symmetric_tiles_shrink_to_keep_every_thread_busy() {
        let shape = TileShape::default();
        // 79 groups of 256 rows, 2 threads: 512-row sides, 40 sides, 820 pairs.
        let wide = symmetric_tiles(shape, 256, 79, 2);
        assert_eq!((wide.span, wide.side_rows(), wide.n_sides()), (2, 512, 40));
        assert_eq!(wide.groups(39), 78..79);
        // 8 groups, 16 threads: 2 groups per side would give 10 pairs, so one group per side.
        let narrow = symmetric_tiles(shape, 256, 8, 16);
        assert_eq!((narrow.span, narrow.n_sides()), (1, 8));
        // Small groups: the span is the largest one with enough pairs.
        let small = symmetric_tiles(shape, 16, 40, 4);
        assert_eq!((small.span, small.n_sides()), (7, 6));
    }

    #[test]
    fn upper_triangle_pairs_are_each_pair_once() {
        for n_sides in [1usize, 2, 5, 9] {
            let pairs: Vec<(usize, usize)> = (0..n_sides * (n_sides + 1) / 2)
                .map(|pair| upper_triangle_pair(pair, n_sides))
                .collect();
            let mut want = Vec::new();
            for i in 0..n_sides {
                for j in i..n_sides {
                    want.push((i, j));
                }
            }
            assert_eq!(pairs, want);
        }
    }
}
