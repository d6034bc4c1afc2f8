//! The cells of a partitioned search: k-means centroids trained on a seeded sample, and the
//! nearest cells of any rows.

use super::{
    unit_key, Search, TRAIN_ITERATIONS, TRAIN_ROWS_PER_CELL, TRAIN_STREAM, TRAIN_SUM_ROWS,
};
use crate::config::Metric;
use embsolve_comm::{allgatherv, allreduce_exact};
use embsolve_kernels::exact::ExactSum;
use embsolve_kernels::knn::nearest_centroids;
use rayon::prelude::*;

impl Search<'_> {
    /// The `probes` nearest cells of each row of `locals` (row-major, nearest first, ties to the
    /// lower cell), by the exact search against the centroids.
    pub(super) fn nearest_cells(
        &self,
        locals: &[usize],
        centroids: &[f32],
        probes: usize,
    ) -> Vec<u32> {
        let n_local = self.rows.len() / self.dim.max(1);
        let whole = locals.len() == n_local && locals.iter().enumerate().all(|(i, &r)| i == r);
        let gathered;
        let queries = if whole {
            self.rows
        } else {
            gathered = self.gather(locals);
            &gathered[..]
        };
        nearest_centroids(queries, self.dim, centroids, probes, self.metric)
    }

    /// k-means centroids (`wanted` cells, fewer when the sample has fewer rows), row-major, and the
    /// Lloyd iterations run.
    pub(super) fn train(&self, wanted: usize, seed: u64) -> (Vec<f32>, usize) {
        let comm = self.comm;
        let dim = self.dim;
        let n_local = self.rows.len() / dim.max(1);
        let fraction = (TRAIN_ROWS_PER_CELL * wanted) as f64 / self.n as f64;
        let keyed: Vec<(f64, usize)> = (0..n_local)
            .map(|row| {
                let key = unit_key(seed, TRAIN_STREAM, (self.start + row) as u64);
                (key, row)
            })
            .filter(|&(key, _)| fraction >= 1.0 || key < fraction)
            .collect();
        let sample: Vec<usize> = keyed.iter().map(|&(_, row)| row).collect();

        // Starting centroids: the sampled rows with the smallest keys.
        let mut smallest = keyed.clone();
        smallest.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        smallest.truncate(wanted);
        let offers: Vec<u64> = smallest
            .iter()
            .flat_map(|&(key, row)| [key.to_bits(), (self.start + row) as u64])
            .collect();
        let (all_offers, _) = allgatherv(comm, &offers);
        let mut chosen: Vec<(f64, u64)> = all_offers
            .chunks_exact(2)
            .map(|pair| (f64::from_bits(pair[0]), pair[1]))
            .collect();
        chosen.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        chosen.truncate(wanted);
        let n_cells = chosen.len();
        let end = (self.start + n_local) as u64;
        let mine: Vec<(usize, usize)> = chosen
            .iter()
            .enumerate()
            .filter(|(_, &(_, id))| id >= self.start as u64 && id < end)
            .map(|(cell, &(_, id))| (cell, id as usize - self.start))
            .collect();
        let mut offered = Vec::with_capacity(mine.len() * (dim + 1));
        for &(cell, row) in &mine {
            offered.push(f32::from_bits(cell as u32));
            offered.extend_from_slice(self.row(row));
        }
        let (all_rows, _) = allgatherv(comm, &offered);
        let mut centroids = vec![0.0f32; n_cells * dim];
        for record in all_rows.chunks_exact(dim + 1) {
            let cell = record[0].to_bits() as usize;
            centroids[cell * dim..(cell + 1) * dim].copy_from_slice(&record[1..]);
        }

        let mut labels = vec![u32::MAX; sample.len()];
        let mut iterations = 0;
        for _ in 0..TRAIN_ITERATIONS {
            iterations += 1;
            let assigned = self.nearest_cells(&sample, &centroids, 1);
            let mut changed = [assigned.iter().zip(&labels).filter(|(a, b)| a != b).count() as u64];
            labels = assigned;
            // Exact sums add in any order: chunks of the sample on all threads, merged.
            let empty = || {
                (
                    vec![ExactSum::default(); n_cells * dim],
                    vec![0u64; n_cells],
                )
            };
            let all_rows = self.rows;
            let (mut sums, mut counts) = sample
                .par_chunks(TRAIN_SUM_ROWS)
                .zip(labels.par_chunks(TRAIN_SUM_ROWS))
                .map(|(rows, cells)| {
                    let (mut sums, mut counts) = empty();
                    for (&row, &cell) in rows.iter().zip(cells) {
                        let cell = cell as usize;
                        counts[cell] += 1;
                        for (sum, &x) in sums[cell * dim..(cell + 1) * dim]
                            .iter_mut()
                            .zip(&all_rows[row * dim..(row + 1) * dim])
                        {
                            sum.add(f64::from(x));
                        }
                    }
                    (sums, counts)
                })
                .reduce(
                    empty,
                    |(mut sums, mut counts), (other_sums, other_counts)| {
                        sums.iter_mut()
                            .zip(other_sums)
                            .for_each(|(a, b)| a.merge(b));
                        counts
                            .iter_mut()
                            .zip(other_counts)
                            .for_each(|(a, b)| *a += b);
                        (sums, counts)
                    },
                );
            allreduce_exact(comm, &mut sums);
            comm.allreduce_sum_u64(&mut counts);
            comm.allreduce_sum_u64(&mut changed);
            for (cell, &count) in counts.iter().enumerate() {
                if count == 0 {
                    continue; // an empty cell keeps its centroid
                }
                let mean: Vec<f64> = sums[cell * dim..(cell + 1) * dim]
                    .iter()
                    .map(|s| s.value() / count as f64)
                    .collect();
                let scale = if self.metric == Metric::Cosine {
                    let norm = mean.iter().map(|v| v * v).sum::<f64>().sqrt();
                    if norm > 0.0 {
                        1.0 / norm
                    } else {
                        continue; // opposite rows cancel: keep the old centroid
                    }
                } else {
                    1.0
                };
                for (c, m) in centroids[cell * dim..(cell + 1) * dim]
                    .iter_mut()
                    .zip(&mean)
                {
                    *c = (m * scale) as f32;
                }
            }
            if changed[0] == 0 {
                break;
            }
        }
        (centroids, iterations)
    }
}
