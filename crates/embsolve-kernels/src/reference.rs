//! Naive reference implementations: the oracles unit tests compare the fast kernels against.

use crate::types::{EdgeWeight, GraphParams, Metric, Symmetrize};
use std::collections::{BTreeMap, VecDeque};

/// y = A x for a CSR matrix, one row at a time, entries in storage order.
pub fn csr_spmv_naive(row_ptr: &[usize], cols: &[u32], values: &[f64], x: &[f64]) -> Vec<f64> {
    (0..row_ptr.len() - 1)
        .map(|row| {
            let mut acc = 0.0;
            for entry in row_ptr[row]..row_ptr[row + 1] {
                acc += values[entry] * x[cols[entry] as usize];
            }
            acc
        })
        .collect()
}

/// Connected components by breadth-first search: each vertex's label is the smallest vertex of
/// its component.
pub fn components_bfs(n: usize, edges: &[(usize, usize)]) -> Vec<u64> {
    let mut neighbours = vec![Vec::new(); n];
    for &(a, b) in edges {
        neighbours[a].push(b);
        neighbours[b].push(a);
    }
    let mut labels = vec![u64::MAX; n];
    for start in 0..n {
        if labels[start] != u64::MAX {
            continue;
        }
        labels[start] = start as u64;
        let mut queue = VecDeque::from([start]);
        while let Some(v) = queue.pop_front() {
            for &w in &neighbours[v] {
                if labels[w] == u64::MAX {
                    labels[w] = start as u64;
                    queue.push_back(w);
                }
            }
        }
    }
    labels
}

/// PageRank by dense power iteration on the undirected weighted graph `edges` (each edge once):
/// p <- damping * W D^-1 p + (damping * dangling mass + 1 - damping) / n, from the uniform vector,
/// until the L1 change is below `tol` or after `max_iter` steps. Returns scores, steps, change.
pub fn pagerank_dense(
    n: usize,
    edges: &[(usize, usize, f64)],
    damping: f64,
    tol: f64,
    max_iter: usize,
) -> (Vec<f64>, usize, f64) {
    let mut weights = vec![0.0; n * n];
    for &(a, b, w) in edges {
        weights[a * n + b] += w;
        if a != b {
            weights[b * n + a] += w;
        }
    }
    let degree: Vec<f64> = (0..n)
        .map(|i| weights[i * n..(i + 1) * n].iter().sum())
        .collect();
    let mut scores = vec![1.0 / n as f64; n];
    let mut change = f64::INFINITY;
    let mut steps = 0;
    while steps < max_iter {
        let dangling: f64 = (0..n)
            .filter(|&j| degree[j] == 0.0)
            .map(|j| scores[j])
            .sum();
        let teleport = (damping * dangling + 1.0 - damping) / n as f64;
        let next: Vec<f64> = (0..n)
            .map(|i| {
                let walk: f64 = (0..n)
                    .filter(|&j| degree[j] > 0.0)
                    .map(|j| weights[i * n + j] * scores[j] / degree[j])
                    .sum();
                damping * walk + teleport
            })
            .collect();
        change = next.iter().zip(&scores).map(|(a, b)| (a - b).abs()).sum();
        scores = next;
        steps += 1;
        if change < tol {
            break;
        }
    }
    (scores, steps, change)
}

/// Exact kNN by brute force (graph tests) over `n` points of dimension `dim` (row-major), self excluded, ties
/// broken by the smaller row. Distances as in `/knn/distances`: 1 - cosine, Euclidean, or -dot.
pub fn graph_knn_naive(
    points: &[f32],
    dim: usize,
    k: usize,
    metric: Metric,
) -> (Vec<u64>, Vec<f32>) {
    let n = points.len() / dim;
    let row = |i: usize| &points[i * dim..(i + 1) * dim];
    let norm = |a: &[f32]| {
        a.iter()
            .map(|x| (*x as f64) * (*x as f64))
            .sum::<f64>()
            .sqrt()
    };
    let mut indices = Vec::with_capacity(n * k);
    let mut distances = Vec::with_capacity(n * k);
    for i in 0..n {
        let mut candidates: Vec<(f32, u64)> = (0..n)
            .filter(|&j| j != i)
            .map(|j| {
                let dot: f64 = row(i)
                    .iter()
                    .zip(row(j))
                    .map(|(a, b)| *a as f64 * *b as f64)
                    .sum();
                let distance = match metric {
                    Metric::Cosine => 1.0 - dot / (norm(row(i)) * norm(row(j))).max(1e-30),
                    Metric::Ip => -dot,
                    Metric::L2 => row(i)
                        .iter()
                        .zip(row(j))
                        .map(|(a, b)| (*a as f64 - *b as f64).powi(2))
                        .sum::<f64>()
                        .sqrt(),
                };
                (distance as f32, j as u64)
            })
            .collect();
        candidates.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        for &(distance, j) in candidates.iter().take(k) {
            indices.push(j);
            distances.push(distance);
        }
    }
    (indices, distances)
}

