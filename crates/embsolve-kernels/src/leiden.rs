//! Leiden communities (Traag, Waltman and van Eck 2019) of an undirected weighted graph,
//! deterministic: fast local moving with a queue, refinement (every community of the result is
//! connected; merges inside a community only between well-connected parts), aggregation of the
//! refined partition, repeated until a pass changes nothing.
//!
//! Threads: local moving is serial; refinement runs the communities in parallel (they are
//! independent) and aggregation builds the coarse rows in parallel, both with the results of one
//! serial sweep, so the labels are the same for any thread count. A pass whose local moving ends
//! where the previous pass's did would repeat it, and stops there unchanged.
//!
//! The quality is modularity, sum over ordered pairs (A_ij - gamma k_i k_j / 2m) [c_i = c_j] / 2m,
//! or CPM, sum over communities (e_c - gamma n_c (n_c - 1) / 2) with e_c the internal edge weight.
//! Both gains have the form w(v, B) - w(v, A \ v) - f a_v (a_B - a_A + a_v) with node weights a
//! (degrees for modularity, f = gamma / 2m; original node counts for CPM, f = gamma).
//!
//! Determinism replaces the randomness of the reference algorithm: nodes are visited in a fixed
//! order (by a hash of the seed and the node, then the node), a node moves only for a strictly
//! positive gain, ties go to the smaller community id, and refinement merges greedily (the
//! largest gain, ties to the smaller id) instead of sampling. The result depends only on the
//! graph, the parameters and the seed.

use crate::csr::Csr;
use rayon::prelude::*;

/// What the partition optimises.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Objective {
    Modularity,
    Cpm,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LeidenParams {
    pub objective: Objective,
    /// gamma, > 0.
    pub resolution: f64,
    /// Passes at most; 0 = until a pass changes nothing (at most `PASS_CAP`).
    pub max_iterations: usize,
    pub seed: u64,
}

/// Passes when `max_iterations` is 0 (a pass that changes nothing ends the run much earlier).
pub const PASS_CAP: usize = 100;

#[derive(Debug, Clone, PartialEq)]
pub struct LeidenOutcome {
    /// Community of each node: the smallest node of the community.
    pub labels: Vec<u64>,
    pub n_communities: usize,
    /// The objective's value (modularity, or the CPM quality).
    pub quality: f64,
    /// Passes run.
    pub iterations: usize,
    /// Whether the last pass changed nothing (false when stopped by `max_iterations`).
    pub converged: bool,
}

/// One level's graph: symmetric CSR with self loops (weight counted once per loop entry) and the
/// node weights of the null model.
struct Level {
    rows: Vec<usize>,
    cols: Vec<u32>,
    weights: Vec<f64>,
    /// Null-model weight of each node (degree or node count).
    node_weight: Vec<f64>,
}

impl Level {
    fn n(&self) -> usize {
        self.node_weight.len()
    }
    fn neighbours(&self, v: usize) -> impl Iterator<Item = (usize, f64)> + '_ {
        let range = self.rows[v]..self.rows[v + 1];
        self.cols[range.clone()]
            .iter()
            .zip(&self.weights[range])
            .map(|(&c, &w)| (c as usize, w))
    }
}

/// Scratch for the weights from one node to its neighbouring communities.
struct Neighbourhood {
    weight: Vec<f64>,
    seen: Vec<bool>,
    touched: Vec<usize>,
}

impl Neighbourhood {
    fn new(n: usize) -> Self {
        Neighbourhood {
            weight: vec![0.0; n],
            seen: vec![false; n],
            touched: Vec::new(),
        }
    }
    fn add(&mut self, community: usize, w: f64) {
        if !self.seen[community] {
            self.seen[community] = true;
            self.touched.push(community);
        }
        self.weight[community] += w;
    }
    fn clear(&mut self) {
        for &c in &self.touched {
            self.weight[c] = 0.0;
            self.seen[c] = false;
        }
        self.touched.clear();
    }
}

