//! Tests of the partitioned search against the exact lists, and of its helpers.

use super::*;
use embsolve_comm::SerialComm;
use ndarray::Array2;

fn rows(n: usize, dim: usize, unit: bool) -> Array2<f32> {
    let mut rows = Array2::from_shape_fn((n, dim), |(i, j)| {
        let centre = ((i % 7) * 3 + j) as f32 % 5.0;
        centre + hashed_uniform(11, j as u64, i as u64) as f32 * 0.4
    });
    if unit {
        for mut row in rows.rows_mut() {
            let norm = row.iter().map(|v| v * v).sum::<f32>().sqrt();
            row.mapv_inplace(|v| v / norm);
        }
    }
    rows
}

#[test]
fn probing_every_cell_gives_the_exact_lists() {
    for metric in [Metric::L2, Metric::Cosine] {
        let data = rows(300, 6, metric == Metric::Cosine);
        let layout = RowLayout::new(300, 1);
        let params = PartitionedParams {
            partitions: 9,
            probes: 9,
            recall: 0.95,
            recall_sample: 50,
            seed: 4,
        };
        let (lists, summary) =
            partitioned_knn(&SerialComm, &layout, data.view(), 5, metric, &params).unwrap();
        let lists = lists.expect("fixed probes never fall back");
        let (indices, distances) = embsolve_kernels::reference::knn_naive(data.view(), 5, metric);
        assert_eq!(lists.indices, indices, "{metric:?}");
        assert_eq!(lists.distances, distances, "{metric:?}");
        let recall = summary.recall.unwrap();
        assert_eq!(recall.recall, 1.0);
        assert!(recall.sample > 0 && recall.sample < 300);
        assert_eq!(summary.partitions, 9);
    }
}

#[test]
fn auto_probes_reach_the_target_on_the_sample_and_lists_are_full() {
    let data = rows(2000, 6, false);
    let layout = RowLayout::new(2000, 1);
    let params = PartitionedParams {
        partitions: 0,
        probes: 0,
        recall: 0.9,
        recall_sample: 2000,
        seed: 1,
    };
    let (lists, summary) =
        partitioned_knn(&SerialComm, &layout, data.view(), 8, Metric::L2, &params).unwrap();
    assert!(summary.probes_auto);
    assert_eq!(summary.partitions, 45);
    assert!(!summary.exact_fallback, "{summary:?}");
    let lists = lists.expect("the target is met below the break-even");
    let recall = summary.recall.unwrap();
    assert!(recall.recall >= 0.9, "{recall:?}");
    assert!(!lists.indices.contains(&EMPTY_ROW));
    // The sample is every row: the estimate is the measured recall.
    let (exact, _) = embsolve_kernels::reference::knn_naive(data.view(), 8, Metric::L2);
    let hits: usize = exact
        .chunks_exact(8)
        .zip(lists.indices.chunks_exact(8))
        .map(|(t, f)| f.iter().filter(|id| t.contains(id)).count())
        .sum();
    assert!((hits as f64 / (2000.0 * 8.0) - recall.recall).abs() < 1e-12);
}

#[test]
fn a_target_beyond_the_break_even_asks_for_the_exact_lists() {
    // Rows without clusters: recall per probe is low, and 0.999 needs nearly every cell.
    let n = 600;
    let data = Array2::from_shape_fn((n, 16), |(i, j)| {
        hashed_uniform(5, j as u64, i as u64) as f32
    });
    let layout = RowLayout::new(n, 1);
    let params = PartitionedParams {
        partitions: 24,
        probes: 0,
        recall: 0.999,
        recall_sample: 200,
        seed: 2,
    };
    assert_eq!(break_even_probes(24), 3);
    let (lists, summary) =
        partitioned_knn(&SerialComm, &layout, data.view(), 8, Metric::L2, &params).unwrap();
    assert!(lists.is_none());
    assert!(summary.exact_fallback && summary.probes_auto);
    assert_eq!(summary.probes, 3);
    assert_eq!(summary.recall.unwrap().recall, 1.0);
}

#[test]
fn empty_cells_are_probed_without_harm() {
    // 30 distinct points, each 10 times: more cells than points leaves duplicate centroids, and
    // the higher of two equal centroids is nobody's home cell.
    let n = 300;
    let data = Array2::from_shape_fn((n, 8), |(i, j)| {
        hashed_uniform(9, j as u64, (i % 30) as u64) as f32
    });
    let layout = RowLayout::new(n, 1);
    for probes in [3, 40] {
        let params = PartitionedParams {
            partitions: 40,
            probes,
            recall: 0.95,
            recall_sample: 0,
            seed: 3,
        };
        let (lists, summary) =
            partitioned_knn(&SerialComm, &layout, data.view(), 6, Metric::L2, &params).unwrap();
        let lists = lists.unwrap();
        assert_eq!(summary.smallest_cell, 0, "{summary:?}");
        assert!(!lists.indices.contains(&EMPTY_ROW));
        if probes == 40 {
            let (indices, _) = embsolve_kernels::reference::knn_naive(data.view(), 6, Metric::L2);
            assert_eq!(lists.indices, indices);
        }
    }
}

#[test]
fn more_probes_than_cells_is_a_config_error() {
    let data = rows(100, 4, false);
    let layout = RowLayout::new(100, 1);
    let params = PartitionedParams {
        partitions: 0,
        probes: 11,
        recall: 0.9,
        recall_sample: 10,
        seed: 0,
    };
    let err =
        partitioned_knn(&SerialComm, &layout, data.view(), 3, Metric::L2, &params).unwrap_err();
    assert_eq!(err.exit_status(), 2);
    assert!(err.message.contains("knn.probes"), "{}", err.message);
}

#[test]
fn merged_lists_keep_the_k_smallest_once_in_list_order() {
    let mut indices = vec![4, 9, EMPTY_ROW];
    let mut distances = vec![0.5, 1.0, f32::INFINITY];
    merge_lists(&mut indices, &mut distances, &[2, 4, 1], &[0.5, 0.5, 2.0]);
    assert_eq!(indices, vec![2, 4, 9]);
    assert_eq!(distances, vec![0.5, 0.5, 1.0]);
}

#[test]
fn cells_are_dealt_largest_first_to_the_least_loaded_rank() {
    assert_eq!(deal_cells(&[5, 1, 4, 2], 2), vec![0, 1, 1, 1]);
    assert_eq!(deal_cells(&[3, 3], 1), vec![0, 0]);
    assert_eq!(resolve_partitions(200_000, 0), 447);
    assert_eq!(resolve_partitions(10, 50), 10);
}

#[test]
fn recall_interval_brackets_the_mean() {
    let r = recall_estimate(4, 14, 50, 4);
    assert!((r.recall - 14.0 / 16.0).abs() < 1e-12);
    assert!(r.low < r.recall && r.recall < r.high && r.high <= 1.0);
}
