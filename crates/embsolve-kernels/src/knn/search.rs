//! The public search: [`KnnSearch`] holds the queries in their clustered order and their groups,
//! and merges blocks of reference rows by the plain pass (any block) or the symmetric pass (the
//! query set itself); [`Neighbours`] are its finished lists.

use super::distance::sum_sq;
use super::group::Group;
use super::symmetric::{
    max_span, pair_ruled_out, symmetric_tile, symmetric_tiles, upper_triangle_pair, SymmetricTiles,
};
use super::{lock, BlockView, Params, BOUND_ROW, EMPTY_ROW};
use crate::simd::Features;
use crate::tile_bounds::{cluster_order, worth_ordering, RowOrder, TileBalls};
use crate::types::Metric;
use ndarray::ArrayView2;
use rayon::prelude::*;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

/// Tile sizes of the fused GEMM + selection loop (queries x reference rows per GEMM call).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TileShape {
    pub query_rows: usize,
    pub ref_rows: usize,
}

impl Default for TileShape {
    fn default() -> Self {
        TileShape {
            query_rows: 256,
            ref_rows: 512,
        }
    }
}

/// The finished lists of a search: `indices[i * k + j]` is the j-th nearest global row of query i.
#[derive(Debug, Clone, PartialEq)]
pub struct Neighbours {
    pub k: usize,
    pub indices: Vec<u64>,
    pub distances: Vec<f32>,
}

/// GEMM output tiles, allocated once and lent to one task at a time.
struct TilePool {
    tile_len: usize,
    free: Mutex<Vec<Vec<f32>>>,
}

impl TilePool {
    fn new(tile_len: usize, n_tiles: usize) -> TilePool {
        TilePool {
            tile_len,
            free: Mutex::new((0..n_tiles).map(|_| vec![0.0; tile_len]).collect()),
        }
    }

    /// Run `work` with a tile from the pool (a new one only when more tasks run at once than
    /// the pool was sized for).
    fn with_tile(&self, work: impl FnOnce(&mut [f32])) {
        let taken = lock(&self.free).pop();
        let mut tile = taken.unwrap_or_else(|| vec![0.0; self.tile_len]);
        work(&mut tile);
        lock(&self.free).push(tile);
    }
}

/// Exact kNN for a fixed set of queries, fed with blocks of reference rows in any order.
/// Queries and blocks are put in a clustered order ([`cluster_order`]) so that tiles are compact
/// and whole tiles can be skipped when their balls rule them out ([`TileBalls::rules_out`]); the
/// lists are the same for any order. Lists, GEMM tiles and per-block buffers are allocated by
/// `new` and `reserve_block`; the tile loop allocates nothing.
pub struct KnnSearch {
    params: Params,
    /// Global row of each query, in the order given to `new`.
    query_ids: Vec<u64>,
    /// True when `query_ids` are consecutive (`query_ids[i] = query_ids[0] + i`).
    consecutive_ids: bool,
    n_queries: usize,
    /// Queries per group (the last group may hold fewer).
    group_rows: usize,
    groups: Vec<Mutex<Group>>,
    /// Row-major queries in the search's order: position i holds query `order.order[i]`.
    queries: Vec<f32>,
    order: RowOrder,
    tiles: TilePool,
    block_half_sq_norms: Vec<f32>,
    /// The current block in its tile order, and the global row of each of its rows.
    block_rows: Vec<f32>,
    block_ids: Vec<u64>,
    /// GEMM tiles skipped (pairs of sides in the symmetric pass, group x tile in the plain pass).
    skipped_tiles: AtomicU64,
    /// GEMM tiles computed.
    computed_tiles: AtomicU64,
}