/// The visiting order of `n` nodes: by a hash of (seed, node), then node.
fn order(n: usize, seed: u64) -> Vec<usize> {
    let mut nodes: Vec<usize> = (0..n).collect();
    if seed != 0 {
        nodes.sort_by_key(|&v| (splitmix(seed ^ (v as u64).wrapping_mul(0x9e37_79b9)), v));
    }
    nodes
}

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// Fast local moving of `community` (node -> community id < n) on `level`.
fn move_nodes(level: &Level, community: &mut [usize], factor: f64, seed: u64) {
    let n = level.n();
    let mut total = vec![0.0; n];
    let mut members = vec![0usize; n];
    for v in 0..n {
        total[community[v]] += level.node_weight[v];
        members[community[v]] += 1;
    }
    let mut free: Vec<usize> = (0..n).rev().filter(|&c| members[c] == 0).collect();
    let mut queue: std::collections::VecDeque<usize> = order(n, seed).into();
    let mut queued = vec![true; n];
    let mut scratch = Neighbourhood::new(n);
    while let Some(v) = queue.pop_front() {
        queued[v] = false;
        let current = community[v];
        let a_v = level.node_weight[v];
        for (u, w) in level.neighbours(v) {
            if u != v {
                scratch.add(community[u], w);
            }
        }
        let own = scratch.weight[current];
        let stay = own - factor * a_v * (total[current] - a_v);
        // Candidates: neighbouring communities and an empty one; strictly better than staying.
        let mut best = (current, 0.0f64);
        for &c in &scratch.touched {
            if c == current {
                continue;
            }
            let gain = scratch.weight[c] - factor * a_v * total[c] - stay;
            // Ties between candidates go to the smaller id; staying wins ties with it.
            if gain > best.1 || (gain == best.1 && best.0 != current && c < best.0) {
                best = (c, gain);
            }
        }
        if members[current] > 1 {
            if let Some(&empty) = free.last() {
                if -stay > best.1 {
                    best = (empty, -stay);
                }
            }
        }
        scratch.clear();
        let target = best.0;
        if target == current {
            continue;
        }
        if free.last() == Some(&target) {
            free.pop();
        }
        total[current] -= a_v;
        members[current] -= 1;
        if members[current] == 0 {
            free.push(current);
        }
        total[target] += a_v;
        members[target] += 1;
        community[v] = target;
        for (u, _) in level.neighbours(v) {
            if u != v && !queued[u] && community[u] != target {
                queued[u] = true;
                queue.push_back(u);
            }
        }
    }
}

/// Refinement of `community` on `level`: singletons merged greedily, inside each community, into
/// well-connected refined communities. Returns the refined community of each node (ids < n: the
/// refined community's founding node).
///
/// Communities are refined independently of each other (a merge never crosses one), so they run
/// in parallel, each visiting its own nodes in the global visiting order: the result is the same
/// as one serial sweep for any thread count.
fn refine(level: &Level, community: &[usize], factor: f64, seed: u64) -> Vec<usize> {
    let n = level.n();
    let mut total_of: Vec<f64> = vec![0.0; n];
    for v in 0..n {
        total_of[community[v]] += level.node_weight[v];
    }
    // The nodes of each community in visiting order (a stable counting sort of the order), and
    // each node's position in its community's list.
    let visiting = order(n, seed);
    let (first, members) = group_nodes(community, n, visiting.iter().copied());
    let mut position = vec![0u32; n];
    for c in 0..n {
        for (i, &v) in members[first[c]..first[c + 1]].iter().enumerate() {
            position[v] = i as u32;
        }
    }
    let founders: Vec<Vec<usize>> = (0..n)
        .into_par_iter()
        .with_min_len(64)
        .map(|c| {
            let nodes = &members[first[c]..first[c + 1]];
            refine_community(level, community, c, nodes, &position, total_of[c], factor)
        })
        .collect();
    let mut refined = vec![0; n];
    for (c, founders) in founders.iter().enumerate() {
        for (&v, &f) in members[first[c]..first[c + 1]].iter().zip(founders) {
            refined[v] = f;
        }
    }
    refined
}

