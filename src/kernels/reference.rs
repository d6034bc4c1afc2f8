//! Naive reference implementations: the oracles unit tests compare the fast kernels against.
