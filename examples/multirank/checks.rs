//! `embsolve selftest`: multi-rank checks run under `mpirun -n P`. Every rank solves a seeded
//! problem distributed and checks its slice against the serial whole-problem answer; a failure
//! names the check and the rank.

use embsolve_comm::{Comm, SerialComm};
use crate::distributed::allreduce_exact;
use embsolve_kernels::exact::ExactSum;
use embsolve_kernels::layout::RowLayout;

/// One named check: Ok, or a message saying what differed.
pub type Check = fn(&dyn Comm) -> Result<(), String>;

/// Every registered check.
pub fn checks() -> Vec<(&'static str, Check)> {
    vec![
        ("exact_allreduce", check_exact_allreduce),
        ("io_read_blocks", check_io_read_blocks),
        ("knn_ring_cosine", check_knn_ring_cosine),
        ("knn_ring_l2", check_knn_ring_l2),
        ("knn_ring_ip", check_knn_ring_ip),
        ("knn_fewer_rows_than_ranks", check_knn_fewer_rows_than_ranks),
        ("graph_build", check_graph_build),
        ("graph_components", check_graph_components),
        ("graph_pagerank", check_graph_pagerank),
        (
            "spectral_component_vectors",
            check_spectral_component_vectors,
        ),
        ("spectral_lanczos", check_spectral_lanczos),
        ("spectral_by_component", check_spectral_by_component),
        ("spectral_kmeans", check_spectral_kmeans),
        ("spectral_clustering", check_spectral_clustering),
        ("spectral_ari", check_spectral_ari),
        ("fft_tracks", check_fft_tracks),
    ]
}

/// Run every check (or those whose name contains `filter`); returns the number of failures.
pub fn run(comm: &dyn Comm, filter: Option<&str>) -> usize {
    let mut failures = 0;
    for (name, check) in checks() {
        if filter.is_some_and(|f| !name.contains(f)) {
            continue;
        }
        let outcome = check(comm);
        let mut failed = [outcome.is_err() as u64];
        comm.allreduce_sum_u64(&mut failed);
        if let Err(message) = &outcome {
            eprintln!(
                "selftest {name}: FAILED on rank {} of {}: {message}",
                comm.rank(),
                comm.size()
            );
        }
        if failed[0] > 0 {
            failures += 1;
        } else if comm.rank() == 0 {
            println!("selftest {name}: ok on {} ranks", comm.size());
        }
    }
    failures
}

/// Exact sums of a distributed vector equal the serial sum bit for bit.
fn check_exact_allreduce(comm: &dyn Comm) -> Result<(), String> {
    let n = 10_007;
    let value = |i: usize| ((i * 2_654_435_761) % 1000) as f64 * 1e-3 - 0.4;
    let layout = RowLayout::new(n, comm.size());
    let mut local = [ExactSum::default()];
    layout
        .range(comm.rank())
        .for_each(|i| local[0].add(value(i)));
    allreduce_exact(comm, &mut local);
    let mut serial = [ExactSum::default()];
    (0..n).for_each(|i| serial[0].add(value(i)));
    allreduce_exact(&SerialComm, &mut serial);
    if local != serial {
        return Err(format!(
            "distributed {:?} != serial {:?}",
            local[0], serial[0]
        ));
    }
    Ok(())
}

