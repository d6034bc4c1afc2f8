//! The largest eigenpairs of a graph's normalised adjacency D^-1/2 W D^-1/2, one connected
//! component at a time.
//!
//! The operator is block diagonal over the connected components, so its spectrum is the union of
//! the components' spectra and every eigenvector can be taken inside one component. Solving them
//! apart is both cheaper and better conditioned than one Krylov sequence over the whole graph:
//! the second eigenvalues of similar components sit in a narrow cluster that a single sequence
//! must resolve, while within one component they are well separated.
//!
//! 1. The eigenvalue 1 of each component is known exactly ([`component_eigenpairs`]).
//! 2. A component of at most [`local_limit`] rows (or one the dense solver takes, up to
//!    [`DENSE_ROWS_CAP`] rows) is gathered whole onto one rank (components are
//!    dealt to the least-loaded rank, largest first) and solved there: densely up to
//!    [`DENSE_ROWS`] rows or [`DENSE_ROWS_PER_PAIR`] rows per wanted pair, by serial Lanczos with its eigenvalue-1 vector locked otherwise. Each
//!    gives its `want` largest other eigenpairs; the ranks solve different components at once.
//! 3. The remaining (large) components are solved together by distributed Lanczos on their rows
//!    only (a support mask), with their eigenvalue-1 vectors locked.
//! 4. The `want` largest of all candidates (ties by component label, then position) complete the
//!    known pairs; the vectors of those found on one rank are sent to the ranks owning the rows.
//!
//! Which path a component takes depends only on its size and the number of rows, never on the
//! rank count, and a gathered component is the same matrix in the same row order whichever rank
//! solves it, so the results are bit-identical for any rank or thread count.

use crate::distributed::spectral::{component_eigenpairs_from, component_table, ComponentInfo};
use crate::distributed::CommReduce;
use bytemuck::{Pod, Zeroable};
use embsolve_comm::{self as comm, Comm};
use embsolve_kernels::csr::Csr;
use embsolve_kernels::exact::ExactSum;
use embsolve_kernels::lanczos::{
    dense_symmetric_eigen, exact_dot, lanczos, lanczos_on_support, power_of_two_scale,
    KnownEigenpairs, LanczosOutcome, LanczosParams,
};
use embsolve_kernels::linop::{LinOp, SerialReduce};
use rayon::prelude::*;
use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};

/// Components of at most this many rows are solved by a dense eigendecomposition.
pub const DENSE_ROWS: usize = 96;
/// A component is also solved densely when it has at most this many rows per wanted eigenpair:
/// a Krylov basis would then span a large part of its space, where Lanczos gains nothing and its
/// orthogonality is hardest to keep. Above it Lanczos is faster: 300 pairs of a 2,400-row
/// component take 2.2 s by Lanczos against 5.1 s densely (same eigenvalues to 1e-14).
pub const DENSE_ROWS_PER_PAIR: usize = 4;

/// Whether a component of `n` rows with `want` wanted pairs (beside its eigenvalue 1) is solved
/// densely.
pub fn solves_densely(n: usize, want: usize) -> bool {
    n <= DENSE_ROWS || n <= DENSE_ROWS_PER_PAIR * (want + 1)
}
/// Largest component solved densely (a dense solve of this size takes about a minute). Up to it,
/// a component that `solves_densely` is gathered onto one rank whatever its share of the rows:
/// there the Krylov basis would span a large part of the space, and the dense solve is cheaper.
pub const DENSE_ROWS_CAP: usize = 4096;

/// Whether a component of `rows` rows (with `want` wanted pairs) is gathered and solved on one
/// rank, for a graph whose gather limit is `limit` rows.
pub fn gathered(rows: usize, limit: usize, want: usize) -> bool {
    rows <= limit || (rows <= DENSE_ROWS_CAP && solves_densely(rows, want))
}

