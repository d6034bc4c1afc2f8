//! `embsolve report RESULTS_DIR`: report.html with PNG plots.
