"""Runs: the one lifecycle of every stored result, and what goes in and out of the workspace.

A *run* (``docs/architecture.md``) is any computed result a user may reopen. Every front door —
the app's pages, the command line, the bundled samples — goes through this module, so finding,
starting, finishing and failing a run is written once:

* :func:`find_or_run` reuses a finished run made for the same request, or records a new run as
  ``running`` *before* the work starts (a killed process leaves it to be shown as interrupted),
  computes, stores the artifacts and the final status in one transaction, and marks the run
  ``failed`` with a reason when anything goes wrong.
* :func:`store_dataset` stores a prepared input once (the same bytes and mapping are reused).
* :func:`run_segmentation` / :func:`load_segmentation` and :func:`save_policy` /
  :func:`load_policy` turn results into artifacts and back.

The library's steps (``segments``, ``learn``) compute and return results; they never write to
the workspace themselves.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import pandas as pd

from retention.embeddings import Embedder
from retention.errors import InputError
from retention.ingest import Prepared
from retention.learn import CURVE_COLUMNS, PolicyResult, recommendations_table
from retention.segments import SegmentationResult, SegmentSettings, run_settings, segment_dataset
from retention.segments.pipeline import resolved_model_id
from retention.workspace import Workspace

Progress = Callable[[float, str], None]
R = TypeVar("R")


@dataclass(frozen=True)
class Stored:
    """What a finished run keeps: its metrics, its artifacts and (when they changed while the
    run worked, e.g. a learner's resolved parameters) its full settings."""

    metrics: dict[str, Any]
    artifacts: dict[str, Any]
    settings: dict[str, Any] | None = None


def failure_reason(exc: BaseException) -> str:
    """The reason a failed run shows: the user's error as it is, else what stopped it."""
    if isinstance(exc, Exception):
        return str(exc) or type(exc).__name__
    return f"stopped: {type(exc).__name__}"  # KeyboardInterrupt, a page rerun, SystemExit


def find_or_run(
    ws: Workspace,
    kind: str,
    dataset_id: str | None,
    settings: dict[str, Any],
    compute: Callable[[], R],
    store: Callable[[R], Stored],
    *,
    find: Callable[[], str | None] | None = None,
    progress: Progress | None = None,
) -> tuple[str, R | None]:
    """A finished run for this request, or a new one: start → compute → store → finish.

    ``find`` looks for a reusable run (default: a finished run of ``kind`` on ``dataset_id``
    with exactly ``settings``); pass ``find=lambda: None`` to always compute. A reused run
    returns ``(run_id, None)``: the caller loads what it needs. A new run returns the
    computed result. Any exception marks the run failed (with :func:`failure_reason`) and is
    raised again.
    """
    if find is None:

        def find() -> str | None:
            found = ws.find_run(kind, dataset_id, settings)
            return None if found is None else found.id

    reused = find()
    if reused is not None:
        if progress is not None:
            progress(1.0, f"Loaded the stored {kind}")
        return reused, None
    run_id = ws.start_run(kind, dataset_id, settings)
    try:
        result = compute()
        stored = store(result)
        ws.finish_run(
            run_id, metrics=stored.metrics, artifacts=stored.artifacts, settings=stored.settings
        )
    except BaseException as exc:
        ws.fail_run(run_id, failure_reason(exc))
        raise
    return run_id, result


def _done_run(ws: Workspace, run_id: str, kind: str) -> Any:
    run = ws.load_run(run_id)
    if run.kind != kind:
        raise InputError(f"The run {run_id!r} is a {run.kind} run, not a {kind} run.")
    if run.status != "done":
        raise InputError(
            f"The {kind} run {run_id!r} did not finish (status {run.status!r}): {run.error or ''}"
        )
    return run


# -- datasets ----------------------------------------------------------------------------------


def dataset_mapping(prepared: Prepared) -> dict[str, str]:
    """The mapping a dataset is stored (and found again) under: roles, campaign roles, and the
    campaign log's checksum."""
    mapping = {
        **prepared.mapping,
        **{f"campaign.{k}": v for k, v in (prepared.campaign_mapping or {}).items()},
    }
    if prepared.campaigns_sha256:
        mapping["campaign.sha256"] = prepared.campaigns_sha256
    if prepared.campaign_timing:
        mapping["campaign.timing"] = prepared.campaign_timing
    return mapping


def find_dataset(ws: Workspace, prepared: Prepared) -> str | None:
    """The stored dataset with the same bytes, shape and mapping, if there is one."""
    mapping = dataset_mapping(prepared)
    datasets = ws.datasets()
    for row in datasets[datasets["sha256"] == prepared.sha256].itertuples(index=False):
        info = ws.dataset(row.id)
        if info.mapping == mapping and info.shape == prepared.shape:
            return info.id
    return None


def store_dataset(
    ws: Workspace, prepared: Prepared, name: str, report_extra: dict[str, Any] | None = None
) -> str:
    """Store a prepared dataset, or reuse the stored one with the same bytes and mapping;
    ``report_extra`` adds entries to the stored validation report (e.g. where the events live,
    :func:`retention.engine.routing.store_spark_dataset`)."""
    found = find_dataset(ws, prepared)
    if found is not None:
        return found
    return ws.save_dataset(
        name=name,
        source_name=prepared.source_name,
        sha256=prepared.sha256,
        shape=prepared.shape,
        frames=prepared.frames,
        mapping=dataset_mapping(prepared),
        report={**prepared.report_dict(), **(report_extra or {})},
    )


# -- segmentations -----------------------------------------------------------------------------


def run_segmentation(
    ws: Workspace,
    dataset_id: str,
    *,
    settings: SegmentSettings | dict[str, Any] | None = None,
    progress: Progress | None = None,
    embedder: Embedder | None = None,
    force: bool = False,
    compute: Callable[[SegmentSettings], SegmentationResult] | None = None,
) -> str:
    """Segment a workspace dataset and store a ``segmentation`` run; return the run id.

    A finished run with the same settings (and model) is returned as it is, unless ``force``.
    ``compute`` segments elsewhere (a worker process, :mod:`retention.jobs`); by default
    :func:`~retention.segments.segment_dataset` runs here.
    """
    parsed = SegmentSettings.coerce(settings)
    stored = run_settings(parsed, embedder)
    if stored["model"] == "auto":  # chosen from the texts: store the model that will run
        stored["model"] = resolved_model_id(ws, dataset_id, parsed)

    def segment() -> SegmentationResult:
        if compute is not None:
            return compute(parsed)
        return segment_dataset(ws, dataset_id, parsed, embedder=embedder, progress=progress)

    run_id, _ = find_or_run(
        ws,
        "segmentation",
        dataset_id,
        stored,
        segment,
        lambda result: Stored(metrics=result.metrics, artifacts=result.artifacts()),
        find=(lambda: None) if force else None,
        progress=progress,
    )
    return run_id


def load_segmentation(ws: Workspace, run_id: str) -> SegmentationResult:
    """A stored segmentation run as a :class:`SegmentationResult`."""
    run = _done_run(ws, run_id, "segmentation")
    a = run.artifacts
    return SegmentationResult(a["assignments"], a["labels"], a["map2d"], a["profile"], run.metrics)


# -- policies ----------------------------------------------------------------------------------

_FRAMES = (
    "states", "recommendations", "disagreements", "curve", "ope", "projections", "stability",
    "ope_segments", "evidence",
)  # fmt: skip


def policy_stored(result: PolicyResult) -> Stored:
    """A trained policy as a run's contents: settings, seed, Q-table, curve, metrics and every
    table the Policy page shows."""
    artifacts: dict[str, Any] = {"q": np.asarray(result.q, dtype=float)}
    for name in _FRAMES:
        frame = getattr(result, name)
        if frame is not None:
            artifacts[name] = frame.reset_index(drop=True)
    artifacts["meta"] = {
        "kind": result.kind,
        "algorithm": result.algorithm,
        "gamma": result.gamma,
        "actions": list(result.actions),
        "stages": list(result.stages),
        "segments": [int(g) for g in result.segments],
        "assumptions": list(result.assumptions),
        "summary": result.summary(),
        "campaign": result.campaign,
    }
    return Stored(metrics=dict(result.metrics), artifacts=artifacts, settings=result.settings)


def train_policy_run(
    ws: Workspace,
    dataset_id: str | None,
    request: dict[str, Any],
    train: Callable[[], PolicyResult],
    *,
    reuse: bool = True,
    progress: Progress | None = None,
) -> tuple[str, PolicyResult]:
    """A stored policy run made for the same ``request``, or a newly trained and stored one.

    The request (what the user asked: the page's or the command line's settings) is stored
    under ``settings["request"]``; the full settings the learner reports are stored when the
    run finishes. ``reuse=False`` always trains (the Policy page's Train button).
    """
    wanted = json.loads(json.dumps(request, default=str))

    def find() -> str | None:
        if not reuse:
            return None
        runs = ws.runs("policy", dataset_id)
        for row in runs[runs["status"] == "done"].itertuples(index=False):
            if row.settings.get("request") == wanted:
                return row.id
        return None

    def trained() -> PolicyResult:
        result = train()
        full = {**result.settings, **_context(request), "request": request}
        return PolicyResult(**{**result.__dict__, "settings": full})

    run_id, result = find_or_run(
        ws,
        "policy",
        dataset_id,
        {"request": request, "training": True},
        trained,
        policy_stored,
        find=find,
        progress=progress,
    )
    return run_id, (result if result is not None else load_policy(ws, run_id))


def _context(request: Mapping[str, Any]) -> dict[str, Any]:
    """The parts of a request every policy run records at the top of its settings."""
    keys = ("segmentation_run", "period", "churn_after")
    return {key: request[key] for key in keys if key in request}


def save_policy(ws: Workspace, dataset_id: str | None, result: PolicyResult) -> str:
    """Store an already trained policy as a finished run (tests, imports)."""
    run_id, _ = find_or_run(
        ws, "policy", dataset_id, result.settings, lambda: result, policy_stored, find=lambda: None
    )
    return run_id


def load_policy(ws: Workspace, run_id: str) -> PolicyResult:
    """A stored policy run back as a :class:`PolicyResult` (without the in-memory ``mdp``).

    Runs stored by older versions may lack some settings, metadata or tables: what can be
    rebuilt is (actions and Q-values from the recommendations, states from the Q-table, ...),
    what cannot is left empty (NaN values, empty tables, no assumptions). A run without a
    Q-table and without recommendations cannot be shown and raises :class:`InputError`."""
    run = _done_run(ws, run_id, "policy")
    art = run.artifacts or {}
    meta = art.get("meta") if isinstance(art.get("meta"), dict) else {}
    settings = run.settings if isinstance(run.settings, dict) else {}
    metrics = run.metrics if isinstance(run.metrics, dict) else {}
    frames = {name: art.get(name) for name in _FRAMES}
    rec = frames["recommendations"]
    q = art.get("q")

    actions = meta.get("actions") or settings.get("actions")
    if not actions and rec is not None:
        actions = [c.removeprefix("q_") for c in rec.columns if c.startswith("q_")]
    if q is None and rec is not None and actions:
        q = rec[[f"q_{a}" for a in actions]].to_numpy(dtype=float)
    if q is None or not actions or (rec is None and frames["states"] is None):
        raise InputError(
            f"Policy run {run_id!r} was stored by an older version without its Q-table or "
            "recommendations, so it cannot be shown. Train the policy again."
        )
    q = np.asarray(q, dtype=float)
    states = frames["states"]
    if states is None:
        states = rec[["segment", "stage"]].reset_index(drop=True)
        states.insert(0, "state", np.arange(len(states)))
    if rec is None:
        rec = recommendations_table(q, states, actions, np.zeros(len(states)), None)
    stages = meta.get("stages") or list(dict.fromkeys(states["stage"].astype(str)))
    segments = meta.get("segments") or sorted({int(g) for g in states["segment"]})
    kind = meta.get("kind") or settings.get("shape") or "events"
    gamma = meta.get("gamma", settings.get("gamma"))
    curve = frames["curve"]
    if curve is None or not set(CURVE_COLUMNS) <= set(curve.columns):
        curve = pd.DataFrame(columns=CURVE_COLUMNS)
    disagreements = frames["disagreements"]
    if disagreements is None:
        disagreements = pd.DataFrame(
            columns=["segment", "stage", "action", "optimal_action", "value_loss"]
        )
    return PolicyResult(
        kind=str(kind),
        algorithm=str(meta.get("algorithm") or settings.get("algorithm") or "unknown"),
        gamma=None if gamma is None else float(gamma),
        actions=tuple(str(a) for a in actions),
        stages=tuple(str(st) for st in stages),
        segments=tuple(int(g) for g in segments),
        settings=settings,
        q=q,
        states=states,
        recommendations=rec,
        disagreements=disagreements,
        curve=curve,
        value=_number(metrics.get("value")),
        optimal_value=_number(metrics.get("optimal_value")),
        ope=frames["ope"],
        projections=frames["projections"],
        stability=frames["stability"],
        assumptions=tuple(str(a) for a in meta.get("assumptions") or ()),
        metrics=metrics,
        ope_segments=frames["ope_segments"],
        evidence=frames["evidence"],
        campaign=meta.get("campaign") if isinstance(meta.get("campaign"), dict) else None,
    )


def _number(value: Any) -> float:
    """A stored number as a float; NaN when absent or not a number."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")
