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

use crate::types::Metric;
use crate::tile_bounds::{cluster_order, RowOrder, TileBalls};
use ndarray::ArrayView2;
use rayon::prelude::*;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

/// Running sums of the canonical dot product (and of the squared distance).
const LANES: usize = 32;
/// Keys compared per filter step in the fused selection.
const SCAN_CHUNK: usize = 32;
/// Tile rows scanned by both sides of the symmetric pass before moving on (the strip stays in
/// cache between the two scans).
const STRIP_ROWS: usize = 32;
/// No list entry yet: larger than any real (distance, row) pair.
const EMPTY_ROW: u64 = u64::MAX;

/// The canonical dot product: 32 running sums (`acc[l]` takes elements `i ≡ l mod 32` in order),
/// separate multiply and add (never fused), then a fixed pairwise reduction tree. Same bits on
/// every CPU and SIMD width; AVX2 only makes it faster.
#[inline]
pub fn canonical_dot(a: &[f32], b: &[f32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if a.len() >= LANES && std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU reports AVX2.
        return unsafe { canonical_avx2::<false>(a, b) };
    }
    canonical_portable::<false>(a, b)
}

/// The canonical squared Euclidean distance, in the same order as [`canonical_dot`].
#[inline]
pub fn canonical_sq_distance(a: &[f32], b: &[f32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if a.len() >= LANES && std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU reports AVX2.
        return unsafe { canonical_avx2::<true>(a, b) };
    }
    canonical_portable::<true>(a, b)
}

/// The canonical sums with four 8-wide AVX registers: register `v` lane `j` is running sum
/// `8 v + j`, so every sum sees the same terms in the same order as in `canonical_portable`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn canonical_avx2<const DIFFERENCE: bool>(a: &[f32], b: &[f32]) -> f32 {
    use std::arch::x86_64::*;
    debug_assert_eq!(a.len(), b.len());
    let split = a.len() - a.len() % LANES;
    let mut acc = [_mm256_setzero_ps(); LANES / 8];
    let mut offset = 0;
    while offset < split {
        for (v, sum) in acc.iter_mut().enumerate() {
            // SAFETY: offset + 8 v + 8 <= split <= len of both slices.
            let x = _mm256_loadu_ps(a.as_ptr().add(offset + 8 * v));
            let y = _mm256_loadu_ps(b.as_ptr().add(offset + 8 * v));
            let term = if DIFFERENCE {
                let d = _mm256_sub_ps(x, y);
                _mm256_mul_ps(d, d)
            } else {
                _mm256_mul_ps(x, y)
            };
            *sum = _mm256_add_ps(*sum, term);
        }
        offset += LANES;
    }
    let mut sums = [0.0f32; LANES];
    for (v, sum) in acc.iter().enumerate() {
        _mm256_storeu_ps(sums.as_mut_ptr().add(8 * v), *sum);
    }
    finish_canonical::<DIFFERENCE>(&mut sums, &a[split..], &b[split..])
}

/// The tail (fewer than 32 elements) into the first running sums, then the fixed tree.
#[inline(always)]
fn finish_canonical<const DIFFERENCE: bool>(
    acc: &mut [f32; LANES],
    a_tail: &[f32],
    b_tail: &[f32],
) -> f32 {
    for (lane, (x, y)) in a_tail.iter().zip(b_tail).enumerate() {
        acc[lane] += if DIFFERENCE { (x - y) * (x - y) } else { x * y };
    }
    // Pairwise tree: lane l takes lane l + width, halving the width.
    let mut width = LANES / 2;
    while width > 0 {
        for lane in 0..width {
            acc[lane] += acc[lane + width];
        }
        width /= 2;
    }
    acc[0]
}

/// Products (or squared differences) summed in the canonical order.
#[inline(always)]
fn canonical_portable<const DIFFERENCE: bool>(a: &[f32], b: &[f32]) -> f32 {
    debug_assert_eq!(a.len(), b.len());
    let term = |x: f32, y: f32| {
        if DIFFERENCE {
            (x - y) * (x - y)
        } else {
            x * y
        }
    };
    let mut acc = [0.0f32; LANES];
    let split = a.len() - a.len() % LANES;
    for (ca, cb) in a[..split]
        .chunks_exact(LANES)
        .zip(b[..split].chunks_exact(LANES))
    {
        let ca: &[f32; LANES] = ca.try_into().expect("chunk length");
        let cb: &[f32; LANES] = cb.try_into().expect("chunk length");
        for lane in 0..LANES {
            acc[lane] += term(ca[lane], cb[lane]);
        }
    }
    finish_canonical::<DIFFERENCE>(&mut acc, &a[split..], &b[split..])
}