/// Largest component gathered onto one rank, whatever the graph size.
const LOCAL_ROWS_CAP: usize = 1 << 20;
/// A component gathered onto one rank holds at most 1 / `LOCAL_FRACTION` of the graph's rows, so
/// one component does not leave the other ranks idle for long.
const LOCAL_FRACTION: usize = 4;

/// The largest component solved whole on one rank, for a graph of `n_rows` rows.
pub fn local_limit(n_rows: usize) -> usize {
    (n_rows / LOCAL_FRACTION).clamp(DENSE_ROWS, LOCAL_ROWS_CAP)
}

/// This rank's view of the graph.
pub struct ComponentGraph<'a> {
    pub n_rows: usize,
    /// Global row of the first local row.
    pub row_start: usize,
    /// Connected-component label of each local row (equal labels, equal components).
    pub labels: &'a [i64],
    /// Weighted degree of each local row.
    pub degrees: &'a [f64],
    /// This rank's rows of D^-1/2 W D^-1/2, entries by ascending global column.
    pub normalized: &'a Csr,
    /// Global row of each CSR column.
    pub columns: &'a [u64],
    /// D^-1/2 W D^-1/2 as a collective operator on this rank's rows.
    pub operator: &'a dyn LinOp,
}

/// A row of a gathered component in flight: its global row, component, degree and entry count.
#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable)]
struct RowHead {
    row: u64,
    label: u64,
    degree: f64,
    entries: u64,
}

/// One stored entry of a gathered row: global column and value.
#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable)]
struct RowEntry {
    col: u64,
    value: f64,
}

/// An eigenpair found inside one gathered component, in the order candidates compete.
#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable)]
struct Candidate {
    value: f64,
    residual: f64,
    /// Component label, `DISTRIBUTED` for the distributed search.
    label: u64,
    /// Position among the component's (or the distributed search's) found pairs.
    index: u64,
    /// Rank holding the vector.
    holder: u64,
}

const DISTRIBUTED: u64 = u64::MAX;

/// One entry of a found eigenvector on its way to the rank owning the row.
#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable)]
struct VectorEntry {
    row: u64,
    column: u64,
    value: f64,
}

impl Candidate {
    fn order(&self, other: &Self) -> std::cmp::Ordering {
        other
            .value
            .total_cmp(&self.value)
            .then(self.label.cmp(&other.label))
            .then(self.index.cmp(&other.index))
    }
}

/// One gathered component solved on this rank: its rows (ascending) and found pairs.
struct Solved {
    label: u64,
    rows: Vec<u64>,
    /// The found pairs (vectors: rows x found, row-major).
    found: LanczosOutcome,
}

