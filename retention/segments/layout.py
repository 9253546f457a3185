"""Step 6, layout: the 2-D map of users coloured by segment, with hover text.

PCA or UMAP (``umap-learn``, imported only when asked for), computed once with the run, of at
most :data:`MAP_SAMPLE` users (above that a seeded sample drawn within each segment in
proportion to its size).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from retention.segments.settings import MAP_METHODS, check_choice

MAP_SAMPLE = 20_000  # the map shows at most this many users (a seeded sample)
UMAP_SAMPLE = MAP_SAMPLE


def map_rows(labels: np.ndarray, max_points: int | None = None, seed: int = 0) -> np.ndarray:
    """The users the map shows: all of them up to ``max_points`` (default :data:`MAP_SAMPLE`),
    else a seeded sample of at most ``max_points`` drawn within each segment in proportion to
    its size (every segment keeps at least one user). Sorted row indices."""
    max_points = MAP_SAMPLE if max_points is None else max_points
    labels = np.asarray(labels)
    n = len(labels)
    if n <= max_points:
        return np.arange(n)
    rng = np.random.default_rng(seed)
    segments, counts = np.unique(labels, return_counts=True)
    if len(segments) * 2 > max_points:  # too many segments to keep each: a plain sample
        return np.sort(rng.choice(n, size=max_points, replace=False))
    take = np.maximum(1, counts * (max_points - len(segments)) // n)
    chosen = [
        rng.choice(np.flatnonzero(labels == s), size=int(m), replace=False)
        for s, m in zip(segments, take, strict=True)
    ]
    return np.sort(np.concatenate(chosen))


def map_2d(
    X: np.ndarray,
    method: str = "pca",
    random_state: int = 0,
    rows: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """2-D coordinates for the map and the row indices they belong to.

    The map shows ``rows`` (default: every user up to :data:`MAP_SAMPLE`, else a seeded sample
    of that many), and PCA or UMAP (``umap-learn``, imported only here) is fitted on them alone.
    """
    check_choice("map_method", method, MAP_METHODS)
    n = len(X)
    if rows is None:
        rows = np.arange(n)
        if n > MAP_SAMPLE:
            rows = np.sort(np.random.default_rng(random_state).choice(n, MAP_SAMPLE, replace=False))
    shown = X if len(rows) == n else X[rows]  # (rows are sorted and distinct)
    if len(rows) < 3 or X.shape[1] < 2:
        coords = np.zeros((len(rows), 2))
        coords[:, : min(2, X.shape[1])] = shown[:, : min(2, X.shape[1])]
        return coords, rows
    if method == "umap":
        import umap

        reducer = umap.UMAP(
            n_components=2, n_neighbors=min(15, len(rows) - 1), random_state=random_state
        )
        return np.asarray(reducer.fit_transform(shown), dtype=float), rows
    from sklearn.decomposition import PCA

    return PCA(2, random_state=random_state).fit_transform(shown), rows


def map_frame(
    user_ids: np.ndarray,
    labels: np.ndarray,
    rows: np.ndarray,
    coords: np.ndarray,
    hover: Sequence[str],
) -> pd.DataFrame:
    """The stored map: ``user_id, x, y, segment, hover`` of the users in ``rows``."""
    return pd.DataFrame(
        {
            "user_id": user_ids[rows].astype(str),
            "x": coords[:, 0],
            "y": coords[:, 1],
            "segment": labels[rows],
            "hover": hover,
        }
    )