/// The distance stored in the lists (SPEC: `1 - cosine`, Euclidean distance, `-dot`).
#[inline]
pub fn exact_distance(metric: Metric, a: &[f32], b: &[f32]) -> f32 {
    match metric {
        Metric::Cosine => 1.0 - canonical_dot(a, b),
        // `+ 0.0` turns the -0.0 of a zero dot product into 0.0.
        Metric::Ip => -canonical_dot(a, b) + 0.0,
        Metric::L2 => canonical_sq_distance(a, b).sqrt(),
    }
}

/// True when (distance, row) comes before (other distance, other row): the list order.
#[inline]
fn precedes(distance: f32, row: u64, other_distance: f32, other_row: u64) -> bool {
    distance < other_distance || (distance == other_distance && row < other_row)
}

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

/// A run of consecutive queries (in the search's order) with their lists: the unit of parallel
/// work and of locking.
struct Group {
    /// Position of the first query in the search's order.
    first: usize,
    n_queries: usize,
    /// Global row of each query.
    ids: Vec<u64>,
    query_norms: Vec<f32>,
    /// `|q|^2` (used by l2 only).
    query_sq_norms: Vec<f32>,
    /// Running lists, `n_queries x k`, sorted by (distance, row).
    distances: Vec<f32>,
    indices: Vec<u64>,
    /// Per query: the smallest GEMM key that can still enter the list (see the module doc).
    thresholds: Vec<f32>,
    /// Pairs whose canonical distance was computed (for tuning and the bench).
    exact_evaluations: u64,
}

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
    /// The CPU has AVX2 (faster candidate scan; same result).
    avx2: bool,
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