/// The `params.n_eigs` largest eigenpairs of D^-1/2 W D^-1/2 (see the module rules): the
/// eigenvalue-1 pairs of the components first, then the others in descending order. Collective.
pub fn component_spectrum(
    comm: &dyn Comm,
    graph: &ComponentGraph,
    params: &LanczosParams,
) -> LanczosOutcome {
    let n_local = graph.labels.len();
    let reduce = CommReduce(comm);
    let table = component_table(comm, graph.labels, graph.degrees);
    let (known, known_labels) =
        component_eigenpairs_from(comm, graph.labels, graph.degrees, &table, params.n_eigs);
    let n_eigs = params.n_eigs.min(graph.n_rows);
    let n_known = known.values.len();
    let want = n_eigs - n_known;
    if want == 0 {
        let mut iterations = 0;
        let residuals = known_residuals(graph, &reduce, &known, &mut iterations);
        return LanczosOutcome {
            converged: residuals.iter().all(|&r| r <= params.tol),
            eigenvalues: known.values,
            vectors: known.vectors,
            residuals,
            iterations: iterations as usize,
        };
    }

    let limit = local_limit(graph.n_rows);
    let local: BTreeMap<u64, usize> = deal(&table, limit, want, comm.size());
    let large_rows: u64 = table
        .iter()
        .filter(|c| !local.contains_key(&c.label))
        .map(|c| c.rows)
        .sum();
    log::info!(
        "spectral: {} connected components; {} of at most {limit} rows solved whole on single \
         ranks, {large_rows} rows in larger ones solved by distributed Lanczos",
        table.len(),
        local.len()
    );

    // The large components: distributed Lanczos on their rows.
    let mut candidates: Vec<Candidate> = Vec::new();
    let mut distributed: Option<LanczosOutcome> = None;
    let mut distributed_known = 0;
    let mut iterations = 0u64;
    let mut converged = true;
    if large_rows > 0 {
        let support: Vec<bool> = graph
            .labels
            .iter()
            .map(|&l| !local.contains_key(&(l as u64)))
            .collect();
        let columns: Vec<usize> = (0..n_known)
            .filter(|&c| !local.contains_key(&known_labels[c]))
            .collect();
        let known_large = KnownEigenpairs {
            values: vec![1.0; columns.len()],
            vectors: (0..n_local)
                .flat_map(|row| columns.iter().map(move |&c| (row, c)))
                .map(|(row, c)| known.vectors[row * n_known + c])
                .collect(),
        };
        distributed_known = columns.len();
        let outcome = lanczos_on_support(
            graph.operator,
            &reduce,
            large_rows as usize,
            graph.row_start,
            &LanczosParams {
                n_eigs: distributed_known + want,
                ..*params
            },
            Some(&known_large),
            Some(&support),
        );
        for index in distributed_known..outcome.eigenvalues.len() {
            candidates.push(Candidate {
                value: outcome.eigenvalues[index],
                residual: outcome.residuals[index],
                label: DISTRIBUTED,
                index: (index - distributed_known) as u64,
                holder: DISTRIBUTED,
            });
        }
        iterations += outcome.iterations as u64;
        converged &= outcome.converged;
        distributed = Some(outcome);
    }

    // The small components: gathered and solved whole, each on one rank.
    let solved = solve_gathered(comm, graph, &local, want, params);
    let rank = comm.rank() as u64;
    let mut own: Vec<Candidate> = Vec::new();
    let mut local_iterations = [0u64];
    let mut local_converged = [1u64];
    for component in &solved {
        local_iterations[0] += component.found.iterations as u64;
        if !component.found.converged {
            local_converged[0] = 0;
        }
        let found = &component.found;
        for (index, (&value, &residual)) in
            found.eigenvalues.iter().zip(&found.residuals).enumerate()
        {
            own.push(Candidate {
                value,
                residual,
                label: component.label,
                index: index as u64,
                holder: rank,
            });
        }
    }
    // Only this rank's best `want` can be among the best `want` overall.
    own.sort_by(Candidate::order);
    own.truncate(want);
    comm.allreduce_sum_u64(&mut local_iterations);
    comm.allreduce_min_u64(&mut local_converged);
    iterations += local_iterations[0];
    converged &= local_converged[0] == 1;
    candidates.extend(comm::allgatherv(comm, &own).0);
    candidates.sort_by(Candidate::order);
    candidates.truncate(want);
    let n_out = n_known + candidates.len();

    // Assemble this rank's rows: known columns, then the chosen found pairs.
    let mut vectors = vec![0.0; n_local * n_out];
    for row in 0..n_local {
        vectors[row * n_out..row * n_out + n_known]
            .copy_from_slice(&known.vectors[row * n_known..(row + 1) * n_known]);
    }
    let mut send: Vec<Vec<VectorEntry>> = vec![Vec::new(); comm.size()];
    let layout = embsolve_kernels::layout::RowLayout::new(graph.n_rows, comm.size());
    let by_label: BTreeMap<u64, &Solved> = solved.iter().map(|s| (s.label, s)).collect();
    for (position, candidate) in candidates.iter().enumerate() {
        let column = n_known + position;
        if candidate.holder == DISTRIBUTED {
            let outcome = distributed
                .as_ref()
                .expect("a distributed candidate has a search");
            let width = outcome.eigenvalues.len();
            let source = distributed_known + candidate.index as usize;
            for row in 0..n_local {
                vectors[row * n_out + column] = outcome.vectors[row * width + source];
            }
        } else if candidate.holder == rank {
            let component = by_label[&candidate.label];
            let width = component.found.eigenvalues.len();
            for (i, &row) in component.rows.iter().enumerate() {
                send[layout.owner(row as usize)].push(VectorEntry {
                    row,
                    column: column as u64,
                    value: component.found.vectors[i * width + candidate.index as usize],
                });
            }
        }
    }
    let counts: Vec<usize> = send.iter().map(Vec::len).collect();
    let flat: Vec<VectorEntry> = send.into_iter().flatten().collect();
    let (received, _) = comm::alltoallv(comm, &flat, &counts);
    for entry in received {
        let row = entry.row as usize - graph.row_start;
        vectors[row * n_out + entry.column as usize] = entry.value;
    }

    let mut eigenvalues = known.values.clone();
    let mut residuals = known_residuals(graph, &reduce, &known, &mut iterations);
    converged &= residuals.iter().all(|&r| r <= params.tol);
    eigenvalues.extend(candidates.iter().map(|c| c.value));
    residuals.extend(candidates.iter().map(|c| c.residual));
    converged &= candidates.len() == want;
    LanczosOutcome {
        eigenvalues,
        vectors,
        residuals,
        iterations: iterations as usize,
        converged,
    }
}

