"""Tokens, k-mer codes and embeddings, vectorised in numpy over a batch of sequences.

Tokens (the same codes the FFT solver reads from token tracks):
- DNA: A=0 C=1 G=2 T=3 (U reads as T); the IUPAC ambiguity letters (N, R, Y, ...) are 4.
  A k-mer that holds a 4 is skipped.
- protein: the 20 amino acids in the order ACDEFGHIKLMNPQRSTVWY are 0..19; any other letter
  (X, B, Z, U, O, J) and the stop `*` are the one extra symbol 20, which k-mers keep, so the
  protein k-mer alphabet has 21 symbols.
Lower case reads as upper case. Any other byte (a digit, a gap `-` or `.`, and for DNA a letter
that is no nucleotide code, e.g. E, F, L, P, Q) is an input error naming the record.

K-mer code: the tokens read as a number in base `alphabet_size`, first token most significant.
With `canonical` (DNA only) a k-mer and its reverse complement share the smaller of their codes.

Embeddings, one row per sequence, L2-normalised (a row with no k-mer is all zeros):
- `counts`: exact k-mer counts, dim = alphabet_size ** k.
- `hash`: signed feature hashing of the k-mer counts: a k-mer with code c adds sign(h) to
  column h mod dim, where h = splitmix64(c XOR splitmix64(seed)) on 64 bits and sign(h) = +1 when
  the top bit of h is 0, else -1. No table: the same k-mer lands in the same column in any batch.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

DNA = "dna"
PROTEIN = "protein"
ALPHABETS = (DNA, PROTEIN)
AMINO_ACIDS = "ACDEFGHIKLMNPQRSTVWY"
NUCLEOTIDES = "ACGT"
DNA_AMBIGUOUS = "NRYSWKMBDHV"

# Table values above the token range: a byte that is not allowed in the alphabet.
FORBIDDEN = 255
# Largest dense `counts` dimension (rows are dense float vectors).
MAX_COUNTS_DIM = 1 << 20
# k-mer codes are int64: alphabet_size ** k must stay below 2 ** 62.
MAX_CODE = 1 << 62

class InputError(Exception):
    """Bad input (a file, record, label or argument); the message names it. Exit status 2."""


def alphabet_size(alphabet: str) -> int:
    """Symbols in k-mers: 4 for DNA (ambiguous bases are skipped), 21 for protein."""
    if alphabet == DNA:
        return 4
    if alphabet == PROTEIN:
        return 21
    raise InputError(f"unknown alphabet {alphabet!r} (expected one of: {', '.join(ALPHABETS)})")


def token_table(alphabet: str) -> np.ndarray:
    """A 256-entry lookup from byte to token; FORBIDDEN marks bytes the alphabet rejects."""
    table = np.full(256, FORBIDDEN, dtype=np.uint8)
    if alphabet == DNA:
        for code, letter in enumerate(NUCLEOTIDES):
            table[ord(letter)] = table[ord(letter.lower())] = code
        table[ord("U")] = table[ord("u")] = 3
        for letter in DNA_AMBIGUOUS:
            table[ord(letter)] = table[ord(letter.lower())] = 4
    elif alphabet == PROTEIN:
        for byte in range(ord("A"), ord("Z") + 1):
            table[byte] = table[byte + 32] = 20
        table[ord("*")] = 20
        for code, letter in enumerate(AMINO_ACIDS):
            table[ord(letter)] = table[ord(letter.lower())] = code
    else:
        alphabet_size(alphabet)
    return table


def describe_byte(byte: int, alphabet: str) -> str:
    """Why `byte` is not allowed, for error messages."""
    char = chr(byte)
    shown = repr(char) if char.isprintable() else f"byte 0x{byte:02x}"
    if char in "-.":
        return f"{shown} (alignment gap: give unaligned sequences)"
    if alphabet == DNA and char.isalpha():
        return f"{shown} (not a nucleotide code; is this protein? use --alphabet protein)"
    return shown


@dataclass(frozen=True)
class Tokens:
    """A batch of sequences as tokens: `values` holds all of them, record r is
    values[offsets[r]:offsets[r + 1]]."""

    values: np.ndarray  # uint8
    offsets: np.ndarray  # int64, n + 1

    @property
    def n_records(self) -> int:
        return len(self.offsets) - 1

    def record(self, row: int) -> np.ndarray:
        return self.values[self.offsets[row] : self.offsets[row + 1]]


def tokenize(data: np.ndarray, offsets: np.ndarray, alphabet: str, describe=None) -> Tokens:
    """Map the concatenated sequence bytes `data` (uint8) to tokens. `describe(row)` names a record
    in the error for a forbidden byte."""
    values = token_table(alphabet)[data]
    bad = np.flatnonzero(values == FORBIDDEN)
    if len(bad):
        position = int(bad[0])
        row = int(np.searchsorted(offsets, position, side="right")) - 1
        name = describe(row) if describe is not None else f"record {row}"
        raise InputError(
            f"{name}: {describe_byte(int(data[position]), alphabet)} at position "
            f"{position - int(offsets[row]) + 1} is not a {alphabet} letter"
        )
    return Tokens(values, np.asarray(offsets, dtype=np.int64))


def kmer_dim(alphabet: str, k: int) -> int:
    """alphabet_size ** k, the number of distinct k-mer codes."""
    if k < 1:
        raise InputError(f"--k must be at least 1, got {k}")
    size = alphabet_size(alphabet) ** k
    if size >= MAX_CODE:
        raise InputError(f"--k {k} is too large for {alphabet} (alphabet_size ** k must stay below 2**62)")
    return size


def kmer_codes(tokens: Tokens, alphabet: str, k: int, canonical: bool = False):
    """Every valid k-mer of every record: (row, code) int64 arrays, rows ascending and, within a
    row, k-mers in sequence order."""
    base = alphabet_size(alphabet)
    kmer_dim(alphabet, k)
    if canonical and alphabet != DNA:
        raise InputError("--canonical applies to DNA only")
    values = tokens.values
    n_windows = len(values) - k + 1
    if n_windows <= 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    # Codes of every window of the concatenated tokens (contiguous slices, no gathers) ...
    codes = values[:n_windows].astype(np.int64)
    for j in range(1, k):
        codes *= base
        codes += values[j : j + n_windows]
    # ... minus the windows that cross into the next record (the last k-1 starts of each record).
    keep = np.ones(n_windows, dtype=bool)
    ends = tokens.offsets[1:]
    for j in range(1, k):
        starts = ends - j
        keep[starts[(starts >= 0) & (starts < n_windows)]] = False
    if alphabet == DNA:
        ambiguous = np.concatenate(([0], np.cumsum(values >= 4, dtype=np.int64)))
        keep &= ambiguous[k : k + n_windows] == ambiguous[:n_windows]
    lengths = np.diff(tokens.offsets)
    rows = np.repeat(np.arange(tokens.n_records, dtype=np.int64), lengths)[:n_windows][keep]
    codes = codes[keep]
    if canonical:
        complement = 3 - values.astype(np.int64)
        reverse = complement[k - 1 : k - 1 + n_windows].copy()
        for j in range(k - 2, -1, -1):
            reverse *= 4
            reverse += complement[j : j + n_windows]
        codes = np.minimum(codes, reverse[keep])
    return rows, codes


def splitmix64(x: np.ndarray) -> np.ndarray:
    """The splitmix64 finaliser on uint64 (wrapping arithmetic), computed in place on a copy."""
    z = np.array(x, dtype=np.uint64, copy=True)
    with np.errstate(over="ignore"):
        z += np.uint64(0x9E3779B97F4A7C15)
        z ^= z >> np.uint64(30)
        z *= np.uint64(0xBF58476D1CE4E5B9)
        z ^= z >> np.uint64(27)
        z *= np.uint64(0x94D049BB133111EB)
        z ^= z >> np.uint64(31)
    return z


def hash_columns(codes: np.ndarray, dim: int, seed: int):
    """(column, sign) of each k-mer code under signed feature hashing into `dim` columns."""
    key = splitmix64(np.array([seed & 0xFFFFFFFFFFFFFFFF], dtype=np.uint64))[0]
    h = codes.astype(np.uint64)
    h ^= key
    h = splitmix64(h)
    if dim & (dim - 1) == 0:
        columns = (h & np.uint64(dim - 1)).astype(np.int64)  # the same as h mod dim
    else:
        columns = (h % np.uint64(dim)).astype(np.int64)
    signs = 1.0 - 2.0 * (h >> np.uint64(63)).astype(np.float64)
    return columns, signs


@dataclass(frozen=True)
class EmbedParams:
    alphabet: str
    k: int
    method: str  # counts | hash
    dim: int
    dtype: str = "float32"  # float32 | float16
    canonical: bool = False
    seed: int = 0


def resolve_params(alphabet: str, k: int, method: str, dim: int | None, dtype: str = "float32",
                   canonical: bool = False, seed: int = 0) -> EmbedParams:
    """Check the embedding options together; `dim` may be left out for `counts`."""
    if alphabet not in ALPHABETS:
        alphabet_size(alphabet)
    if dtype not in ("float32", "float16"):
        raise InputError(f"--dtype {dtype!r}: expected float32 or float16")
    if canonical and alphabet != DNA:
        raise InputError("--canonical applies to DNA only")
    n_codes = kmer_dim(alphabet, k)
    if method == "counts":
        if dim is not None and dim != n_codes:
            raise InputError(f"--method counts with --alphabet {alphabet} --k {k} has dim {n_codes}, not --dim {dim}")
        if n_codes > MAX_COUNTS_DIM:
            raise InputError(f"--method counts would need {n_codes} dims (> {MAX_COUNTS_DIM}); use --method hash --dim D")
        dim = n_codes
    elif method == "hash":
        if dim is None or dim < 1:
            raise InputError("--method hash needs --dim D (a positive number of columns)")
    else:
        raise InputError(f"--method {method!r}: expected counts or hash")
    return EmbedParams(alphabet, k, method, int(dim), dtype, canonical, int(seed))


def embed_tokens(tokens: Tokens, params: EmbedParams):
    """The (n_records x dim) embedding of a batch, rows L2-normalised, in params.dtype, and the
    number of k-mers of each record (0: an all-zero row)."""
    n = tokens.n_records
    rows, codes = kmer_codes(tokens, params.alphabet, params.k, params.canonical)
    if params.method == "counts":
        columns, weights = codes, None
    else:
        columns, weights = hash_columns(codes, params.dim, params.seed)
    flat = rows * params.dim
    flat += columns
    dense = np.bincount(flat, weights=weights, minlength=n * params.dim).astype(np.float64, copy=False)
    dense = dense.reshape(n, params.dim)
    norms = np.sqrt(np.einsum("ij,ij->i", dense, dense))
    np.divide(dense, norms[:, None], out=dense, where=norms[:, None] > 0)
    return dense.astype(params.dtype), np.bincount(rows, minlength=n)
