"""Segments of an event log, step by step: the one place the steps are put together.

1. **Aggregate** per user (:mod:`~retention.segments.features`, DuckDB).
2. **Embed** each distinct text once and build user text vectors (:mod:`~retention.segments.text`).
3. **Combine and reduce** text and behaviour (:mod:`~retention.segments.reduce`).
4. **Cluster** (:mod:`~retention.segments.cluster`).
5. **Label** segments by how they behave and their most distinctive words
   (:mod:`~retention.segments.label`).
6. **Map** the users in 2-D (:mod:`~retention.segments.layout`).
7. **Profile** each segment: users, share, mean recency / frequency / monetary, revenue, and
   retention after 1 and 4 periods (as the cohort table counts it:
   :func:`retention.cohorts.retention_by_segment`).

:func:`retention.runs.run_segmentation` runs it on a workspace dataset and stores the run;
:func:`segment_dataset` is what it calls; :func:`segment_users` is the same on a plain events
DataFrame. Campaign snapshots go to :func:`retention.segments.snapshot.segment_snapshot`.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pandas as pd

from retention.cohorts import retention_by_segment
from retention.embeddings import (
    DEFAULT_MODEL_ID,
    CachedEmbedder,
    Embedder,
    TextModelChoice,
    choose_text_model,
    describe,
    requested_model,
)
from retention.periods import resolve_period
from retention.segments.cluster import Segmenter, cluster_metrics
from retention.segments.features import (
    UserData,
    aggregate_users,
    behaviour_matrix,
    combine,
    has_text,
    registered,
)
from retention.segments.label import (
    behaviour_tags,
    labels_frame,
    representatives,
    text_keywords,
    text_terms,
)
from retention.segments.layout import map_2d, map_frame, map_rows
from retention.segments.reduce import reduce_dimensions, reduce_users
from retention.segments.settings import (
    SegmentationResult,
    SegmentSettings,
    announce,
    requested_model_id,
)
from retention.segments.snapshot import segment_snapshot
from retention.segments.text import embed_user_text, ranked_items, top_items
from retention.segments.vectors import VectorCache, vectors_key
from retention.words import Progress, scaled
from retention.workspace import Workspace

#: The profile's "retention after k" definition a run was stored with (its metrics'
#: ``retention``): :func:`retention.cohorts.retention_by_segment`'s. Change it when that
#: definition changes: the Segments page recomputes the retention of runs stored with another.
PROFILE_RETENTION = "by_segment:unbounded:v1"


def _kept(data: UserData, keep: bool, name: Any, make: Any) -> Any:
    """``make()``, computed once per ``data`` when the caller keeps the facts (``keep``: a job
    worker re-running another k; issue 19) and kept in ``data.derived``, else every time."""
    if not keep:
        return make()
    if name not in data.derived:
        data.derived[name] = make()
    return data.derived[name]


def _user_vectors(
    data: UserData,
    B: np.ndarray,
    settings: SegmentSettings,
    embedder: Embedder | None,
    workspace: Workspace | None,
    progress: Progress | None,
    cache: VectorCache | None = None,
    keep: bool = False,
) -> tuple[np.ndarray, dict[str, Any]]:
    """Steps 2 and 3: the reduced user vectors, and what was embedded (for the metrics).

    With a ``cache`` (a workspace dataset's), vectors made before with the same model and
    vector settings are reused (:mod:`retention.segments.vectors`), new ones kept."""
    use_text = not data.items.empty and settings.text_weight > 0
    metrics: dict[str, Any] = {}
    choice = None
    if use_text:
        wanted = (settings.text_model, settings.model_path)
        choice = _kept(
            data, keep, ("model", *wanted), lambda: choose_text_model(data.texts, *wanted)
        )
    key = None
    if cache is not None:
        model_id = (embedder.model_id if embedder else choice.model_id) if choice else None
        key = vectors_key(settings, model_id if use_text else None)
        user_ids = data.users["user_id"].to_numpy(dtype=object)
        found = cache.load(key, user_ids)
        if found is not None:
            announce(progress, 0.7, "Reusing this dataset's user vectors")
            X, metrics = found
            if "texts_embedded" in metrics:  # this run embedded nothing
                metrics["texts_cached"] = metrics.get("texts_cached", 0) + metrics["texts_embedded"]
                metrics["texts_embedded"] = 0
            metrics["vectors_reused"] = True
            return X, metrics
    X, metrics = _make_user_vectors(data, B, settings, embedder, workspace, progress, choice)
    if cache is not None and key is not None:
        cache.save(key, data.users["user_id"].to_numpy(dtype=object), X, metrics)
    return X, metrics


def _make_user_vectors(
    data: UserData,
    B: np.ndarray,
    settings: SegmentSettings,
    embedder: Embedder | None,
    workspace: Workspace | None,
    progress: Progress | None,
    choice: TextModelChoice | None,
) -> tuple[np.ndarray, dict[str, Any]]:
    """:func:`_user_vectors` computed (``choice``: the text model, None without text)."""
    use_text = choice is not None
    metrics: dict[str, Any] = {}
    if choice is not None:
        metrics["text_model"] = choice.as_dict()
        if embedder is not None and embedder.model_id != choice.model_id:
            metrics["text_model"].update(
                model="given", model_id=embedder.model_id, reason="A model given by the caller."
            )
        inner = embedder or choice.embedder()
        inner = _on_spark_executors(inner)  # issue 15: many new texts go to Spark's executors
        cached = CachedEmbedder(inner, workspace)
        text = embed_user_text(
            data,
            cached,
            user_vector=settings.user_vector,
            weighting=settings.weighting,
            progress=scaled(progress, 0.05, 0.7),
        )
        announce(progress, 0.7, "Combining what users buy with how they behave")
        X, info = reduce_users(
            text,
            B,
            settings.text_weight,
            random_state=settings.random_state,
            progress=scaled(progress, 0.7, 0.75),
        )
        metrics.update(info)
        # Which device and precision ran: asking loads torch (3 s), so only when the model
        # ran; when every vector came from the workspace's cache, the model's id says enough.
        metrics["embedder"] = (
            describe(inner) if cached.stats.embedded else {"model_id": inner.model_id}
        )
    else:
        X = reduce_dimensions(combine(None, B, 0.0))
    metrics["text_used"] = bool(use_text)
    metrics["text_available"] = not data.items.empty
    return X, metrics


def _on_spark_executors(inner: Embedder) -> Embedder:
    """``inner``, or when this process runs the Spark engine, a wrapper that embeds many new
    texts on Spark's executors (:mod:`retention.engine.embed`; without Spark nothing is
    imported)."""
    if "retention.engine.spark" not in sys.modules:
        return inner
    from retention.engine.embed import executor_embedder

    return executor_embedder(inner)


def _events_map(
    X: np.ndarray,
    data: UserData,
    labels: np.ndarray,
    names_of: dict[int, str],
    settings: SegmentSettings,
    keep: bool = False,
) -> pd.DataFrame:
    """Step 6: the map of at most :data:`~retention.segments.layout.MAP_SAMPLE` users, each
    hover naming the user, their segment and their top items."""
    rows = map_rows(labels, seed=settings.random_state)
    if settings.map_method == "pca" and X.shape[1] >= 2:  # X is already in PCA coordinates
        coords = X[rows, :2].astype(np.float64)
    else:
        coords, rows = map_2d(X, settings.map_method, settings.random_state, rows=rows)
    user_ids = data.users["user_id"].to_numpy(dtype=object)
    ranked = _kept(data, keep, "ranked", lambda: ranked_items(data.items)) if keep else None
    hover = [
        f"{user_ids[i]} · {names_of[int(labels[i])]}" + (f"<br>{items}" if items else "")
        for i, items in zip(rows, top_items(data, rows, ranked=ranked), strict=True)
    ]
    return map_frame(user_ids, labels, rows, coords, hover)


def _profile(
    users: pd.DataFrame, labels: np.ndarray, has_amount: bool, retention: pd.DataFrame | None
) -> pd.DataFrame:
    """Step 7: users, share, behaviour means and revenue per segment, with its retention."""
    frame = users.assign(segment=labels)
    grouped = frame.groupby("segment")
    profile = pd.DataFrame(
        {
            "users": grouped.size(),
            "recency_days": grouped["recency_days"].mean(),
            "frequency": grouped["frequency"].mean(),
            "monetary": grouped["monetary"].mean() if has_amount else np.nan,
            "revenue": grouped["monetary"].sum() if has_amount else np.nan,
        }
    ).reset_index()
    profile.insert(2, "share", profile["users"] / len(users))
    if retention is not None:
        profile = profile.merge(retention, on="segment", how="left")
    return profile


def _segment_events(
    con: duckdb.DuckDBPyConnection,
    ref: str,
    settings: SegmentSettings,
    embedder: Embedder | None,
    workspace: Workspace | None,
    progress: Progress | None,
    cache: VectorCache | None = None,
    data: UserData | None = None,
) -> SegmentationResult:
    """The seven steps on the events table ``ref`` (quoted), in order (``data``: step 1's
    per-user facts when the caller kept them; only read)."""
    announce(progress, 0.0, "Reading events")
    keep = data is not None  # the caller keeps the facts: keep what derives from them too
    data = aggregate_users(con, ref) if data is None else data
    user_ids = data.users["user_id"].to_numpy(dtype=object)
    B, names = behaviour_matrix(data.users, data.has_amount)
    metrics: dict[str, Any] = {"users": len(user_ids), "behaviour": names}
    X, vector_metrics = _user_vectors(data, B, settings, embedder, workspace, progress, cache, keep)
    metrics.update(vector_metrics)

    start = 0.75 if metrics["text_used"] else 0.7
    announce(progress, start, "Finding segments")
    segmenter = Segmenter(
        settings.k,
        settings.algorithm,
        min_cluster_size=settings.min_cluster_size,
        random_state=settings.random_state,
    ).fit(X, progress=scaled(progress, start, 0.85))
    labels = segmenter.labels_
    metrics.update(cluster_metrics(segmenter))

    announce(progress, 0.85, "Labelling segments")
    label_frame = labels_frame(
        labels,
        text_keywords(data, labels, terms=_kept(data, keep, "terms", lambda d=data: text_terms(d)))
        if metrics["text_used"]
        else {},
        representatives(X, labels, user_ids),
        behaviour_tags(data.users, labels, data.has_amount),
    )
    names_of = dict(zip(label_frame["segment"], label_frame["label"], strict=True))

    announce(progress, 0.9, "Drawing the map")
    shown_map = _events_map(X, data, labels, names_of, settings, keep)

    announce(progress, 0.97, "Profiling segments")
    period = settings.period
    if keep:  # the automatic period reads every event: once per kept facts
        period = _kept(data, keep, ("period", period), lambda: resolve_period(con, ref, period))
    users, has_amount = data.users, data.has_amount
    del X, data  # the retention query below may want the memory
    assignments = pd.DataFrame({"user_id": user_ids.astype(str), "segment": labels})
    retention, period = retention_by_segment(con, ref, assignments, period=period)
    metrics["period"] = period
    metrics["retention"] = PROFILE_RETENTION
    profile = _profile(users, labels, has_amount, retention)
    profile.insert(1, "label", profile["segment"].map(names_of))
    if progress is not None:
        progress(1.0, f"{segmenter.k_} segments")
    return SegmentationResult(assignments, label_frame, shown_map, profile, metrics)


def segment_users(
    events: pd.DataFrame,
    *,
    settings: SegmentSettings | dict[str, Any] | None = None,
    embedder: Embedder | None = None,
    workspace: Workspace | None = None,
    progress: Progress | None = None,
) -> SegmentationResult:
    """Segment the users of a canonical events frame (``user_id, ts, amount, text``).

    ``embedder`` defaults to the bundled model; with a ``workspace`` its vector cache is used.
    """
    settings = SegmentSettings.coerce(settings)
    con = duckdb.connect()
    try:
        with registered(con, events) as ref:
            return _segment_events(con, ref, settings, embedder, workspace, progress)
    finally:
        con.close()


def run_settings(
    settings: SegmentSettings | dict[str, Any] | None, embedder: Embedder | None = None
) -> dict[str, Any]:
    """The settings as stored with a run: the dataclass's fields plus the model's id (``auto``
    when the model is chosen from the texts; the run's metrics say which one ran)."""
    settings = SegmentSettings.coerce(settings)
    stored = settings.to_dict()
    stored["model"] = embedder.model_id if embedder is not None else requested_model_id(settings)
    return stored


def resolved_model_id(
    ws: Workspace,
    dataset_id: str,
    settings: SegmentSettings,
    choice: TextModelChoice | None = None,
) -> str:
    """The id of the model a segmentation of a workspace dataset uses (read from its texts when
    the choice is automatic; the English model's when there is nothing to read). ``choice``:
    :func:`dataset_text_model`'s answer for these settings when the caller has it (kept)."""
    model = requested_model_id(settings)
    if model != "auto":
        return model
    if ws.dataset(dataset_id).shape != "events":
        return DEFAULT_MODEL_ID
    # issue 19: a stored dataset never changes (a new upload gets a new random id), so its
    # automatic choice is read once per process, not on every job (it reads every distinct text)
    key = (str(ws.folder), dataset_id, settings.text_model, settings.model_path)
    chosen = _chosen_models.get(key)
    if chosen is None:
        if choice is None:
            choice = dataset_text_model(ws.cursor(), ws.table(dataset_id, "events"), settings)
        chosen = choice.model_id
        if len(_chosen_models) >= 64:
            _chosen_models.clear()
        _chosen_models[key] = chosen
    return chosen


_chosen_models: dict[tuple[str, str, str, str | None], str] = {}


def dataset_texts(con: duckdb.DuckDBPyConnection, ref: str) -> list[str]:
    """The distinct non-blank texts of the events table ``ref`` (quoted), trimmed and sorted,
    on the rows with a user and a time: the texts a segmentation embeds and chooses its text
    model from (:func:`~retention.segments.features.aggregate_users` reads the same ones);
    ``[]`` without text."""
    if not has_text(con, ref):
        return []
    return (
        con.execute(
            "SELECT DISTINCT trim(CAST(text AS VARCHAR)) AS text FROM "  # noqa: S608
            f"{ref} WHERE user_id IS NOT NULL AND ts IS NOT NULL "
            "AND trim(CAST(text AS VARCHAR)) <> '' ORDER BY text"
        )
        .fetchnumpy()["text"]
        .tolist()
    )


def dataset_text_model(
    con: duckdb.DuckDBPyConnection,
    ref: str,
    settings: SegmentSettings,
    texts: list[str] | None = None,
) -> TextModelChoice:
    """The text model a segmentation of the events table ``ref`` (quoted) uses: the same
    choice as the run makes (the same distinct texts, :func:`dataset_texts`, are read, unless
    the caller gives them as ``texts``)."""
    if texts is None:
        folder = requested_model(settings.text_model, settings.model_path)[0] == "folder"
        texts = [] if folder else dataset_texts(con, ref)
    return choose_text_model(texts, settings.text_model, settings.model_path)


def segment_dataset(
    ws: Workspace,
    dataset_id: str,
    settings: SegmentSettings | dict[str, Any] | None = None,
    *,
    embedder: Embedder | None = None,
    progress: Progress | None = None,
    vectors_folder: Path | None = None,
    data: UserData | None = None,
) -> SegmentationResult:
    """Segment a workspace dataset (storing it as a run is :func:`retention.runs.run_segmentation`).

    The dataset's user vectors are kept in ``vectors_folder`` (default: the workspace's folder;
    a job's private copy of the dataset names the server's) for a re-run with another k;
    ``data``: the dataset's per-user facts (``aggregate_users``) when the caller kept them (a
    job worker, issue 19), only read.

    Event logs go through the whole pipeline (with the workspace's embedding cache); a campaign
    snapshot is clustered on its feature columns (:func:`segment_snapshot`).
    """
    info = ws.dataset(dataset_id)
    parsed = SegmentSettings.coerce(settings)
    if info.shape == "snapshot":
        return segment_snapshot(
            ws.load(dataset_id, "snapshot"),
            k=parsed.k,
            algorithm=parsed.algorithm,
            map_method=parsed.map_method,
            min_cluster_size=parsed.min_cluster_size,
            random_state=parsed.random_state,
            progress=progress,
        )
    # A cursor of its own, so the embedding cache can use the workspace's meanwhile.
    con = ws.cursor().cursor()
    try:
        cache = VectorCache(vectors_folder or ws.folder, dataset_id)  # another k: reused
        return _segment_events(
            con, ws.table(dataset_id, "events"), parsed, embedder, ws, progress, cache, data
        )
    finally:
        con.close()


def prepare_user_vectors(
    ws: Workspace,
    dataset_id: str,
    settings: SegmentSettings | dict[str, Any] | None = None,
    *,
    vectors_folder: Path | None = None,
    progress: Progress | None = None,
    data: UserData | None = None,
) -> bool:
    """Steps 1 to 3 only: make and keep a dataset's reduced user vectors for ``settings``
    (default: the page's defaults), exactly as :func:`segment_dataset` makes and keeps them, so
    that its run only clusters, labels, maps and profiles (issue 19: the server does this ahead
    of the Segments page's click). False when there is nothing to prepare (not an event log)."""
    if ws.dataset(dataset_id).shape != "events":
        return False
    parsed = SegmentSettings.coerce(settings)
    con = ws.cursor().cursor()
    try:
        if data is None:
            data = aggregate_users(con, ws.table(dataset_id, "events"))
        B, _ = behaviour_matrix(data.users, data.has_amount)
        cache = VectorCache(vectors_folder or ws.folder, dataset_id)
        _user_vectors(data, B, parsed, None, ws, progress, cache)
    finally:
        con.close()
    return True


def segmentation_basis(metrics: dict[str, Any], settings: dict[str, Any], snapshot: bool) -> str:
    """What a stored segmentation was based on, in a word or three: "text + behaviour", "text",
    "features" (a snapshot) or "behaviour"."""
    if metrics.get("text_used"):
        return "text + behaviour" if settings.get("text_weight", 0) < 1 else "text"
    return "features" if snapshot else "behaviour"