impl KnnSearch {
    /// Start a search for `queries` (global rows `query_start..`), `k` neighbours each, for
    /// `n_workers` threads: the queries are split into groups of at most `shape.query_rows`
    /// rows, and into at least `n_workers` groups when there are that many rows. Rows must be
    /// unit length for cosine.
    pub fn new(
        queries: ArrayView2<f32>,
        query_start: usize,
        k: usize,
        metric: Metric,
        n_workers: usize,
        shape: TileShape,
    ) -> KnnSearch {
        let ids = (0..queries.nrows())
            .map(|row| (query_start + row) as u64)
            .collect();
        KnnSearch::with_ids(queries, ids, k, metric, n_workers, shape)
    }

    /// [`KnnSearch::new`] for queries with any global rows (`ids[i]` is the row of query i; a
    /// reference row with the same id is the query itself and is skipped).
    pub fn with_ids(
        queries: ArrayView2<f32>,
        ids: Vec<u64>,
        k: usize,
        metric: Metric,
        n_workers: usize,
        shape: TileShape,
    ) -> KnnSearch {
        assert!(k > 0, "k must be positive");
        assert_eq!(ids.len(), queries.nrows(), "one id per query");
        assert!(shape.query_rows > 0 && shape.ref_rows > 0);
        let dim = queries.ncols();
        let n_queries = queries.nrows();
        let n_workers = n_workers.max(1);
        let unit = f64::from(f32::EPSILON) / 2.0;
        let width = (dim + 8) as f64;
        let margin = 4.0 * 2.0 * width * unit / (1.0 - width * unit);
        let params = Params {
            metric,
            k,
            dim,
            shape,
            margin,
            features: Features::detect(),
        };
        let group_rows = shape.query_rows.min(n_queries.div_ceil(n_workers)).max(1);
        let standard = queries.as_standard_layout();
        let given = standard.as_slice().expect("standard layout is contiguous");
        let order = cluster_order(given, dim, group_rows);
        let mut ordered = Vec::with_capacity(n_queries * dim);
        for &row in &order.order {
            ordered.extend_from_slice(&given[row * dim..(row + 1) * dim]);
        }
        let groups = (0..n_queries)
            .step_by(group_rows)
            .map(|first| {
                let count = group_rows.min(n_queries - first);
                let mine = &ordered[first * dim..(first + count) * dim];
                let query_norms: Vec<f32> = mine
                    .chunks_exact(dim.max(1))
                    .map(|q| sum_sq(q).sqrt())
                    .collect();
                let query_sq_norms = query_norms.iter().map(|n| n * n).collect();
                let group_ids = order.order[first..first + count]
                    .iter()
                    .map(|&row| ids[row])
                    .collect();
                Mutex::new(Group {
                    first,
                    n_queries: count,
                    ids: group_ids,
                    query_norms,
                    query_sq_norms,
                    distances: vec![f32::INFINITY; count * k],
                    indices: vec![EMPTY_ROW; count * k],
                    thresholds: vec![f32::NEG_INFINITY; count],
                    exact_evaluations: 0,
                })
            })
            .collect();
        let side_rows = group_rows * max_span(shape, group_rows);
        let tile_len = (group_rows * shape.ref_rows).max(side_rows * side_rows);
        let n_tiles = if n_queries == 0 { 0 } else { n_workers };
        let consecutive_ids = ids.windows(2).all(|pair| pair[1] == pair[0] + 1);
        KnnSearch {
            params,
            query_ids: ids,
            consecutive_ids,
            n_queries,
            group_rows,
            groups,
            queries: ordered,
            order,
            tiles: TilePool::new(tile_len, n_tiles),
            block_half_sq_norms: Vec::new(),
            block_rows: Vec::new(),
            block_ids: Vec::new(),
            skipped_tiles: AtomicU64::new(0),
            computed_tiles: AtomicU64::new(0),
        }
    }

