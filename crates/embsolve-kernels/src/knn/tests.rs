//! Tests of the whole search against the naive oracle: every tiling, thread count, block order
//! and pass gives the same lists, bit for bit.

use super::search::{BlockIds, Pass};
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
                let case =
                    format!("{metric:?} k={k} workers={workers} {shape:?} blocks of {block_rows}");
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
            Some(pass) => search.add_block_with(data, BlockIds::Consecutive(0), pass),
            None => search.add_block(data, 0),
        }
        search.finish()
    })
}

fn assert_same_lists(got: &Neighbours, want_indices: &[u64], want_distances: &[f32], case: &str) {
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
fn clustered_rows(n_rows: usize, dim: usize, n_blobs: usize, seed: u64, unit: bool) -> Array2<f32> {
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
    assert!(search.is_query_set(queries.as_slice().unwrap(), BlockIds::Consecutive(5)));
    assert!(!search.is_query_set(queries.as_slice().unwrap(), BlockIds::Consecutive(4)));
    assert!(!search.is_query_set(
        &queries.as_slice().unwrap()[..19 * 8],
        BlockIds::Consecutive(5)
    ));
    assert!(!search.is_query_set(block.as_slice().unwrap(), BlockIds::Consecutive(5)));
}

#[test]
fn bounded_lists_keep_exactly_the_rows_at_or_below_the_bound() {
    let k = 6;
    for metric in [Metric::Cosine, Metric::L2, Metric::Ip] {
        let rows = rows_with_ties(260, 20, 17, metric == Metric::Cosine);
        let (n, dim) = rows.dim();
        let data = rows.as_slice().unwrap();
        let (naive_i, naive_d) = knn_naive(rows.view(), k, metric);
        // Bounds: the true k-th distance (the lists must come back whole), the 3rd distance
        // (only rows at or below it), and none.
        let bounds: Vec<f32> = (0..n)
            .map(|q| match q % 3 {
                0 => naive_d[q * k + k - 1],
                1 => naive_d[q * k + 2],
                _ => f32::INFINITY,
            })
            .collect();
        for block_rows in [37, n] {
            let mut search = KnnSearch::new(
                rows.view(),
                0,
                k,
                metric,
                2,
                TileShape {
                    query_rows: 16,
                    ref_rows: 24,
                },
            );
            search.set_bounds(&bounds);
            for start in (0..n).step_by(block_rows) {
                let end = (start + block_rows).min(n);
                search.add_block_with_ids(
                    &data[start * dim..end * dim],
                    &(start as u64..end as u64).collect::<Vec<_>>(),
                );
            }
            let found = search.finish_partial();
            for q in 0..n {
                let list = q * k..(q + 1) * k;
                let kept = naive_d[list.clone()]
                    .iter()
                    .take_while(|&&d| d <= bounds[q])
                    .count();
                assert_eq!(
                    found.indices[q * k..q * k + kept],
                    naive_i[q * k..q * k + kept],
                    "{metric:?} query {q}"
                );
                assert!(found.indices[q * k + kept..(q + 1) * k]
                    .iter()
                    .all(|&i| i == EMPTY_ROW));
                assert_eq!(
                    found.distances[q * k..q * k + kept],
                    naive_d[q * k..q * k + kept]
                );
            }
        }
    }
}