/// The refinement of one community `s` whose nodes, in visiting order, are `nodes`
/// (`position[v]` is v's index there) and whose null-model weight is `total`. Returns the
/// founding node of each node's refined community, in the order of `nodes`.
fn refine_community(
    level: &Level,
    community: &[usize],
    s: usize,
    nodes: &[usize],
    position: &[u32],
    total: f64,
    factor: f64,
) -> Vec<usize> {
    let size = nodes.len();
    // Local ids: indices into `nodes`. A refined community is named by its founder's local id;
    // ties compare the founders' node ids, as a serial sweep over all nodes would.
    let mut refined: Vec<usize> = (0..size).collect();
    // Weight from each node to the rest of its community, and per refined community the weight
    // to the rest of the community (starts as its founder's own).
    let inside: Vec<f64> = nodes
        .iter()
        .map(|&v| {
            level
                .neighbours(v)
                .filter(|&(u, _)| u != v && community[u] == s)
                .map(|(_, w)| w)
                .sum()
        })
        .collect();
    let mut external = inside.clone();
    let mut refined_weight: Vec<f64> = nodes.iter().map(|&v| level.node_weight[v]).collect();
    let mut singleton = vec![true; size];
    let mut scratch = Neighbourhood::new(size);
    for (i, &v) in nodes.iter().enumerate() {
        if !singleton[i] {
            continue;
        }
        let a_v = level.node_weight[v];
        if inside[i] < factor * a_v * (total - a_v) {
            continue;
        }
        for (u, w) in level.neighbours(v) {
            if u != v && community[u] == s {
                scratch.add(refined[position[u] as usize], w);
            }
        }
        let mut best: Option<(usize, f64)> = None;
        for &c in &scratch.touched {
            if c == refined[i] {
                continue;
            }
            let well_connected =
                external[c] >= factor * refined_weight[c] * (total - refined_weight[c]);
            if !well_connected {
                continue;
            }
            let gain = scratch.weight[c] - factor * a_v * refined_weight[c];
            // The largest gain, ties to the smaller founding node.
            if gain >= 0.0
                && best.is_none_or(|(b, g)| gain > g || (gain == g && nodes[c] < nodes[b]))
            {
                best = Some((c, gain));
            }
        }
        if let Some((c, _)) = best {
            let to_c = scratch.weight[c];
            external[c] += external[refined[i]] - 2.0 * to_c;
            refined_weight[c] += a_v;
            // Both the founder and v now share a refined community.
            singleton[i] = false;
            singleton[c] = false;
            refined[i] = c;
        }
        scratch.clear();
    }
    refined.iter().map(|&c| nodes[c]).collect()
}

/// The nodes of each group (`group[v]` < n_groups), listed in the order `nodes` gives them (a
/// stable counting sort): returns (start of each group's list, n_groups + 1 of them; the lists).
fn group_nodes(
    group: &[usize],
    n_groups: usize,
    nodes: impl Iterator<Item = usize>,
) -> (Vec<usize>, Vec<usize>) {
    let mut first = vec![0usize; n_groups + 1];
    for &g in group {
        first[g + 1] += 1;
    }
    for g in 0..n_groups {
        first[g + 1] += first[g];
    }
    let mut fill = first.clone();
    let mut lists = vec![0usize; group.len()];
    for v in nodes {
        lists[fill[group[v]]] = v;
        fill[group[v]] += 1;
    }
    (first, lists)
}

/// Ids 0.. in order of each group's first node; returns (dense id per node, group count).
fn renumber(group: &[usize]) -> (Vec<usize>, usize) {
    let mut id = vec![usize::MAX; group.len()];
    let mut dense = vec![0; group.len()];
    let mut next = 0;
    for (v, &g) in group.iter().enumerate() {
        if id[g] == usize::MAX {
            id[g] = next;
            next += 1;
        }
        dense[v] = id[g];
    }
    (dense, next)
}

/// Consecutive rows of an aggregate, built by one task: entries per row, then the rows' entries.
#[derive(Default)]
struct CoarseRows {
    lengths: Vec<usize>,
    cols: Vec<u32>,
    weights: Vec<f64>,
    node_weight: Vec<f64>,
}

