//! Leiden on graphs with a known best partition, connectivity of every community on random
//! graphs, the objectives' values, and the degenerate inputs.

use super::*;

/// Symmetric CSR of n nodes from undirected weighted edges (u != v, each listed once).
fn graph(n: usize, edges: &[(usize, usize, f64)]) -> Csr {
    let mut adjacency: Vec<Vec<(u32, f64)>> = vec![Vec::new(); n];
    for &(u, v, w) in edges {
        adjacency[u].push((v as u32, w));
        adjacency[v].push((u as u32, w));
    }
    let mut csr = Csr {
        n_cols: n,
        row_ptr: vec![0],
        ..Csr::default()
    };
    for mut row in adjacency {
        row.sort_by_key(|e| e.0);
        for (c, w) in row {
            csr.cols.push(c);
            csr.values.push(w);
        }
        csr.row_ptr.push(csr.cols.len());
    }
    csr
}

fn ring_of_cliques(n_cliques: usize, size: usize) -> (Csr, Vec<u64>) {
    let mut edges = Vec::new();
    for c in 0..n_cliques {
        let first = c * size;
        for i in 0..size {
            for j in 0..i {
                edges.push((first + i, first + j, 1.0));
            }
        }
        edges.push((first, ((c + 1) % n_cliques) * size + 1, 1.0));
    }
    let truth = (0..n_cliques * size)
        .map(|v| (v / size * size) as u64)
        .collect();
    (graph(n_cliques * size, &edges), truth)
}

/// Seeded planted partition: `k` groups of `size`, edge probability p_in inside, p_out across.
fn planted(k: usize, size: usize, p_in: f64, p_out: f64, seed: u64) -> (Csr, Vec<u64>) {
    let n = k * size;
    let mut edges = Vec::new();
    let mut state = seed;
    for i in 0..n {
        for j in 0..i {
            state = splitmix(state);
            let u = (state >> 11) as f64 / (1u64 << 53) as f64;
            let p = if i / size == j / size { p_in } else { p_out };
            if u < p {
                edges.push((i, j, 0.5 + u));
            }
        }
    }
    let truth = (0..n).map(|v| (v / size * size) as u64).collect();
    (graph(n, &edges), truth)
}

fn params(objective: Objective, resolution: f64) -> LeidenParams {
    LeidenParams {
        objective,
        resolution,
        max_iterations: 0,
        seed: 0,
    }
}

/// Every community induces a connected subgraph.
fn assert_connected(graph: &Csr, labels: &[u64]) {
    let n = labels.len();
    let mut seen = vec![false; n];
    for start in 0..n {
        if labels[start] != start as u64 {
            continue;
        }
        let mut stack = vec![start];
        seen[start] = true;
        while let Some(v) = stack.pop() {
            for e in graph.row_ptr[v]..graph.row_ptr[v + 1] {
                let u = graph.cols[e] as usize;
                if !seen[u] && labels[u] == labels[start] {
                    seen[u] = true;
                    stack.push(u);
                }
            }
        }
    }
    for v in 0..n {
        assert!(
            seen[v],
            "node {v} is not connected to its community's first node"
        );
        assert!(
            labels[v] <= v as u64,
            "label {} of node {v} is not its smallest node",
            labels[v]
        );
    }
}

#[test]
fn a_ring_of_cliques_gives_the_cliques() {
    let (g, truth) = ring_of_cliques(10, 6);
    let outcome = leiden(&g, &params(Objective::Modularity, 1.0));
    assert_eq!(outcome.labels, truth);
    assert_eq!(outcome.n_communities, 10);
    assert!(outcome.converged);
    let expected = quality(&g, &truth, Objective::Modularity, 1.0);
    assert!((outcome.quality - expected).abs() < 1e-12);
}

#[test]
fn planted_partitions_are_found_with_at_least_the_truth_s_modularity() {
    for seed in 1..6 {
        let (g, truth) = planted(6, 40, 0.3, 0.01, seed);
        let outcome = leiden(&g, &params(Objective::Modularity, 1.0));
        let planted_quality = quality(&g, &truth, Objective::Modularity, 1.0);
        assert!(
            outcome.quality >= planted_quality - 1e-9,
            "seed {seed}: {} < planted {planted_quality}",
            outcome.quality
        );
        assert_eq!(outcome.labels, truth, "seed {seed}");
        assert_connected(&g, &outcome.labels);
        let again = leiden(&g, &params(Objective::Modularity, 1.0));
        assert_eq!(again, outcome);
    }
}

#[test]
fn every_community_is_connected_on_sparse_random_graphs() {
    for seed in 0..12 {
        let (g, _) = planted(5, 50, 0.04, 0.01, 100 + seed);
        for resolution in [0.5, 1.0, 2.0] {
            for seed_order in [0, 7] {
                let outcome = leiden(
                    &g,
                    &LeidenParams {
                        seed: seed_order,
                        ..params(Objective::Modularity, resolution)
                    },
                );
                assert_connected(&g, &outcome.labels);
                let labels_quality =
                    quality(&g, &outcome.labels, Objective::Modularity, resolution);
                assert!((outcome.quality - labels_quality).abs() < 1e-12);
                // Never worse than every node alone.
                let alone: Vec<u64> = (0..outcome.labels.len() as u64).collect();
                assert!(outcome.quality >= quality(&g, &alone, Objective::Modularity, resolution));
            }
        }
    }
}

#[test]
fn cpm_separates_disconnected_cliques_and_splits_at_high_resolution() {
    let mut edges = Vec::new();
    for first in [0usize, 5] {
        for i in 0..5 {
            for j in 0..i {
                edges.push((first + i, first + j, 1.0));
            }
        }
    }
    let g = graph(10, &edges);
    let low = leiden(&g, &params(Objective::Cpm, 0.1));
    assert_eq!(low.labels, vec![0, 0, 0, 0, 0, 5, 5, 5, 5, 5]);
    // Two cliques of 5: 10 edges each, minus 0.1 * 10 pairs each.
    assert!((low.quality - 2.0 * (10.0 - 0.1 * 10.0)).abs() < 1e-12);
    let high = leiden(&g, &params(Objective::Cpm, 2.0));
    assert_eq!(high.n_communities, 10);
}

#[test]
fn no_edges_and_no_nodes_have_a_defined_result() {
    let g = graph(4, &[]);
    let outcome = leiden(&g, &params(Objective::Modularity, 1.0));
    assert_eq!(outcome.labels, vec![0, 1, 2, 3]);
    assert_eq!(outcome.quality, 0.0);
    assert!(outcome.converged);
    let empty = leiden(&graph(0, &[]), &params(Objective::Modularity, 1.0));
    assert_eq!(empty.n_communities, 0);
}

#[test]
fn labels_are_identical_for_any_thread_count() {
    // Sparse, noisy planted graphs: many communities, refinement and several levels at work.
    for (seed, seed_order) in [(300, 0), (301, 7)] {
        let (g, _) = planted(12, 120, 0.05, 0.004, seed);
        let run = |threads: usize| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .expect("pool")
                .install(|| {
                    leiden(
                        &g,
                        &LeidenParams {
                            seed: seed_order,
                            ..params(Objective::Modularity, 1.0)
                        },
                    )
                })
        };
        let one = run(1);
        assert!(one.n_communities > 1 && one.iterations >= 2);
        for threads in [2, 3, 4] {
            assert_eq!(run(threads), one, "graph {seed}, {threads} threads");
        }
    }
}
