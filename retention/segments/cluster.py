"""Step 4, cluster: :class:`Segmenter` turns user vectors into segments, numbered by size.

k-means with k chosen by silhouette (:func:`auto_k_rule` says how, in words the page shows) or
set by hand, MiniBatchKMeans for large data; or HDBSCAN, whose noise is segment ``-1``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from retention.errors import InputError
from retention.segments.settings import ALGORITHMS, check_choice, check_k
from retention.words import NOISE_SEGMENT

NOISE = NOISE_SEGMENT
K_RANGE: tuple[int, int] = (2, 12)
SILHOUETTE_SAMPLE = 5_000
SILHOUETTE_TOLERANCE = 0.05  # relative
MINIBATCH_ABOVE = 50_000


class Segmenter:
    """Cluster user vectors into segments.

    Parameters
    ----------
    k:
        ``"auto"`` or an int. ``"auto"`` scores each k in ``k_range`` by silhouette on a seeded
        sample of at most ``sample_size`` users and takes the smallest k whose score is within
        ``tolerance`` (relative, 5%) of the best: near-ties (a real segment split in two by a
        handful of atypical users) resolve towards fewer, larger segments, which a marketer can
        act on.
    algorithm:
        ``"kmeans"`` (MiniBatchKMeans above ``minibatch_above`` users) or ``"hdbscan"`` (k is
        ignored; noise gets label ``-1``).
    min_cluster_size:
        HDBSCAN's smallest segment; default ``max(10, n_users // 100)``.

    Attributes after :meth:`fit`: ``labels_`` (segments numbered by size, largest first),
    ``k_`` (number of segments, noise excluded), ``cluster_centers_`` (one row per segment
    ``0..k_-1``), ``silhouette_`` (``{k: score}`` of the automatic choice, else empty).
    """

    def __init__(
        self,
        k: int | str = "auto",
        algorithm: str = "kmeans",
        *,
        k_range: tuple[int, int] = K_RANGE,
        sample_size: int = SILHOUETTE_SAMPLE,
        minibatch_above: int = MINIBATCH_ABOVE,
        min_cluster_size: int | None = None,
        tolerance: float = SILHOUETTE_TOLERANCE,
        random_state: int = 0,
    ) -> None:
        self.k = k
        self.algorithm = algorithm
        self.k_range = k_range
        self.sample_size = sample_size
        self.minibatch_above = minibatch_above
        self.min_cluster_size = min_cluster_size
        self.tolerance = tolerance
        self.random_state = random_state

    def fit(self, X: np.ndarray) -> Segmenter:
        check_k(self.k)
        check_choice("algorithm", self.algorithm, ALGORITHMS)
        X = np.asarray(X)
        if X.dtype != np.float32:  # float32 stays so (half the memory at scale), else float64
            X = np.asarray(X, dtype=np.float64)
        n = len(X)
        if n < 2:
            raise InputError(f"Segmentation needs at least 2 users. Got {n}.")
        self.silhouette_: dict[int, float] = {}
        if self.algorithm == "hdbscan":
            raw = self._hdbscan(X)
        else:
            if self.k == "auto":
                k = self._choose_k(X)
            else:
                k = int(self.k)
                if k > n:
                    raise InputError(
                        f"The 'k' parameter ({k}) is larger than the number of users ({n}). "
                        "Choose a smaller k or 'auto'."
                    )
            raw = self._kmeans(X, k, n_init=4).labels_
        self.labels_ = relabel_by_size(raw)
        self.k_ = int(self.labels_.max()) + 1 if (self.labels_ >= 0).any() else 0
        self.cluster_centers_ = (
            np.vstack([X[self.labels_ == s].mean(axis=0) for s in range(self.k_)])
            if self.k_
            else np.zeros((0, X.shape[1]))
        )
        self.n_features_in_ = X.shape[1]
        return self

    def fit_predict(self, X: np.ndarray) -> np.ndarray:
        return self.fit(X).labels_

    def _kmeans(self, X: np.ndarray, k: int, n_init: int) -> Any:
        from sklearn.cluster import KMeans, MiniBatchKMeans

        if len(X) > self.minibatch_above:
            model = MiniBatchKMeans(
                n_clusters=k, n_init=3, batch_size=4096, random_state=self.random_state
            )
        else:
            model = KMeans(n_clusters=k, n_init=n_init, random_state=self.random_state)
        return model.fit(X)

    def _choose_k(self, X: np.ndarray) -> int:
        from sklearn.cluster import KMeans
        from sklearn.metrics import silhouette_score

        rng = np.random.default_rng(self.random_state)
        sample = X
        if len(X) > self.sample_size:
            sample = X[rng.choice(len(X), size=self.sample_size, replace=False)]
        lo, hi = self.k_range
        hi = min(hi, len(sample) - 1)
        if hi < lo:  # too few users to compare: take the smallest sensible k
            return min(lo, len(X))
        for k in range(lo, hi + 1):
            labels = KMeans(n_clusters=k, n_init=2, random_state=self.random_state).fit_predict(
                sample
            )
            if len(np.unique(labels)) < 2:
                continue
            self.silhouette_[k] = float(silhouette_score(sample, labels))
        if not self.silhouette_:
            return lo
        best = max(self.silhouette_.values())
        return min(k for k, v in self.silhouette_.items() if v >= best - self.tolerance * abs(best))

    def _hdbscan(self, X: np.ndarray) -> np.ndarray:
        from sklearn.cluster import HDBSCAN
        from sklearn.decomposition import PCA

        n = len(X)
        # Density clustering works poorly in hundreds of dimensions: reduce first (as BERTopic
        # does with UMAP), keeping most of the variance.
        dims = min(10, X.shape[1], n - 1)
        Z = X if X.shape[1] <= dims else PCA(dims, random_state=self.random_state).fit_transform(X)
        size = self.min_cluster_size or max(10, n // 100)
        size = max(2, min(size, n))
        return HDBSCAN(min_cluster_size=size, copy=True).fit_predict(Z)


def auto_k_rule(segmenter: Segmenter | None = None) -> str:
    """How the automatic choice of k works, in a marketer's words, from ``segmenter``'s own
    settings (default: the ones every segmentation uses), so the page cannot say otherwise."""
    s = segmenter if segmenter is not None else Segmenter()
    lo, hi = s.k_range
    return (
        f"Automatic tries {lo} to {hi} segments and scores each by silhouette (on a sample of at "
        f"most {s.sample_size:,} users); the smallest number of segments whose score is within "
        f"{s.tolerance:.0%} of the best wins, so near-ties go to fewer, larger segments."
    )


def relabel_by_size(labels: np.ndarray) -> np.ndarray:
    """Renumber clusters 0.. by size (largest first; ties by first appearance); keep -1."""
    labels = np.asarray(labels)
    ids = [c for c in pd.unique(labels) if c != NOISE]
    sizes = {c: int((labels == c).sum()) for c in ids}
    order = sorted(ids, key=lambda c: -sizes[c])  # stable: ties keep first-appearance order
    out = np.full(len(labels), NOISE, dtype=np.int64)
    for i, c in enumerate(order):
        out[labels == c] = i
    return out


def cluster_metrics(segmenter: Segmenter) -> dict[str, Any]:
    """What a fitted segmenter found, for the run's metrics."""
    return {
        "k": segmenter.k_,
        "algorithm": segmenter.algorithm,
        "k_auto": segmenter.k == "auto" and segmenter.algorithm == "kmeans",
        "silhouette_by_k": {str(k): v for k, v in segmenter.silhouette_.items()},
        "noise_users": int((segmenter.labels_ == NOISE).sum()),
    }
