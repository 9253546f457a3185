"""Step 3, reduce: the combined user vectors in their first principal components.

k-means and the silhouette scan cost grows with the dimension; 384-d text vectors keep nearly
all of their between-user variance in far fewer directions (the first two components are the
PCA map). Up to :data:`REDUCE_SAMPLE` users exactly (:func:`combine` then
:func:`reduce_dimensions`); above it the user vectors are never all in memory: the scaling and
the principal axes are fitted on a seeded sample and every user is projected in chunks
(:func:`reduce_in_chunks`). :func:`reduce_users` picks the way.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import numpy as np

from retention.embeddings import Progress
from retention.segments.features import block_scale, combine, total_variance
from retention.segments.text import UserText, filled, public_info

REDUCED_DIMENSIONS = 50
# Above this many users the text vectors are never all in memory at once: the reduction (the
# no-text fill, the block weights and the principal axes) is fitted on a seeded sample of this
# many users, then every user is projected chunk by chunk. At or below it, the exact computation
# (a full SVD: about 1 GB and a few seconds at 50,000 users, twice that at 100,000).
REDUCE_SAMPLE = 50_000
CHUNK_USERS = 20_000  # users per chunk when building and projecting text vectors
#: Chunks of users' text vectors built side by side (:func:`_ahead`).
ROW_THREADS = 2

_T = TypeVar("_T")
_R = TypeVar("_R")


def _ahead(fn: Callable[[_T], _R], items: Iterable[_T], workers: int = ROW_THREADS) -> Iterator[_R]:
    """``fn(item)`` for each item, in order, computed in ``workers`` threads up to ``workers``
    items ahead of the caller (so at most ``workers`` results wait in memory).

    Issue 19 (50M events): building a chunk's text vectors (:meth:`UserText.rows`: a sparse ×
    dense product in scipy, which releases the GIL, and NumPy) ran on one core while the other
    waited; now two chunks are built side by side while the caller projects the previous one.
    Each chunk is computed exactly as before, so the vectors are the same to the bit."""
    pending: deque = deque()
    with ThreadPoolExecutor(max_workers=max(workers, 1)) as pool:
        for item in items:
            if len(pending) >= max(workers, 1):
                yield pending.popleft().result()
            pending.append(pool.submit(fn, item))
        while pending:
            yield pending.popleft().result()


def reduce_dimensions(X: np.ndarray, n_components: int = REDUCED_DIMENSIONS) -> np.ndarray:
    """``X`` in its first ``n_components`` principal components (all of them when it has fewer).

    k-means and the silhouette scan cost grows with the dimension; 384-d text vectors keep
    nearly all of their between-user variance in far fewer directions. The output is centred
    and its first two columns are the PCA map.
    """
    from sklearn.decomposition import PCA

    n_components = min(n_components, X.shape[1], len(X))
    if n_components < 2:
        return X - X.mean(axis=0)
    # More users than dimensions (the usual case): the eigenvectors of the covariance matrix
    # (d × d) are the same axes as the full SVD of the n × d data, at a fraction of the cost
    # (Online Retail, 4,339 × 434: 0.7 s of CPU instead of 10 s on a busy 2-core machine; the
    # projections agree to 1e-11).
    solver = "covariance_eigh" if len(X) >= X.shape[1] else "full"
    return PCA(n_components, svd_solver=solver).fit_transform(X)


def _scaled_rows(
    U: np.ndarray,
    has: np.ndarray,
    fill: np.ndarray,
    behaviour: np.ndarray,
    scales: tuple[float | None, float | None],
) -> np.ndarray:
    """``[text * scale | behaviour * scale]`` as one float32 array, users without text getting
    ``fill``; a block whose scale is ``None`` is left out."""
    text_scale, behaviour_scale = scales
    d = U.shape[1] if text_scale is not None else 0
    width = d + (behaviour.shape[1] if behaviour_scale is not None else 0)
    if width == 0:
        return np.zeros((len(behaviour), 1), dtype=np.float32)
    out = np.empty((len(behaviour), width), dtype=np.float32)
    if text_scale is not None:
        out[:, :d] = U
        out[~has, :d] = fill
        out[:, :d] *= np.float32(text_scale)
    if behaviour_scale is not None:
        out[:, d:] = behaviour * behaviour_scale
    return out


def reduce_in_chunks(
    text: UserText,
    behaviour: np.ndarray,
    text_weight: float,
    *,
    sample_size: int | None = None,
    chunk_users: int | None = None,
    n_components: int = REDUCED_DIMENSIONS,
    random_state: int = 0,
    progress: Progress | None = None,
) -> tuple[np.ndarray, dict[str, Any]]:
    """:func:`combine` then :func:`reduce_dimensions`, never holding every user's text vector.

    What the reduction learns (the vector users without text get, the two block weights, the
    principal axes) is fitted on a seeded sample of ``sample_size`` users (default
    :data:`REDUCE_SAMPLE`), in float32; then every user's vector is built and projected
    ``chunk_users`` at a time (default :data:`CHUNK_USERS`; :data:`ROW_THREADS` chunks built side
    by side). Memory: the sample, a few chunks and the result (float32, one row per user). Returns the result and ``users_with_text``,
    ``pca_fitted_on``.
    """
    from sklearn.decomposition import PCA

    sample_size = REDUCE_SAMPLE if sample_size is None else sample_size
    chunk_users = CHUNK_USERS if chunk_users is None else chunk_users
    n = len(behaviour)
    sample = np.arange(n)
    if n > sample_size:
        rng = np.random.default_rng(random_state)
        sample = np.sort(rng.choice(n, size=sample_size, replace=False))
    U = np.empty((len(sample), text.dim), dtype=np.float32)
    has = np.empty(len(sample), dtype=bool)
    starts = range(0, len(sample), chunk_users)
    chunks = _ahead(lambda lo: text.rows(sample[lo : lo + chunk_users]), starts)
    for lo, rows in zip(starts, chunks, strict=True):  # users without text have zero rows
        U[lo : lo + chunk_users], has[lo : lo + chunk_users] = rows
    with_text = max(int(has.sum()), 1)
    # Users without text get the sample's mean vector of users with text; the filled block's
    # total variance is then (sum of squared norms - with_text * |fill|^2) / sample size.
    fill = U.sum(axis=0, dtype=np.float64) / with_text
    squares = float(np.einsum("ij,ij->", U, U, dtype=np.float64))
    text_total = max(squares - with_text * float(fill @ fill), 0.0) / len(sample)
    scales = (
        block_scale(text_total, text_weight),
        block_scale(total_variance(behaviour[sample]), 1.0 - text_weight),
    )
    fitted = _scaled_rows(U, has, fill, behaviour[sample], scales)
    del U
    k = min(n_components, fitted.shape[1], len(fitted))
    pca = PCA(k, svd_solver="covariance_eigh").fit(fitted) if k >= 2 else None
    centre = fitted.mean(axis=0, dtype=np.float64)
    del fitted
    out = np.empty((n, k if pca is not None else len(centre)), dtype=np.float32)
    users_with_text = 0
    starts = range(0, n, chunk_users)
    chunks = _ahead(lambda lo: text.rows(slice(lo, min(lo + chunk_users, n))), starts)
    for lo, (U, has) in zip(starts, chunks, strict=True):
        hi = min(lo + chunk_users, n)
        users_with_text += int(has.sum())
        chunk = _scaled_rows(U, has, fill, behaviour[lo:hi], scales)
        out[lo:hi] = pca.transform(chunk) if pca is not None else chunk - centre
        if progress is not None:
            progress(hi / n, f"Projecting users: {hi:,} of {n:,}")
    return out, {"users_with_text": users_with_text, "pca_fitted_on": len(sample)}


def reduce_users(
    text: UserText,
    behaviour: np.ndarray,
    text_weight: float,
    *,
    random_state: int = 0,
    progress: Progress | None = None,
) -> tuple[np.ndarray, dict[str, Any]]:
    """The users' combined, reduced vectors and what was embedded (for the run's metrics):
    exactly up to :data:`REDUCE_SAMPLE` users, sampled and chunked above."""
    n = len(behaviour)
    if n > REDUCE_SAMPLE:  # never all text vectors at once
        X, reduced = reduce_in_chunks(
            text, behaviour, text_weight, random_state=random_state, progress=progress
        )
        info = public_info(text, reduced["users_with_text"])
        info["pca_fitted_on"] = reduced["pca_fitted_on"]
        return X, info
    U, has = text.rows(slice(0, n))
    T = filled(U, has)
    del U
    info = public_info(text, int(has.sum()))
    return reduce_dimensions(combine(T, behaviour, text_weight)), info