    /// Bound every query's list before the first block: `bounds[i]` (in the order the queries
    /// were given; infinity for none) is a distance no kept neighbour may exceed. The list starts
    /// as k places held at that distance, so the filter rejects from the first tile every row that
    /// cannot beat it, and only rows at or below it are kept (at it, in row order). Places never
    /// taken come back as [`EMPTY_ROW`] entries. For a query whose true top-k is already bounded
    /// by a list found elsewhere (the k-th distance of that list), merging the result into that
    /// list gives the same top-k as an unbounded search, with far fewer exact distances.
    pub fn set_bounds(&mut self, bounds: &[f32]) {
        assert_eq!(bounds.len(), self.n_queries, "one bound per query");
        let k = self.params.k;
        for group in &mut self.groups {
            let group = group.get_mut().unwrap_or_else(PoisonError::into_inner);
            for q in 0..group.n_queries {
                let bound = bounds[self.order.order[group.first + q]];
                if bound.is_finite() {
                    group.distances[q * k..(q + 1) * k].fill(bound);
                    group.indices[q * k..(q + 1) * k].fill(BOUND_ROW);
                }
            }
        }
    }

    /// Size the per-block buffers for blocks of up to `max_rows` rows (optional: the first larger
    /// block grows them once).
    pub fn reserve_block(&mut self, max_rows: usize) {
        let extra = max_rows.saturating_sub(self.block_half_sq_norms.len());
        self.block_half_sq_norms.reserve(extra);
        let extra = max_rows.saturating_sub(self.block_ids.len());
        self.block_ids.reserve(extra);
        let extra = (max_rows * self.params.dim).saturating_sub(self.block_rows.len());
        self.block_rows.reserve(extra);
    }

    /// Merge a block of reference rows (row-major, `n_rows x dim`, global rows `block_start..`)
    /// into every query's list. Tasks run in parallel on the current rayon pool. When the block
    /// is the query set itself (same global rows, same values), each pair of rows is compared
    /// once for both lists (the symmetric pass of the module doc).
    pub fn add_block(&mut self, rows: &[f32], block_start: usize) {
        let ids = BlockIds::Consecutive(block_start);
        if self.is_query_set(rows, ids) {
            self.add_block_with(rows, ids, Pass::Symmetric);
        } else {
            self.add_block_with(rows, ids, Pass::Plain);
        }
    }

    /// [`KnnSearch::add_block`] for reference rows with any global rows (`ids[i]` is the row of
    /// row i of `rows`).
    pub fn add_block_with_ids(&mut self, rows: &[f32], ids: &[u64]) {
        assert_eq!(
            ids.len() * self.params.dim,
            rows.len(),
            "one id per reference row"
        );
        let ids = BlockIds::Given(ids);
        if self.is_query_set(rows, ids) {
            self.add_block_with(rows, ids, Pass::Symmetric);
        } else {
            self.add_block_with(rows, ids, Pass::Plain);
        }
    }

    pub(super) fn add_block_with(&mut self, rows: &[f32], ids: BlockIds, pass: Pass) {
        let dim = self.params.dim;
        let n_rows = rows.len().checked_div(dim).unwrap_or(0);
        if n_rows == 0 || self.n_queries == 0 {
            return;
        }
        match pass {
            Pass::Symmetric => {
                debug_assert!(self.is_query_set(rows, ids));
                self.add_query_set();
            }
            Pass::Plain => self.add_plain(rows, ids),
        }
    }

    /// The plain pass (module doc): the block in its own clustered order, every group against
    /// every reference tile the balls do not rule out.
    fn add_plain(&mut self, rows: &[f32], ids: BlockIds) {
        let dim = self.params.dim;
        let n_rows = rows.len() / dim;
        let order = if worth_ordering(n_rows, self.group_rows, self.n_queries) {
            cluster_order(rows, dim, self.group_rows)
        } else {
            RowOrder::identity(n_rows)
        };
        self.block_rows.clear();
        self.block_ids.clear();
        for &row in &order.order {
            self.block_rows
                .extend_from_slice(&rows[row * dim..(row + 1) * dim]);
            self.block_ids.push(ids.id(row));
        }
        let balls = TileBalls::new(
            &self.block_rows,
            dim,
            &order.labels,
            self.params.shape.ref_rows,
        );
        let max_norm = block_half_sq_norms(&self.block_rows, dim, &mut self.block_half_sq_norms);
        let block = BlockView {
            rows: &self.block_rows,
            n_rows,
            ids: &self.block_ids,
            half_sq_norms: &self.block_half_sq_norms,
            max_norm,
            balls: &balls,
            queries: &self.queries,
        };
        let params = self.params;
        let tiles = &self.tiles;
        let counts = (&self.skipped_tiles, &self.computed_tiles);
        self.groups.par_iter_mut().for_each(|group| {
            let group = group.get_mut().unwrap_or_else(PoisonError::into_inner);
            tiles.with_tile(|tile| group.add_block(&params, &block, tile, counts));
        });
    }