/// The graph of the groups (`group[v]` dense ids < n_groups): summed weights, self loops for the
/// weight inside a group (each ordered pair once), summed node weights. Rows are built in parallel,
/// each from its group's nodes in node order, so the sums are the same for any thread count.
fn aggregate(level: &Level, group: &[usize], n_groups: usize) -> Level {
    let (first, nodes_by_group) = group_nodes(group, n_groups, 0..group.len());
    // Fixed chunks of coarse rows, each built into its own contiguous arrays (the chunking does
    // not depend on the thread count; a row's sums never cross chunks).
    const GROUPS_PER_CHUNK: usize = 256;
    let chunks: Vec<CoarseRows> = (0..n_groups.div_ceil(GROUPS_PER_CHUNK))
        .into_par_iter()
        .map_init(
            || Neighbourhood::new(n_groups),
            |scratch, chunk| {
                let groups = chunk * GROUPS_PER_CHUNK..n_groups.min((chunk + 1) * GROUPS_PER_CHUNK);
                let mut rows = CoarseRows::default();
                for g in groups {
                    let mut weight = 0.0;
                    for &v in &nodes_by_group[first[g]..first[g + 1]] {
                        weight += level.node_weight[v];
                        for (u, w) in level.neighbours(v) {
                            scratch.add(group[u], w);
                        }
                    }
                    scratch.touched.sort_unstable();
                    rows.cols.extend(scratch.touched.iter().map(|&c| c as u32));
                    rows.weights
                        .extend(scratch.touched.iter().map(|&c| scratch.weight[c]));
                    rows.lengths.push(scratch.touched.len());
                    rows.node_weight.push(weight);
                    scratch.clear();
                }
                rows
            },
        )
        .collect();
    let n_entries = chunks.iter().map(|chunk| chunk.cols.len()).sum();
    let mut rows = Vec::with_capacity(n_groups + 1);
    rows.push(0);
    let mut cols = Vec::with_capacity(n_entries);
    let mut weights = Vec::with_capacity(n_entries);
    let mut node_weight = Vec::with_capacity(n_groups);
    for chunk in chunks {
        for length in chunk.lengths {
            rows.push(rows.last().copied().unwrap_or(0) + length);
        }
        cols.extend_from_slice(&chunk.cols);
        weights.extend_from_slice(&chunk.weights);
        node_weight.extend_from_slice(&chunk.node_weight);
    }
    Level {
        rows,
        cols,
        weights,
        node_weight,
    }
}

/// The objective's value of `labels` (any ids) on the symmetric graph.
pub fn quality(graph: &Csr, labels: &[u64], objective: Objective, resolution: f64) -> f64 {
    let n = labels.len();
    let (group, n_groups) = renumber(&labels.iter().map(|&l| l as usize).collect::<Vec<_>>());
    let mut inside = vec![0.0; n_groups];
    let mut degree = vec![0.0; n_groups];
    let mut count = vec![0.0; n_groups];
    let mut total = 0.0;
    for v in 0..n {
        count[group[v]] += 1.0;
        for e in graph.row_ptr[v]..graph.row_ptr[v + 1] {
            let (u, w) = (graph.cols[e] as usize, graph.values[e]);
            degree[group[v]] += w;
            total += w;
            if group[u] == group[v] {
                inside[group[v]] += w;
            }
        }
    }
    match objective {
        Objective::Modularity => {
            if total <= 0.0 {
                return 0.0;
            }
            (0..n_groups)
                .map(|c| inside[c] / total - resolution * (degree[c] / total).powi(2))
                .sum()
        }
        Objective::Cpm => (0..n_groups)
            .map(|c| inside[c] / 2.0 - resolution * count[c] * (count[c] - 1.0) / 2.0)
            .sum(),
    }
}

