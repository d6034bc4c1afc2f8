//! A property check of the eigensolver over seeded random sparse graphs: disconnected ones,
//! exact copies of a component (repeated eigenvalues) and twin blocks joined by one edge (clusters
//! of near-equal eigenvalues), with components small enough for the dense solver, gathered and
//! serial Lanczos, and large enough for distributed Lanczos. Every returned pair must be
//! orthonormal, have a small residual against the matrix, lie inside the spectrum [-1, 1] and
//! equal the dense eigenvalues; the distributed run must equal the serial one bit for bit.

use super::graph::{crafted_knn, GraphCase};
use super::spectral::dense_normalized;
use embsolve_comm::{Comm, SerialComm};
use embsolve_kernels::lanczos::{dense_symmetric_eigen, LanczosOutcome};
use embsolve_kernels::types::{EdgeWeight, GraphParams, Metric, Symmetrize};
use rand::{Rng, SeedableRng};

/// Neighbours of each row of one component, by local row (at most `MAX_NEIGHBOURS` each).
type Pattern = Vec<Vec<usize>>;

const MAX_NEIGHBOURS: usize = 4;
/// No component is added beyond this many rows (the dense oracle is cubic).
const MAX_ROWS: usize = 900;

/// A connected random pattern: a ring plus up to two random chords per row.
fn random_pattern(rng: &mut impl Rng, size: usize) -> Pattern {
    (0..size)
        .map(|row| {
            let mut kept = Vec::new();
            if size > 1 {
                kept.push((row + 1) % size);
            }
            for _ in 0..rng.gen_range(0..3usize) {
                let col = rng.gen_range(0..size);
                if col != row && !kept.contains(&col) {
                    kept.push(col);
                }
            }
            kept
        })
        .collect()
}

/// One seeded graph: a list of component patterns (copies share one), with twin blocks.
fn random_case(seed: u64) -> GraphCase {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1000 + seed);
    let mut components: Vec<Pattern> = Vec::new();
    let n_components = rng.gen_range(1..6usize);
    for _ in 0..n_components {
        if components.iter().map(Vec::len).sum::<usize>() > MAX_ROWS {
            break;
        }
        let kind = rng.gen_range(0..4u32);
        let pattern = match (kind, components.last()) {
            // An exact copy of the previous component: its eigenvalues repeat.
            (0, Some(previous)) => previous.clone(),
            // Twin blocks joined by one edge: near-equal eigenvalue pairs.
            (1, _) => {
                let half = rng.gen_range(20..120usize);
                let block = random_pattern(&mut rng, half);
                let mut twin = block.clone();
                twin.extend(
                    block
                        .iter()
                        .map(|cols| cols.iter().map(|c| c + half).collect::<Vec<_>>()),
                );
                if twin[0].len() < MAX_NEIGHBOURS {
                    twin[0].push(half);
                }
                twin
            }
            _ => {
                let size = match rng.gen_range(0..3u32) {
                    0 => rng.gen_range(3..40usize),
                    1 => rng.gen_range(100..250usize),
                    _ => rng.gen_range(250..450usize),
                };
                random_pattern(&mut rng, size)
            }
        };
        components.push(pattern);
    }
    let mut lists: Vec<Vec<usize>> = Vec::new();
    for pattern in &components {
        let offset = lists.len();
        lists.extend(
            pattern
                .iter()
                .map(|cols| cols.iter().map(|c| c + offset).collect::<Vec<_>>()),
        );
    }
    let n_rows = lists.len();
    GraphCase {
        name: "random-sparse",
        n_rows,
        metric: Metric::Cosine,
        section: GraphParams {
            symmetrize: Symmetrize::Union,
            weight: EdgeWeight::Similarity,
            min_similarity: 0.0,
        },
        knn: crafted_knn(n_rows, MAX_NEIGHBOURS, move |row| lists[row].clone()),
    }
}

/// The properties of serial eigenpairs `eigen` of the dense matrix `dense` (n x n) whose
/// eigenvalues are `exact` (descending).
fn check_pairs(
    eigen: &LanczosOutcome,
    dense: &[f64],
    exact: &[f64],
    n: usize,
    n_eigs: usize,
) -> Result<(), String> {
    let m = eigen.eigenvalues.len();
    if m != n_eigs || !eigen.converged {
        return Err(format!(
            "{m} pairs of {n_eigs}, converged = {}",
            eigen.converged
        ));
    }
    if let Some(v) = eigen.eigenvalues.iter().find(|v| v.abs() > 1.0 + 1e-12) {
        return Err(format!("eigenvalue {v} outside [-1, 1]"));
    }
    if eigen.eigenvalues.windows(2).any(|w| w[0] < w[1]) {
        return Err(format!("not descending: {:?}", eigen.eigenvalues));
    }
    let column = |j: usize| (0..n).map(move |r| eigen.vectors[r * m + j]);
    for (i, &exact_value) in exact.iter().enumerate().take(m) {
        for j in 0..=i {
            let dot: f64 = column(i).zip(column(j)).map(|(a, b)| a * b).sum();
            let want = if i == j { 1.0 } else { 0.0 };
            if (dot - want).abs() > 1e-10 {
                return Err(format!("v{i} . v{j} = {dot:e}, not orthonormal"));
            }
        }
        let v: Vec<f64> = column(i).collect();
        let residual = (0..n)
            .map(|r| {
                let av: f64 = (0..n).map(|c| dense[r * n + c] * v[c]).sum();
                (av - eigen.eigenvalues[i] * v[r]).powi(2)
            })
            .sum::<f64>()
            .sqrt();
        if residual > 1e-9 {
            return Err(format!(
                "pair {i} (eigenvalue {}): residual {residual:e}",
                eigen.eigenvalues[i]
            ));
        }
        if (eigen.eigenvalues[i] - exact_value).abs() > 1e-8 {
            return Err(format!(
                "eigenvalue {i}: {} vs dense {exact_value}",
                eigen.eigenvalues[i]
            ));
        }
    }
    Ok(())
}

/// Eigenpairs of seeded random sparse graphs: orthonormal, small residuals, inside the spectrum,
/// equal to the dense eigenvalues, and bit for bit the serial ones at this rank count.
pub(super) fn check_spectral_random_graphs(comm: &dyn Comm) -> Result<(), String> {
    for seed in 0..8 {
        let case = random_case(seed);
        let (graph, serial) = case.build(comm)?;
        let n = case.n_rows;
        let dense = dense_normalized(&serial);
        let (exact, _) = dense_symmetric_eigen(n, &dense);
        for n_eigs in [1usize, 9, 40] {
            let n_eigs = n_eigs.min(n);
            let params = embsolve::config::SpectralSection {
                n_eigs,
                tol: 1e-11,
                ..Default::default()
            };
            let context = |e: String| format!("seed {seed} ({n} rows, n_eigs {n_eigs}): {e}");
            let solve = |c: &dyn Comm, g: &embsolve::distributed::graph::DistGraph| {
                embsolve::distributed::spectral::graph_eigenpairs(c, g, &params, None)
                    .map_err(|e| context(e.to_string()))
            };
            let whole = solve(&SerialComm, &serial)?;
            check_pairs(&whole, &dense, &exact, n, n_eigs).map_err(context)?;
            let distributed = solve(comm, &graph)?;
            let range = graph.layout.range(comm.rank());
            if distributed.eigenvalues != whole.eigenvalues
                || distributed.vectors[..]
                    != whole.vectors[range.start * n_eigs..range.end * n_eigs]
            {
                return Err(context("differs from the serial solve".into()));
            }
        }
    }
    Ok(())
}