/// The symmetrised, weighted similarity graph of whole kNN lists, built edge by edge in a map:
/// `(row, col) -> weight` with both directions present. The rules (see `dist::graph`): a directed
/// entry survives when its similarity is at least `min_similarity` (cosine/ip); an undirected edge
/// exists when either (union) or both (mutual) directions survive; its distance is the smaller of
/// the two directions'; weights are the similarity clipped at 0 (1 / (1 + d) for l2), the
/// self-tuning Gaussian exp(-d^2 / (sigma_i sigma_j)) with sigma = |distance to the k-th
/// neighbour|, or 1.
pub fn similarity_graph_naive(
    n: usize,
    k: usize,
    indices: &[u64],
    distances: &[f32],
    graph: &GraphParams,
    metric: Metric,
) -> BTreeMap<(u64, u64), f64> {
    let similarity = |d: f64| match metric {
        Metric::Cosine => 1.0 - d,
        Metric::Ip => -d,
        Metric::L2 => 1.0 / (1.0 + d),
    };
    let filtered = !matches!(metric, Metric::L2);
    let mut directed: BTreeMap<(u64, u64), f64> = BTreeMap::new();
    for i in 0..n {
        for j in 0..k {
            let col = indices[i * k + j];
            let d = distances[i * k + j] as f64;
            if col == i as u64 || (filtered && similarity(d) < graph.min_similarity) {
                continue;
            }
            let entry = directed.entry((i as u64, col)).or_insert(d);
            *entry = entry.min(d);
        }
    }
    let sigma: Vec<f64> = (0..n)
        .map(|i| {
            if k == 0 {
                0.0
            } else {
                (distances[i * k + k - 1] as f64).abs()
            }
        })
        .collect();
    let mut edges = BTreeMap::new();
    for (&(a, b), &d_ab) in &directed {
        let reverse = directed.get(&(b, a)).copied();
        let keep = match graph.symmetrize {
            Symmetrize::Union => true,
            Symmetrize::Mutual => reverse.is_some(),
        };
        if !keep {
            continue;
        }
        let d = reverse.map_or(d_ab, |d_ba| d_ab.min(d_ba));
        let weight = match graph.weight {
            EdgeWeight::Binary => 1.0,
            EdgeWeight::Similarity => similarity(d).max(0.0),
            EdgeWeight::Gaussian => {
                let scale = sigma[a as usize] * sigma[b as usize];
                if scale > 0.0 {
                    (-d * d / scale).exp()
                } else if d == 0.0 {
                    1.0
                } else {
                    0.0
                }
            }
        };
        edges.insert((a, b), weight);
        edges.insert((b, a), weight);
    }
    edges
}

// ---- kNN oracle (kernels::knn) ----

/// Exact kNN by brute force: every pair's canonical distance, a full sort per row by
/// (distance, row), self excluded. Returns `n x k` indices and distances, row-major.
pub fn knn_naive(
    rows: ndarray::ArrayView2<f32>,
    k: usize,
    metric: crate::types::Metric,
) -> (Vec<u64>, Vec<f32>) {
    let n_rows = rows.nrows();
    let owned: Vec<Vec<f32>> = rows.rows().into_iter().map(|r| r.to_vec()).collect();
    let mut indices = Vec::with_capacity(n_rows * k);
    let mut distances = Vec::with_capacity(n_rows * k);
    for (i, query) in owned.iter().enumerate() {
        let mut all: Vec<(f32, usize)> = owned
            .iter()
            .enumerate()
            .filter(|&(j, _)| j != i)
            .map(|(j, other)| (crate::knn::exact_distance(metric, query, other), j))
            .collect();
        all.sort_by(|a, b| {
            a.0.partial_cmp(&b.0)
                .unwrap_or(std::cmp::Ordering::Equal)
                .then(a.1.cmp(&b.1))
        });
        for &(distance, j) in all.iter().take(k) {
            indices.push(j as u64);
            distances.push(distance);
        }
    }
    (indices, distances)
}
// ---- end of kNN oracle ----

// ---- FFT oracles: naive DFT power spectrum and period-3 score ----

use crate::fft::ChannelMap;

/// Power spectrum of one window by the naive O(n^2) DFT in f64: for k = 1..=n/2,
/// `sum over channels |sum_j x_c[j] e^{-2 pi i jk/n}|^2 / n`, and 0 at k = 0.
pub fn window_power_spectrum(tokens: &[u8], map: ChannelMap) -> Vec<f64> {
    let n = tokens.len();
    let mut power = vec![0.0; n / 2 + 1];
    for channel in 0..map.n_channels() {
        let x: Vec<f64> = tokens
            .iter()
            .map(|&t| f64::from(map.value(channel, t)))
            .collect();
        for (k, p) in power.iter_mut().enumerate().skip(1) {
            let (mut re, mut im) = (0.0, 0.0);
            for (j, &v) in x.iter().enumerate() {
                let angle = -2.0 * std::f64::consts::PI * ((j * k) % n) as f64 / n as f64;
                re += v * angle.cos();
                im += v * angle.sin();
            }
            *p += (re * re + im * im) / n as f64;
        }
    }
    power
}

/// Period-3 score of a naive power spectrum: power at `period3_bin` over the mean non-DC power.
pub fn period3_score(power: &[f64], period3_bin: usize) -> f64 {
    let mean = power[1..].iter().sum::<f64>() / (power.len() - 1) as f64;
    if mean > 0.0 {
        power[period3_bin] / mean
    } else {
        0.0
    }
}