/// Lock a mutex; a poisoned one means a task panicked, and that panic is already on its way to
/// the caller, so the data is used as it is.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Exact kNN for a fixed set of queries, fed with blocks of reference rows in any order.
/// Queries and blocks are put in a clustered order ([`cluster_order`]) so that tiles are compact
/// and whole tiles can be skipped when their balls rule them out ([`TileBalls::rules_out`]); the
/// lists are the same for any order. Lists, GEMM tiles and per-block buffers are allocated by
/// `new` and `reserve_block`; the tile loop allocates nothing.
pub struct KnnSearch {
    params: Params,
    query_start: usize,
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
        assert!(k > 0, "k must be positive");
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
            avx2: has_avx2(),
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
                let ids = order.order[first..first + count]
                    .iter()
                    .map(|&row| (query_start + row) as u64)
                    .collect();
                Mutex::new(Group {
                    first,
                    n_queries: count,
                    ids,
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
        KnnSearch {
            params,
            query_start,
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
        if self.is_query_set(rows, block_start) {
            self.add_block_with(rows, block_start, Pass::Symmetric);
        } else {
            self.add_block_with(rows, block_start, Pass::Plain);
        }
    }

    fn add_block_with(&mut self, rows: &[f32], block_start: usize, pass: Pass) {
        let dim = self.params.dim;
        let n_rows = rows.len().checked_div(dim).unwrap_or(0);
        if n_rows == 0 || self.n_queries == 0 {
            return;
        }
        match pass {
            Pass::Symmetric => {
                debug_assert!(self.is_query_set(rows, block_start));
                self.add_query_set();
            }
            Pass::Plain => self.add_plain(rows, block_start),
        }
    }

    /// The plain pass (module doc): the block in its own clustered order, every group against
    /// every reference tile the balls do not rule out.
    fn add_plain(&mut self, rows: &[f32], block_start: usize) {
        let dim = self.params.dim;
        let n_rows = rows.len() / dim;
        let order = cluster_order(rows, dim, self.group_rows);
        self.block_rows.clear();
        self.block_ids.clear();
        for &row in &order.order {
            self.block_rows
                .extend_from_slice(&rows[row * dim..(row + 1) * dim]);
            self.block_ids.push((block_start + row) as u64);
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

    /// True when `rows` at `block_start` are exactly the queries (bit for bit).
    fn is_query_set(&self, rows: &[f32], block_start: usize) -> bool {
        let dim = self.params.dim;
        if block_start != self.query_start || rows.len() != self.n_queries * dim {
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
            .map(|&row| (self.query_start + row) as u64)
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

    /// The lists, or the first query that has fewer than k neighbours (fewer than k + 1 rows were
    /// given, or distances were not finite).
    pub fn finish(self) -> Result<Neighbours, usize> {
        let k = self.params.k;
        let mut indices = vec![EMPTY_ROW; self.n_queries * k];
        let mut distances = vec![f32::INFINITY; self.n_queries * k];
        let mut short: Option<u64> = None;
        for group in self.groups {
            let group = group.into_inner().unwrap_or_else(PoisonError::into_inner);
            for (q, &id) in group.ids.iter().enumerate() {
                let list = q * k..(q + 1) * k;
                if group.indices[list.clone()].contains(&EMPTY_ROW) {
                    short = Some(short.map_or(id, |s| s.min(id)));
                }
                let slot = (id as usize - self.query_start) * k;
                indices[slot..slot + k].copy_from_slice(&group.indices[list.clone()]);
                distances[slot..slot + k].copy_from_slice(&group.distances[list]);
            }
        }
        if let Some(row) = short {
            return Err(row as usize);
        }
        Ok(Neighbours {
            k,
            indices,
            distances,
        })
    }
}

/// How a block is merged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pass {
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

/// True when the balls rule out tile pair (I, J) for both sides: no query of side I can find a
/// list member among J's rows, and no query of J among I's (one group lock at a time).
fn pair_ruled_out(
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
fn max_span(shape: TileShape, group_rows: usize) -> usize {
    (shape.ref_rows / group_rows).max(1)
}

/// The symmetric pass's tiles: the largest span up to [`max_span`] that still gives every thread
/// about [`PAIRS_PER_THREAD`] tile pairs of the triangle (else one group per side).
fn symmetric_tiles(
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
fn upper_triangle_pair(pair: usize, n_sides: usize) -> (usize, usize) {
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
struct SymmetricTiles {
    group_rows: usize,
    span: usize,
    n_groups: usize,
}

impl SymmetricTiles {
    /// Rows per tile side (the last tile may hold fewer).
    fn side_rows(&self) -> usize {
        self.span * self.group_rows
    }

    /// Tiles per side of the triangle.
    fn n_sides(&self) -> usize {
        self.n_groups.div_ceil(self.span)
    }

    /// The groups of tile side `side`.
    fn groups(&self, side: usize) -> Range<usize> {
        side * self.span..((side + 1) * self.span).min(self.n_groups)
    }
}

/// One tile pair of the symmetric pass: the GEMM of row side I against column side J (no lock
/// held), then, strip by strip of tile rows, the group of I that owns the strip scans its rows
/// (holding its own lock only) and, when I != J, each group of J scans its columns of the strip
/// (holding its own lock only). No two locks are ever held together.
fn symmetric_tile(
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

impl Group {
    /// The plain pass: this group's queries against every row of `block`, one GEMM tile of
    /// `ref_rows` reference rows at a time, skipping the tiles the balls rule out for every query
    /// of the group. `counts`: (skipped, computed) tiles.
    fn add_block(
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
    fn rules_out(&self, params: &Params, block: &BlockView, tile: usize) -> bool {
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
    fn reset_thresholds(&mut self, params: &Params, block_max_norm: f32) {
        for q in 0..self.n_queries {
            self.thresholds[q] = self.threshold(params, q, block_max_norm);
        }
    }

    /// Row side: tile row `q - rows.start` holds query q's GEMM keys against block rows
    /// `ref_first..+n_ref`; offer every key that passes q's threshold.
    #[allow(clippy::too_many_arguments)]
    fn scan_tile_rows(
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
                next_candidate(keys, offsets, from, self.thresholds[q], params.avx2)
            {
                self.offer(params, q, block, ref_first + found);
                from = found + 1;
            }
        }
    }

    /// Column side: tile row r holds the GEMM keys of block row `ref_first + r` against this
    /// group's queries (the columns); the reference is now the tile row, so the l2 offset is that
    /// row's `|b|^2 / 2`, and each column is compared with its own query's threshold.
    fn scan_tile_columns(
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
                next_column_candidate(keys, offset, &self.thresholds, from, params.avx2)
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

fn has_avx2() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx2")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
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

#[inline]
fn sum_sq(row: &[f32]) -> f32 {
    canonical_dot(row, row)
}

/// First position `>= from` whose key (`keys[j]`, minus `offsets[j]` for l2) is `>= threshold`.
/// Compares 32 keys per step; uses AVX2 when the CPU has it (same answer either way).
#[inline]
fn next_candidate(
    keys: &[f32],
    offsets: Option<&[f32]>,
    from: usize,
    threshold: f32,
    avx2: bool,
) -> Option<usize> {
    #[cfg(target_arch = "x86_64")]
    if avx2 {
        // SAFETY: `avx2` is true only when the CPU reports AVX2 (checked in `KnnSearch::new`).
        return unsafe {
            match offsets {
                Some(offsets) => next_candidate_avx2::<true>(keys, offsets, from, threshold),
                None => next_candidate_avx2::<false>(keys, keys, from, threshold),
            }
        };
    }
    let _ = avx2;
    match offsets {
        Some(offsets) => next_candidate_portable::<true>(keys, offsets, from, threshold),
        None => next_candidate_portable::<false>(keys, keys, from, threshold),
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn next_candidate_avx2<const L2: bool>(
    keys: &[f32],
    offsets: &[f32],
    from: usize,
    threshold: f32,
) -> Option<usize> {
    next_candidate_portable::<L2>(keys, offsets, from, threshold)
}

#[inline(always)]
fn next_candidate_portable<const L2: bool>(
    keys: &[f32],
    offsets: &[f32],
    from: usize,
    threshold: f32,
) -> Option<usize> {
    let key = |j: usize| {
        if L2 {
            keys[j] - offsets[j]
        } else {
            keys[j]
        }
    };
    let n = keys.len();
    let mut start = from;
    while start + SCAN_CHUNK <= n {
        let chunk: &[f32; SCAN_CHUNK] = keys[start..start + SCAN_CHUNK]
            .try_into()
            .expect("chunk length");
        let hit = if L2 {
            let offset: &[f32; SCAN_CHUNK] = offsets[start..start + SCAN_CHUNK]
                .try_into()
                .expect("chunk length");
            let mut hit = false;
            for j in 0..SCAN_CHUNK {
                hit |= chunk[j] - offset[j] >= threshold;
            }
            hit
        } else {
            let mut hit = false;
            for value in chunk {
                hit |= *value >= threshold;
            }
            hit
        };
        if hit {
            return (start..start + SCAN_CHUNK).find(|&j| key(j) >= threshold);
        }
        start += SCAN_CHUNK;
    }
    (start..n).find(|&j| key(j) >= threshold)
}

/// Column side of the symmetric pass: the first position `j >= from` whose key (`keys[j]`, minus
/// the row's `offset` for l2) is `>= thresholds[j]`. Compares 32 keys with 32 thresholds per
/// step; uses AVX2 when the CPU has it (same answer either way).
#[inline]
fn next_column_candidate(
    keys: &[f32],
    offset: Option<f32>,
    thresholds: &[f32],
    from: usize,
    avx2: bool,
) -> Option<usize> {
    let thresholds = &thresholds[..keys.len()];
    #[cfg(target_arch = "x86_64")]
    if avx2 {
        // SAFETY: `avx2` is true only when the CPU reports AVX2 (checked in `KnnSearch::new`).
        return unsafe {
            match offset {
                Some(offset) => next_column_candidate_avx2::<true>(keys, offset, thresholds, from),
                None => next_column_candidate_avx2::<false>(keys, 0.0, thresholds, from),
            }
        };
    }
    let _ = avx2;
    match offset {
        Some(offset) => next_column_candidate_portable::<true>(keys, offset, thresholds, from),
        None => next_column_candidate_portable::<false>(keys, 0.0, thresholds, from),
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn next_column_candidate_avx2<const L2: bool>(
    keys: &[f32],
    offset: f32,
    thresholds: &[f32],
    from: usize,
) -> Option<usize> {
    next_column_candidate_portable::<L2>(keys, offset, thresholds, from)
}

#[inline(always)]
fn next_column_candidate_portable<const L2: bool>(
    keys: &[f32],
    offset: f32,
    thresholds: &[f32],
    from: usize,
) -> Option<usize> {
    let key = |value: f32| if L2 { value - offset } else { value };
    let passes = |j: usize| key(keys[j]) >= thresholds[j];
    let n = keys.len();
    let mut start = from;
    while start + SCAN_CHUNK <= n {
        let chunk: &[f32; SCAN_CHUNK] = keys[start..start + SCAN_CHUNK]
            .try_into()
            .expect("chunk length");
        let limits: &[f32; SCAN_CHUNK] = thresholds[start..start + SCAN_CHUNK]
            .try_into()
            .expect("chunk length");
        let mut hit = false;
        for j in 0..SCAN_CHUNK {
            hit |= key(chunk[j]) >= limits[j];
        }
        if hit {
            return (start..start + SCAN_CHUNK).find(|&j| passes(j));
        }
        start += SCAN_CHUNK;
    }
    (start..n).find(|&j| passes(j))
}

/// `tile[i * tile_stride + j] = dot(query i, reference j)` for an `n_query x n_ref` tile, with the
/// single-threaded `gemm` kernel (threads split the queries one level up).
pub fn gemm_tile(
    tile: &mut [f32],
    tile_stride: usize,
    queries: &[f32],
    n_query: usize,
    references: &[f32],
    n_ref: usize,
    dim: usize,
) {
    assert!(n_ref <= tile_stride);
    assert!(n_query == 0 || tile.len() >= (n_query - 1) * tile_stride + n_ref);
    assert!(queries.len() >= n_query * dim && references.len() >= n_ref * dim);
    if n_query == 0 || n_ref == 0 {
        return;
    }
    // SAFETY: the asserts above keep every index the kernel touches inside the three slices:
    // dst (i, j) at i * tile_stride + j, lhs (i, l) at i * dim + l, rhs (l, j) at j * dim + l.
    unsafe {
        gemm::gemm(
            n_query,
            n_ref,
            dim,
            tile.as_mut_ptr(),
            1,
            tile_stride as isize,
            false,
            queries.as_ptr(),
            1,
            dim as isize,
            references.as_ptr(),
            dim as isize,
            1,
            0.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reference::knn_naive;
    use ndarray::Array2;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    /// `n_rows` rows: each a copy of an earlier row with probability `duplicates`, else filled by
    /// `draw`; scaled to unit length when `unit` (a zero row becomes the first axis).
    fn drawn_rows(
        n_rows: usize,
        dim: usize,
        seed: u64,
        unit: bool,
        duplicates: f64,
        mut draw: impl FnMut(&mut ChaCha8Rng, &mut [f32]),
    ) -> Array2<f32> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut rows = Array2::<f32>::zeros((n_rows, dim));
        for i in 0..n_rows {
            if i > 2 && rng.gen_bool(duplicates) {
                let source = rng.gen_range(0..i);
                let copy = rows.row(source).to_owned();
                rows.row_mut(i).assign(&copy);
                continue;
            }
            draw(&mut rng, rows.row_mut(i).as_slice_mut().unwrap());
        }
        if unit {
            for mut row in rows.rows_mut() {
                let norm = canonical_dot(row.as_slice().unwrap(), row.as_slice().unwrap()).sqrt();
                if norm > 0.0 {
                    row.mapv_inplace(|v| v / norm);
                } else {
                    row[0] = 1.0;
                }
            }
        }
        rows
    }

    /// Random rows with deliberate ties: exact duplicate rows and rows at equal distance.
    fn rows_with_ties(n_rows: usize, dim: usize, seed: u64, unit: bool) -> Array2<f32> {
        drawn_rows(n_rows, dim, seed, unit, 0.2, |rng, row| {
            for value in row {
                // Few distinct values: many equal distances between distinct rows.
                *value = rng.gen_range(-2i32..=2) as f32 * 0.5 + rng.gen_range(0..2) as f32 * 0.25;
            }
        })
    }

    fn search_in_blocks(
        rows: &Array2<f32>,
        k: usize,
        metric: Metric,
        n_workers: usize,
        shape: TileShape,
        block_rows: usize,
    ) -> Neighbours {
        let n_rows = rows.nrows();
        let dim = rows.ncols();
        let data = rows.as_slice().unwrap();
        let mut search = KnnSearch::new(rows.view(), 0, k, metric, n_workers, shape);
        // Blocks in a rotated order, as the ring delivers them.
        let starts: Vec<usize> = (0..n_rows).step_by(block_rows).collect();
        let rotate = starts.len() / 2;
        for &start in starts[rotate..].iter().chain(&starts[..rotate]) {
            let end = (start + block_rows).min(n_rows);
            search.add_block(&data[start * dim..end * dim], start);
        }
        search.finish().expect("every query has k neighbours")
    }

    #[test]
    fn canonical_dot_is_close_to_the_f64_dot() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        for dim in [1usize, 7, 8, 13, 128, 300] {
            let a: Vec<f32> = (0..dim).map(|_| rng.gen_range(-1.0..1.0)).collect();
            let b: Vec<f32> = (0..dim).map(|_| rng.gen_range(-1.0..1.0)).collect();
            let exact: f64 = a.iter().zip(&b).map(|(x, y)| *x as f64 * *y as f64).sum();
            let bound: f64 = a
                .iter()
                .zip(&b)
                .map(|(x, y)| (*x as f64 * *y as f64).abs())
                .sum();
            let tolerance = dim as f64 * f64::from(f32::EPSILON) * bound + 1e-30;
            assert!(
                (canonical_dot(&a, &b) as f64 - exact).abs() <= tolerance,
                "dim {dim}"
            );
            let sq: f64 = a
                .iter()
                .zip(&b)
                .map(|(x, y)| (*x as f64 - *y as f64).powi(2))
                .sum();
            let got = canonical_sq_distance(&a, &b) as f64;
            assert!(
                (got - sq).abs() <= dim as f64 * 4.0 * f64::from(f32::EPSILON) * sq,
                "dim {dim}"
            );
        }
    }

    #[test]
    fn simd_and_portable_canonical_sums_have_the_same_bits() {
        let mut rng = ChaCha8Rng::seed_from_u64(9);
        for dim in [1usize, 5, 31, 32, 33, 64, 100, 128, 301] {
            for _ in 0..20 {
                let a: Vec<f32> = (0..dim).map(|_| rng.gen_range(-3.0..3.0)).collect();
                let b: Vec<f32> = (0..dim).map(|_| rng.gen_range(-3.0..3.0)).collect();
                let dot = canonical_portable::<false>(&a, &b);
                let sq = canonical_portable::<true>(&a, &b);
                assert_eq!(canonical_dot(&a, &b).to_bits(), dot.to_bits(), "dim {dim}");
                assert_eq!(
                    canonical_sq_distance(&a, &b).to_bits(),
                    sq.to_bits(),
                    "dim {dim}"
                );
            }
        }
    }

    #[test]
    fn gemm_tile_matches_the_canonical_dot_closely() {
        let rows = rows_with_ties(70, 37, 5, false);
        let data = rows.as_slice().unwrap();
        let stride = 50;
        let mut tile = vec![f32::NAN; 30 * stride];
        gemm_tile(
            &mut tile,
            stride,
            &data[..30 * 37],
            30,
            &data[20 * 37..],
            45,
            37,
        );
        for i in 0..30 {
            for j in 0..45 {
                let want = canonical_dot(
                    &data[i * 37..(i + 1) * 37],
                    &data[(20 + j) * 37..(21 + j) * 37],
                );
                assert!(
                    (tile[i * stride + j] - want).abs() <= 1e-4 * (1.0 + want.abs()),
                    "({i}, {j})"
                );
            }
        }
    }

    #[test]
    fn lists_equal_the_naive_oracle_for_every_tiling_and_thread_count() {
        for metric in [Metric::Cosine, Metric::L2, Metric::Ip] {
            let rows = rows_with_ties(157, 19, 11, metric == Metric::Cosine);
            for k in [1usize, 5, 16] {
                let (want_indices, want_distances) = knn_naive(rows.view(), k, metric);
                for (workers, shape, block_rows) in [
                    (1, TileShape::default(), 157),
                    (
                        3,
                        TileShape {
                            query_rows: 7,
                            ref_rows: 16,
                        },
                        40,
                    ),
                    (
                        2,
                        TileShape {
                            query_rows: 1,
                            ref_rows: 33,
                        },
                        1,
                    ),
                    (
                        4,
                        TileShape {
                            query_rows: 64,
                            ref_rows: 3,
                        },
                        156,
                    ),
                ] {
                    let got = search_in_blocks(&rows, k, metric, workers, shape, block_rows);
                    let case = format!(
                        "{metric:?} k={k} workers={workers} {shape:?} blocks of {block_rows}"
                    );
                    assert_eq!(got.indices, want_indices, "{case}");
                    let same_bits = got
                        .distances
                        .iter()
                        .zip(&want_distances)
                        .all(|(a, b)| a.to_bits() == b.to_bits());
                    assert!(same_bits, "{case}: distances differ");
                }
            }
        }
    }

    #[test]
    fn identical_rows_go_to_the_smaller_row_and_self_is_excluded() {
        let rows = Array2::from_elem((6, 4), 0.5f32);
        let got = search_in_blocks(&rows, 3, Metric::Cosine, 2, TileShape::default(), 4);
        assert_eq!(&got.indices[0..3], &[1, 2, 3]);
        assert_eq!(&got.indices[3..6], &[0, 2, 3]);
        assert_eq!(&got.indices[15..18], &[0, 1, 2]);
    }

    #[test]
    fn too_few_rows_names_the_first_short_query() {
        let rows = rows_with_ties(4, 3, 1, false);
        let mut search = KnnSearch::new(rows.view(), 10, 4, Metric::L2, 1, TileShape::default());
        search.add_block(rows.as_slice().unwrap(), 10);
        assert_eq!(search.finish().err(), Some(10));
    }

    /// Runs `work` on a local rayon pool of `threads` threads.
    fn on_pool<T: Send>(threads: usize, work: impl FnOnce() -> T + Send) -> T {
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .expect("rayon pool")
            .install(work)
    }

    /// The whole set against itself with the given pass (or the dispatching `add_block`).
    fn search_self(
        rows: &Array2<f32>,
        k: usize,
        metric: Metric,
        threads: usize,
        shape: TileShape,
        pass: Option<Pass>,
    ) -> Result<Neighbours, usize> {
        on_pool(threads, || {
            let data = rows.as_slice().unwrap();
            let mut search = KnnSearch::new(rows.view(), 0, k, metric, threads, shape);
            match pass {
                Some(pass) => search.add_block_with(data, 0, pass),
                None => search.add_block(data, 0),
            }
            search.finish()
        })
    }

    fn assert_same_lists(
        got: &Neighbours,
        want_indices: &[u64],
        want_distances: &[f32],
        case: &str,
    ) {
        assert_eq!(got.indices, want_indices, "{case}: indices differ");
        let same_bits = got.distances.len() == want_distances.len()
            && got
                .distances
                .iter()
                .zip(want_distances)
                .all(|(a, b)| a.to_bits() == b.to_bits());
        assert!(same_bits, "{case}: distances differ");
    }

    /// Tile shapes for the symmetric pass: one tile, tiles of one group per side, tiles of two
    /// or three groups per side with a short last side (157 and 83 rows), and groups of more than
    /// one strip (`STRIP_ROWS`).
    const SYMMETRIC_SHAPES: [TileShape; 7] = [
        TileShape {
            query_rows: 256,
            ref_rows: 512,
        },
        TileShape {
            query_rows: 3,
            ref_rows: 5,
        },
        TileShape {
            query_rows: 1,
            ref_rows: 2,
        },
        TileShape {
            query_rows: 7,
            ref_rows: 16,
        },
        TileShape {
            query_rows: 40,
            ref_rows: 3,
        },
        TileShape {
            query_rows: 4,
            ref_rows: 13,
        },
        TileShape {
            query_rows: 40,
            ref_rows: 80,
        },
    ];

    #[test]
    fn symmetric_pass_equals_the_plain_pass_and_the_oracle() {
        for metric in [Metric::Cosine, Metric::L2, Metric::Ip] {
            for (n_rows, dim, seed) in [(157usize, 19usize, 21u64), (83, 45, 22)] {
                let rows = rows_with_ties(n_rows, dim, seed, metric == Metric::Cosine);
                for k in [1usize, 4, 16] {
                    let (want_indices, want_distances) = knn_naive(rows.view(), k, metric);
                    for shape in SYMMETRIC_SHAPES {
                        for threads in [1usize, 3] {
                            let case = format!(
                                "{metric:?} n={n_rows} dim={dim} k={k} {shape:?} threads={threads}"
                            );
                            for pass in [Some(Pass::Plain), Some(Pass::Symmetric), None] {
                                let got = search_self(&rows, k, metric, threads, shape, pass)
                                    .expect("every query has k neighbours");
                                let case = format!("{case} {pass:?}");
                                assert_same_lists(&got, &want_indices, &want_distances, &case);
                            }
                        }
                    }
                }
            }
        }
    }

    /// The search of "rank" `rank` of a ring over `rows` split at `bounds`: its own block first
    /// (the symmetric pass), then the others as the ring delivers them. Returns the lists and the
    /// tile counts (skipped, computed).
    #[allow(clippy::too_many_arguments)]
    fn ring_search(
        rows: &Array2<f32>,
        bounds: &[usize],
        rank: usize,
        k: usize,
        metric: Metric,
        threads: usize,
        shape: TileShape,
    ) -> (Neighbours, (u64, u64)) {
        let dim = rows.ncols();
        let data = rows.as_slice().unwrap();
        let n_ranks = bounds.len() - 1;
        on_pool(threads, || {
            let (first, last) = (bounds[rank], bounds[rank + 1]);
            let queries = rows.slice(ndarray::s![first..last, ..]);
            let mut search = KnnSearch::new(queries, first, k, metric, threads, shape);
            for step in 0..n_ranks {
                let owner = (rank + n_ranks - step) % n_ranks;
                let (start, end) = (bounds[owner], bounds[owner + 1]);
                search.add_block(&data[start * dim..end * dim], start);
            }
            let counts = search.tile_counts();
            let lists = search.finish().expect("every query has k neighbours");
            (lists, counts)
        })
    }

    #[test]
    fn ring_order_with_the_own_block_first_equals_the_oracle() {
        // Three "ranks" of uneven size: each searches its slice, its own block first (the
        // symmetric pass), then the others' blocks (the plain pass), as the ring delivers them.
        for metric in [Metric::Cosine, Metric::L2, Metric::Ip] {
            let rows = rows_with_ties(131, 33, 31, metric == Metric::Cosine);
            let bounds = [0usize, 40, 41, 131];
            let k = 6;
            let (want_indices, want_distances) = knn_naive(rows.view(), k, metric);
            for threads in [1usize, 2, 4] {
                for shape in SYMMETRIC_SHAPES {
                    for rank in 0..3 {
                        let (first, last) = (bounds[rank], bounds[rank + 1]);
                        let (got, _) = ring_search(&rows, &bounds, rank, k, metric, threads, shape);
                        let case = format!("{metric:?} rank {rank} {shape:?} threads={threads}");
                        assert_same_lists(
                            &got,
                            &want_indices[first * k..last * k],
                            &want_distances[first * k..last * k],
                            &case,
                        );
                    }
                }
            }
        }
    }

    /// Rows in `n_blobs` tight, well separated blobs (in shuffled order), with duplicate rows and
    /// rows on a coarse grid inside each blob, so that many distances tie.
    fn clustered_rows(
        n_rows: usize,
        dim: usize,
        n_blobs: usize,
        seed: u64,
        unit: bool,
    ) -> Array2<f32> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5eed);
        let centres: Vec<f32> = (0..n_blobs * dim)
            .map(|_| rng.gen_range(-8i32..=8) as f32)
            .collect();
        drawn_rows(n_rows, dim, seed, unit, 0.1, |rng, row| {
            let blob = rng.gen_range(0..n_blobs);
            for (value, centre) in row.iter_mut().zip(&centres[blob * dim..]) {
                *value = centre + rng.gen_range(-2i32..=2) as f32 * 0.25;
            }
        })
    }

    #[test]
    fn tiles_ruled_out_by_their_balls_leave_the_lists_exact() {
        // Clustered rows, so whole tiles are skipped: three "ranks" of uneven size, own block
        // first (symmetric pass) then the others (plain pass), against the oracle.
        let shapes = [
            TileShape::default(),
            TileShape {
                query_rows: 16,
                ref_rows: 32,
            },
            TileShape {
                query_rows: 5,
                ref_rows: 7,
            },
        ];
        for metric in [Metric::Cosine, Metric::L2, Metric::Ip] {
            let rows = clustered_rows(900, 24, 12, 77, metric == Metric::Cosine);
            let bounds = [0usize, 500, 501, 900];
            let k = 7;
            let (want_indices, want_distances) = knn_naive(rows.view(), k, metric);
            let mut skipped = 0;
            for threads in [1usize, 3] {
                for shape in shapes {
                    for rank in 0..3 {
                        let (first, last) = (bounds[rank], bounds[rank + 1]);
                        let (got, counts) =
                            ring_search(&rows, &bounds, rank, k, metric, threads, shape);
                        skipped += counts.0;
                        let case = format!("{metric:?} rank {rank} {shape:?} threads={threads}");
                        assert_same_lists(
                            &got,
                            &want_indices[first * k..last * k],
                            &want_distances[first * k..last * k],
                            &case,
                        );
                    }
                }
            }
            assert!(skipped > 0, "{metric:?}: no tile was ruled out");
        }
    }

    #[test]
    fn symmetric_pass_breaks_ties_between_identical_rows_by_row() {
        let rows = Array2::from_elem((11, 4), 0.5f32);
        for shape in SYMMETRIC_SHAPES {
            for threads in [1usize, 3] {
                let got = search_self(&rows, 3, Metric::L2, threads, shape, Some(Pass::Symmetric))
                    .expect("every query has k neighbours");
                assert_eq!(&got.indices[0..3], &[1, 2, 3], "{shape:?}");
                assert_eq!(&got.indices[3..6], &[0, 2, 3], "{shape:?}");
                assert_eq!(&got.indices[30..33], &[0, 1, 2], "{shape:?}");
                assert!(got.distances.iter().all(|&d| d == 0.0));
            }
        }
    }

    #[test]
    fn a_row_without_finite_distances_is_reported_by_both_passes() {
        let mut rows = rows_with_ties(30, 8, 41, false);
        rows.row_mut(17).fill(f32::NAN);
        for shape in SYMMETRIC_SHAPES {
            for pass in [Pass::Plain, Pass::Symmetric] {
                let got = search_self(&rows, 2, Metric::L2, 2, shape, Some(pass));
                assert_eq!(got.err(), Some(17), "{shape:?} {pass:?}");
            }
        }
    }

    #[test]
    fn a_block_with_the_queries_rows_but_other_values_takes_the_plain_pass() {
        let queries = rows_with_ties(20, 8, 51, false);
        let mut block = queries.clone();
        block[[3, 2]] += 1.0;
        let search = KnnSearch::new(queries.view(), 5, 2, Metric::L2, 2, TileShape::default());
        assert!(search.is_query_set(queries.as_slice().unwrap(), 5));
        assert!(!search.is_query_set(queries.as_slice().unwrap(), 4));
        assert!(!search.is_query_set(&queries.as_slice().unwrap()[..19 * 8], 5));
        assert!(!search.is_query_set(block.as_slice().unwrap(), 5));
    }

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

    #[test]
    fn column_scan_simd_and_portable_agree() {
        let mut rng = ChaCha8Rng::seed_from_u64(61);
        for n in [1usize, 31, 32, 33, 95, 256] {
            for _ in 0..50 {
                let mut keys: Vec<f32> = (0..n).map(|_| rng.gen_range(-1.0..1.0)).collect();
                let thresholds: Vec<f32> = (0..n)
                    .map(|_| match rng.gen_range(0..10) {
                        0 => f32::NEG_INFINITY,
                        _ => rng.gen_range(0.5..1.2),
                    })
                    .collect();
                keys[rng.gen_range(0..n)] = f32::NAN;
                let offset = rng.gen_range(-0.3f32..0.3);
                for with_offset in [None, Some(offset)] {
                    let mut from = 0;
                    let mut simd_hits = Vec::new();
                    while let Some(j) =
                        next_column_candidate(&keys, with_offset, &thresholds, from, has_avx2())
                    {
                        simd_hits.push(j);
                        from = j + 1;
                    }
                    let want: Vec<usize> = (0..n)
                        .filter(|&j| keys[j] - with_offset.unwrap_or(0.0) >= thresholds[j])
                        .collect();
                    let portable: Vec<usize> = (0..n)
                        .filter(|&j| {
                            next_column_candidate(&keys, with_offset, &thresholds, j, false)
                                == Some(j)
                        })
                        .collect();
                    assert_eq!(simd_hits, want, "n={n} offset {with_offset:?}");
                    assert_eq!(portable, want, "n={n} offset {with_offset:?}");
                }
            }
        }
    }
}
