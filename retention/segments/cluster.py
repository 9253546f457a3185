"""Step 4, cluster: :class:`Segmenter` turns user vectors into segments, numbered by size.

k-means with k chosen by separation and stability (:func:`auto_k_rule` says how, in words the
page shows; :func:`k_choice_reason` says why a run got its k) or set by hand, MiniBatchKMeans for
large data; or HDBSCAN, whose noise is segment ``-1``.

Why stability (issue 18, measured in ``bench/bench_segments_k.py``): on real shoppers silhouette
alone is flat and low (Online Retail: 0.111 at k = 2, 0.115 at 3, 0.101 at 4) and the old rule,
"the fewest within 5% of the best", gave 2 broad groups. Multiplying by stability (do the same
segments come back on resampled users?) keeps the splits that are real: Online Retail 3 (4 and
more fall apart, ARI 0.56), the review sample 8 (its planted 4 products × 2 behaviours), the
planted demo 4. A k whose smallest segment is a splinter (under half an equal share) is left
out (:func:`best_k`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from retention.errors import InputError
from retention.segments.settings import ALGORITHMS, check_choice, check_k
from retention.words import NOISE_SEGMENT, Progress, scaled

NOISE = NOISE_SEGMENT
K_RANGE: tuple[int, int] = (2, 12)
SILHOUETTE_SAMPLE = 5_000
MINIBATCH_ABOVE = 50_000
STABILITY_SAMPLE = 4_000
STABILITY_PAIRS = 3
#: Below this stability (ARI) the page says segments "change from one sample to the next".
UNSTABLE = 0.75


class Segmenter:
    """Cluster user vectors into segments.

    Parameters
    ----------
    k:
        ``"auto"`` or an int. ``"auto"`` scores each k in ``k_range`` by silhouette (how clearly
        apart the segments are, on a seeded sample of at most ``sample_size`` users) times
        stability (:func:`stability_by_k`: how alike the segments of fits on two random
        subsamples are) and takes the best: a split that is clear but comes out differently on
        each run (a real segment cut in two at a random place) scores low.
    algorithm:
        ``"kmeans"`` (MiniBatchKMeans above ``minibatch_above`` users) or ``"hdbscan"`` (k is
        ignored; noise gets label ``-1``).
    min_cluster_size:
        HDBSCAN's smallest segment; default ``max(10, n_users // 100)``.

    Attributes after :meth:`fit`: ``labels_`` (segments numbered by size, largest first),
    ``k_`` (number of segments, noise excluded), ``cluster_centers_`` (one row per segment
    ``0..k_-1``), ``silhouette_`` and ``stability_`` (``{k: score}`` of the automatic choice,
    else empty).
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
        random_state: int = 0,
    ) -> None:
        self.k = k
        self.algorithm = algorithm
        self.k_range = k_range
        self.sample_size = sample_size
        self.minibatch_above = minibatch_above
        self.min_cluster_size = min_cluster_size
        self.random_state = random_state

    def fit(self, X: np.ndarray, progress: Progress | None = None) -> Segmenter:
        """Cluster ``X``; ``progress(fraction, message)`` hears of each k the automatic choice
        tries and each stability measured."""
        check_k(self.k)
        check_choice("algorithm", self.algorithm, ALGORITHMS)
        X = np.asarray(X)
        if X.dtype != np.float32:  # float32 stays so (half the memory at scale), else float64
            X = np.asarray(X, dtype=np.float64)
        n = len(X)
        if n < 2:
            raise InputError(f"Segmentation needs at least 2 users. Got {n}.")
        self.silhouette_: dict[int, float] = {}
        self.stability_: dict[int, float] = {}
        self.smallest_: dict[int, float] = {}
        if self.algorithm == "hdbscan":
            raw = self._hdbscan(X)
        else:
            if self.k == "auto":
                k = self._choose_k(X, progress)
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
        from threadpoolctl import threadpool_limits

        if len(X) > self.minibatch_above:
            model = MiniBatchKMeans(
                n_clusters=k, n_init=3, batch_size=4096, random_state=self.random_state
            )
            return model.fit(X)
        model = KMeans(n_clusters=k, n_init=n_init, random_state=self.random_state)
        # One OpenMP thread up to MINIBATCH_ABOVE users, as in _choose_k: 1.1 s of CPU instead
        # of a fraction of it for Online Retail's 4,339 users on a busy 2-core machine.
        with threadpool_limits(limits=1, user_api="openmp"):
            return model.fit(X)

    def _choose_k(self, X: np.ndarray, progress: Progress | None = None) -> int:
        from sklearn.cluster import KMeans
        from threadpoolctl import threadpool_limits

        say = progress or (lambda f, m: None)
        rng = np.random.default_rng(self.random_state)
        sample = X
        if len(X) > self.sample_size:
            sample = X[rng.choice(len(X), size=self.sample_size, replace=False)]
        lo, hi = self.k_range
        hi = min(hi, len(sample) - 1)
        if hi < lo:  # too few users to compare: take the smallest sensible k
            return min(lo, len(X))
        ks = range(lo, hi + 1)
        # The silhouette fits are 2/3 of the search, the stability of the k that can still win
        # the last third (the shares of the progress bar).
        labelings: dict[int, np.ndarray] = {}
        # One OpenMP thread: on a sample of a few thousand users more threads gain little, and
        # on a busy machine (other jobs, other users) k-means' spinning threads made these fits
        # over ten times slower (54 s instead of 4 s for 350 users at load 15 on 2 cores).
        with threadpool_limits(limits=1, user_api="openmp"):
            for i, k in enumerate(ks):
                say(i / len(ks) * 0.6, f"Trying {k} segments ({i + 1} of {len(ks)})")
                labels = KMeans(n_clusters=k, n_init=2, random_state=self.random_state).fit_predict(
                    sample
                )
                if len(np.unique(labels)) < 2:
                    continue
                labelings[k] = labels
                self.smallest_[k] = float(np.bincount(labels).min() / len(labels))
        say(0.6, "Measuring how clearly apart the segments are")
        self.silhouette_ = silhouette_scores(sample, labelings)
        if not self.silhouette_:
            return lo
        self.stability_ = stability_where_needed(
            X,
            self.silhouette_,
            self.smallest_,
            random_state=self.random_state,
            progress=scaled(progress, 0.65, 1.0),
        )
        return best_k(self.silhouette_, self.stability_, self.smallest_)

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


