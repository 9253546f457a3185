"""Segments of a campaign snapshot (one row per user): clustered on its feature columns.

Numeric features are standardised and categoricals one-hot encoded (:func:`snapshot_features`);
clustering, labels and the map as for event logs. Retention over periods does not apply.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from retention.errors import InputError
from retention.segments.cluster import Segmenter, cluster_metrics
from retention.segments.features import standardise
from retention.segments.label import labels_frame, representatives
from retention.segments.layout import map_2d, map_frame, map_rows
from retention.segments.settings import SegmentationResult, announce
from retention.words import Progress

SNAPSHOT_RESERVED: tuple[str, ...] = ("user_id", "action", "outcome", "propensity")


def snapshot_features(
    snapshot: pd.DataFrame, feature_columns: Sequence[str] | None = None, max_categories: int = 50
) -> tuple[np.ndarray, list[str], pd.DataFrame]:
    """The feature matrix of a snapshot: numeric columns standardised (missing → median),
    categorical columns one-hot (missing → its own category).

    Default columns: every column but ``user_id, action, outcome, propensity``, leaving out
    categoricals with more than ``max_categories`` values (ids, free text). Returns the matrix,
    its column names and the frame of the chosen raw columns.
    """
    if feature_columns is None:
        chosen = []
        for col in snapshot.columns:
            if col in SNAPSHOT_RESERVED or snapshot[col].isna().all():
                continue
            numeric = pd.api.types.is_numeric_dtype(snapshot[col]) or pd.api.types.is_bool_dtype(
                snapshot[col]
            )
            if numeric or snapshot[col].nunique() <= max_categories:
                chosen.append(col)
    else:
        chosen = list(feature_columns)
        unknown = [c for c in chosen if c not in snapshot.columns]
        if unknown:
            raise InputError(
                f"The 'feature_columns' parameter names column(s) {', '.join(unknown)} that the "
                f"snapshot lacks. Columns present: {', '.join(map(str, snapshot.columns))}."
            )
    if not chosen:
        raise InputError(
            "The snapshot has no feature columns to segment on (only user_id, action, outcome "
            "and propensity). Add feature columns such as recency or past spend."
        )
    blocks, names = [], []
    for col in chosen:
        series = snapshot[col]
        if pd.api.types.is_numeric_dtype(series) or pd.api.types.is_bool_dtype(series):
            values = pd.to_numeric(series, errors="coerce").astype(float)
            values = values.fillna(values.median() if values.notna().any() else 0.0)
            blocks.append(standardise(values.to_numpy()[:, None]))
            names.append(str(col))
        else:
            dummies = pd.get_dummies(series.astype("string").fillna("missing"), dtype=float)
            blocks.append(dummies.to_numpy())
            names.extend(f"{col}={value}" for value in dummies.columns)
    return np.hstack(blocks), names, snapshot[chosen]


def _snapshot_keywords(X: np.ndarray, names: list[str], labels: np.ndarray) -> dict[int, list[str]]:
    """Per segment, its most distinctive features: a numeric column's mean z-score ("high
    history"), or a category's over-representation ("channel=Web")."""
    is_dummy = np.array(["=" in n for n in names])
    base = X.mean(axis=0)
    out = {}
    for s in np.unique(labels):
        mean = X[labels == s].mean(axis=0)
        strength = np.where(
            is_dummy, np.log(np.maximum(mean, 1e-9) / np.maximum(base, 1e-9)), np.abs(mean)
        )
        strength = np.where(is_dummy & (mean < 0.2), 0.0, strength)
        words = []
        for j in np.argsort(-strength, kind="stable"):
            if strength[j] < 0.25:
                break
            words.append(
                names[j] if is_dummy[j] else f"{'high' if mean[j] > 0 else 'low'} {names[j]}"
            )
        out[int(s)] = words[:8]
    return out


def segment_snapshot(
    snapshot: pd.DataFrame,
    feature_columns: Sequence[str] | None = None,
    *,
    k: int | str = "auto",
    algorithm: str = "kmeans",
    map_method: str = "pca",
    min_cluster_size: int | None = None,
    random_state: int = 0,
    progress: Progress | None = None,
) -> SegmentationResult:
    """Segment the users of a campaign snapshot (one row per user) on its feature columns.

    Numeric features are standardised and categoricals one-hot encoded
    (:func:`snapshot_features`); clustering as for event logs. The profile has each segment's
    users, share, mean outcome (when present) and mean numeric features; retention over
    periods does not apply to a snapshot.
    """
    if "user_id" not in snapshot.columns:
        raise InputError("The snapshot lacks the 'user_id' column.")
    announce(progress, 0.0, "Reading features")
    X, names, raw = snapshot_features(snapshot, feature_columns)
    user_ids = snapshot["user_id"].astype(str).to_numpy(dtype=object)
    announce(progress, 0.1, "Finding segments")
    segmenter = Segmenter(
        k, algorithm, min_cluster_size=min_cluster_size, random_state=random_state
    ).fit(X)
    labels = segmenter.labels_
    label_frame = labels_frame(
        labels, _snapshot_keywords(X, names, labels), representatives(X, labels, user_ids)
    )
    names_of = dict(zip(label_frame["segment"], label_frame["label"], strict=True))
    announce(progress, 0.8, "Drawing the map")
    coords, rows = map_2d(X, map_method, random_state, rows=map_rows(labels, seed=random_state))
    shown = list(raw.columns[:4])
    hover = [
        f"{user_ids[i]} · {names_of[int(labels[i])]}<br>"
        + ", ".join(f"{c}={raw[c].iat[i]}" for c in shown)
        for i in rows
    ]
    shown_map = map_frame(user_ids, labels, rows, coords, hover)
    frame = pd.DataFrame({"segment": labels})
    numeric = [c for c in raw.columns if pd.api.types.is_numeric_dtype(raw[c])]
    for c in numeric:
        frame[c] = pd.to_numeric(raw[c], errors="coerce").to_numpy()
    if "outcome" in snapshot.columns:
        frame["outcome"] = pd.to_numeric(snapshot["outcome"], errors="coerce").to_numpy()
    grouped = frame.groupby("segment")
    profile = grouped.mean().reset_index()
    profile.insert(1, "users", grouped.size().to_numpy())
    profile.insert(1, "share", profile["users"] / len(frame))
    profile.insert(1, "label", profile["segment"].map(names_of))
    profile = profile[["segment", "label", "users", "share", *profile.columns[4:]]]
    metrics = {"users": len(user_ids), "features": names, "text_used": False}
    metrics.update(cluster_metrics(segmenter))
    assignments = pd.DataFrame({"user_id": user_ids.astype(str), "segment": labels})
    if progress is not None:
        progress(1.0, f"{segmenter.k_} segments")
    return SegmentationResult(assignments, label_frame, shown_map, profile, metrics)
