"""The map: a bounded stratified sample, and the figures built from a segmentation."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from retention.charts.segments import (
    sample_map,
    segment_map,
    segment_retention,
    segment_sizes,
    silhouette_curve,
)
from retention.segments import map_rows, segment_users
from retention.synth import make_planted
from tests.fakes import CountingEmbedder


def test_map_rows_are_a_bounded_stratified_sample():
    labels = np.repeat([0, 1, 2], [45_000, 4_998, 2])
    rows = map_rows(labels, 20_000, seed=0)
    assert len(rows) <= 20_000
    assert (np.diff(rows) > 0).all()  # sorted, no user twice
    counts = np.bincount(labels[rows], minlength=3)
    assert counts[2] >= 1  # a tiny segment still shows
    assert counts[0] / len(rows) == pytest.approx(0.9, abs=0.01)
    np.testing.assert_array_equal(rows, map_rows(labels, 20_000, seed=0))
    np.testing.assert_array_equal(map_rows(labels[:100], 20_000), np.arange(100))


def test_pca_map_and_figures():
    planted = make_planted(n_users=80, n_periods=10, seed=6, n_segments=3)
    result = segment_users(planted.events, settings={"k": 3}, embedder=CountingEmbedder())
    names = {0: "Renamed"}
    fig = segment_map(result.map2d, names)
    assert {t.type for t in fig.data} == {"scatter"}  # SVG up to MAP_SVG_POINTS users
    assert fig.data[0].name == "Renamed"
    assert sum(len(t.x) for t in fig.data) == 80
    assert "<br>" in result.map2d["hover"].iloc[0]  # the user's top items
    small = segment_map(result.map2d, max_points=30)
    assert sum(len(t.x) for t in small.data) <= 33 and "sample" in small.layout.title.text
    assert len(sample_map(result.map2d, 30)["segment"].unique()) == 3
    assert segment_sizes(result.profile, names).data[0].type == "bar"
    assert len(segment_retention(result.profile).data) == 2
    assert silhouette_curve(result.metrics) is None  # k set by hand


def test_a_big_map_is_drawn_with_webgl_and_the_same_points():
    """issue 19 (s8-segk): SVG up to MAP_SVG_POINTS users, WebGL above; the same points."""
    from retention.charts.segments import MAP_SVG_POINTS

    rng = np.random.default_rng(0)
    n = MAP_SVG_POINTS + 1
    big = pd.DataFrame(
        {
            "user_id": [f"u{i}" for i in range(n)],
            "segment": rng.integers(0, 3, n),
            "x": rng.normal(size=n),
            "y": rng.normal(size=n),
            "hover": [f"u{i}" for i in range(n)],
        }
    )
    for frame, kind in ((big, "scattergl"), (big.iloc[:-1], "scatter")):
        fig = segment_map(frame)
        assert {t.type for t in fig.data} == {kind}
        got = pd.concat([pd.DataFrame({"x": t.x, "y": t.y}) for t in fig.data])
        want = frame[["x", "y"]].sort_values(["x", "y"]).reset_index(drop=True)
        pd.testing.assert_frame_equal(got.sort_values(["x", "y"]).reset_index(drop=True), want)