def _draws(
    X: np.ndarray,
    ks: list[int],
    *,
    sample_size: int,
    pairs: int,
    fraction: float,
    random_state: int,
) -> tuple[np.ndarray, int, dict[int, list[np.ndarray]]]:
    """The seeded sample stability is measured on, the subsample size, and each k's subsamples
    (``2 * pairs`` row sets), drawn from one seeded stream in increasing k as they always were,
    so a k's score does not depend on which other k are fitted (:func:`stability_where_needed`
    fits only some)."""
    X = np.asarray(X)
    rng = np.random.default_rng(random_state)
    if len(X) > sample_size:
        X = X[rng.choice(len(X), size=sample_size, replace=False)]
    size = max(int(len(X) * fraction), 2)
    draws: dict[int, list[np.ndarray]] = {}
    for k in sorted(int(k) for k in ks):
        if k >= size:
            continue
        draws[k] = [rng.choice(len(X), size=size, replace=False) for _ in range(2 * pairs)]
    return X, size, draws


def stability_by_k(
    X: np.ndarray,
    ks: range | list[int],
    *,
    sample_size: int = STABILITY_SAMPLE,
    pairs: int = STABILITY_PAIRS,
    fraction: float = 0.8,
    random_state: int = 0,
) -> dict[int, float]:
    """How reproducible k-means segments are, per k: the mean adjusted Rand index between the
    segments of two fits on different random subsamples (``fraction`` of a seeded sample of at
    most ``sample_size`` users, different seeds), each fit assigning the whole sample. 1: the
    same segments every time; near 0: a different split on each run."""
    sample, _, draws = _draws(
        X,
        list(ks),
        sample_size=sample_size,
        pairs=pairs,
        fraction=fraction,
        random_state=random_state,
    )
    return {k: _stability(sample, k, rows, random_state) for k, rows in draws.items()}


