"""MinHash signatures of word n-gram sets, computed by compiled kernels over Arrow text buffers.

``MinHasher(num_perm=128, ngram=5, seed=1).signatures(texts)`` returns an ``(n, num_perm)``
uint32 array; two rows agree in a slot with probability equal to the Jaccard similarity of
the two documents' shingle sets.

Shingling (the specification; ``tests/dataproc/shingle_ref.py`` re-implements it in Python)
--------------------------------------------------------------------------------------------
The text is read as UTF-8 code points, each in one of three classes:

* **separator**: every ASCII character except ``0-9 a-z A-Z`` (so whitespace, punctuation
  and ``_``); U+0080–U+00BF (C1 controls, NBSP, ``§ « » ©`` …); ``×`` U+00D7 and ``÷``
  U+00F7; U+2000–U+2BFF (general punctuation, dashes and quotes, arrows, maths, box
  drawing, symbols); U+2E00–U+2E7F; U+3000–U+303F (CJK punctuation, ideographic space);
  U+FE10–U+FE6F (vertical/small forms); U+FEFF; and the fullwidth ASCII punctuation
  U+FF00–U+FF0F, U+FF1A–U+FF20, U+FF3B–U+FF40, U+FF5B–U+FF65.
* **single**: CJK scripts written without spaces, where each code point is a word by
  itself: U+2E80–U+2FDF, U+3040–U+9FFF (kana, CJK ideographs), U+F900–U+FAFF,
  U+FF66–U+FF9F, U+20000–U+3FFFF.
* **word character**: everything else (ASCII letters and digits, accented Latin, Greek,
  Cyrillic, Hangul, …). A maximal run of word characters is a word.

Words are lowercased with an ASCII fast path plus the length-preserving simple mappings
of Latin-1 (U+00C0–U+00DE), Latin Extended-A (U+0100–U+017E, except U+0130) and basic
Greek/Cyrillic capitals (U+0391–U+03A9, U+0400–U+042F); they agree with ``str.lower``.
Digits are kept. A word ``b`` (its UTF-8 bytes) hashes to ``w = XXH64(b.ljust(16, b"\\0"),
seed=len(b))`` (zero-padded to 16 bytes, so short words hash without length branches;
longer words are not padded).

A document with ``m`` words has the shingles ``words[i:i + ngram]`` for
``i in range(m - ngram + 1)``; if ``1 <= m < ngram`` it has one shingle of all its
words; if ``m == 0`` it has none. A shingle of ``k`` word hashes ``w_1..w_k`` hashes to
``s = fmix64(((k * P2) * P1 + w_1) * P1 + w_2 ...)`` (mod 2^64; Horner form, so order
matters; ``P1``, ``P2`` are the XXH64 primes), and enters the permutations as
``x = s >> 32``. The shingles form a SET: a repeated shingle cannot change a minimum.

Permutations: ``h_k(x) = (a_k * x + b_k) mod 2^32``, with ``a_k`` odd and ``a_k, b_k``
uniform 32-bit values from ``numpy.random.default_rng(seed)`` (datasketch 2.0's default
"affine32" family). An odd ``a_k`` makes each ``h_k`` a bijection of the 32-bit keys, so
permuting adds no collisions. The family is not min-wise independent for adversarial
keys, but the keys are avalanched 64-bit hashes: for uniformly random keys the minimiser
of any fixed bijection is a uniform member of the set, so the estimator is unbiased, and
the family only has to keep the slots decorrelated. The tests check both on real
near-duplicate pairs (bias ~0, error spread equal to the binomial value and to
datasketch's). Dietzfelbinger's strongly universal ``((a*x + b) mod 2^64) >> 32`` gave
the same bias and error there but, with its 64-bit products, ~3x the cost per slot
(half of the signature time instead of a quarter).

A document without words gets the all-``0xFFFFFFFF`` signature: see :meth:`empty_mask`;
callers must drop those rows before LSH banding, or all empty documents would collide.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

import numba
import numpy as np
import pyarrow as pa

from dataproc.text.buffers import text_buffers
from dataproc.text.hashing import P1, P2, U64, fmix64
from dataproc.text.word_hashes import doc_word_hashes, scratch

U32 = np.uint32
EMPTY = np.uint32(0xFFFFFFFF)


@numba.njit(cache=True, nogil=True)
def _shingle_hashes(whash: np.ndarray, nw: int, ngram: int, out: np.ndarray) -> int:
    """Write the 64-bit hash of every word n-gram into ``out``; return how many."""
    if nw == 0:
        return 0
    k = min(ngram, nw)
    ns = nw - k + 1
    h0 = U64(k) * P2
    for i in range(ns):
        h = h0
        for j in range(k):
            h = h * P1 + whash[i + j]
        out[i] = fmix64(h)
    return ns


@numba.njit(cache=True, nogil=True)
def _min_permutations(xs: np.ndarray, ns: int, a: np.ndarray, b: np.ndarray, row: np.ndarray) -> None:
    """row[k] = min(row[k], min over shingles of (a_k * x + b_k) mod 2^32), x = xs[i] >> 32.

    The inner loop runs over the ``num_perm`` slots: contiguous uint32 arrays, a fixed
    trip count and no branches, so LLVM vectorises it to 8-lane vpmulld/vpaddd/vpminud.
    Four shingles per pass share the parameter loads and the load/store of ``row``.
    """
    K = row.shape[0]
    i = 0
    while i + 4 <= ns:
        y0 = U32(xs[i] >> U64(32))
        y1 = U32(xs[i + 1] >> U64(32))
        y2 = U32(xs[i + 2] >> U64(32))
        y3 = U32(xs[i + 3] >> U64(32))
        for k in range(K):
            ak, bk = a[k], b[k]
            v01 = min(U32(ak * y0 + bk), U32(ak * y1 + bk))
            v23 = min(U32(ak * y2 + bk), U32(ak * y3 + bk))
            row[k] = min(row[k], min(v01, v23))
        i += 4
    while i < ns:
        y0 = U32(xs[i] >> U64(32))
        for k in range(K):
            row[k] = min(row[k], U32(a[k] * y0 + b[k]))
        i += 1


@numba.njit(cache=True, nogil=True)
def _longest(offsets: np.ndarray, lo: int, hi: int) -> int:
    """Byte length of the longest of documents ``lo..hi-1`` (sizes the per-document scratch)."""
    longest = 0
    for d in range(lo, hi):
        longest = max(longest, offsets[d + 1] - offsets[d])
    return longest


@numba.njit(cache=True, nogil=True)
def _signature_range(data: np.ndarray, offsets: np.ndarray, lo: int, hi: int, ngram: int, a: np.ndarray,
                     b: np.ndarray, out: np.ndarray) -> None:
    """Signatures of documents ``lo..hi-1`` into ``out`` rows ``lo..hi-1``."""
    longest = _longest(offsets, lo, hi)
    buffers = scratch(longest)
    whash = buffers[3]
    xs = np.empty(longest + 1, dtype=np.uint64)
    for d in range(lo, hi):
        row = out[d]
        row[:] = EMPTY
        nw = doc_word_hashes(data, offsets[d], offsets[d + 1], buffers)
        ns = _shingle_hashes(whash, nw, ngram, xs)
        _min_permutations(xs, ns, a, b, row)


@numba.njit(cache=True, nogil=True, parallel=True)
def _signature_parallel(data: np.ndarray, offsets: np.ndarray, bounds: np.ndarray, ngram: int, a: np.ndarray,
                        b: np.ndarray, out: np.ndarray) -> None:
    # Chunks (not documents) per prange iteration: scratch buffers are allocated per chunk.
    for c in numba.prange(bounds.shape[0] - 1):
        _signature_range(data, offsets, bounds[c], bounds[c + 1], ngram, a, b, out)


@numba.njit(cache=True, nogil=True)
def _all_shingles(data: np.ndarray, offsets: np.ndarray, ngram: int) -> tuple[np.ndarray, np.ndarray]:
    n = offsets.shape[0] - 1
    longest = _longest(offsets, 0, n)
    buffers = scratch(longest)
    whash = buffers[3]
    values = np.empty(data.shape[0] + n, dtype=np.uint64)
    out_off = np.zeros(n + 1, dtype=np.int64)
    for d in range(n):
        nw = doc_word_hashes(data, offsets[d], offsets[d + 1], buffers)
        ns = _shingle_hashes(whash, nw, ngram, values[out_off[d] :])
        out_off[d + 1] = out_off[d] + ns
    return values[: out_off[n]].copy(), out_off


@numba.njit(cache=True, nogil=True, inline="always")
def _sorted_unique(keys: np.ndarray, n: int, tmp: np.ndarray, counts: np.ndarray, out: np.ndarray, m: int) -> int:
    """Append the sorted distinct values of ``keys[:n]`` to ``out[m:]``; return the new end.

    The keys are avalanched hashes, so a counting scatter by their top ``log2(n)`` bits leaves
    each value within its small bucket, and one insertion-sort pass finishes in linear expected
    time: ~4x faster than ``np.sort`` on these few-hundred-value runs.
    """
    if n == 0:
        return m
    b = 1
    while (1 << b) < n and b < 16:
        b += 1
    shift = U32(32 - b)
    nb = 1 << b
    for i in range(nb + 1):
        counts[i] = 0
    for i in range(n):
        counts[(keys[i] >> shift) + 1] += 1
    for i in range(nb):
        counts[i + 1] += counts[i]
    for i in range(n):
        k = keys[i] >> shift
        tmp[counts[k]] = keys[i]
        counts[k] += 1
    for i in range(1, n):
        x = tmp[i]
        j = i - 1
        while j >= 0 and tmp[j] > x:
            tmp[j + 1] = tmp[j]
            j -= 1
        tmp[j + 1] = x
    for i in range(n):
        if i == 0 or tmp[i] != tmp[i - 1]:
            out[m] = tmp[i]
            m += 1
    return m


@numba.njit(cache=True, nogil=True)
def _signatures_and_sets(data: np.ndarray, offsets: np.ndarray, ngram: int, a: np.ndarray, b: np.ndarray,
                         out: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Signatures into ``out`` and, from the same shingles, each document's sorted unique 32-bit keys (CSR)."""
    n = offsets.shape[0] - 1
    longest = _longest(offsets, 0, n)
    buffers = scratch(longest)
    whash = buffers[3]
    xs = np.empty(longest + 1, dtype=np.uint64)
    keys = np.empty(longest + 1, dtype=np.uint32)
    tmp = np.empty(longest + 1, dtype=np.uint32)
    counts = np.empty((1 << 16) + 1, dtype=np.int64)
    cap = data.shape[0] // 4 + 1024  # ~6 bytes a word in prose: grown below when a text is denser
    vals = np.empty(cap, dtype=np.uint32)
    set_off = np.zeros(n + 1, dtype=np.int64)
    m = 0
    for d in range(n):
        row = out[d]
        row[:] = EMPTY
        nw = doc_word_hashes(data, offsets[d], offsets[d + 1], buffers)
        ns = _shingle_hashes(whash, nw, ngram, xs)
        _min_permutations(xs, ns, a, b, row)
        for i in range(ns):
            keys[i] = U32(xs[i] >> U64(32))
        if m + ns > cap:
            cap = max(2 * cap, m + ns)
            grown = np.empty(cap, dtype=np.uint32)
            grown[:m] = vals[:m]
            vals = grown
        m = _sorted_unique(keys, ns, tmp, counts, vals, m)
        set_off[d + 1] = m
    return vals[:m].copy(), set_off


