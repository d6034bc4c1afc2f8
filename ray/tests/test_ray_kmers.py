"""Tokens, k-mer codes and embeddings (numpy, no Ray) against the naive Python oracle."""

import random

import numpy as np
import pytest

from embsolve_ray.kmers import InputError, Tokens, embed_tokens, kmer_codes, resolve_params, tokenize
import ray_reference as reference


def random_seqs(alphabet, n, seed, min_len=0, max_len=80):
    rng = random.Random(seed)
    letters = "ACGTACGTACGTNacgtRY" if alphabet == "dna" else reference.AMINO_ACIDS * 3 + "XBZUacd*"
    return ["".join(rng.choice(letters) for _ in range(rng.randint(min_len, max_len))) for _ in range(n)]


def as_tokens(seqs, alphabet):
    data = np.frombuffer("".join(seqs).encode(), dtype=np.uint8)
    offsets = np.concatenate(([0], np.cumsum([len(s) for s in seqs]))).astype(np.int64)
    return tokenize(data, offsets, alphabet)


@pytest.mark.parametrize("alphabet,k,canonical", [("dna", 1, False), ("dna", 3, False), ("dna", 5, True),
                                                  ("dna", 4, True), ("protein", 1, False), ("protein", 2, False)])
def test_counts_equal_naive_counter(alphabet, k, canonical):
    seqs = random_seqs(alphabet, 60, seed=k + 10 * canonical, max_len=120)
    seqs[3] = "ACG"[: max(0, k - 1)]  # too short for one k-mer
    tokens = as_tokens(seqs, alphabet)
    rows, codes = kmer_codes(tokens, alphabet, k, canonical)
    for row, seq in enumerate(seqs):
        mine = dict(zip(*np.unique(codes[rows == row], return_counts=True)))
        assert {int(c): int(n) for c, n in mine.items()} == dict(reference.kmer_counter(seq, alphabet, k, canonical)), seq
    params = resolve_params(alphabet, k, "counts", None, canonical=canonical)
    matrix, n_kmers = embed_tokens(tokens, params)
    assert matrix.shape == (len(seqs), (4 if alphabet == "dna" else 21) ** k)
    for row, seq in enumerate(seqs):
        np.testing.assert_allclose(matrix[row], reference.embedding(seq, alphabet, k, "counts", matrix.shape[1], canonical),
                                   rtol=1e-6, atol=1e-7)
        assert n_kmers[row] == sum(reference.kmer_counter(seq, alphabet, k, canonical).values())


def test_kmers_with_ambiguous_bases_are_skipped():
    tokens = as_tokens(["ACNGTA"], "dna")
    rows, codes = kmer_codes(tokens, "dna", 2)
    # AC, GT, TA: every pair touching N is dropped.
    assert codes.tolist() == [0 * 4 + 1, 2 * 4 + 3, 3 * 4 + 0]


def test_canonical_kmers_of_reverse_complement_are_identical():
    seqs = random_seqs("dna", 20, seed=3, min_len=10)
    both = seqs + [reference.reverse_complement(s) for s in seqs]
    params = resolve_params("dna", 5, "counts", None, canonical=True)
    matrix, _ = embed_tokens(as_tokens(both, "dna"), params)
    np.testing.assert_array_equal(matrix[: len(seqs)], matrix[len(seqs):])
    plain, _ = embed_tokens(as_tokens(both, "dna"), resolve_params("dna", 5, "counts", None))
    assert not np.array_equal(plain[: len(seqs)], plain[len(seqs):])
    # A canonical code is the smaller of the k-mer and its reverse complement: GGG (42) -> CCC (21).
    rows, codes = kmer_codes(as_tokens(["GGG"], "dna"), "dna", 3, canonical=True)
    assert codes.tolist() == [21]


@pytest.mark.parametrize("alphabet,k,dim,seed", [("protein", 3, 64, 0), ("protein", 2, 100, 7), ("dna", 6, 32, 123)])
def test_hash_equals_naive_and_is_deterministic(alphabet, k, dim, seed):
    seqs = random_seqs(alphabet, 40, seed=seed, min_len=k)
    params = resolve_params(alphabet, k, "hash", dim, seed=seed)
    matrix, _ = embed_tokens(as_tokens(seqs, alphabet), params)
    for row, seq in enumerate(seqs):
        np.testing.assert_allclose(matrix[row], reference.embedding(seq, alphabet, k, "hash", dim, seed=seed),
                                   rtol=1e-6, atol=1e-7)
    # The same record alone, or in another batch, lands in the same columns.
    alone, _ = embed_tokens(as_tokens(seqs[5:6], alphabet), params)
    np.testing.assert_array_equal(alone[0], matrix[5])
    other_seed, _ = embed_tokens(as_tokens(seqs, alphabet), resolve_params(alphabet, k, "hash", dim, seed=seed + 1))
    assert not np.array_equal(other_seed, matrix)


def test_rows_are_unit_length_and_dtype_follows():
    seqs = random_seqs("protein", 30, seed=5, min_len=5)
    params = resolve_params("protein", 2, "hash", 256, dtype="float16")
    matrix, _ = embed_tokens(as_tokens(seqs, "protein"), params)
    assert matrix.dtype == np.float16
    np.testing.assert_allclose(np.linalg.norm(matrix.astype(np.float64), axis=1), 1.0, atol=2e-3)


def test_token_codes_match_spec():
    dna = as_tokens(["ACGTNUacgtn"], "dna")
    assert dna.values.tolist() == [0, 1, 2, 3, 4, 3, 0, 1, 2, 3, 4]
    protein = as_tokens(["ACDEFGHIKLMNPQRSTVWYXBZ*a"], "protein")
    assert protein.values.tolist() == list(range(20)) + [20, 20, 20, 20, 0]


@pytest.mark.parametrize("alphabet,seq,needle", [
    ("dna", "ACGTEFACGT", "'E'"),
    ("dna", "ACGTEFACGT", "--alphabet protein"),
    ("dna", "ACG-T", "gap"),
    ("protein", "MKV1L", "'1'"),
    ("protein", "MKV.L", "gap"),
])
def test_bad_letters_are_errors_naming_the_record(alphabet, seq, needle):
    data = np.frombuffer(("ACGT" + seq).encode(), dtype=np.uint8)
    with pytest.raises(InputError) as caught:
        tokenize(data, np.array([0, 4, 4 + len(seq)]), alphabet, describe=lambda row: f"record number {row}")
    assert needle in str(caught.value)
    assert "record number 1" in str(caught.value)


@pytest.mark.parametrize("args,needle", [
    (("dna", 3, "counts", 100), "has dim 64"),
    (("protein", 3, "hash", None), "needs --dim"),
    (("protein", 0, "counts", None), "at least 1"),
    (("dna", 12, "counts", None), "use --method hash"),
    (("rna", 3, "counts", None), "unknown alphabet"),
    (("dna", 40, "hash", 64), "too large"),
])
def test_parameter_errors(args, needle):
    with pytest.raises(InputError, match=needle):
        resolve_params(*args)
    with pytest.raises(InputError, match="DNA only"):
        resolve_params("protein", 3, "counts", None, canonical=True)


def test_empty_batch():
    tokens = Tokens(np.zeros(0, np.uint8), np.zeros(1, np.int64))
    matrix, n_kmers = embed_tokens(tokens, resolve_params("dna", 3, "counts", None))
    assert matrix.shape == (0, 64) and n_kmers.shape == (0,)
