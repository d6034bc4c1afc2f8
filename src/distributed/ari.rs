//! Adjusted Rand index over distributed label vectors: each rank counts its (truth, predicted)
//! pairs, the counts are gathered exactly (integers), and every rank computes the same index.

use embsolve_comm::{allgatherv, Comm};
use std::collections::BTreeMap;

/// The adjusted Rand index of two labelings of the same rows (this rank's slices). Collective.
/// 1 for identical partitions up to renaming, about 0 for independent ones; 1 when neither
/// labeling splits any pair differently (e.g. both put every row in one cluster).
pub fn adjusted_rand_index(comm: &dyn Comm, truth: &[i64], predicted: &[i64]) -> f64 {
    debug_assert_eq!(truth.len(), predicted.len());
    let local = contingency(truth, predicted);
    let flat: Vec<i64> = local
        .iter()
        .flat_map(|(&(t, p), &count)| [t, p, count as i64])
        .collect();
    let (all, _) = allgatherv(comm, &flat);
    let mut table = BTreeMap::new();
    for triple in all.chunks_exact(3) {
        *table.entry((triple[0], triple[1])).or_insert(0u64) += triple[2] as u64;
    }
    ari_from_contingency(&table)
}

/// Counts of each (truth, predicted) pair.
pub fn contingency(truth: &[i64], predicted: &[i64]) -> BTreeMap<(i64, i64), u64> {
    let mut table = BTreeMap::new();
    for (&t, &p) in truth.iter().zip(predicted) {
        *table.entry((t, p)).or_insert(0u64) += 1;
    }
    table
}

/// The adjusted Rand index from a contingency table, through the pair confusion matrix (the
/// formula scikit-learn uses), with exact integer counts.
pub fn ari_from_contingency(table: &BTreeMap<(i64, i64), u64>) -> f64 {
    let mut truth_sizes: BTreeMap<i64, i128> = BTreeMap::new();
    let mut predicted_sizes: BTreeMap<i64, i128> = BTreeMap::new();
    let mut n: i128 = 0;
    let mut sum_squares: i128 = 0;
    for (&(t, p), &count) in table {
        let count = count as i128;
        *truth_sizes.entry(t).or_insert(0) += count;
        *predicted_sizes.entry(p).or_insert(0) += count;
        n += count;
        sum_squares += count * count;
    }
    let truth_squares: i128 = truth_sizes.values().map(|s| s * s).sum();
    let predicted_squares: i128 = predicted_sizes.values().map(|s| s * s).sum();
    // Ordered pairs of distinct rows: together in both, only in predicted, only in truth, neither.
    let both = sum_squares - n;
    let only_predicted = predicted_squares - sum_squares;
    let only_truth = truth_squares - sum_squares;
    let neither = n * n - only_predicted - only_truth - sum_squares;
    if only_predicted == 0 && only_truth == 0 {
        return 1.0;
    }
    let (both, only_predicted, only_truth, neither) = (
        both as f64,
        only_predicted as f64,
        only_truth as f64,
        neither as f64,
    );
    2.0 * (both * neither - only_truth * only_predicted)
        / ((both + only_truth) * (only_truth + neither)
            + (both + only_predicted) * (only_predicted + neither))
}

#[cfg(test)]
mod tests {
    use super::*;
    use embsolve_comm::SerialComm;

    /// The textbook formula with binomial coefficients, the oracle.
    fn naive_ari(truth: &[i64], predicted: &[i64]) -> f64 {
        let choose2 = |x: f64| x * (x - 1.0) / 2.0;
        let table = contingency(truth, predicted);
        let mut rows: BTreeMap<i64, f64> = BTreeMap::new();
        let mut cols: BTreeMap<i64, f64> = BTreeMap::new();
        let mut index = 0.0;
        for (&(t, p), &c) in &table {
            *rows.entry(t).or_default() += c as f64;
            *cols.entry(p).or_default() += c as f64;
            index += choose2(c as f64);
        }
        let a: f64 = rows.values().map(|&x| choose2(x)).sum();
        let b: f64 = cols.values().map(|&x| choose2(x)).sum();
        let expected = a * b / choose2(truth.len() as f64);
        (index - expected) / ((a + b) / 2.0 - expected)
    }

    #[test]
    fn known_values_and_oracle() {
        let identical = [0, 0, 1, 1, 2, 2];
        let renamed = [5, 5, -1, -1, 9, 9];
        assert_eq!(adjusted_rand_index(&SerialComm, &identical, &renamed), 1.0);
        // scikit-learn: adjusted_rand_score([0,0,1,1], [0,0,1,2]) = 0.5714285714285715
        let value = adjusted_rand_index(&SerialComm, &[0, 0, 1, 1], &[0, 0, 1, 2]);
        assert!((value - 0.5714285714285715).abs() < 1e-15, "{value}");
        // scikit-learn: adjusted_rand_score([0,0,1,2], [0,0,1,1]) = 0.5714285714285715, and
        // adjusted_rand_score([0,0,0,0], [0,1,2,3]) = 0.0
        assert_eq!(
            adjusted_rand_index(&SerialComm, &[0, 0, 0, 0], &[0, 1, 2, 3]),
            0.0
        );
        assert_eq!(
            adjusted_rand_index(&SerialComm, &[1, 1, 1], &[2, 2, 2]),
            1.0
        );
        let truth: Vec<i64> = (0..500).map(|i| (i * 7 % 13) % 5).collect();
        let predicted: Vec<i64> = (0..500).map(|i| (i * 11 % 17) % 4).collect();
        let value = adjusted_rand_index(&SerialComm, &truth, &predicted);
        assert!((value - naive_ari(&truth, &predicted)).abs() < 1e-12);
        let noisy: Vec<i64> = truth
            .iter()
            .enumerate()
            .map(|(i, &t)| if i % 10 == 0 { (t + 1) % 5 } else { t })
            .collect();
        let value = adjusted_rand_index(&SerialComm, &truth, &noisy);
        assert!((value - naive_ari(&truth, &noisy)).abs() < 1e-12);
        assert!(value > 0.6 && value < 1.0, "{value}");
    }
}
