//! Global statistics and preprocessing of this rank's rows: L2 normalisation, global centering,
//! PCA on the global covariance. Sums are exact, so results do not depend on the rank count.

use crate::config::{Metric, PreprocessSection};
use crate::distributed::allreduce_exact;
use embsolve_comm::Comm;
use embsolve_kernels::error::{Error, Result};
use embsolve_kernels::exact::ExactSum;
use embsolve_kernels::pca;
use ndarray::{Array2, ArrayView2, Axis};
use rayon::prelude::*;

/// Every value must be finite: a NaN or an infinity is an input error naming its global row and
/// column (checked before any statistic, so no sum is poisoned).
pub fn check_finite(rows: ArrayView2<f32>, row_start: usize) -> Result<()> {
    let bad = rows
        .axis_iter(Axis(0))
        .into_par_iter()
        .enumerate()
        .find_first(|(_, row)| row.iter().any(|x| !x.is_finite()))
        .map(|(i, row)| {
            let column = row.iter().position(|x| !x.is_finite()).unwrap_or(0);
            (i, column, row[column])
        });
    match bad {
        None => Ok(()),
        Some((i, column, value)) => Err(Error::input(format!(
            "row {} column {column} of the embeddings is {value}; every value must be finite",
            row_start + i
        ))),
    }
}

/// Statistics of the raw input rows, over all ranks.
#[derive(Debug, Clone, PartialEq)]
pub struct GlobalStats {
    pub mean: Vec<f64>,
    pub norm_min: f64,
    pub norm_max: f64,
}

/// Column sums of `rows` as exact accumulators.
fn column_sums(rows: ArrayView2<f32>) -> Vec<ExactSum> {
    let dim = rows.ncols();
    rows.axis_chunks_iter(Axis(0), 1024)
        .into_par_iter()
        .map(|chunk| {
            let mut sums = vec![ExactSum::default(); dim];
            for row in chunk.rows() {
                for (s, &x) in sums.iter_mut().zip(row.iter()) {
                    s.add(x as f64);
                }
            }
            sums
        })
        .reduce(
            || vec![ExactSum::default(); dim],
            |mut a, b| {
                a.iter_mut().zip(b).for_each(|(x, y)| x.merge(y));
                a
            },
        )
}

/// The global mean of the columns (collective).
fn global_mean(comm: &dyn Comm, rows: ArrayView2<f32>) -> Vec<f64> {
    let mut sums = column_sums(rows);
    let mut count = [rows.nrows() as u64];
    comm.allreduce_sum_u64(&mut count);
    allreduce_exact(comm, &mut sums);
    sums.iter()
        .map(|s| {
            if count[0] > 0 {
                s.value() / count[0] as f64
            } else {
                0.0
            }
        })
        .collect()
}

/// Mean and the range of row norms of the raw input (collective).
pub fn global_stats(comm: &dyn Comm, rows: ArrayView2<f32>) -> GlobalStats {
    let mean = global_mean(comm, rows);
    let (local_min, local_max) = rows
        .axis_iter(Axis(0))
        .into_par_iter()
        .map(|row| {
            let norm = row
                .iter()
                .map(|&x| (x as f64) * (x as f64))
                .sum::<f64>()
                .sqrt();
            (norm, norm)
        })
        .reduce(
            || (f64::INFINITY, f64::NEG_INFINITY),
            |a, b| (a.0.min(b.0), a.1.max(b.1)),
        );
    let mut min = [local_min];
    let mut max = [local_max];
    comm.allreduce_min_f64(&mut min);
    comm.allreduce_max_f64(&mut max);
    GlobalStats {
        mean,
        norm_min: min[0],
        norm_max: max[0],
    }
}

/// Scale every row to unit length; a zero row is an input error naming its global row.
fn normalize_rows(rows: &mut Array2<f32>, row_start: usize, why: &str) -> Result<()> {
    let zero = rows
        .axis_iter_mut(Axis(0))
        .into_par_iter()
        .enumerate()
        .filter_map(|(i, mut row)| {
            let norm = row
                .iter()
                .map(|&x| (x as f64) * (x as f64))
                .sum::<f64>()
                .sqrt();
            if norm == 0.0 {
                return Some(i);
            }
            let inv = (1.0 / norm) as f32;
            row.iter_mut().for_each(|x| *x *= inv);
            None
        })
        .min();
    match zero {
        Some(i) => Err(Error::input(format!(
            "row {} is a zero vector, which has no direction ({why})",
            row_start + i
        ))),
        None => Ok(()),
    }
}

/// Apply `[preprocess]` to this rank's rows in place (collective). For the cosine metric rows are
/// made unit length last, whatever `normalize` says, so the kNN kernel can use plain dot products.
pub fn apply(
    comm: &dyn Comm,
    params: &PreprocessSection,
    metric: Metric,
    rows: &mut Array2<f32>,
    row_start: usize,
) -> Result<()> {
    // Each step is collective, so a local failure is only reported after the collectives ran.
    let mut failure = None;
    if params.normalize {
        if let Err(e) = normalize_rows(rows, row_start, "preprocess.normalize = true") {
            failure.get_or_insert(e);
        }
    }
    if params.center {
        let mean = global_mean(comm, rows.view());
        let mean32: Vec<f32> = mean.iter().map(|&m| m as f32).collect();
        rows.axis_iter_mut(Axis(0))
            .into_par_iter()
            .for_each(|mut row| {
                row.iter_mut().zip(&mean32).for_each(|(x, m)| *x -= m);
            });
    }
    if params.pca_dim > 0 {
        let dim = rows.ncols();
        if params.pca_dim >= dim {
            failure.get_or_insert(Error::config(format!(
                "preprocess.pca_dim = {} must be smaller than the input dimension {dim}",
                params.pca_dim
            )));
        } else {
            let mean = global_mean(comm, rows.view());
            let mut scatter = pca::scatter_exact(rows.view());
            let mut count = [rows.nrows() as u64];
            comm.allreduce_sum_u64(&mut count);
            allreduce_exact(comm, &mut scatter);
            let axes = pca::top_axes(&scatter, &mean, count[0] as usize, params.pca_dim);
            *rows = pca::project(rows.view(), &mean, &axes);
        }
    }
    if metric == Metric::Cosine {
        if let Err(e) = normalize_rows(rows, row_start, "the cosine metric needs a direction") {
            failure.get_or_insert(e);
        }
    }
    match failure {
        Some(e) => Err(e),
        None => Ok(()),
    }
}