/// Every rank reads its row block of generated Parquet, HDF5 and npy datasets (rank 0 scans and
/// broadcasts the dataset description, as the pipeline does) and compares it with the same rows
/// of a serial read of the whole dataset.
fn check_io_read_blocks(comm: &dyn Comm) -> Result<(), String> {
    use crate::config::{InputFormat, InputSection};
    use embsolve_io::{self, generate, Format};
    let dir: std::path::PathBuf = embsolve_comm::broadcast_json(
        comm,
        0,
        Some(&std::env::temp_dir().join(format!("embsolve-selftest-io-{}", std::process::id()))),
    );
    let mut outcome = Ok(());
    for (format, shards) in [(Format::Parquet, 7), (Format::Hdf5, 3), (Format::Npy, 4)] {
        let path = dir.join(format.name());
        let made = if comm.rank() == 0 {
            generate::blobs(&generate::BlobsParams {
                n_rows: 1001,
                dim: 5,
                clusters: 3,
                noise: 0.5,
                seed: 5,
                format,
                shards,
                half: format == Format::Parquet,
                out: path.clone(),
            })
            .map(|_| ())
        } else {
            Ok(())
        };
        comm.barrier();
        let input = InputSection {
            path: path.clone(),
            format: InputFormat::Auto,
            column: "embedding".into(),
            id_column: "id".into(),
            label_column: "label".into(),
        };
        let scanned = if comm.rank() == 0 {
            Some(made.and_then(|()| io::scan(&input)).map_err(|e| e.message))
        } else {
            None
        };
        let scanned: Result<io::DatasetInfo, String> =
            embsolve_comm::broadcast_json(comm, 0, scanned.as_ref());
        let checked = scanned.and_then(|info| {
            let layout = RowLayout::new(info.n_rows, comm.size());
            let range = layout.range(comm.rank());
            let block = io::read_rows(&info, &input, range.clone()).map_err(|e| e.message)?;
            let whole = io::read_rows(&info, &input, 0..info.n_rows).map_err(|e| e.message)?;
            let expected = whole.embeddings.slice(ndarray::s![range.clone(), ..]);
            if block.embeddings != expected {
                return Err(format!(
                    "{}: rows {range:?} differ from the serial read",
                    format.name()
                ));
            }
            let ids: Vec<i64> = range.clone().map(|r| r as i64).collect();
            if block.ids != embsolve_kernels::results::Ids::Int(ids) {
                return Err(format!(
                    "{}: ids of rows {range:?} are wrong",
                    format.name()
                ));
            }
            let labels = whole.labels.as_ref().map(|l| l[range.clone()].to_vec());
            if block.labels != labels {
                return Err(format!(
                    "{}: labels of rows {range:?} differ",
                    format.name()
                ));
            }
            Ok(())
        });
        if outcome.is_ok() {
            outcome = checked;
        }
    }
    comm.barrier();
    if comm.rank() == 0 {
        let _ = std::fs::remove_dir_all(&dir);
    }
    outcome
}

// ---- kNN checks ----

