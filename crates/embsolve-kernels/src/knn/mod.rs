//! Exact k-nearest-neighbour tiles: distance tiles from a fast f32 GEMM, top-k selection fused per
//! tile row (no distance matrix is kept), and exact canonical distances for the kept candidates.
//!
//! # Why the lists do not depend on tiling, ranks or threads
//!
//! A GEMM is free to accumulate a dot product in any order: the `gemm` crate picks micro-kernels
//! and blocking by matrix shape and CPU features, so the same pair of rows can get a different
//! last bit in a different tile. Sorting on those values would make the lists depend on how rows
//! are split over ranks and threads. So the GEMM is only used as a *filter*:
//!
//! 1. Every distance that is stored or compared is the **canonical distance**
//!    ([`exact_distance`]): a dot product (or squared difference) over the two rows with 32
//!    running sums in a fixed order and a fixed reduction tree, with no fused multiply-add, so it
//!    has the same bits on any CPU, SIMD width, tile or rank. Lists are ordered by
//!    (canonical distance, global row): a total order, so the k smallest are one well-defined set.
//! 2. The GEMM value differs from the canonical one by at most `2 γ_D |q| |b|`
//!    (γ_D = D u / (1 - D u), u = 2^-24; standard bound for any summation order, FMA or not).
//!    A reference row is a *candidate* when its GEMM value is within a margin of four times that
//!    bound of the current k-th canonical distance; only candidates get their canonical distance
//!    computed and offered to the list.
//! 3. A row that belongs to the final top-k has a canonical distance no larger than the final
//!    k-th, hence no larger than the k-th at the time it is scanned, so it always passes the
//!    filter. The final list is therefore exactly the top-k of the canonical distances, whatever
//!    the tile shapes, the order in which blocks arrive or the number of threads.
//!
//! The filter costs one compare per distance (vectorised, 32 at a time); the canonical distance
//! is computed only for the few rows that pass (about k ln(n/k) per query on shuffled data).
//! A GEMM micro-kernel with a canonical accumulation order would avoid the second pass but would
//! give up the `gemm` crate's tuned kernels.
//!
//! # Skipped tiles
//!
//! The queries, and each block before its pass, are put in a clustered order, and every tile
//! gets balls (`kernels::tile_bounds`) that bound the key of any of its rows from above, with
//! this filter's error margin. A tile is skipped for a set of queries only when the bound is
//! below every one of their thresholds: computing it would offer them nothing, so the argument
//! above holds unchanged. Rows are identified by their global row, never by their position, so
//! the order changes how much work is done and nothing else.
//!
//! # The symmetric pass: the query set against itself
//!
//! In the ring every rank first merges its own block, whose rows are its queries. Distances are
//! symmetric, so [`KnnSearch::add_block`] then computes only half of the GEMM: the queries are
//! split into row groups (each group's lists behind its own mutex), and square tiles of whole
//! groups are paired as (I, J) with I <= J. Each tile pair is one parallel task (tiles are made
//! small enough for a few pairs per thread, which work stealing evens out): the GEMM of side I
//! against side J (no lock held), then, for each strip of a few tile rows while it is in cache,
//! the rows of I scan it row by row against their own thresholds (the plain pass's scan), and the
//! columns of J scan it one tile row at a time, each column against *its own* threshold (a
//! vectorised compare with a vector of thresholds). One group lock is held at a time, never two.
//! It is exact for the same reasons as above:
//!
//! - The GEMM error bound `2 γ_D |a| |b|` is symmetric in the two rows, so a tile value filters
//!   the pair for either list. On the column side the roles of query and reference swap: for l2
//!   the key is `dot - |b|^2/2` with `b` the *tile row's* reference, and the threshold is the
//!   column query's own one (its norm, its k-th distance, the block's largest norm).
//! - The canonical distance is symmetric bit for bit (`x * y == y * x`; `(x - y)^2 == (y - x)^2`),
//!   so a column-side offer stores exactly what the plain pass would.
//! - Every ordered pair (query, reference) is examined exactly once, as in the plain pass: in the
//!   row scan of tile (I, J) when the query's side is before the reference's, in the column scan
//!   when it is after, and in the row scan of the diagonal tile (I, I) when both are on the same
//!   side (diagonal tiles have no column scan, so no list is offered a pair twice; the self pair
//!   is skipped as always).
//! - A list and its threshold change only under its group's lock, and within a block a threshold
//!   only rises (the k-th distance only falls). Whatever order the tasks run in, a threshold in
//!   use is never above the final one, so a final top-k member always passes the filter.
//!
//! The pass is taken only when the block is the query set bit for bit (same first row, same rows,
//! same values); any other block gets the plain pass, one task per group against the whole block.
//!
//! For cosine the rows must already be unit length (preprocessing makes them so); the distance is
//! `1 - dot`. `ip` is `-dot`. `l2` is the Euclidean distance `sqrt(sum (q - b)^2)`, computed from
//! the differences (not from norms) for the kept candidates.

mod assign;
mod distance;
mod gemm;
mod group;
mod scan;
mod search;
mod symmetric;
#[cfg(test)]
mod tests;

pub use assign::nearest_centroids;
pub use distance::{canonical_dot, canonical_sq_distance, exact_distance};
pub use gemm::gemm_tile;
pub use search::{KnnSearch, Neighbours, PartialNeighbours, TileShape};

use crate::simd::Features;
use crate::tile_bounds::TileBalls;
use crate::types::Metric;
use std::sync::{Mutex, MutexGuard, PoisonError};

/// No list entry yet: larger than any real (distance, row) pair.
pub const EMPTY_ROW: u64 = u64::MAX;
/// A bound entry ([`KnnSearch::set_bounds`]): a place held at the bound's distance, after every
/// real row at the same distance; it leaves the search as an [`EMPTY_ROW`] entry.
const BOUND_ROW: u64 = u64::MAX - 1;

/// Per-block data every task reads: the block's rows in their tile order.
struct BlockView<'a> {
    rows: &'a [f32],
    n_rows: usize,
    /// Global row of each row of `rows`.
    ids: &'a [u64],
    /// `|b|^2 / 2` per row (the l2 key is `dot - |b|^2 / 2`).
    half_sq_norms: &'a [f32],
    max_norm: f32,
    /// Balls of the tiles the pass uses (symmetric sides or plain reference tiles).
    balls: &'a TileBalls,
    /// All queries in the search's order (a group's from its `first`; the same slice as `rows`
    /// in the symmetric pass).
    queries: &'a [f32],
}

/// The search parameters shared by the tasks.
#[derive(Debug, Clone, Copy)]
struct Params {
    metric: Metric,
    k: usize,
    dim: usize,
    shape: TileShape,
    /// Relative error margin of a GEMM value: 4 x the worst-case `2 γ_D` (module doc).
    margin: f64,
    /// The CPU's features (AVX2 makes the candidate scans faster; same result).
    features: Features,
}

/// Lock a mutex; a poisoned one means a task panicked, and that panic is already on its way to
/// the caller, so the data is used as it is.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