/// Residual norms of the known pairs ||A y - y||, one operator application each (exact sums of
/// the residual scaled by a power of two, so small residuals keep their digits).
fn known_residuals(
    graph: &ComponentGraph,
    reduce: &CommReduce,
    known: &KnownEigenpairs,
    iterations: &mut u64,
) -> Vec<f64> {
    use embsolve_kernels::linop::Reduce;
    let n_local = graph.labels.len();
    let n_known = known.values.len();
    let mut x = vec![0.0; n_local];
    let mut y = vec![0.0; n_local];
    (0..n_known)
        .map(|c| {
            for (row, xi) in x.iter_mut().enumerate() {
                *xi = known.vectors[row * n_known + c];
            }
            graph.operator.apply(&x, &mut y);
            *iterations += 1;
            for (yi, xi) in y.iter_mut().zip(&x) {
                *yi -= known.values[c] * xi;
            }
            let mut largest = [y.iter().fold(0.0f64, |m, v| m.max(v.abs()))];
            reduce.max_f64(&mut largest);
            let scale = power_of_two_scale(largest[0]);
            let mut sum = [exact_dot(&y, &y, scale * scale)];
            reduce.sum_exact(&mut sum);
            sum[0].value().max(0.0).sqrt() / scale
        })
        .collect()
}

/// The rank that solves each component of at most `limit` rows: largest first (then smallest
/// label) to the rank with the fewest rows so far (then the lowest rank).
fn deal(
    table: &[ComponentInfo],
    limit: usize,
    want: usize,
    n_ranks: usize,
) -> BTreeMap<u64, usize> {
    let mut small: Vec<&ComponentInfo> = table
        .iter()
        .filter(|c| gathered(c.rows as usize, limit, want))
        .collect();
    small.sort_by_key(|c| (Reverse(c.rows), c.label));
    // (rows so far, rank), least first.
    let mut load: BinaryHeap<Reverse<(u64, usize)>> =
        (0..n_ranks).map(|r| Reverse((0, r))).collect();
    let mut owner = BTreeMap::new();
    for component in small {
        let Reverse((rows, rank)) = load.pop().expect("one rank");
        load.push(Reverse((rows + component.rows, rank)));
        owner.insert(component.label, rank);
    }
    owner
}

