//! Plain types shared by every layer: the distance metric, the graph construction settings, the
//! token alphabet and the neighbour lists a kNN search produces.

use serde::{Deserialize, Serialize};

/// The kNN distance.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Metric {
    Cosine,
    L2,
    Ip,
}

/// How directed kNN edges become undirected ones.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Symmetrize {
    Union,
    Mutual,
}

/// How an edge's weight follows from its distance.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum EdgeWeight {
    Similarity,
    Gaussian,
    Binary,
}

/// The `[graph]` settings: how the symmetrised weighted graph is built from the lists.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct GraphParams {
    pub symmetrize: Symmetrize,
    pub weight: EdgeWeight,
    pub min_similarity: f64,
}

impl Default for GraphParams {
    fn default() -> Self {
        GraphParams {
            symmetrize: Symmetrize::Union,
            weight: EdgeWeight::Similarity,
            min_similarity: -1.0,
        }
    }
}

/// The token alphabet of FFT tracks.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Alphabet {
    Dna,
    Protein,
}

/// One rank's kNN lists: `indices[i * k + j]` is the j-th nearest global row of local row i.
#[derive(Debug, Clone, PartialEq)]
pub struct KnnLists {
    pub k: usize,
    pub indices: Vec<u64>,
    pub distances: Vec<f32>,
}
