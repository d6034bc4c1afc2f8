//! Graph checks: the distributed similarity graph, its connected components and PageRank, each
//! rank's rows against the naive whole-problem graph and the serial run. The graph cases here are
//! shared with the spectral checks.

use embsolve::distributed::graph::DistGraph;
use embsolve_comm::{Comm, SerialComm};
use embsolve_kernels::layout::RowLayout;
use embsolve_kernels::types::{GraphParams, KnnLists, Metric};

/// A whole-problem kNN list set (every rank builds the same) for the graph checks.
pub(super) struct GraphCase {
    pub(super) name: &'static str,
    pub(super) n_rows: usize,
    pub(super) metric: Metric,
    pub(super) section: GraphParams,
    pub(super) knn: KnnLists,
}

impl GraphCase {
    /// This rank's rows of the lists.
    fn local_knn(&self, layout: &RowLayout, rank: usize) -> KnnLists {
        let range = layout.range(rank);
        let k = self.knn.k;
        KnnLists {
            k,
            indices: self.knn.indices[range.start * k..range.end * k].to_vec(),
            distances: self.knn.distances[range.start * k..range.end * k].to_vec(),
        }
    }

    /// The graph of this rank's rows, and the serial graph of the whole problem.
    pub(super) fn build(&self, comm: &dyn Comm) -> Result<(DistGraph, DistGraph), String> {
        let layout = RowLayout::new(self.n_rows, comm.size());
        let local = self.local_knn(&layout, comm.rank());
        let graph = DistGraph::build(comm, &layout, &local, &self.section, self.metric)
            .map_err(|e| format!("{}: distributed build: {e}", self.name))?;
        let serial = DistGraph::build(
            &SerialComm,
            &RowLayout::new(self.n_rows, 1),
            &self.knn,
            &self.section,
            self.metric,
        )
        .map_err(|e| format!("{}: serial build: {e}", self.name))?;
        Ok((graph, serial))
    }
}

/// Lists whose kept neighbours are given (similarity 0.9 - small steps), padded to `k` with
/// entries of similarity -0.9 that `min_similarity = 0` drops.
pub(super) fn crafted_knn(
    n_rows: usize,
    k: usize,
    neighbours: impl Fn(usize) -> Vec<usize>,
) -> KnnLists {
    let mut indices = Vec::with_capacity(n_rows * k);
    let mut distances = Vec::with_capacity(n_rows * k);
    for row in 0..n_rows {
        let kept = neighbours(row);
        assert!(kept.len() <= k, "row {row} has more than k neighbours");
        for (rank, &col) in kept.iter().enumerate() {
            indices.push(col as u64);
            distances.push(0.1 + 0.01 * rank as f32);
        }
        for pad in 0..k - kept.len() {
            indices.push(((row + 1 + pad) % n_rows) as u64);
            distances.push(1.9);
        }
    }
    KnnLists {
        k,
        indices,
        distances,
    }
}