/// Gather every component dealt to this rank and solve it; the components in label order.
fn solve_gathered(
    comm: &dyn Comm,
    graph: &ComponentGraph,
    owner: &BTreeMap<u64, usize>,
    want: usize,
    params: &LanczosParams,
) -> Vec<Solved> {
    let n_ranks = comm.size();
    let mut heads: Vec<Vec<RowHead>> = vec![Vec::new(); n_ranks];
    let mut entries: Vec<Vec<RowEntry>> = vec![Vec::new(); n_ranks];
    for (row, &label) in graph.labels.iter().enumerate() {
        let Some(&rank) = owner.get(&(label as u64)) else {
            continue;
        };
        let (cols, values) = graph.normalized.row(row);
        heads[rank].push(RowHead {
            row: (graph.row_start + row) as u64,
            label: label as u64,
            degree: graph.degrees[row],
            entries: cols.len() as u64,
        });
        entries[rank].extend(cols.iter().zip(values).map(|(&c, &value)| RowEntry {
            col: graph.columns[c as usize],
            value,
        }));
    }
    let head_counts: Vec<usize> = heads.iter().map(Vec::len).collect();
    let entry_counts: Vec<usize> = entries.iter().map(Vec::len).collect();
    let heads: Vec<RowHead> = heads.into_iter().flatten().collect();
    let entries: Vec<RowEntry> = entries.into_iter().flatten().collect();
    let (heads, _) = comm::alltoallv(comm, &heads, &head_counts);
    let (entries, _) = comm::alltoallv(comm, &entries, &entry_counts);

    // Per component: its rows with their entries' range in `entries`.
    let mut components: BTreeMap<u64, Vec<(RowHead, usize)>> = BTreeMap::new();
    let mut next = 0;
    for head in heads {
        components.entry(head.label).or_default().push((head, next));
        next += head.entries as usize;
    }
    components
        .into_par_iter()
        .map(|(label, mut rows)| {
            rows.sort_by_key(|(head, _)| head.row);
            solve_component(label, &rows, &entries, want, params)
        })
        .collect()
}

/// The `want` largest eigenpairs of one whole component other than its eigenvalue-1 pair.
fn solve_component(
    label: u64,
    rows: &[(RowHead, usize)],
    entries: &[RowEntry],
    want: usize,
    params: &LanczosParams,
) -> Solved {
    let n = rows.len();
    let global: Vec<u64> = rows.iter().map(|(head, _)| head.row).collect();
    let mut matrix = Csr {
        n_cols: n,
        row_ptr: vec![0],
        ..Csr::default()
    };
    for (head, start) in rows {
        for entry in &entries[*start..*start + head.entries as usize] {
            let col = global
                .binary_search(&entry.col)
                .expect("a component's edges stay inside it");
            matrix.cols.push(col as u32);
            matrix.values.push(entry.value);
        }
        matrix.row_ptr.push(matrix.cols.len());
    }
    // The exact eigenvalue-1 vector, as `component_eigenpairs` builds it.
    let mut total = ExactSum::default();
    for (head, _) in rows {
        if head.degree > 0.0 {
            total.add(head.degree);
        }
    }
    let total = total.value();
    let known: Option<Vec<f64>> = (total > 0.0).then(|| {
        rows.iter()
            .map(|(head, _)| {
                if head.degree > 0.0 {
                    (head.degree / total).sqrt()
                } else {
                    0.0
                }
            })
            .collect()
    });
    let found = if solves_densely(n, want) {
        solve_dense(&matrix, known.as_deref(), want)
    } else {
        let known = known.map(|vectors| KnownEigenpairs {
            values: vec![1.0],
            vectors,
        });
        let n_known = known.as_ref().map_or(0, |k| k.values.len());
        let outcome = lanczos(
            &matrix,
            &SerialReduce,
            n,
            0,
            &LanczosParams {
                n_eigs: n_known + want,
                ..*params
            },
            known.as_ref(),
        );
        let width = outcome.eigenvalues.len();
        LanczosOutcome {
            eigenvalues: outcome.eigenvalues[n_known..].to_vec(),
            residuals: outcome.residuals[n_known..].to_vec(),
            vectors: (0..n)
                .flat_map(|r| outcome.vectors[r * width + n_known..(r + 1) * width].to_vec())
                .collect(),
            iterations: outcome.iterations,
            converged: outcome.converged,
        }
    };
    Solved {
        label,
        rows: global,
        found,
    }
}

