"""Clustering: HDBSCAN noise, numbering by size, MiniBatchKMeans, automatic k and its words."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score

from retention.errors import InputError
from retention.segments import NOISE, Segmenter, SegmentSettings, auto_k_rule
from retention.segments.cluster import (
    SILHOUETTE_SAMPLE,
    best_k,
    k_choice_reason,
    silhouette_scores,
    stability_by_k,
    stability_where_needed,
)


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
    assert "2 to 12 segments" in words and f"{SILHOUETTE_SAMPLE:,} users" in words
    assert "times how stable" in words and "80% subsamples" in words
    assert "only for the numbers that could still win" in words  # not every k: see the chart
    other = auto_k_rule(Segmenter(k_range=(3, 8), sample_size=900))
    assert "3 to 8 segments" in other and "900 users" in other


def _planted(sizes: tuple[int, ...], seed: int = 0, dims: int = 6) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian segments (sd 1) of the given sizes, their centres 8 apart on each axis (11.3
    apart from each other)."""
    rng = np.random.default_rng(seed)
    centres = 8.0 * np.eye(len(sizes), dims)
    truth = np.repeat(np.arange(len(sizes)), sizes)
    return centres[truth] + rng.normal(size=(len(truth), dims)), truth


@pytest.mark.parametrize("sizes", [(120, 90, 70, 60, 50), (200, 150), (80, 80, 80, 80)])
def test_automatic_k_finds_the_planted_number_of_segments(sizes):
    X, truth = _planted(sizes)
    auto = Segmenter(k="auto").fit(X)
    assert auto.k_ == len(sizes)
    assert adjusted_rand_score(truth, auto.labels_) >= 0.95
    # The rule, recomputed with every k's stability measured: the best silhouette × stability.
    assert set(auto.silhouette_) == set(range(2, 13))
    every = stability_by_k(X, range(2, 13))
    assert best_k(auto.silhouette_, every, auto.smallest_) == auto.k_
    # Only the k that could win were measured (and k + 1, for the page's reason), with the
    # same scores as measuring them all.
    assert auto.k_ in auto.stability_ and auto.k_ + 1 in auto.stability_
    assert len(auto.stability_) < len(every)
    assert auto.stability_ == {k: every[k] for k in auto.stability_}


@pytest.mark.parametrize("seed", range(8))
def test_measuring_stability_only_where_needed_chooses_as_measuring_every_k(seed):
    # Random blob mixtures, some with clear segments, some without (one blob, close blobs):
    # skipping the k that cannot win never changes the choice.
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=rng.choice([0.5, 2.0, 6.0]), size=(int(rng.integers(1, 7)), 3))
    X = centres[rng.integers(len(centres), size=240)] + rng.normal(size=(240, 3))
    seg = Segmenter(k="auto", k_range=(2, 8)).fit(X)
    every = stability_by_k(X, range(2, 9))
    assert best_k(seg.silhouette_, every, seg.smallest_) == seg.k_
    pruned = stability_where_needed(X, seg.silhouette_, seg.smallest_)
    assert pruned == seg.stability_


def test_silhouettes_in_one_pass_equal_sklearns():
    from sklearn.metrics import silhouette_score

    rng = np.random.default_rng(1)
    X = rng.normal(size=(700, 5))
    labelings = {k: rng.integers(k, size=len(X)) for k in (2, 3, 7)}
    labelings[4] = np.r_[np.zeros(690, dtype=int), [1] * 9, [3]]  # a user alone; no segment 2
    ours = silhouette_scores(X, labelings, chunk_rows=128)
    for k, labels in labelings.items():
        assert ours[k] == pytest.approx(silhouette_score(X, labels), abs=1e-12)


def test_the_automatic_choice_reports_each_k_it_tries():
    X, _ = _blobs()
    heard: list[tuple[float, str]] = []
    Segmenter(k="auto", k_range=(2, 6)).fit(X, progress=lambda f, m: heard.append((f, m)))
    fractions = [f for f, _ in heard]
    assert fractions == sorted(fractions) and fractions[0] >= 0 and fractions[-1] == 1.0
    tried = [m for _, m in heard if m.startswith("Trying")]
    assert tried == [f"Trying {k} segments ({k - 1} of 5)" for k in range(2, 7)]
    assert any(m.startswith("Checking that 3 segments come back") for _, m in heard)


def test_stability_is_one_for_real_segments_and_lower_for_an_arbitrary_split():
    X, _ = _planted((100, 100, 100), seed=3)
    scores = stability_by_k(X, [3, 6])
    assert scores[3] == pytest.approx(1.0, abs=0.01)  # the same three segments every time
    assert scores[6] < 0.9  # six cuts three round blobs at random places
    # One round blob, no segments: any split is arbitrary, so the score picks the stable
    # ones, not the clearest-looking cut.
    blob = np.random.default_rng(0).normal(size=(400, 2))
    assert min(stability_by_k(blob, range(3, 8)).values()) < 0.9


def test_best_k_multiplies_separation_by_stability():
    # Online Retail (bench/bench_segments_k.py): silhouette 0.111 / 0.115 / 0.101, stability
    # 0.98 / 0.96 / 0.56 -> products 0.109 / 0.110 / 0.057: 3 segments.
    silhouette = {2: 0.111, 3: 0.115, 4: 0.101}
    stability = {2: 0.98, 3: 0.96, 4: 0.56}
    assert best_k(silhouette, stability) == 3
    assert best_k(silhouette, {2: 1.0, 3: 0.5, 4: 0.5}) == 2
    assert best_k({2: 0.2, 3: 0.2}, {2: 1.0, 3: 1.0}) == 2  # a tie: fewer segments
    assert best_k(silhouette, {}) == 3  # nothing measured: the best silhouette
    # A splinter: at k = 7 the smallest segment holds 21 of 360 users (5.8% < 1/14), so 6 wins
    # although 7 scores a little higher (the planted demo with 6 segments, real model).
    sil, stab = {6: 0.405, 7: 0.418}, {6: 0.989, 7: 0.985}
    assert best_k(sil, stab) == 7
    assert best_k(sil, stab, {6: 58 / 360, 7: 21 / 360}) == 6
    assert best_k(sil, stab, {6: 0.01, 7: 0.01}) == 7  # none whole: the score decides


def test_the_reason_for_k_in_plain_words():
    metrics = {
        "k": 3,
        "k_auto": True,
        "silhouette_by_k": {"2": 0.111, "3": 0.115, "4": 0.101},
        "stability_by_k": {"2": 0.98, "3": 0.96, "4": 0.56},
    }
    reason = k_choice_reason(metrics)
    assert reason.startswith("Why 3 segments: of the 2 to 4 tried, 3 splits your users")
    assert "(stability 0.96 of 1; separation 0.12)" in reason
    assert "With 4, the segments change from one sample to the next (stability 0.56)" in reason
    assert reason.endswith(": not a split to act on.")
    steady = dict(metrics, stability_by_k={"2": 0.98, "3": 0.96, "4": 0.95})
    assert "With 4, users are less clearly apart (0.10)." in k_choice_reason(steady)
    less = dict(metrics, stability_by_k={"2": 0.98, "3": 0.96, "4": 0.90})
    assert "With 4, they come back less reliably (0.90)." in k_choice_reason(less)
    # k by hand, or a run from before stability was measured: nothing to explain.
    assert k_choice_reason(dict(metrics, k_auto=False)) is None
    assert k_choice_reason({k: v for k, v in metrics.items() if k != "stability_by_k"}) is None
