//! The registry of multi-rank checks, one module per area. Every check runs on every rank, solves
//! a seeded problem distributed and compares this rank's slice with the serial whole-problem
//! answer; a failure says what differed.

mod graph;
mod io_fft;
mod knn;
mod spectral;
mod spectral_properties;

use embsolve_comm::Comm;

/// One named check: Ok, or a message saying what differed on this rank.
pub type Check = fn(&dyn Comm) -> Result<(), String>;

/// Every registered check, in the order they run.
pub fn registry() -> Vec<(&'static str, Check)> {
    vec![
        ("exact_allreduce", io_fft::check_exact_allreduce),
        ("io_read_blocks", io_fft::check_io_read_blocks),
        ("knn_ring_cosine", knn::check_knn_ring_cosine),
        ("knn_ring_l2", knn::check_knn_ring_l2),
        ("knn_ring_ip", knn::check_knn_ring_ip),
        (
            "knn_fewer_rows_than_ranks",
            knn::check_knn_fewer_rows_than_ranks,
        ),
        ("graph_build", graph::check_graph_build),
        ("graph_components", graph::check_graph_components),
        ("graph_pagerank", graph::check_graph_pagerank),
        (
            "spectral_component_vectors",
            spectral::check_spectral_component_vectors,
        ),
        ("spectral_lanczos", spectral::check_spectral_lanczos),
        (
            "spectral_by_component",
            spectral::check_spectral_by_component,
        ),
        (
            "spectral_random_graphs",
            spectral_properties::check_spectral_random_graphs,
        ),
        ("spectral_kmeans", spectral::check_spectral_kmeans),
        ("spectral_clustering", spectral::check_spectral_clustering),
        ("spectral_ari", spectral::check_spectral_ari),
        ("fft_tracks", io_fft::check_fft_tracks),
    ]
}