/// Dense eigendecomposition of a small component; the eigenvector most aligned with the known
/// eigenvalue-1 vector (if any) is left out, the `want` largest others are kept with the sign
/// rule of Lanczos (largest magnitude, first row on ties, positive).
fn solve_dense(matrix: &Csr, known: Option<&[f64]>, want: usize) -> LanczosOutcome {
    let n = matrix.n_rows();
    let mut dense = vec![0.0; n * n];
    for row in 0..n {
        let (cols, values) = matrix.row(row);
        for (&c, &v) in cols.iter().zip(values) {
            dense[row * n + c as usize] = v;
        }
    }
    let (values, vectors) = dense_symmetric_eigen(n, &dense);
    let skip = known.map(|k| {
        let alignment = |column: usize| -> f64 {
            (0..n)
                .map(|row| vectors[row * n + column] * k[row])
                .sum::<f64>()
                .abs()
        };
        (0..n)
            .max_by(|&a, &b| alignment(a).total_cmp(&alignment(b)).then(b.cmp(&a)))
            .expect("a component has rows")
    });
    let kept: Vec<usize> = (0..n).filter(|&c| Some(c) != skip).take(want).collect();
    let width = kept.len();
    let mut out = vec![0.0; n * width];
    let mut residuals = Vec::with_capacity(width);
    for (j, &c) in kept.iter().enumerate() {
        let column: Vec<f64> = (0..n).map(|row| vectors[row * n + c]).collect();
        let largest = column.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        let first = column.iter().position(|v| v.abs() == largest).unwrap_or(0);
        let sign = if column[first] < 0.0 { -1.0 } else { 1.0 };
        let mut image = vec![0.0; n];
        matrix.spmv(&column, &mut image);
        let residual = image
            .iter()
            .zip(&column)
            .map(|(y, x)| (y - values[c] * x).powi(2))
            .sum::<f64>()
            .sqrt();
        residuals.push(residual);
        for row in 0..n {
            out[row * width + j] = sign * column[row];
        }
    }
    LanczosOutcome {
        eigenvalues: kept.iter().map(|&c| values[c]).collect(),
        residuals,
        vectors: out,
        iterations: 0,
        converged: true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(label: u64, rows: u64) -> ComponentInfo {
        ComponentInfo {
            label,
            rows,
            positive_rows: rows,
        }
    }

    #[test]
    fn components_go_largest_first_to_the_least_loaded_rank() {
        let table = [
            info(0, 50),
            info(10, 30),
            info(20, 30),
            info(30, 500),
            info(40, 5),
        ];
        let owner = deal(&table, 100, 1, 2);
        // 500 rows exceed the limit; 50 -> rank 0, 30 -> rank 1, 30 -> rank 1 (30 < 50),
        // 5 -> rank 0 (50 < 60).
        let expected: BTreeMap<u64, usize> = [(0, 0), (10, 1), (20, 1), (40, 0)].into();
        assert_eq!(owner, expected);
        let one: Vec<usize> = deal(&table, 100, 1, 1).into_values().collect();
        assert_eq!(one, vec![0; 4]);
        // With 124 wanted pairs the 500 rows go to the dense solver, gathered first.
        let dense = deal(&table, 100, 124, 2);
        assert_eq!(dense[&30], 0);
        assert_eq!(dense.len(), 5);
    }

    #[test]
    fn the_local_limit_is_a_quarter_of_the_rows_within_bounds() {
        assert_eq!(local_limit(10), DENSE_ROWS);
        assert_eq!(local_limit(20_000), 5_000);
        assert_eq!(local_limit(1 << 30), LOCAL_ROWS_CAP);
    }
}
