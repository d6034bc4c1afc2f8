"""Naive pure-Python oracles for the stage-1 tests: tokens, k-mer counts, signed hashing."""

from collections import Counter

import numpy as np

AMINO_ACIDS = "ACDEFGHIKLMNPQRSTVWY"
MASK = (1 << 64) - 1


def token(letter, alphabet):
    letter = letter.upper()
    if alphabet == "dna":
        return {"A": 0, "C": 1, "G": 2, "T": 3, "U": 3}.get(letter, 4)
    return AMINO_ACIDS.index(letter) if letter in AMINO_ACIDS else 20


def kmer_counter(seq, alphabet, k, canonical=False):
    """Counter of k-mer codes, one k-mer at a time."""
    base = 4 if alphabet == "dna" else 21
    counts = Counter()
    for start in range(len(seq) - k + 1):
        window = [token(letter, alphabet) for letter in seq[start : start + k]]
        if alphabet == "dna" and any(t >= 4 for t in window):
            continue
        code = 0
        for t in window:
            code = code * base + t
        if canonical:
            reverse = 0
            for t in reversed(window):
                reverse = reverse * 4 + (3 - t)
            code = min(code, reverse)
        counts[code] += 1
    return counts


def splitmix64(x):
    z = (x + 0x9E3779B97F4A7C15) & MASK
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
    return z ^ (z >> 31)


def embedding(seq, alphabet, k, method, dim, canonical=False, seed=0):
    """The L2-normalised float64 embedding of one sequence."""
    row = np.zeros(dim)
    key = splitmix64(seed & MASK)
    for code, count in kmer_counter(seq, alphabet, k, canonical).items():
        if method == "counts":
            row[code] += count
        else:
            h = splitmix64(code ^ key)
            row[h % dim] += count if h >> 63 == 0 else -count
    norm = np.sqrt((row * row).sum())
    return row / norm if norm > 0 else row


def reverse_complement(seq):
    return seq.translate(str.maketrans("ACGTacgt", "TGCAtgca"))[::-1]
