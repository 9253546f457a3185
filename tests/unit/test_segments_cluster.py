"""Clustering: HDBSCAN noise, numbering by size, MiniBatchKMeans, automatic k and its words."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score

from retention.errors import InputError
from retention.segments import NOISE, Segmenter, SegmentSettings, auto_k_rule
from retention.segments.cluster import SILHOUETTE_SAMPLE, SILHOUETTE_TOLERANCE


def _blobs(seed: int = 0, n: int = 60, centres: int = 3) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    truth = np.repeat(np.arange(centres), n)
    X = rng.normal(scale=0.3, size=(len(truth), 2)) + np.array([[0, 0], [5, 0], [0, 5]])[truth]
    return X, truth


def test_hdbscan_marks_far_points_as_noise():
    X, truth = _blobs(n=50)
    outliers = np.array([[20.0, 20.0], [-20.0, 15.0], [15.0, -20.0]])
    seg = Segmenter(algorithm="hdbscan", min_cluster_size=10).fit(np.vstack([X, outliers]))
    assert (seg.labels_[-3:] == NOISE).all()
    assert seg.k_ == 3
    assert adjusted_rand_score(truth, seg.labels_[:-3]) >= 0.95
    assert seg.cluster_centers_.shape == (3, 2)


def test_segments_are_numbered_by_size_and_minibatch_agrees():
    rng = np.random.default_rng(1)
    X = np.vstack(
        [rng.normal(c, 0.2, size=(n, 2)) for c, n in (((0, 0), 30), ((4, 0), 80), ((0, 4), 50))]
    )
    full = Segmenter(k=3).fit(X)
    assert np.bincount(full.labels_).tolist() == [80, 50, 30]
    mini = Segmenter(k=3, minibatch_above=10).fit(X)
    assert adjusted_rand_score(full.labels_, mini.labels_) == 1.0
    auto = Segmenter(k="auto").fit(X)
    assert auto.k_ == 3 and max(auto.silhouette_, key=auto.silhouette_.get) == 3


def test_bad_k_raises_input_errors():
    with pytest.raises(InputError, match=r"'k' parameter must be 'auto' or an int in \[2, 50\]"):
        Segmenter(k=1).fit(np.zeros((5, 2)))
    with pytest.raises(InputError, match="larger than the number of users"):
        Segmenter(k=8).fit(np.arange(10.0).reshape(5, 2))
    with pytest.raises(InputError, match="'algorithm'"):
        SegmentSettings(algorithm="dbscan")
    with pytest.raises(InputError, match="'text_weight'"):
        SegmentSettings(text_weight=1.5)
    with pytest.raises(InputError, match="Unknown segmentation setting"):
        SegmentSettings.coerce({"kk": 3})


def test_the_words_for_automatic_k_come_from_the_segmenter():
    # The Segments page shows these words: they must say what the code does (it once said
    # "within 0.02 of the best" while the code took the smallest k within 5% of the best).
    words = auto_k_rule()
    assert f"within {SILHOUETTE_TOLERANCE:.0%} of the best" in words
    assert "within 5% of the best" in words
    assert "2 to 12 segments" in words and f"{SILHOUETTE_SAMPLE:,} users" in words
    other = auto_k_rule(Segmenter(k_range=(3, 8), sample_size=900, tolerance=0.1))
    assert "3 to 8 segments" in other and "900 users" in other and "within 10% of" in other


def test_automatic_k_takes_the_smallest_k_within_the_tolerance():
    X, _ = _blobs(n=40)
    scores = Segmenter(k="auto").fit(X).silhouette_
    best = max(scores.values())
    loose = Segmenter(k="auto", tolerance=1.0).fit(X)  # every k is within 100% of the best
    assert loose.k_ == min(scores)
    strict = Segmenter(k="auto", tolerance=0.0).fit(X)
    assert strict.silhouette_[strict.k_] == best