/// Seeded clustered points on the unit sphere, with their naive kNN lists.
fn blob_knn(n_rows: usize, dim: usize, k: usize, seed: u64) -> KnnLists {
    use rand::{Rng, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let n_centres = 6;
    let centres: Vec<f32> = (0..n_centres * dim)
        .map(|_| rng.gen_range(-1.0..1.0))
        .collect();
    let mut points = Vec::with_capacity(n_rows * dim);
    for _ in 0..n_rows {
        let c = rng.gen_range(0..n_centres);
        let mut p: Vec<f32> = (0..dim)
            .map(|d| centres[c * dim + d] + rng.gen_range(-0.5..0.5))
            .collect();
        let norm = p.iter().map(|x| x * x).sum::<f32>().sqrt();
        p.iter_mut().for_each(|x| *x /= norm);
        points.extend(p);
    }
    let (indices, distances) =
        embsolve_kernels::reference::graph_knn_naive(&points, dim, k, Metric::Cosine);
    KnnLists {
        k,
        indices,
        distances,
    }
}

/// The graph shapes of the checks: clustered points, a sparse random graph with many components
/// and isolated vertices, chains, a star; plus a chain of `long_chain` rows when given.
pub(super) fn graph_cases(long_chain: Option<usize>) -> Vec<GraphCase> {
    use embsolve_kernels::types::{EdgeWeight, Symmetrize};
    use rand::{Rng, SeedableRng};
    let cut = |symmetrize, weight| GraphParams {
        symmetrize,
        weight,
        min_similarity: 0.0,
    };
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(17);
    let n_random = 401;
    let random_lists: Vec<Vec<usize>> = (0..n_random)
        .map(|row| {
            let mut kept: Vec<usize> = (0..rng.gen_range(0..2usize))
                .map(|_| rng.gen_range(0..n_random))
                .filter(|&col| col != row)
                .collect();
            kept.dedup();
            kept
        })
        .collect();
    let mut cases = vec![
        GraphCase {
            name: "blobs-union-gaussian",
            n_rows: 500,
            metric: Metric::Cosine,
            section: GraphParams {
                symmetrize: Symmetrize::Union,
                weight: EdgeWeight::Gaussian,
                min_similarity: 0.55,
            },
            knn: blob_knn(500, 8, 6, 3),
        },
        GraphCase {
            name: "blobs-mutual-similarity",
            n_rows: 500,
            metric: Metric::Cosine,
            section: GraphParams {
                symmetrize: Symmetrize::Mutual,
                weight: EdgeWeight::Similarity,
                min_similarity: 0.3,
            },
            knn: blob_knn(500, 8, 6, 4),
        },
        GraphCase {
            name: "random-sparse",
            n_rows: n_random,
            metric: Metric::Cosine,
            section: cut(Symmetrize::Union, EdgeWeight::Similarity),
            knn: crafted_knn(n_random, 3, |row| random_lists[row].clone()),
        },
        GraphCase {
            name: "chain",
            n_rows: 301,
            metric: Metric::Cosine,
            section: cut(Symmetrize::Union, EdgeWeight::Binary),
            knn: crafted_knn(301, 2, |row| {
                [row.wrapping_sub(1), row + 1]
                    .into_iter()
                    .filter(|&c| c < 301)
                    .collect()
            }),
        },
        GraphCase {
            name: "star",
            n_rows: 257,
            metric: Metric::Cosine,
            section: cut(Symmetrize::Union, EdgeWeight::Similarity),
            knn: crafted_knn(257, 3, |row| if row == 0 { vec![1, 2, 3] } else { vec![0] }),
        },
    ];
    // Fewer rows than ranks at 4 ranks: some ranks own nothing.
    cases.push(GraphCase {
        name: "tiny",
        n_rows: 3,
        metric: Metric::Cosine,
        section: cut(Symmetrize::Union, EdgeWeight::Gaussian),
        knn: crafted_knn(3, 2, |row| if row == 0 { vec![1] } else { vec![] }),
    });
    if let Some(n) = long_chain {
        cases.push(GraphCase {
            name: "long-chain",
            n_rows: n,
            metric: Metric::Cosine,
            // Reverse edges only: each row lists its successor, so union needs the all-to-all.
            section: cut(Symmetrize::Union, EdgeWeight::Binary),
            knn: crafted_knn(n, 1, |row| if row + 1 < n { vec![row + 1] } else { vec![] }),
        });
    }
    cases
}

/// Each rank's rows of the graph equal the naive whole-problem graph's rows (same columns, same
/// weights), and the normalised adjacency gives the serial answer bit for bit.
pub(super) fn check_graph_build(comm: &dyn Comm) -> Result<(), String> {
    use embsolve_kernels::linop::LinOp;
    for case in graph_cases(None) {
        let (graph, serial) = case.build(comm)?;
        let expected = embsolve_kernels::reference::similarity_graph_naive(
            case.n_rows,
            case.knn.k,
            &case.knn.indices,
            &case.knn.distances,
            &case.section,
            case.metric,
        );
        let range = graph.layout.range(comm.rank());
        let expected_local: Vec<((u64, u64), f64)> = expected
            .range((range.start as u64, 0)..(range.end as u64, 0))
            .map(|(&key, &w)| (key, w))
            .collect();
        let got = graph.local_edges();
        if got.len() != expected_local.len() {
            return Err(format!(
                "{}: {} local entries, naive graph has {}",
                case.name,
                got.len(),
                expected_local.len()
            ));
        }
        for ((row, col, w), ((er, ec), ew)) in got.iter().zip(&expected_local) {
            if (row, col) != (er, ec) || (w - ew).abs() > 1e-15 {
                return Err(format!(
                    "{}: entry ({row}, {col}, {w}) but naive ({er}, {ec}, {ew})",
                    case.name
                ));
            }
        }
        if graph.n_edges * 2 != expected.len() as u64 {
            return Err(format!("{}: {} edges", case.name, graph.n_edges));
        }
        let x_global: Vec<f64> = (0..case.n_rows)
            .map(|i| ((i * 7919) % 101) as f64 / 50.0 - 1.0)
            .collect();
        let mut y_serial = vec![0.0; case.n_rows];
        serial
            .normalized_adjacency(&SerialComm)
            .apply(&x_global, &mut y_serial);
        let op = graph.normalized_adjacency(comm);
        let mut y = vec![0.0; op.local_len()];
        op.apply(&x_global[range.clone()], &mut y);
        if y != y_serial[range] {
            return Err(format!(
                "{}: normalised adjacency differs from serial",
                case.name
            ));
        }
    }
    Ok(())
}

/// Component labels equal the breadth-first-search labels of the whole graph.
/// The million-row chain shows that the rounds do not grow with the diameter.
pub(super) fn check_graph_components(comm: &dyn Comm) -> Result<(), String> {
    for case in graph_cases(Some(1_000_000)) {
        let (graph, serial) = case.build(comm)?;
        let edges: Vec<(usize, usize)> = serial
            .local_edges()
            .iter()
            .filter(|e| e.0 < e.1)
            .map(|e| (e.0 as usize, e.1 as usize))
            .collect();
        let expected = embsolve_kernels::reference::components_bfs(case.n_rows, &edges);
        let expected_count = expected
            .iter()
            .enumerate()
            .filter(|&(i, &l)| l == i as u64)
            .count() as u64;
        let (labels, n_components) =
            embsolve::distributed::components::connected_components(comm, &graph);
        let range = graph.layout.range(comm.rank());
        for (offset, (&label, &want)) in labels.iter().zip(&expected[range.clone()]).enumerate() {
            if label as u64 != want {
                return Err(format!(
                    "{}: row {} has label {label}, expected {want}",
                    case.name,
                    range.start + offset
                ));
            }
        }
        if n_components != expected_count {
            return Err(format!(
                "{}: {n_components} components, expected {expected_count}",
                case.name
            ));
        }
        let isolated = (0..case.n_rows)
            .filter(|&i| serial.adjacency.row(i).0.is_empty())
            .count();
        if case.name == "random-sparse" && (isolated == 0 || expected_count < 50) {
            return Err(format!(
                "random-sparse should have isolated vertices and many components ({isolated}, {expected_count})"
            ));
        }
    }
    Ok(())
}

/// PageRank scores equal the serial run's bit for bit, and the dense power iteration to 1e-9 (L1).
pub(super) fn check_graph_pagerank(comm: &dyn Comm) -> Result<(), String> {
    let params = embsolve::config::PagerankSection::default();
    for case in graph_cases(Some(200_000)) {
        let (graph, serial) = case.build(comm)?;
        let outcome = embsolve::distributed::pagerank::pagerank(comm, &graph, &params);
        let whole = embsolve::distributed::pagerank::pagerank(&SerialComm, &serial, &params);
        let range = graph.layout.range(comm.rank());
        if outcome.scores != whole.scores[range.clone()]
            || outcome.iterations != whole.iterations
            || outcome.residual != whole.residual
        {
            return Err(format!(
                "{}: scores, iterations ({} vs {}) or residual differ from the serial run",
                case.name, outcome.iterations, whole.iterations
            ));
        }
        // A plain sum of n scores rounds by up to about n eps.
        let total: f64 = whole.scores.iter().sum();
        if (total - 1.0).abs() > case.n_rows as f64 * f64::EPSILON || whole.residual >= params.tol {
            return Err(format!(
                "{}: scores sum to {total}, residual {}",
                case.name, whole.residual
            ));
        }
        if case.n_rows <= 1000 {
            let edges: Vec<(usize, usize, f64)> = serial
                .local_edges()
                .iter()
                .filter(|e| e.0 < e.1)
                .map(|e| (e.0 as usize, e.1 as usize, e.2))
                .collect();
            let (dense, _, _) = embsolve_kernels::reference::pagerank_dense(
                case.n_rows,
                &edges,
                params.damping,
                params.tol,
                params.max_iter,
            );
            let l1: f64 = whole
                .scores
                .iter()
                .zip(&dense)
                .map(|(a, b)| (a - b).abs())
                .sum();
            if l1 > 1e-9 {
                return Err(format!("{}: L1 {l1:e} from the dense oracle", case.name));
            }
        }
    }
    Ok(())
}