    /// True when `rows` with global rows `ids` are exactly the queries (same rows in the same
    /// order, bit for bit).
    pub(super) fn is_query_set(&self, rows: &[f32], ids: BlockIds) -> bool {
        let dim = self.params.dim;
        if rows.len() != self.n_queries * dim || self.n_queries == 0 {
            return false;
        }
        let same_ids = match ids {
            BlockIds::Consecutive(start) => {
                self.consecutive_ids && self.query_ids[0] == start as u64
            }
            BlockIds::Given(given) => given == self.query_ids.as_slice(),
        };
        if !same_ids {
            return false;
        }
        self.order
            .order
            .par_iter()
            .zip(self.queries.par_chunks_exact(dim.max(1)))
            .all(|(&row, query)| {
                rows[row * dim..(row + 1) * dim]
                    .iter()
                    .zip(query)
                    .all(|(a, b)| a.to_bits() == b.to_bits())
            })
    }

    /// The symmetric pass (module doc): the queries against themselves, in the search's order.
    /// Diagonal tile pairs go first, so every list is well filled before the others are tried
    /// against the balls.
    fn add_query_set(&mut self) {
        let dim = self.params.dim;
        let layout = self.symmetric_tiles();
        let balls = TileBalls::new(&self.queries, dim, &self.order.labels, layout.side_rows());
        let max_norm = block_half_sq_norms(&self.queries, dim, &mut self.block_half_sq_norms);
        let ids: Vec<u64> = self
            .order
            .order
            .iter()
            .map(|&row| self.query_ids[row])
            .collect();
        let block = BlockView {
            rows: &self.queries,
            n_rows: self.n_queries,
            ids: &ids,
            half_sq_norms: &self.block_half_sq_norms,
            max_norm,
            balls: &balls,
            queries: &self.queries,
        };
        let params = self.params;
        self.groups.par_iter_mut().for_each(|group| {
            let group = group.get_mut().unwrap_or_else(PoisonError::into_inner);
            group.reset_thresholds(&params, max_norm);
        });
        let groups = &self.groups;
        let tiles = &self.tiles;
        let n_sides = layout.n_sides();
        (0..n_sides).into_par_iter().for_each(|side| {
            tiles.with_tile(|tile| {
                symmetric_tile(&params, &block, groups, layout, side, side, tile)
            });
        });
        self.computed_tiles
            .fetch_add(n_sides as u64, Ordering::Relaxed);
        let counts = (&self.skipped_tiles, &self.computed_tiles);
        (0..n_sides * (n_sides - 1) / 2)
            .into_par_iter()
            .for_each(|pair| {
                let (row_side, column_side) = upper_triangle_pair(pair, n_sides - 1);
                let column_side = column_side + 1;
                if pair_ruled_out(&params, &block, groups, layout, row_side, column_side) {
                    counts.0.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                counts.1.fetch_add(1, Ordering::Relaxed);
                tiles.with_tile(|tile| {
                    symmetric_tile(&params, &block, groups, layout, row_side, column_side, tile)
                });
            });
    }

    /// The symmetric pass's tiles for the current rayon pool (see [`symmetric_tiles`]).
    fn symmetric_tiles(&self) -> SymmetricTiles {
        let n_groups = self.groups.len();
        let n_threads = rayon::current_num_threads();
        symmetric_tiles(self.params.shape, self.group_rows, n_groups, n_threads)
    }

    /// GEMM tiles (skipped, computed) so far: pairs of sides in the symmetric pass, group x
    /// reference tile in the plain pass.
    pub fn tile_counts(&self) -> (u64, u64) {
        (
            self.skipped_tiles.load(Ordering::Relaxed),
            self.computed_tiles.load(Ordering::Relaxed),
        )
    }

    /// Pairs whose canonical distance was computed so far (the filter's pass count).
    pub fn exact_evaluations(&self) -> u64 {
        self.groups
            .iter()
            .map(|group| lock(group).exact_evaluations)
            .sum()
    }

    /// The lists, or the smallest global row of a query that has fewer than k neighbours (fewer
    /// than k + 1 rows were given, or distances were not finite).
    pub fn finish(self) -> Result<Neighbours, usize> {
        let neighbours = self.finish_partial();
        let k = neighbours.k;
        let short = neighbours
            .indices
            .chunks_exact(k)
            .zip(&neighbours.ids)
            .filter(|(list, _)| list.contains(&EMPTY_ROW))
            .map(|(_, &id)| id)
            .min();
        match short {
            Some(row) => Err(row as usize),
            None => Ok(neighbours.lists),
        }
    }

    /// The lists in the order the queries were given, short ones included: a list with fewer
    /// than k neighbours ends in entries of row [`EMPTY_ROW`] and distance infinity.
    pub fn finish_partial(self) -> PartialNeighbours {
        let k = self.params.k;
        let mut indices = vec![EMPTY_ROW; self.n_queries * k];
        let mut distances = vec![f32::INFINITY; self.n_queries * k];
        for group in self.groups {
            let group = group.into_inner().unwrap_or_else(PoisonError::into_inner);
            for q in 0..group.n_queries {
                let list = q * k..(q + 1) * k;
                let slot = self.order.order[group.first + q] * k;
                indices[slot..slot + k].copy_from_slice(&group.indices[list.clone()]);
                distances[slot..slot + k].copy_from_slice(&group.distances[list]);
                for j in slot..slot + k {
                    if indices[j] == BOUND_ROW {
                        indices[j] = EMPTY_ROW;
                        distances[j] = f32::INFINITY;
                    }
                }
            }
        }
        PartialNeighbours {
            ids: self.query_ids,
            lists: Neighbours {
                k,
                indices,
                distances,
            },
        }
    }
}

/// The lists of [`KnnSearch::finish_partial`] with the global row of each query.
#[derive(Debug, Clone, PartialEq)]
pub struct PartialNeighbours {
    pub ids: Vec<u64>,
    pub lists: Neighbours,
}

impl std::ops::Deref for PartialNeighbours {
    type Target = Neighbours;
    fn deref(&self) -> &Neighbours {
        &self.lists
    }
}

/// The global rows of a block's rows.
#[derive(Debug, Clone, Copy)]
pub(super) enum BlockIds<'a> {
    /// Row i is global row `start + i`.
    Consecutive(usize),
    /// Row i is global row `ids[i]`.
    Given(&'a [u64]),
}

impl BlockIds<'_> {
    fn id(&self, row: usize) -> u64 {
        match self {
            BlockIds::Consecutive(start) => (start + row) as u64,
            BlockIds::Given(ids) => ids[row],
        }
    }
}

/// How a block is merged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Pass {
    /// Every group against every block row (any block).
    Plain,
    /// Tile pairs (I, J), I <= J, of the query set against itself, each feeding both lists.
    Symmetric,
}

/// `|b|^2 / 2` of every row into `half_sq_norms` (cleared first); returns the largest norm.
fn block_half_sq_norms(rows: &[f32], dim: usize, half_sq_norms: &mut Vec<f32>) -> f32 {
    half_sq_norms.clear();
    let mut max_norm = 0.0f32;
    for row in rows.chunks_exact(dim.max(1)) {
        let sq = sum_sq(row);
        max_norm = max_norm.max(sq.sqrt());
        half_sq_norms.push(0.5 * sq);
    }
    max_norm
}