def stability_where_needed(
    X: np.ndarray,
    silhouette: dict[int, float],
    smallest: dict[int, float] | None = None,
    *,
    sample_size: int = STABILITY_SAMPLE,
    pairs: int = STABILITY_PAIRS,
    fraction: float = 0.8,
    random_state: int = 0,
    progress: Progress | None = None,
) -> dict[int, float]:
    """:func:`stability_by_k` of only the k that can still win :func:`best_k`, and of the
    winner's k + 1 (the page says why one more segment was not taken).

    Stability (an adjusted Rand index) is at most 1, so a k whose silhouette is below the best
    silhouette × stability found so far cannot win: the k are measured from the clearest down
    and the rest skipped once none can win. The scores are those :func:`stability_by_k` gives
    (the same subsamples) and so is the choice (the tests check both); the skipped k have no
    stability score. ``smallest`` leaves out splinter splits as :func:`best_k` does.
    """
    sample, _, draws = _draws(
        X,
        list(silhouette),
        sample_size=sample_size,
        pairs=pairs,
        fraction=fraction,
        random_state=random_state,
    )
    say = progress or (lambda f, m: None)
    ks = list(draws)
    whole = [k for k in ks if smallest is None or smallest.get(k, 1.0) >= 1 / (2 * k)]
    ks = whole or ks
    out: dict[int, float] = {}
    best = None  # (score, k) of the best so far
    for i, k in enumerate(sorted(ks, key=lambda k: (-silhouette[k], k))):
        if best is not None and abs(silhouette[k]) < best[0]:
            continue  # stability <= 1: this k cannot beat the best
        say(i / len(ks), f"Checking that {k} segments come back on resampled users")
        out[k] = _stability(sample, k, draws[k], random_state)
        score = silhouette[k] * out[k]
        if best is None or (score, -k) > (best[0], -best[1]):
            best = (score, k)
    if best is not None and best[1] + 1 in draws and best[1] + 1 not in out:
        more = best[1] + 1
        say(0.95, f"Checking {more} segments too")
        out[more] = _stability(sample, more, draws[more], random_state)
    say(1.0, "Segments compared")
    return dict(sorted(out.items()))