/// Leiden communities of the symmetric weighted graph `graph` (n x n, both directions of every
/// edge stored, no negative weights).
pub fn leiden(graph: &Csr, params: &LeidenParams) -> LeidenOutcome {
    let n = graph.row_ptr.len().saturating_sub(1);
    let degrees: Vec<f64> = (0..n)
        .map(|v| {
            graph.values[graph.row_ptr[v]..graph.row_ptr[v + 1]]
                .iter()
                .sum()
        })
        .collect();
    let total: f64 = degrees.iter().sum();
    let (node_weight, factor) = match params.objective {
        Objective::Modularity => (
            degrees,
            if total > 0.0 {
                params.resolution / total
            } else {
                0.0
            },
        ),
        Objective::Cpm => (vec![1.0; n], params.resolution),
    };
    let base = Level {
        rows: graph.row_ptr.clone(),
        cols: graph.cols.clone(),
        weights: graph.values.clone(),
        node_weight,
    };
    let cap = if params.max_iterations == 0 {
        PASS_CAP
    } else {
        params.max_iterations
    };
    // membership: original node -> community id (< n).
    let mut membership: Vec<usize> = (0..n).collect();
    let mut iterations = 0;
    let mut converged = false;
    let mut last_moved: Option<Vec<usize>> = None;
    while iterations < cap {
        iterations += 1;
        let changed = one_pass(&base, &mut membership, factor, params.seed, &mut last_moved);
        if !changed {
            converged = true;
            break;
        }
    }
    // Canonical labels: the smallest node of each community.
    let mut smallest = vec![u64::MAX; n];
    for (v, &c) in membership.iter().enumerate() {
        smallest[c] = smallest[c].min(v as u64);
    }
    let labels: Vec<u64> = membership.iter().map(|&c| smallest[c]).collect();
    let n_communities = smallest.iter().filter(|&&s| s != u64::MAX).count();
    let quality = quality(graph, &labels, params.objective, params.resolution);
    LeidenOutcome {
        labels,
        n_communities,
        quality,
        iterations,
        converged,
    }
}

/// One Leiden pass from the partition `membership` of the base graph (updated in place): local
/// moving, refinement and aggregation until the aggregate no longer shrinks. True when the
/// partition changed.
///
/// `last_moved` holds the base graph's partition after local moving in the previous pass
/// (renumbered). Everything after that point is a function of it alone, so when this pass's local
/// moving ends in the same partition, the rest would repeat the previous pass and end where this
/// one started: the pass returns there, unchanged, with the result it would have computed.
fn one_pass(
    base: &Level,
    membership: &mut [usize],
    factor: f64,
    seed: u64,
    last_moved: &mut Option<Vec<usize>>,
) -> bool {
    let n = base.n();
    let (before, _) = renumber(membership);
    // node_of[v]: the current level's node holding original node v.
    let mut node_of: Vec<usize> = (0..n).collect();
    let mut level_owned: Option<Level> = None;
    let mut community = before.clone();
    loop {
        let level = level_owned.as_ref().unwrap_or(base);
        move_nodes(level, &mut community, factor, seed);
        let (dense, n_communities) = renumber(&community);
        if level_owned.is_none() {
            if last_moved.as_ref() == Some(&dense) {
                return false;
            }
            *last_moved = Some(dense.clone());
        }
        if n_communities == level.n() {
            community = dense;
            break;
        }
        let refined = refine(level, &dense, factor, seed);
        let (refined_dense, n_refined) = renumber(&refined);
        // Refinement merged nothing: aggregating would not shrink the graph.
        if n_refined == level.n() {
            community = dense;
            break;
        }
        // The aggregate's initial partition: the (unrefined) community of each refined group.
        let mut next_community = vec![0; n_refined];
        for v in 0..level.n() {
            next_community[refined_dense[v]] = dense[v];
        }
        let next = aggregate(level, &refined_dense, n_refined);
        for slot in node_of.iter_mut() {
            *slot = refined_dense[*slot];
        }
        community = next_community;
        level_owned = Some(next);
    }
    for (v, slot) in membership.iter_mut().enumerate() {
        *slot = community[node_of[v]];
    }
    let after = renumber(membership).0;
    after != before
}

#[cfg(test)]
mod tests;