/// Seeded rows with deliberate ties: exact duplicates and few distinct values (equal distances
/// between distinct rows). Unit length for cosine. Every rank builds the same matrix.
fn knn_rows(n_rows: usize, dim: usize, seed: u64, unit: bool) -> ndarray::Array2<f32> {
    use rand::{Rng, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut rows = ndarray::Array2::<f32>::zeros((n_rows, dim));
    for i in 0..n_rows {
        if i > 0 && rng.gen_bool(0.15) {
            let copy = rows.row(rng.gen_range(0..i)).to_owned();
            rows.row_mut(i).assign(&copy);
            continue;
        }
        for value in rows.row_mut(i).iter_mut() {
            *value = rng.gen_range(-3i32..=3) as f32 * 0.25;
        }
        if unit && rows.row(i).iter().all(|v| *v == 0.0) {
            rows[[i, 0]] = 1.0;
        }
    }
    if unit {
        for mut row in rows.rows_mut() {
            let norm = row.iter().map(|v| v * v).sum::<f32>().sqrt();
            row.mapv_inplace(|v| v / norm);
        }
    }
    rows
}

/// Ring kNN on `comm` (with small tiles, so blocks split into many tiles) against the serial
/// brute-force oracle on the whole matrix: identical indices and distance bits on every rank.
fn check_knn_against_oracle(
    comm: &dyn Comm,
    n_rows: usize,
    dim: usize,
    k: usize,
    metric: crate::config::Metric,
) -> Result<(), String> {
    use crate::backend::cpu::CpuKnn;
    use embsolve_kernels::knn::TileShape;
    let rows = knn_rows(
        n_rows,
        dim,
        17 + n_rows as u64,
        metric == crate::config::Metric::Cosine,
    );
    let layout = RowLayout::new(n_rows, comm.size());
    let range = layout.range(comm.rank());
    let local = rows.slice(ndarray::s![range.clone(), ..]);
    let (want_indices, want_distances) =
        embsolve_kernels::reference::knn_naive(rows.view(), k, metric);
    for shape in [
        TileShape::default(),
        TileShape {
            query_rows: 5,
            ref_rows: 9,
        },
    ] {
        let mut backend = CpuKnn::with_tile_shape(shape);
        let lists = crate::distributed::knn::exact_knn(comm, &layout, local, k, metric, &mut backend)
            .map_err(|e| format!("exact_knn failed: {e}"))?;
        let want = range.start * k..range.end * k;
        if lists.indices != want_indices[want.clone()] {
            let first = lists
                .indices
                .iter()
                .zip(&want_indices[want.clone()])
                .position(|(a, b)| a != b)
                .unwrap_or(0);
            return Err(format!(
                "{metric:?} tiles {shape:?}: global row {} neighbour {} is {:?}, oracle {}",
                range.start + first / k,
                first % k,
                lists.indices.get(first),
                want_indices[want.start + first]
            ));
        }
        let same_bits = lists
            .distances
            .iter()
            .zip(&want_distances[want])
            .all(|(a, b)| a.to_bits() == b.to_bits());
        if !same_bits {
            return Err(format!(
                "{metric:?} tiles {shape:?}: distances differ from the oracle"
            ));
        }
    }
    Ok(())
}

fn check_knn_ring_cosine(comm: &dyn Comm) -> Result<(), String> {
    check_knn_against_oracle(comm, 601, 21, 7, crate::config::Metric::Cosine)
}

fn check_knn_ring_l2(comm: &dyn Comm) -> Result<(), String> {
    check_knn_against_oracle(comm, 433, 16, 16, crate::config::Metric::L2)
}

fn check_knn_ring_ip(comm: &dyn Comm) -> Result<(), String> {
    check_knn_against_oracle(comm, 250, 9, 5, crate::config::Metric::Ip)
}

/// Three rows on up to four ranks: some ranks own no rows and still pass blocks on; k = 2 is the
/// largest valid k, and k = 3 is a config error on every rank.
fn check_knn_fewer_rows_than_ranks(comm: &dyn Comm) -> Result<(), String> {
    check_knn_against_oracle(comm, 3, 4, 2, crate::config::Metric::L2)?;
    let rows = knn_rows(3, 4, 1, false);
    let layout = RowLayout::new(3, comm.size());
    let local = rows.slice(ndarray::s![layout.range(comm.rank()), ..]);
    let mut backend = crate::backend::cpu::CpuKnn::new();
    match crate::distributed::knn::exact_knn(
        comm,
        &layout,
        local,
        3,
        crate::config::Metric::L2,
        &mut backend,
    ) {
        Err(e) if e.kind == embsolve_kernels::error::ErrorKind::Config && e.message.contains("knn.k") => {
            Ok(())
        }
        Err(e) => Err(format!("k = n_rows gave the wrong error: {e}")),
        Ok(_) => Err("k = n_rows was accepted".into()),
    }
}
// ---- end of kNN checks ----

/// A whole-problem kNN list set (every rank builds the same) for the graph checks.
struct GraphCase {
    name: &'static str,
    n_rows: usize,
    metric: crate::config::Metric,
    section: crate::config::GraphSection,
    knn: embsolve_kernels::types::KnnLists,
}

impl GraphCase {
    /// This rank's rows of the lists.
    fn local_knn(&self, layout: &RowLayout, rank: usize) -> embsolve_kernels::types::KnnLists {
        let range = layout.range(rank);
        let k = self.knn.k;
        embsolve_kernels::types::KnnLists {
            k,
            indices: self.knn.indices[range.start * k..range.end * k].to_vec(),
            distances: self.knn.distances[range.start * k..range.end * k].to_vec(),
        }
    }

    /// The graph of this rank's rows, and the serial graph of the whole problem.
    fn build(
        &self,
        comm: &dyn Comm,
    ) -> Result<(crate::distributed::graph::DistGraph, crate::distributed::graph::DistGraph), String> {
        use crate::distributed::graph::DistGraph;
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
fn crafted_knn(
    n_rows: usize,
    k: usize,
    neighbours: impl Fn(usize) -> Vec<usize>,
) -> embsolve_kernels::types::KnnLists {
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
    embsolve_kernels::types::KnnLists {
        k,
        indices,
        distances,
    }
}

/// Seeded clustered points on the unit sphere, with their naive kNN lists.
fn blob_knn(n_rows: usize, dim: usize, k: usize, seed: u64) -> embsolve_kernels::types::KnnLists {
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
        embsolve_kernels::reference::graph_knn_naive(&points, dim, k, crate::config::Metric::Cosine);
    embsolve_kernels::types::KnnLists {
        k,
        indices,
        distances,
    }
}

/// The graph shapes of the checks: clustered points, a sparse random graph with many components
/// and isolated vertices, chains, a star; plus a chain of `long_chain` rows when given.
fn graph_cases(long_chain: Option<usize>) -> Vec<GraphCase> {
    use crate::config::{EdgeWeight, GraphSection, Metric, Symmetrize};
    use rand::{Rng, SeedableRng};
    let cut = |symmetrize, weight| GraphSection {
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
            section: GraphSection {
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
            section: GraphSection {
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
fn check_graph_build(comm: &dyn Comm) -> Result<(), String> {
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
fn check_graph_components(comm: &dyn Comm) -> Result<(), String> {
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
        let (labels, n_components) = crate::distributed::components::connected_components(comm, &graph);
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

/// The eigenvalue-1 vectors known from the components (the spectral deflation) equal the serial
/// ones bit for bit, with few (all kept) and many (largest kept) components.
fn check_spectral_component_vectors(comm: &dyn Comm) -> Result<(), String> {
    for case in graph_cases(None) {
        let (graph, serial) = case.build(comm)?;
        let (labels, _) = crate::distributed::components::connected_components(comm, &graph);
        let (serial_labels, _) =
            crate::distributed::components::connected_components(&SerialComm, &serial);
        for n_eigs in [3, 64] {
            let known =
                crate::distributed::spectral::component_eigenpairs(comm, &labels, &graph.degrees, n_eigs);
            let whole = crate::distributed::spectral::component_eigenpairs(
                &SerialComm,
                &serial_labels,
                &serial.degrees,
                n_eigs,
            );
            let width = whole.values.len();
            let range = graph.layout.range(comm.rank());
            if known.values != whole.values
                || known.vectors[..] != whole.vectors[range.start * width..range.end * width]
            {
                return Err(format!(
                    "{} (n_eigs {n_eigs}): component vectors differ from the serial ones",
                    case.name
                ));
            }
        }
    }
    Ok(())
}

/// A graph whose components take every path of the per-component solver: one larger than a
/// quarter of the rows (distributed Lanczos), two gathered and solved by serial Lanczos, three
/// small enough for the dense solver, and isolated rows.
fn mixed_components_case() -> GraphCase {
    use crate::config::{EdgeWeight, GraphSection, Metric, Symmetrize};
    let bounds = [0usize, 300, 450, 600, 650, 680, 695];
    let n_rows = 700;
    GraphCase {
        name: "mixed-components",
        n_rows,
        metric: Metric::Cosine,
        section: GraphSection {
            symmetrize: Symmetrize::Union,
            weight: EdgeWeight::Similarity,
            min_similarity: 0.0,
        },
        knn: crafted_knn(n_rows, 2, move |row| {
            let Some(part) = bounds.windows(2).find(|b| (b[0]..b[1]).contains(&row)) else {
                return Vec::new();
            };
            let (start, len) = (part[0], part[1] - part[0]);
            let mut kept = vec![start + (row - start + 1) % len];
            let chord = start + (row * 7 + 3) % len;
            if chord != row && !kept.contains(&chord) {
                kept.push(chord);
            }
            kept.retain(|&c| c != row);
            kept
        }),
    }
}

/// Spectral clustering solved one connected component at a time equals the serial run bit for bit
/// (eigenvalues, embedding, labels) and its eigenvalues match the dense eigendecomposition of the
/// whole normalised adjacency to 1e-8, on graphs with many components of every size.
fn check_spectral_by_component(comm: &dyn Comm) -> Result<(), String> {
    use embsolve_kernels::lanczos::dense_symmetric_eigen;
    let mut cases = graph_cases(None);
    cases.push(mixed_components_case());
    for case in cases {
        let (graph, serial) = case.build(comm)?;
        let n = case.n_rows;
        for n_eigs in [2usize, 12] {
            if n_eigs > n {
                continue;
            }
            let params = crate::config::SpectralSection {
                n_eigs,
                tol: 1e-10,
                ..Default::default()
            };
            let run = |c: &dyn Comm, g: &crate::distributed::graph::DistGraph| {
                crate::distributed::spectral::spectral_clustering(c, g, &params, None)
                    .map_err(|e| format!("{}: {e}", case.name))
            };
            let distributed = run(comm, &graph)?;
            let whole = run(&SerialComm, &serial)?;
            let range = graph.layout.range(comm.rank());
            if distributed.eigenvalues != whole.eigenvalues
                || distributed.labels != whole.labels[range.clone()]
                || distributed.embedding != whole.embedding.slice(ndarray::s![range.clone(), ..])
            {
                return Err(format!(
                    "{} (n_eigs {n_eigs}): eigenvalues, labels or embedding differ from the \
                     serial run",
                    case.name
                ));
            }
            let mut dense = vec![0.0; n * n];
            for row in 0..n {
                let (cols, values) = serial.normalized.row(row);
                for (&c, &v) in cols.iter().zip(values) {
                    dense[row * n + serial.global_column(c) as usize] = v;
                }
            }
            let (exact, _) = dense_symmetric_eigen(n, &dense);
            let worst = whole
                .eigenvalues
                .iter()
                .zip(&exact)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0f64, f64::max);
            if whole.eigenvalues.len() != n_eigs || worst > 1e-8 {
                return Err(format!(
                    "{} (n_eigs {n_eigs}): eigenvalues {:?} vs dense {:?}",
                    case.name,
                    whole.eigenvalues,
                    &exact[..n_eigs]
                ));
            }
        }
    }
    Ok(())
}

/// PageRank scores equal the serial run's bit for bit, and the dense power iteration to 1e-9 (L1).
fn check_graph_pagerank(comm: &dyn Comm) -> Result<(), String> {
    let params = crate::config::PagerankSection::default();
    for case in graph_cases(Some(200_000)) {
        let (graph, serial) = case.build(comm)?;
        let outcome = crate::distributed::pagerank::pagerank(comm, &graph, &params);
        let whole = crate::distributed::pagerank::pagerank(&SerialComm, &serial, &params);
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

/// A dense symmetric matrix distributed by `RowLayout`: this rank holds its rows; `apply`
/// gathers x and multiplies (collective).
struct RowBlockOp<'a> {
    comm: &'a dyn Comm,
    n: usize,
    local_rows: Vec<f64>,
}

impl<'a> RowBlockOp<'a> {
    fn new(comm: &'a dyn Comm, n: usize, matrix: &[f64]) -> Self {
        let range = RowLayout::new(n, comm.size()).range(comm.rank());
        RowBlockOp {
            comm,
            n,
            local_rows: matrix[range.start * n..range.end * n].to_vec(),
        }
    }
}

impl embsolve_kernels::linop::LinOp for RowBlockOp<'_> {
    fn local_len(&self) -> usize {
        self.local_rows.len() / self.n
    }
    fn apply(&self, x: &[f64], y: &mut [f64]) {
        let (full, _) = embsolve_comm::allgatherv(self.comm, x);
        for (yi, row) in y.iter_mut().zip(self.local_rows.chunks_exact(self.n)) {
            *yi = row.iter().zip(&full).map(|(a, b)| a * b).sum();
        }
    }
}

/// The normalised adjacency of a seeded planted-partition graph: `k` groups of `size` rows
/// (row r in group r % k; a ring inside each group keeps it connected), edge probability `p_in`
/// inside a group and `p_out` across. Returns n, the dense matrix and the groups.
fn planted_normalized_adjacency(
    k: usize,
    size: usize,
    p_in: f64,
    p_out: f64,
    seed: u64,
) -> (usize, Vec<f64>, Vec<i64>) {
    use embsolve_kernels::lanczos::hashed_uniform;
    let n = k * size;
    let mut weights = vec![0.0; n * n];
    for i in 0..n {
        for j in 0..i {
            let u = hashed_uniform(seed, 0, (i * n + j) as u64) * 0.5 + 0.5;
            let same = i % k == j % k;
            let ring = same && i == j + k;
            if ring || u < if same { p_in } else { p_out } {
                let weight = 0.5 + u;
                weights[i * n + j] = weight;
                weights[j * n + i] = weight;
            }
        }
    }
    let degrees: Vec<f64> = (0..n)
        .map(|i| weights[i * n..(i + 1) * n].iter().sum())
        .collect();
    let mut matrix = vec![0.0; n * n];
    for i in 0..n {
        for j in 0..n {
            if weights[i * n + j] > 0.0 {
                matrix[i * n + j] = weights[i * n + j] / (degrees[i] * degrees[j]).sqrt();
            }
        }
    }
    (n, matrix, (0..n).map(|r| (r % k) as i64).collect())
}

/// Distributed Lanczos equals the serial run bit for bit (eigenvalues and this rank's rows of
/// the vectors) and the dense eigendecomposition to 1e-8, on a graph with three components
/// (eigenvalue 1 three times) and on a connected one.
fn check_spectral_lanczos(comm: &dyn Comm) -> Result<(), String> {
    use embsolve_kernels::lanczos::{dense_symmetric_eigen, lanczos, LanczosParams};
    use embsolve_kernels::linop::{DenseOp, SerialReduce};
    for (label, p_out, n_eigs) in [("three components", 0.0, 6), ("connected", 0.01, 9)] {
        let (n, matrix, _) = planted_normalized_adjacency(3, 50, 0.2, p_out, 17);
        let params = LanczosParams {
            n_eigs,
            tol: 1e-10,
            max_iter: 3000,
            seed: 5,
        };
        let layout = RowLayout::new(n, comm.size());
        let range = layout.range(comm.rank());
        let distributed = lanczos(
            &RowBlockOp::new(comm, n, &matrix),
            &crate::distributed::CommReduce(comm),
            n,
            range.start,
            &params,
            None,
        );
        let serial_op = DenseOp {
            n,
            values: matrix.clone(),
        };
        let serial = lanczos(&serial_op, &SerialReduce, n, 0, &params, None);
        if !distributed.converged {
            return Err(format!("{label}: not converged"));
        }
        if distributed.eigenvalues != serial.eigenvalues {
            return Err(format!(
                "{label}: eigenvalues {:?} != serial {:?}",
                distributed.eigenvalues, serial.eigenvalues
            ));
        }
        if distributed.iterations != serial.iterations {
            return Err(format!(
                "{label}: {} iterations != serial {}",
                distributed.iterations, serial.iterations
            ));
        }
        let serial_rows = &serial.vectors[range.start * n_eigs..range.end * n_eigs];
        if distributed.vectors != serial_rows {
            return Err(format!(
                "{label}: eigenvector rows differ from the serial run"
            ));
        }
        let (dense, _) = dense_symmetric_eigen(n, &matrix);
        for (i, (a, b)) in distributed.eigenvalues.iter().zip(&dense).enumerate() {
            if (a - b).abs() > 1e-8 {
                return Err(format!("{label}: eigenvalue {i}: lanczos {a} dense {b}"));
            }
        }
        if p_out == 0.0 && (0..3).any(|i| (distributed.eigenvalues[i] - 1.0).abs() > 1e-9) {
            return Err(format!(
                "{label}: eigenvalue 1 is not triple: {:?}",
                distributed.eigenvalues
            ));
        }
    }
    Ok(())
}

/// Distributed k-means labels equal the serial labels exactly.
fn check_spectral_kmeans(comm: &dyn Comm) -> Result<(), String> {
    use embsolve_kernels::kmeans::{kmeans, KmeansParams};
    use embsolve_kernels::lanczos::hashed_uniform;
    use embsolve_kernels::linop::SerialReduce;
    let (n, dim, k) = (997, 3, 7);
    let points: Vec<f64> = (0..n * dim)
        .map(|i| {
            let row = i / dim;
            let centre = ((row * 31) % k) as f64 * if i % dim == 0 { 1.0 } else { 0.3 };
            centre + 0.4 * hashed_uniform(2, (i % dim) as u64, row as u64)
        })
        .collect();
    let params = KmeansParams {
        n_clusters: k,
        seed: 3,
        n_init: 3,
        max_iter: 100,
    };
    let range = RowLayout::new(n, comm.size()).range(comm.rank());
    let local = &points[range.start * dim..range.end * dim];
    let distributed = kmeans(
        local,
        dim,
        &crate::distributed::CommReduce(comm),
        range.start,
        &params,
    );
    let serial = kmeans(&points, dim, &SerialReduce, 0, &params);
    if distributed.labels != serial.labels[range.clone()] {
        return Err("labels differ from the serial run".into());
    }
    if distributed.centroids != serial.centroids || distributed.inertia != serial.inertia {
        return Err(format!(
            "centroids or inertia differ: {} vs {}",
            distributed.inertia, serial.inertia
        ));
    }
    Ok(())
}

/// The whole spectral clustering of a planted partition: eigenvalues, embedding rows and labels
/// equal the serial run; the eigengap finds the 4 groups and the ARI is at least 0.95.
fn check_spectral_clustering(comm: &dyn Comm) -> Result<(), String> {
    use crate::distributed::spectral::spectral_on_operator;
    use embsolve_kernels::linop::{DenseOp, SerialReduce};
    let (n, matrix, truth) = planted_normalized_adjacency(4, 60, 0.25, 0.02, 23);
    let params = crate::config::SpectralSection {
        n_eigs: 8,
        ..Default::default()
    };
    let range = RowLayout::new(n, comm.size()).range(comm.rank());
    let distributed = spectral_on_operator(
        &RowBlockOp::new(comm, n, &matrix),
        &crate::distributed::CommReduce(comm),
        n,
        range.start,
        &params,
        None,
    );
    let serial_op = DenseOp {
        n,
        values: matrix.clone(),
    };
    let serial = spectral_on_operator(&serial_op, &SerialReduce, n, 0, &params, None);
    if distributed.eigenvalues != serial.eigenvalues {
        return Err(format!(
            "eigenvalues {:?} != serial {:?}",
            distributed.eigenvalues, serial.eigenvalues
        ));
    }
    if distributed.labels != serial.labels[range.clone()] {
        return Err("labels differ from the serial run".into());
    }
    if distributed.embedding != serial.embedding.slice(ndarray::s![range.clone(), ..]) {
        return Err("embedding rows differ from the serial run".into());
    }
    if distributed.n_clusters != 4 {
        return Err(format!(
            "eigengap chose {} clusters (eigenvalues {:?})",
            distributed.n_clusters, distributed.eigenvalues
        ));
    }
    let predicted: Vec<i64> = distributed.labels.iter().map(|&l| l as i64).collect();
    let ari = crate::distributed::ari::adjusted_rand_index(comm, &truth[range], &predicted);
    if ari < 0.95 {
        return Err(format!("ARI {ari} < 0.95"));
    }
    Ok(())
}

/// The distributed adjusted Rand index equals the serial one exactly.
fn check_spectral_ari(comm: &dyn Comm) -> Result<(), String> {
    use crate::distributed::ari::adjusted_rand_index;
    let n = 1001;
    let truth: Vec<i64> = (0..n).map(|i| ((i * 7) % 13 % 5) as i64).collect();
    let predicted: Vec<i64> = (0..n)
        .map(|i| {
            if i % 9 == 0 {
                -3
            } else {
                ((i * 7) % 13 % 5) as i64 * 10
            }
        })
        .collect();
    let range = RowLayout::new(n, comm.size()).range(comm.rank());
    let distributed = adjusted_rand_index(comm, &truth[range.clone()], &predicted[range]);
    let serial = adjusted_rand_index(&SerialComm, &truth, &predicted);
    if distributed != serial || !(serial > 0.5 && serial < 1.0) {
        return Err(format!("distributed {distributed} != serial {serial}"));
    }
    Ok(())
}

/// The FFT analysis on ranks equals the serial one bit for bit: this rank's period-3 windows and
/// feature rows are the matching slices of the serial answer, and the global spectra agree. The
/// lengths include a sequence longer than every rank's span together at 4 ranks' window share.
fn check_fft_tracks(comm: &dyn Comm) -> Result<(), String> {
    use crate::config::{Alphabet, FftSection};
    use embsolve_kernels::fft::ChannelMap;
    let lengths = [50u64, 3000, 10, 241, 20_000, 300, 0, 5000, 239, 1200];
    let total: u64 = lengths.iter().sum();
    let tokens: Vec<u8> = (0..total)
        .map(|i| ((i.wrapping_mul(2_654_435_761) >> 7) % 5) as u8)
        .collect();
    let params = FftSection {
        enabled: true,
        tracks: String::new(),
        alphabet: Alphabet::Dna,
        window: 120,
        step: 45,
        bins: 16,
    };
    let read =
        |span: std::ops::Range<u64>| Ok(tokens[span.start as usize..span.end as usize].to_vec());
    let fft = |c: &dyn Comm| {
        crate::distributed::fft::analyse(c, &lengths, ChannelMap::DnaIndicators, &params, read)
            .map_err(|e| e.to_string())
    };
    let distributed = fft(comm)?;
    let serial = fft(&SerialComm)?;
    let windows = distributed.window_start..distributed.window_start + distributed.period3.len();
    if serial.period3[windows.clone()] != distributed.period3[..] {
        return Err(format!(
            "period3 windows {windows:?} differ from the serial answer"
        ));
    }
    let (n_local, bins) = distributed.features.dim();
    let rows = distributed.seq_start..distributed.seq_start + n_local;
    let serial_rows = serial.features.slice(ndarray::s![rows.clone(), ..]);
    let same = serial_rows
        .iter()
        .zip(distributed.features.iter())
        .all(|(a, b)| a.to_bits() == b.to_bits());
    if bins != params.bins || !same {
        return Err(format!(
            "feature rows {rows:?} differ from the serial answer"
        ));
    }
    let (d, s) = (&distributed.summary, &serial.summary);
    if d.mean_power != s.mean_power
        || d.score_edges != s.score_edges
        || d.score_counts != s.score_counts
        || d.n_windows != s.n_windows
    {
        return Err("mean power or score histogram differs from the serial answer".into());
    }
    // Every window once, every sequence once, over all ranks.
    let counts = embsolve_comm::allgather_u64(comm, distributed.period3.len() as u64);
    let owned = embsolve_comm::allgather_u64(comm, n_local as u64);
    if counts.iter().sum::<u64>() != s.n_windows as u64
        || owned.iter().sum::<u64>() != lengths.len() as u64
    {
        return Err(format!(
            "windows per rank {counts:?}, sequences per rank {owned:?}"
        ));
    }
    Ok(())
}