def _stability(X: np.ndarray, k: int, rows: list[np.ndarray], random_state: int) -> float:
    """:func:`stability_by_k` for one k: ``rows`` holds the subsamples, two per pair."""
    from sklearn.cluster import KMeans
    from sklearn.metrics import adjusted_rand_score
    from threadpoolctl import threadpool_limits

    scores = []
    with threadpool_limits(limits=1, user_api="openmp"):  # as in Segmenter._choose_k
        for pair in range(len(rows) // 2):
            fits = []
            for half in range(2):
                seed = random_state + 2 * pair + half + 1
                model = KMeans(n_clusters=k, n_init=2, random_state=seed).fit(
                    X[rows[2 * pair + half]]
                )
                fits.append(model.predict(X))
            scores.append(adjusted_rand_score(*fits))
    return float(np.mean(scores))


def silhouette_scores(
    X: np.ndarray, labelings: dict[int, np.ndarray], chunk_rows: int = 1024
) -> dict[int, float]:
    """``sklearn.metrics.silhouette_score(X, labels)`` (Euclidean) of each labelling of the
    same users, in one pass over their pairwise distances instead of one per labelling.

    The distances are computed ``chunk_rows`` rows at a time and multiplied by the labellings'
    one-hot columns side by side, giving each user's summed distance to every segment of every
    labelling; the rest is sklearn's formula (a user alone in a segment scores 0).
    """
    if not labelings:
        return {}
    X = np.asarray(X, dtype=np.float64)
    n = len(X)
    ks = list(labelings)
    widths = [int(labelings[k].max()) + 1 for k in ks]
    offsets = np.concatenate([[0], np.cumsum(widths)])
    H = np.zeros((n, int(offsets[-1])))
    for k, off in zip(ks, offsets[:-1], strict=False):
        H[np.arange(n), off + labelings[k]] = 1.0
    sq = np.einsum("ij,ij->i", X, X)
    sums = np.empty_like(H)
    for lo in range(0, n, chunk_rows):
        hi = min(lo + chunk_rows, n)
        D = sq[lo:hi, None] + sq[None, :] - 2.0 * (X[lo:hi] @ X.T)
        np.maximum(D, 0.0, out=D)
        np.sqrt(D, out=D)
        D[np.arange(hi - lo), np.arange(lo, hi)] = 0.0  # as sklearn: a user is 0 from itself
        sums[lo:hi] = D @ H
    rows = np.arange(n)
    out: dict[int, float] = {}
    for k, off, width in zip(ks, offsets[:-1], widths, strict=False):
        labels = labelings[k]
        S = sums[:, off : off + width]
        counts = H[:, off : off + width].sum(axis=0)
        own = counts[labels]
        with np.errstate(divide="ignore", invalid="ignore"):
            a = S[rows, labels] / np.maximum(own - 1, 1)
            mean_to = S / counts
            mean_to[:, counts == 0] = np.inf
            mean_to[rows, labels] = np.inf
            b = mean_to.min(axis=1)
            s = (b - a) / np.maximum(a, b)
        s[own == 1] = 0.0
        out[int(k)] = float(np.mean(np.nan_to_num(s)))
    return out


def k_scores(silhouette: dict[int, float], stability: dict[int, float]) -> dict[int, float]:
    """The automatic choice's score of each k: silhouette × stability (k without a stability
    score are left out)."""
    return {k: silhouette[k] * stability[k] for k in silhouette if k in stability}


def best_k(
    silhouette: dict[int, float],
    stability: dict[int, float],
    smallest: dict[int, float] | None = None,
) -> int:
    """The k with the best silhouette × stability (ties: the fewer segments); the best
    silhouette when no k has a stability score.

    With ``smallest`` (each k's smallest segment as a share of users), a k whose smallest
    segment holds less than half an equal share (``1 / (2k)``) is left out while another k is
    left: such a segment is a splinter of atypical users cut from a real one (a planted demo of
    6 segments of 60 users got a 7th of 21 at a slightly higher silhouette), not one to act on.
    """
    scores = k_scores(silhouette, stability) or silhouette
    if smallest:
        whole = {k: v for k, v in scores.items() if smallest.get(k, 1.0) >= 1 / (2 * k)}
        scores = whole or scores
    return min(scores, key=lambda k: (-scores[k], k))


def auto_k_rule(segmenter: Segmenter | None = None) -> str:
    """How the automatic choice of k works, in a marketer's words, from ``segmenter``'s own
    settings (default: the ones every segmentation uses), so the page cannot say otherwise."""
    s = segmenter if segmenter is not None else Segmenter()
    lo, hi = s.k_range
    return (
        f"Automatic tries {lo} to {hi} segments. Each number is scored on how clearly apart "
        f"the segments are (silhouette, on a sample of at most {s.sample_size:,} users) times "
        "how stable they are (found again on random 80% subsamples, the same segments come "
        "back: 1 = always); the best score wins, leaving out splits with a segment smaller "
        "than half an equal share. Stability is measured only for the numbers that could "
        "still win (and one more than the winner), clearest first."
    )


def k_choice_reason(metrics: dict[str, Any]) -> str | None:
    """Why a segmentation has its number of segments, in one or two plain sentences, from its
    stored metrics; ``None`` when k was set by hand or chosen before stability was measured."""
    silhouette = {int(k): float(v) for k, v in (metrics.get("silhouette_by_k") or {}).items()}
    stability = {int(k): float(v) for k, v in (metrics.get("stability_by_k") or {}).items()}
    k = metrics.get("k")
    if not metrics.get("k_auto") or not stability or k not in stability or k not in silhouette:
        return None
    lo, hi = min(silhouette), max(silhouette)
    text = (
        f"Why {k} segments: of the {lo} to {hi} tried, {k} splits your users most clearly while "
        f"staying reproducible — found again on resampled users, the same segments come back "
        f"(stability {stability[k]:.2f} of 1; separation {silhouette[k]:.2f})."
    )
    more = k + 1
    if more in stability and more in silhouette:
        if stability[more] < UNSTABLE:
            text += (
                f" With {more}, the segments change from one sample to the next "
                f"(stability {stability[more]:.2f}): not a split to act on."
            )
        elif stability[more] < stability[k] - 0.02:
            text += f" With {more}, they come back less reliably ({stability[more]:.2f})."
        else:
            text += f" With {more}, users are less clearly apart ({silhouette[more]:.2f})."
    return text


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
        "stability_by_k": {str(k): v for k, v in getattr(segmenter, "stability_", {}).items()},
        "noise_users": int((segmenter.labels_ == NOISE).sum()),
    }
