//! The last look at the results before anything is written: values no correct solver can produce
//! (a NaN or negative PageRank score, scores not summing to 1, an eigenvalue outside [-1, 1] or a
//! non-finite spectral embedding, a NaN kNN distance, a Leiden label that is not a row of its own
//! community's smallest) stop the run as an internal error naming the phase and the global row,
//! so a wrong answer is never written looking right. Collective: every rank gets the same verdict.

use crate::distributed::spectral::SPECTRUM_SLACK;
use embsolve_comm::{agree, Comm};
use embsolve_kernels::error::{Error, Result};
use embsolve_kernels::results::{GlobalResults, LocalResults};

/// How far the PageRank scores may sum from 1 (the iteration renormalises every step).
const PAGERANK_SUM_TOLERANCE: f64 = 1e-9;

/// Check the results on every rank. Collective.
pub fn check_results(comm: &dyn Comm, global: &GlobalResults, local: &LocalResults) -> Result<()> {
    let mine = check_local(global, local);
    // The PageRank total is a sum over ranks; every rank takes part whatever its own verdict.
    let mut total = [local
        .pagerank_scores
        .as_ref()
        .map_or(0.0, |s| s.iter().sum::<f64>())];
    comm.allreduce_sum_f64(&mut total);
    agree(comm, mine)?;
    if local.pagerank_scores.is_some()
        && global.n_rows > 0
        && (total[0] - 1.0).abs() > PAGERANK_SUM_TOLERANCE
    {
        return Err(internal(
            "pagerank",
            format!("the scores sum to {} instead of 1", total[0]),
        ));
    }
    if let Some(spectral) = &global.spectral {
        if let Some((i, lambda)) = spectral
            .eigenvalues
            .iter()
            .enumerate()
            .find(|(_, l)| l.is_nan() || l.abs() > 1.0 + SPECTRUM_SLACK)
        {
            return Err(internal(
                "spectral",
                format!("eigenvalue {i} is {lambda}, outside the spectrum bound [-1, 1]"),
            ));
        }
    }
    Ok(())
}

fn internal(phase: &str, what: String) -> Error {
    Error::internal(format!(
        "{phase}: {what}; nothing was written (this is a bug: please report it with the config)"
    ))
}

/// The checks of this rank's rows.
fn check_local(global: &GlobalResults, local: &LocalResults) -> Result<()> {
    let row = |i: usize| local.row_start + i;
    if let Some(scores) = &local.pagerank_scores {
        if let Some((i, s)) = scores
            .iter()
            .enumerate()
            .find(|(_, s)| !(s.is_finite() && **s >= 0.0))
        {
            return Err(internal(
                "pagerank",
                format!("the score of row {} is {s}", row(i)),
            ));
        }
    }
    if let Some(distances) = &local.knn_distances {
        let k = global.knn_k.unwrap_or(1).max(1);
        if let Some(i) = distances.iter().position(|d| d.is_nan()) {
            return Err(internal(
                "knn",
                format!("a distance of row {} is NaN", row(i / k)),
            ));
        }
    }
    if let Some(embedding) = &local.spectral_embedding {
        for (i, values) in embedding.rows().into_iter().enumerate() {
            if let Some(v) = values.iter().find(|v| !v.is_finite()) {
                return Err(internal(
                    "spectral",
                    format!("the embedding of row {} holds {v}", row(i)),
                ));
            }
        }
    }
    if let Some(labels) = &local.leiden_labels {
        if let Some((i, l)) = labels
            .iter()
            .enumerate()
            .find(|&(i, &l)| l < 0 || l as usize > row(i))
        {
            return Err(internal(
                "leiden",
                format!(
                    "row {} has label {l}, not the smallest row of a community holding it",
                    row(i)
                ),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use embsolve_comm::SerialComm;
    use embsolve_kernels::results::SpectralSummary;
    use ndarray::Array2;

    fn results() -> (GlobalResults, LocalResults) {
        let global = GlobalResults {
            n_rows: 4,
            knn_k: Some(2),
            spectral: Some(SpectralSummary {
                eigenvalues: vec![1.0, 0.5, -1.0],
                ..Default::default()
            }),
            ..Default::default()
        };
        let local = LocalResults {
            n_local: 4,
            knn_distances: Some(vec![0.1; 8]),
            pagerank_scores: Some(vec![0.25; 4]),
            leiden_labels: Some(vec![0, 0, 2, 2]),
            spectral_embedding: Some(Array2::zeros((4, 3))),
            ..Default::default()
        };
        (global, local)
    }

    fn message(global: &GlobalResults, local: &LocalResults) -> String {
        let error = check_results(&SerialComm, global, local).unwrap_err();
        assert_eq!(error.exit_status(), 1);
        error.message
    }

    #[test]
    fn correct_results_pass() {
        let (global, local) = results();
        check_results(&SerialComm, &global, &local).unwrap();
    }

    #[test]
    fn impossible_values_are_caught_with_the_phase_and_row() {
        let (global, mut local) = results();
        local.pagerank_scores.as_mut().unwrap()[1] = f64::NAN;
        let m = message(&global, &local);
        assert!(m.contains("pagerank") && m.contains("row 1"), "{m}");

        let (global, mut local) = results();
        local.pagerank_scores = Some(vec![0.25, 0.25, 0.25, 0.2]);
        assert!(message(&global, &local).contains("sum to"));

        let (mut global, local) = results();
        global.spectral.as_mut().unwrap().eigenvalues[1] = 38.9;
        let m = message(&global, &local);
        assert!(m.contains("spectral") && m.contains("38.9"), "{m}");

        let (global, mut local) = results();
        local.spectral_embedding.as_mut().unwrap()[[2, 1]] = f32::NAN;
        assert!(message(&global, &local).contains("row 2"));

        let (global, mut local) = results();
        local.knn_distances.as_mut().unwrap()[7] = f32::NAN;
        let m = message(&global, &local);
        assert!(m.contains("knn") && m.contains("row 3"), "{m}");

        let (global, mut local) = results();
        local.leiden_labels = Some(vec![0, 3, 2, 2]);
        assert!(message(&global, &local).contains("leiden"));
    }
}
