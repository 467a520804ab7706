"""MinHash LSH banding: choose (bands, rows), hash each band of a signature, and turn equal
band keys into candidate-duplicate edges.

Two documents become candidates when all ``rows`` slots of at least one of ``bands`` bands
agree; for Jaccard similarity ``s`` that happens with probability ``1 - (1 - s^r)^b``.
:func:`bucket_edges` links every member of a bucket to the bucket's smallest doc id (a
star), so a bucket of ``m`` documents costs ``m - 1`` edges instead of ``m(m-1)/2`` pairs;
connected components over the star edges equal those over all pairs.
"""

from __future__ import annotations

from collections.abc import Callable

import numba
import numpy as np

from dataproc.text.hashing import P1, P2, U64, fmix64

# FineWeb / datatrove default: 14 bands of 8 rows (threshold ~ (1/14)^(1/8) = 0.72).
DEFAULT_BANDS, DEFAULT_ROWS = 14, 8


def _gauss_legendre_integral(f_values_fn: Callable[[np.ndarray], np.ndarray], lo: float, hi: float,
                             degree: int) -> np.ndarray:
    """Integrate polynomials of degree <= ``degree`` exactly (Gauss-Legendre quadrature)."""
    nodes, weights = np.polynomial.legendre.leggauss(degree // 2 + 1)
    s = 0.5 * (hi - lo) * nodes + 0.5 * (hi + lo)
    return 0.5 * (hi - lo) * (f_values_fn(s) @ weights)


def lsh_params(num_perm: int, threshold: float | None = None, bands: int | None = None,
               rows: int | None = None, weights: tuple[float, float] = (0.5, 0.5)) -> tuple[int, int]:
    """Return ``(bands, rows)`` with ``bands * rows <= num_perm``.

    * ``bands`` and/or ``rows`` given: used as is (a missing one is ``num_perm // other``).
    * ``threshold`` given: the pair minimising ``w_fp * FP + w_fn * FN``, where FP is the
      probability mass of becoming candidates below the threshold, ``integral_0^t
      1 - (1 - s^r)^b ds``, and FN the mass of being missed above it (datasketch's
      ``_optimal_param`` criterion; the integrands are polynomials of degree ``b * r``, so
      Gauss-Legendre quadrature computes them exactly, without scipy).
    * nothing given: FineWeb's 14 x 8 when ``num_perm >= 112``, else the optimum for
      FineWeb's threshold ``(1/14)^(1/8)``.
    """
    if num_perm < 1:
        raise ValueError(f"num_perm must be >= 1, got {num_perm}")
    if bands is not None or rows is not None:
        if threshold is not None:
            raise ValueError("give either threshold or bands/rows, not both")
        bands = bands if bands is not None else num_perm // rows
        rows = rows if rows is not None else num_perm // bands
        if bands < 1 or rows < 1 or bands * rows > num_perm:
            raise ValueError(f"need bands, rows >= 1 and bands * rows <= num_perm ({bands} x {rows} > {num_perm})")
        return int(bands), int(rows)
    if threshold is None:
        if num_perm >= DEFAULT_BANDS * DEFAULT_ROWS:
            return DEFAULT_BANDS, DEFAULT_ROWS
        threshold = (1.0 / DEFAULT_BANDS) ** (1.0 / DEFAULT_ROWS)
    if not 0.0 < threshold < 1.0:
        raise ValueError(f"threshold must be in (0, 1), got {threshold}")
    w_fp, w_fn = weights
    # Every (b, r) with b * r <= num_perm, in datasketch's scan order (b outer, r inner),
    # so that ties resolve to the same, first, pair.
    pairs = np.array([(b, r) for b in range(1, num_perm + 1) for r in range(1, num_perm // b + 1)], dtype=np.float64)
    b, r = pairs[:, :1], pairs[:, 1:2]

    def candidate(s: np.ndarray) -> np.ndarray:
        return 1.0 - (1.0 - s[None, :] ** r) ** b

    fp = _gauss_legendre_integral(candidate, 0.0, threshold, num_perm)
    fn = _gauss_legendre_integral(lambda s: 1.0 - candidate(s), threshold, 1.0, num_perm)
    err = w_fp * fp + w_fn * fn
    best = int(np.argmin(err))  # argmin returns the first minimum
    return int(pairs[best, 0]), int(pairs[best, 1])


def verified_lsh_params(num_perm: int, threshold: float, min_recall: float = 0.98) -> tuple[int, int]:
    """``(bands, rows)`` for LSH whose candidates are verified afterwards.

    Verification rejects the false candidates, so only misses matter: the most rows (the
    fewest false candidates), with ``bands = num_perm // rows``, such that a pair at exactly
    ``threshold`` becomes a candidate with probability >= ``min_recall``. For 128 slots:
    0.7 -> 25 x 5, 0.8 -> 18 x 7, 0.9 -> 11 x 11.
    """
    if not 0.0 < threshold < 1.0:
        raise ValueError(f"threshold must be in (0, 1), got {threshold}")
    best = (num_perm, 1)
    for rows in range(1, num_perm + 1):
        bands = num_perm // rows
        if 1.0 - (1.0 - threshold**rows) ** bands >= min_recall:
            best = (bands, rows)
    return best


@numba.njit(cache=True, nogil=True)
def _band_keys(sigs: np.ndarray, bands: int, rows: int, out: np.ndarray) -> None:
    for i in range(sigs.shape[0]):
        for band in range(bands):
            # Seeded with the band index, so equal values in different bands give different
            # keys (callers may pool bands); Horner over the r values, then a bijective
            # avalanche.
            h = U64(band + 1) * P2
            base = band * rows
            for j in range(rows):
                h = h * P1 + U64(sigs[i, base + j])
            out[i, band] = fmix64(h)


def band_keys(sigs: np.ndarray, bands: int, rows: int) -> np.ndarray:
    """``(n, bands)`` uint64: a 64-bit hash of each band's ``rows`` signature values.

    Band ``k`` covers slots ``k*rows .. (k+1)*rows - 1``. Equal bands give equal keys;
    different bands collide with probability ~2^-64 per pair.
    """
    sigs = np.ascontiguousarray(sigs, dtype=np.uint32)
    if sigs.ndim != 2 or bands * rows > sigs.shape[1]:
        raise ValueError(f"need a 2-D signature array with >= {bands * rows} columns, got {sigs.shape}")
    out = np.empty((sigs.shape[0], bands), dtype=np.uint64)
    _band_keys(sigs, int(bands), int(rows), out)
    return out


def bucket_edges(keys: np.ndarray, doc_ids: np.ndarray) -> np.ndarray:
    """Star edges of one band: ``(e, 2)`` int64 rows ``(doc, min doc id of its bucket)``.

    Documents with equal ``keys`` share a bucket. For every bucket of >= 2 distinct doc
    ids, each member other than the smallest id gets one edge to the smallest.
    """
    keys = np.asarray(keys, dtype=np.uint64)
    doc_ids = np.asarray(doc_ids, dtype=np.int64)
    if keys.shape != doc_ids.shape or keys.ndim != 1:
        raise ValueError(f"keys and doc_ids must be 1-D of equal length, got {keys.shape} and {doc_ids.shape}")
    if keys.size < 2:
        return np.empty((0, 2), dtype=np.int64)
    order = np.lexsort((doc_ids, keys))  # by key, then doc id: each bucket starts with its min
    k = keys[order]
    d = doc_ids[order]
    new_bucket = np.empty(k.size, dtype=bool)
    new_bucket[0] = True
    np.not_equal(k[1:], k[:-1], out=new_bucket[1:])
    bucket_min = d[np.maximum.accumulate(np.where(new_bucket, np.arange(k.size), 0))]
    # A doc id repeated within a bucket (same doc fed twice) must not make a self-edge.
    member = d != bucket_min
    return np.stack([d[member], bucket_min[member]], axis=1)


def candidate_edges(sigs: np.ndarray, doc_ids: np.ndarray, bands: int, rows: int) -> np.ndarray:
    """Star edges over all bands for one batch of signatures, empty documents skipped.

    Rows whose signature is all ``0xFFFFFFFF`` (documents without words) would all share
    every bucket; they are left out, so they are never duplicates of anything.
    """
    sigs = np.asarray(sigs)
    doc_ids = np.asarray(doc_ids, dtype=np.int64)
    keep = ~np.all(sigs == np.uint32(0xFFFFFFFF), axis=1)
    keys = band_keys(sigs[keep], bands, rows)
    ids = doc_ids[keep]
    parts = [bucket_edges(keys[:, band], ids) for band in range(bands)]
    edges = np.concatenate(parts) if parts else np.empty((0, 2), dtype=np.int64)
    return np.unique(edges, axis=0) if edges.size else edges
