"""The whole pipeline, headless: file → workspace → segments → retention → policy → strategies →
report, for the command line (:func:`run_pipeline`). The app's pages call the same library steps
one at a time.

Work is kept in the workspace and reused (:mod:`retention.runs`): the same file with the same
column mapping is stored once, and a segmentation or policy run with exactly the same settings is
reopened, not recomputed (results are seeded, so reopening gives what recomputing would).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pandas as pd

from retention.cohorts import churn_durations, retention_curves, retention_summary
from retention.config import PipelineConfig
from retention.ingest import Prepared, ingest
from retention.learn import (
    PolicyResult,
    QLearner,
    train_policy,
    train_snapshot_policy,
)
from retention.mdp import PanelSummary, RewardSettings, summarize_events
from retention.periods import build_panel, period_grid, period_of, resolve_period
from retention.report import make_report, shown_settings
from retention.results import make_strategies, segment_names, user_stage_table
from retention.runs import load_segmentation, run_segmentation, store_dataset, train_policy_run
from retention.segments import SegmentationResult
from retention.strategies import Strategies, to_csv_bytes, user_actions
from retention.timing import StepTimer
from retention.words import scaled
from retention.workspace import Workspace

Progress = Callable[[float, str], None]
#: The largest local file the command line reads (uploads in the app have their own limit).
LOCAL_FILE_LIMIT = 1 << 40


def policy_settings(config: PipelineConfig, segmentation_run: str, period: str) -> dict[str, Any]:
    """The settings a policy run is stored (and found again) under."""
    return {
        "segmentation_run": segmentation_run,
        "period": period,
        "churn_after": config.churn_after,
        "reward": config.reward().as_dict(),
        "episodes": config.episodes,
        "seed": config.seed,
        "algorithm": "q",
    }


def campaigns_by_period(ws: Workspace, dataset_id: str, period: str) -> pd.DataFrame | None:
    """The campaign log with each row's period index ``t`` on the events' grid."""
    info = ws.dataset(dataset_id)
    if "campaigns" not in info.kinds:
        return None
    con = ws.cursor()
    grid = period_grid(con, ws.table(dataset_id, "events"), period)
    placed = period_of(con, ws.table(dataset_id, "campaigns"), grid)
    placed = placed.dropna(subset=["t"])
    placed["t"] = placed["t"].astype(int)
    return placed[["user_id", "t", "action", "propensity"]]


def train_or_reuse_policy(
    ws: Workspace,
    dataset_id: str,
    segmentation: SegmentationResult,
    settings: dict[str, Any],
    *,
    config: PipelineConfig,
    progress: Progress | None = None,
) -> tuple[str, PolicyResult]:
    """A stored policy run made for the same request, or a newly trained and stored one.

    ``settings`` is the request (what the command line was asked); it is stored under
    ``settings["request"]`` beside the full settings the learner reports. Training reads what
    it needs from the workspace (:func:`policy_input`); a reused run reads nothing.
    """
    info = ws.dataset(dataset_id)
    return train_policy_run(
        ws,
        dataset_id,
        settings,
        lambda: _train(
            ws, dataset_id, info.shape, segmentation, settings, config, config.reward(), progress
        ),
        progress=progress,
    )


def policy_input(
    ws: Workspace,
    dataset_id: str,
    assignments: pd.DataFrame,
    period: str,
    churn_after: int,
    campaigns: pd.DataFrame | None,
) -> pd.DataFrame | PanelSummary:
    """What the learner reads from an event log (the app's Policy page and the command line).

    Without a campaign log the MDP needs only sums, which DuckDB computes from the events (the
    users x periods panel never reaches pandas: it would not fit at 1M users); with a log the
    learner needs every logged transition, so the panel is built.
    """
    con, events = ws.cursor(), ws.table(dataset_id, "events")
    if campaigns is None:
        return summarize_events(con, events, assignments, period=period, churn_after=churn_after)
    return build_panel(con, events, period=period, churn_after=churn_after)


def _train(
    ws: Workspace,
    dataset_id: str,
    shape: str,
    segmentation: SegmentationResult,
    settings: dict[str, Any],
    config: PipelineConfig,
    reward: RewardSettings,
    progress: Progress | None,
) -> PolicyResult:
    if shape == "snapshot":
        return train_snapshot_policy(
            ws.load(dataset_id, "snapshot"),
            segmentation.assignments,
            reward=reward,
            churn_after=config.churn_after,
            seed=config.seed,
            progress=progress,
        )
    else:
        learner = QLearner(episodes=config.episodes) if config.episodes else None
        period, churn_after = settings["period"], int(settings["churn_after"])
        campaigns = campaigns_by_period(ws, dataset_id, period)
        source = policy_input(
            ws, dataset_id, segmentation.assignments, period, churn_after, campaigns
        )
        return train_policy(
            source,
            segmentation.assignments,
            campaigns=campaigns,
            reward=reward,
            learner=learner,
            seed=config.seed,
            progress=progress,
        )


def run_pipeline(
    config: PipelineConfig, out: Path, progress: Progress | None = None
) -> dict[str, Any]:
    """Run everything and write summary.json, strategies.csv, user_segments.csv and
    report.html into ``out`` (an existing, empty folder). Returns the summary."""
    timer = StepTimer()
    say = progress or (lambda f, m: None)
    with timer.step("ingest"):
        say(0.0, "Reading the data")
        # A local file on the command line is not an upload: no upload size limit.
        prepared = ingest(
            config.input,
            campaigns_path=config.campaigns,
            overrides=config.overrides,
            max_bytes=LOCAL_FILE_LIMIT,
        )

    ws = Workspace(config.workspace)
    with timer.step("store"):
        dataset_id = store_dataset(ws, prepared, Path(config.input).name)
    con = ws.cursor()
    events_ref = (
        ws.table(dataset_id, "events") if ws.dataset(dataset_id).shape == "events" else None
    )

    with timer.step("period"):  # the automatic choice reads every user's gaps: timed too
        period = (
            resolve_period(con, events_ref, config.period or "auto") if events_ref else "period"
        )
    with timer.step("segments"):
        seg_settings = {"k": config.segments, "random_state": config.seed}
        if events_ref:
            seg_settings["period"] = period
        seg_run = run_segmentation(
            ws, dataset_id, settings=seg_settings, progress=scaled(progress, 0.05, 0.55)
        )
        segmentation = load_segmentation(ws, seg_run)
        names = segment_names(ws, seg_run, segmentation)

    survival = None
    retention_block: dict[str, Any] = {"curves": {}, "logrank_p": None}
    if events_ref:
        with timer.step("retention"):
            say(0.58, "Computing retention curves")
            retention_block, survival = _retention(
                con, events_ref, period, config.churn_after, segmentation.assignments, names
            )
    else:
        retention_block["note"] = "A campaign snapshot has no event times: no retention curves."

    with timer.step("stages"):
        users = user_stage_table(ws, dataset_id, period, config.churn_after)

    with timer.step("policy"):
        settings = policy_settings(config, seg_run, period)
        policy_run, policy = train_or_reuse_policy(
            ws,
            dataset_id,
            segmentation,
            settings,
            config=config,
            progress=scaled(progress, 0.62, 0.95),
        )

    with timer.step("strategies"):
        strategies = make_strategies(policy, names, users, segmentation.assignments)
        per_user = user_actions(users, segmentation.assignments, policy.recommendations, names)

    workspace_ids = {"folder": str(ws.folder), "dataset": dataset_id,
                     "segmentation_run": seg_run, "policy_run": policy_run}  # fmt: skip
    summary = _summary(
        config, prepared, period, segmentation, names, retention_block, policy, workspace_ids
    )
    with timer.step("report"):
        say(0.96, "Writing the report")
        seg_settings = ws.load_run(seg_run, artifacts=False).settings
        html_text = make_report(
            title=f"Retention report: {Path(config.input).name}",
            facts=_facts(config, prepared, period, seg_settings, policy),
            segmentation=segmentation,
            names=names,
            survival=survival,
            policy=policy,
            strategies=strategies,
        )
    summary["timings"] = timer.timings
    if timer.peak_mb:
        summary["peak_memory_mb"] = timer.peak_mb

    _write_outputs(out, html_text, strategies, per_user, summary)
    say(1.0, "Done")
    return summary


def _retention(
    con: duckdb.DuckDBPyConnection,
    events_ref: str,
    period: str,
    churn_after: int,
    assignments: pd.DataFrame,
    names: Mapping[int, str],
) -> tuple[dict[str, Any], Any]:
    """The summary's retention block and the Kaplan–Meier curves by segment (one pass over the
    users' churn durations, shared by both)."""
    durations = churn_durations(con, events_ref, period=period, churn_after=churn_after)
    block = retention_summary(
        con,
        events_ref,
        period=period,
        churn_after=churn_after,
        assignments=assignments,
        durations=durations,
    )
    survival = retention_curves(
        con,
        events_ref,
        period=period,
        churn_after=churn_after,
        by=assignments,
        names=names,
        durations=durations,
    )
    return block, survival


def _summary(
    config: PipelineConfig,
    prepared: Prepared,
    period: str,
    segmentation: SegmentationResult,
    names: Mapping[int, str],
    retention_block: dict[str, Any],
    policy: PolicyResult,
    workspace_ids: dict[str, str],
) -> dict[str, Any]:
    """``summary.json`` (SPEC §8), without the timings."""
    summary_policy = policy.summary()
    summary: dict[str, Any] = {
        "input": {**prepared.summary(), "file": str(config.input), "sha256": prepared.sha256},
        "mapping": prepared.mapping,
        "period": period,
        "churn_after": config.churn_after,
        "seed": config.seed,
        "segments": [
            {
                "segment": int(r.segment),
                "label": names.get(int(r.segment), str(r.label)),
                "keywords": [k.strip() for k in str(r.keywords).split(",") if k.strip()],
                "users": int(r.users),
            }
            for r in segmentation.labels.itertuples(index=False)
        ],
        "retention": retention_block,
        "policy": summary_policy["policy"],
        "workspace": workspace_ids,
    }
    if prepared.campaign_mapping:
        summary["campaign_mapping"] = prepared.campaign_mapping
    if summary_policy.get("ope"):
        summary["ope"] = summary_policy["ope"]
    return summary


def _facts(
    config: PipelineConfig,
    prepared: Prepared,
    period: str,
    segmentation_settings: dict[str, Any],
    policy: PolicyResult,
) -> dict[str, Any]:
    """The report's "Settings, data and versions" table for one command-line run."""
    report = prepared.report
    return {
        "input file": Path(config.input).name,
        "input sha256": prepared.sha256,
        "campaign log": Path(config.campaigns).name if config.campaigns else "none",
        "rows used / left out": f"{report.rows_used:,} / {report.rows_rejected:,}",
        "column mapping": prepared.mapping,
        "period": period,
        "churn after (periods)": config.churn_after,
        "segmentation settings": segmentation_settings,
        "policy settings": shown_settings(policy.settings),
        "seed": config.seed,
    }


def _write_outputs(
    out: Path, html_text: str, strategies: Strategies, per_user: pd.DataFrame, summary: dict
) -> None:
    """Write the four output files into ``out`` (created when missing)."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.html").write_text(html_text, encoding="utf-8")
    (out / "strategies.csv").write_bytes(to_csv_bytes(strategies.table))
    (out / "user_segments.csv").write_bytes(to_csv_bytes(per_user))
    (out / "summary.json").write_text(
        json.dumps(summary, indent=2, default=_json_default, allow_nan=False), encoding="utf-8"
    )


def _json_default(value: Any) -> Any:
    """NumPy numbers and paths as JSON (anything else is a bug: raise)."""
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"Cannot write {type(value).__name__} to JSON")


__all__ = ["LOCAL_FILE_LIMIT", "PipelineConfig", "run_pipeline"]
