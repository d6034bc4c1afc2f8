//! The automatic number of clusters from the eigenvalues of the normalised adjacency: the largest
//! gap in log(1 - lambda), where gaps after a connected component's eigenvalue 1 count as a
//! fixed ratio. Robust to the near-degenerate spectra of real data, where the raw gap rule picks
//! a gap deep in the noisy tail.
//!
//! With mu_i = 1 - lambda_i (the normalised Laplacian's eigenvalues, ascending), the score of
//! k clusters is ln(mu_{k+1} / mu_k): a cluster structure with k groups shows as mu_1..mu_k small
//! and mu_{k+1} large relative to them, whatever the absolute scale (0.9999, 0.9998, ... then
//! 0.98 is as clear a gap as 0.9 then 0.5). Eigenvalues within `COMPONENT_EIGENVALUE` of 1 are
//! connected components (exactly 1 up to rounding), whose ratio would be infinite: the gap after
//! the last of them scores ln(`COMPONENT_GAP_RATIO`), so structure inside the components wins only
//! where it is clearer than a tenfold ratio. k ranges over 2..n-1 for n computed eigenvalues.

/// 1 - lambda below this: lambda is a connected component's eigenvalue 1.
pub const COMPONENT_EIGENVALUE: f64 = 1e-8;

/// The ratio mu_{k+1} / mu_k that the gap after the component eigenvalues counts as.
pub const COMPONENT_GAP_RATIO: f64 = 10.0;

/// The chosen number of clusters and the scores it was chosen from.
#[derive(Debug, Clone, PartialEq)]
pub struct Eigengap {
    pub n_clusters: usize,
    /// The k of `log_ratios[0]`.
    pub first_k: usize,
    /// ln(mu_{k+1} / mu_k) for k = first_k, first_k + 1, ..., n - 1; `None` between two
    /// component eigenvalues (no gap).
    pub log_ratios: Vec<Option<f64>>,
    /// No gap was seen: every computed eigenvalue belongs to a component (n_clusters = n).
    pub no_gap: bool,
}

/// The number of clusters for `eigenvalues` (descending): the k in 2..n-1 with the largest score
/// (the smaller k on ties); n when n <= 2 or when no gap is seen.
pub fn eigengap(eigenvalues: &[f64]) -> Eigengap {
    let n = eigenvalues.len();
    let first_k = 2;
    if n <= first_k {
        return Eigengap {
            n_clusters: n.max(1),
            first_k,
            log_ratios: Vec::new(),
            no_gap: false,
        };
    }
    let mu = |i: usize| (1.0 - eigenvalues[i]).max(0.0);
    let log_ratios: Vec<Option<f64>> = (first_k..n)
        .map(|k| {
            let (below, above) = (mu(k - 1), mu(k));
            if above <= COMPONENT_EIGENVALUE {
                None
            } else if below <= COMPONENT_EIGENVALUE {
                Some(COMPONENT_GAP_RATIO.ln())
            } else {
                Some((above / below).ln())
            }
        })
        .collect();
    let mut best: Option<(usize, f64)> = None;
    for (offset, score) in log_ratios.iter().enumerate() {
        if let Some(score) = *score {
            if best.is_none_or(|(_, top)| score > top) {
                best = Some((first_k + offset, score));
            }
        }
    }
    match best {
        Some((k, _)) => Eigengap {
            n_clusters: k,
            first_k,
            log_ratios,
            no_gap: false,
        },
        None => Eigengap {
            n_clusters: n,
            first_k,
            log_ratios,
            no_gap: true,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn k(eigenvalues: &[f64]) -> usize {
        eigengap(eigenvalues).n_clusters
    }

    #[test]
    fn the_largest_log_gap_wins() {
        assert_eq!(k(&[1.0, 0.99, 0.98, 0.5, 0.45]), 3);
        assert_eq!(k(&[1.0, 1.0, 1.0, 0.2]), 3);
        assert_eq!(k(&[1.0, 0.9]), 2);
        // A gap after the first eigenvalue alone is not a clustering: k is at least 2.
        assert_eq!(k(&[1.0, 0.2, 0.19, 0.1]), 3);
    }

    #[test]
    fn near_degenerate_leading_eigenvalues_beat_a_larger_raw_gap_in_the_tail() {
        // One component, four tight clusters (mu 1e-4 .. 4e-4), then a tail with a raw gap of 0.2
        // that the raw rule would pick.
        let values = [1.0, 0.9999, 0.9998, 0.9997, 0.99, 0.98, 0.78, 0.77];
        assert_eq!(k(&values), 4);
        let gap = eigengap(&values);
        assert_eq!(gap.first_k, 2);
        assert_eq!(gap.log_ratios.len(), values.len() - 2);
        assert!((gap.log_ratios[2].unwrap() - (0.01f64 / 3e-4).ln()).abs() < 1e-9);
    }

    #[test]
    fn components_count_as_a_tenfold_gap() {
        // Three components; inside them a twofold gap (weaker than the components'): 3.
        assert_eq!(k(&[1.0, 1.0, 1.0, 0.99, 0.98, 0.96]), 3);
        // Inside them a hundredfold gap: the structure inside wins (5 clusters).
        assert_eq!(k(&[1.0, 1.0, 1.0, 0.9999, 0.9999, 0.99, 0.98]), 5);
        let gap = eigengap(&[1.0, 1.0, 1.0, 0.99]);
        assert_eq!(gap.log_ratios, vec![None, Some(10f64.ln())]);
    }

    #[test]
    fn no_gap_among_the_computed_eigenvalues_gives_all_of_them() {
        let gap = eigengap(&[1.0, 1.0 - 1e-14, 1.0 - 2e-14, 1.0 - 3e-14]);
        assert_eq!(gap.n_clusters, 4);
        assert!(gap.no_gap);
        assert_eq!(k(&[1.0]), 1);
        assert_eq!(k(&[]), 1);
    }
}