Texts = Sequence[str] | pa.Array | pa.ChunkedArray | object


def _as_buffers(texts: Texts) -> tuple[np.ndarray, np.ndarray]:
    """``text_buffers`` of a list of str, an Arrow string array, or a polars Series."""
    if isinstance(texts, pa.Array | pa.ChunkedArray):
        return text_buffers(texts)
    to_arrow = getattr(texts, "to_arrow", None)  # polars Series (string_view / large_string)
    if to_arrow is not None:
        return text_buffers(to_arrow())
    return text_buffers(pa.array(list(texts), type=pa.large_string()))


@contextlib.contextmanager
def _numba_threads(threads: int) -> Iterator[None]:
    old = numba.get_num_threads()
    numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
    try:
        yield
    finally:
        numba.set_num_threads(old)


class MinHasher:
    """MinHash signatures over word n-gram sets (see the module docstring for the shingling).

    ``threads > 1`` splits a batch into chunks run with numba's ``prange``; the result is
    identical to the single-threaded one.
    """

    def __init__(self, num_perm: int = 128, ngram: int = 5, seed: int = 1, threads: int = 1) -> None:
        if num_perm < 1 or ngram < 1 or threads < 1:
            raise ValueError(f"num_perm, ngram and threads must be >= 1 (got {num_perm}, {ngram}, {threads})")
        self.num_perm = int(num_perm)
        self.ngram = int(ngram)
        self.seed = int(seed)
        self.threads = int(threads)
        rng = np.random.default_rng(self.seed)
        full = np.iinfo(np.uint32).max
        self.a = rng.integers(0, full, size=self.num_perm, dtype=np.uint32, endpoint=True) | np.uint32(1)
        self.b = rng.integers(0, full, size=self.num_perm, dtype=np.uint32, endpoint=True)

    def signatures(self, texts: Texts) -> np.ndarray:
        """``(n, num_perm)`` uint32 signatures of a list of str, Arrow strings or a polars Series."""
        return self.signatures_from_buffers(*_as_buffers(texts))

    def signatures_from_buffers(self, data: np.ndarray, offsets: np.ndarray) -> np.ndarray:
        """Signatures of the documents ``data[offsets[i]:offsets[i + 1]]`` (see ``text_buffers``)."""
        data = np.ascontiguousarray(data, dtype=np.uint8)
        offsets = np.ascontiguousarray(offsets, dtype=np.int64)
        n = offsets.shape[0] - 1
        out = np.empty((n, self.num_perm), dtype=np.uint32)
        if self.threads == 1 or n < 64:
            _signature_range(data, offsets, 0, n, self.ngram, self.a, self.b, out)
            return out
        # Several chunks per thread balance uneven document lengths.
        bounds = np.linspace(0, n, num=min(n, 8 * self.threads) + 1).astype(np.int64)
        with _numba_threads(self.threads):
            _signature_parallel(data, offsets, bounds, self.ngram, self.a, self.b, out)
        return out

    def signatures_and_sets(self, texts: Texts) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(signatures, values, offsets)``: the signatures and, from the same pass, each document's
        shingle set as the sorted unique 32-bit keys the permutations see (``s >> 32``), as CSR
        (document ``i`` is ``values[offsets[i]:offsets[i + 1]]``). Exact Jaccard of two rows is the
        Jaccard of these key sets (two shingles share a key with p ~ 2^-32)."""
        data, offsets = _as_buffers(texts)
        out = np.empty((len(offsets) - 1, self.num_perm), dtype=np.uint32)
        vals, off = _signatures_and_sets(np.ascontiguousarray(data, dtype=np.uint8),
                                         np.ascontiguousarray(offsets, dtype=np.int64), self.ngram, self.a,
                                         self.b, out)
        return out, vals, off

    def shingle_hashes(self, texts: Texts) -> tuple[np.ndarray, np.ndarray]:
        """The 64-bit shingle hashes of every document, as CSR ``(values, offsets)``.

        For inspection and tests: document ``i`` has ``values[offsets[i]:offsets[i + 1]]``
        (in text order, repeats included).
        """
        data, offsets = _as_buffers(texts)
        return _all_shingles(data, offsets, self.ngram)

    @staticmethod
    def empty_mask(sigs: np.ndarray) -> np.ndarray:
        """True for rows of documents without words (all slots 0xFFFFFFFF): never dedup these."""
        return np.all(sigs == EMPTY, axis=1)

    @staticmethod
    def jaccard(sig_a: np.ndarray, sig_b: np.ndarray) -> np.ndarray:
        """Estimated Jaccard similarity: fraction of equal slots (row-wise for 2-D inputs)."""
        return np.mean(np.asarray(sig_a) == np.asarray(sig_b), axis=-1)
