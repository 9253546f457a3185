"""The whole pipeline, headless: file → workspace → segments → retention → policy → strategies →
report. The command line calls :func:`run_pipeline`; the app's pages call the same library steps
one at a time, and :func:`make_report` for the HTML report.

Work is kept in the workspace and reused: the same file with the same column mapping is stored
once, and a segmentation or policy run with exactly the same settings is reopened, not
recomputed (results are seeded, so reopening gives what recomputing would).
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from retention.charts import policy as policy_charts
from retention.charts import retention as retention_charts
from retention.charts import segments as segment_charts
from retention.cohorts import (
    churn_durations,
    logrank_sentence,
    retention_curves,
    retention_summary,
)
from retention.errors import InputError
from retention.ingest import ingest
from retention.learn import PolicyResult
from retention.mdp import RewardSettings
from retention.periods import DEFAULT_TIMING, resolve_period, user_stages
from retention.policy import policy_settings, snapshot_stage, train_or_reuse_policy
from retention.report import Section, campaign_section, render_report
from retention.runs import (
    load_policy,
    load_segmentation,
    run_segmentation,
    store_dataset,
)
from retention.segments import SegmentationResult
from retention.strategies import (
    Strategies,
    build_strategies,
    stage_counts,
    to_csv_bytes,
    user_actions,
)
from retention.words import scaled
from retention.workspace import Workspace

Progress = Callable[[float, str], None]
#: The largest local file the command line reads (uploads in the app have their own limit).
LOCAL_FILE_LIMIT = 1 << 40


@dataclass(frozen=True)
class PipelineConfig:
    """Everything the command line can set (SPEC §8)."""

    input: Path
    campaigns: Path | None = None
    overrides: dict[str, str] = field(default_factory=dict)
    period: str | None = None
    campaign_timing: str = DEFAULT_TIMING
    churn_after: int = 4
    segments: int | str = "auto"
    gamma: float = 0.9
    retain_reward: float = 1.0
    churn_penalty: float = 5.0
    revenue_weight: float = 0.0
    action_costs: dict[str, float] = field(default_factory=dict)
    episodes: int | None = None
    seed: int = 0
    workspace: Path | None = None

    def reward(self) -> RewardSettings:
        defaults = RewardSettings()
        return RewardSettings(
            retain_reward=self.retain_reward,
            churn_penalty=self.churn_penalty,
            revenue_weight=self.revenue_weight,
            action_costs={**defaults.action_costs, **self.action_costs},
            gamma=self.gamma,
        )


class _Timer:
    """Seconds and peak resident memory (MB) of each step.

    Linux only for memory: the kernel's peak-RSS mark (VmHWM) is reset when a step starts
    (``/proc/self/clear_refs``) and read when it ends; elsewhere the memory figures are absent.
    """

    def __init__(self) -> None:
        self.timings: dict[str, float] = {}
        self.peak_mb: dict[str, float] = {}

    def step(self, name: str):
        timer = self

        class _Step:
            def __enter__(self) -> None:
                _reset_peak_rss()
                self.start = time.perf_counter()

            def __exit__(self, *exc: object) -> None:
                timer.timings[name] = round(time.perf_counter() - self.start, 3)
                peak = _peak_rss_mb()
                if peak is not None:
                    timer.peak_mb[name] = peak

        return _Step()


def _reset_peak_rss() -> None:
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")


def _peak_rss_mb() -> float | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return None


def segment_names(ws: Workspace, run_id: str, segmentation: SegmentationResult) -> dict[int, str]:
    names = {
        int(s): str(n)
        for s, n in zip(segmentation.labels["segment"], segmentation.labels["label"], strict=True)
    }
    names.update(ws.segment_names(run_id))
    return names


def user_stage_table(ws: Workspace, dataset_id: str, period: str, churn_after: int) -> pd.DataFrame:
    """Each user's current stage: their stage in the events' last period (computed in DuckDB,
    without the panel), or from a snapshot's recency."""
    if ws.dataset(dataset_id).shape == "events":
        con, events = ws.cursor(), ws.table(dataset_id, "events")
        return user_stages(con, events, period=period, churn_after=churn_after)
    snapshot = ws.load(dataset_id, "snapshot")
    if "recency" in snapshot and snapshot["recency"].notna().any():
        stage = snapshot_stage(snapshot["recency"], churn_after)
    else:
        stage = pd.Series("all", index=snapshot.index)
    return pd.DataFrame({"user_id": snapshot["user_id"].astype(str), "stage": stage.astype(str)})


def make_strategies(
    policy: PolicyResult, names: Mapping[int, str], users: pd.DataFrame, assignments: pd.DataFrame
) -> Strategies:
    return build_strategies(
        policy.recommendations,
        actions=policy.actions,
        names=names,
        stage_counts=stage_counts(users, assignments),
        action_costs=policy.settings.get("action_costs"),
        projections=policy.projections,
    )


@dataclass(frozen=True, eq=False)
class StoredStrategies:
    """Everything the Strategies page and its report show for one stored segmentation + policy."""

    policy: PolicyResult
    segmentation: SegmentationResult
    survival: Any | None
    strategies: Strategies
    per_user: pd.DataFrame


def stored_strategies(
    ws: Workspace,
    dataset_id: str,
    segmentation_run: str,
    policy_run: str,
    names: Mapping[int, str],
) -> StoredStrategies:
    """Rebuild the strategies of a stored policy run (the current stages come from the data)."""
    policy = load_policy(ws, policy_run)
    segmentation = load_segmentation(ws, segmentation_run)
    period = policy.settings.get("period") or "auto"
    churn_after = int(policy.settings.get("churn_after", 4))
    survival = None
    if ws.dataset(dataset_id).shape == "events":
        con, ref = ws.cursor(), ws.table(dataset_id, "events")
        survival = retention_curves(
            con, ref, period=period, churn_after=churn_after, by=segmentation.assignments,
            names=names,
        )  # fmt: skip
    users = user_stage_table(ws, dataset_id, period, churn_after)
    return StoredStrategies(
        policy=policy,
        segmentation=segmentation,
        survival=survival,
        strategies=make_strategies(policy, names, users, segmentation.assignments),
        per_user=user_actions(users, segmentation.assignments, policy.recommendations, names),
    )


def stored_report(
    ws: Workspace, dataset_id: str, stored: StoredStrategies, names: Mapping[int, str]
) -> str:
    """The HTML report of a stored segmentation + policy, with the dataset's own facts."""
    ds = ws.dataset(dataset_id)
    seg_run = stored.policy.settings.get("segmentation_run")
    facts = {
        "dataset": ds.name,
        "input file": ds.source_name or "",
        "input sha256": ds.sha256 or "",
        "rows": ds.rows,
        "column mapping": ds.mapping,
        "segmentation settings": ws.load_run(seg_run, artifacts=False).settings if seg_run else {},
        "policy settings": _shown_settings(stored.policy.settings),
        "seed": stored.policy.settings.get("seed"),
    }
    return make_report(
        title=f"Retention report: {ds.name}",
        facts=facts,
        segmentation=stored.segmentation,
        names=names,
        survival=stored.survival,
        policy=stored.policy,
        strategies=stored.strategies,
    )


def _shown_settings(settings: Mapping[str, Any]) -> dict[str, Any]:
    """Policy settings as the report shows them (without workspace ids)."""
    return {k: v for k, v in settings.items() if k not in ("segmentation_run", "request")}


def make_report(
    *,
    title: str,
    facts: Mapping[str, Any],
    segmentation: SegmentationResult,
    names: Mapping[int, str],
    survival: Any | None,
    policy: PolicyResult,
    strategies: Strategies,
) -> str:
    """The self-contained HTML report (same function for the app and the command line)."""
    labels = segmentation.labels.assign(
        name=segmentation.labels["segment"].map(lambda s: names.get(int(s), str(s)))
    )
    sections = [
        Section(
            "Segments",
            paragraphs=[
                f"{len(labels)} segments of {int(labels['users'].sum()):,} users, found from what "
                "they buy and write plus how they behave. Keywords are the terms most distinctive "
                "of each segment."
            ],
            figures=[segment_charts.segment_sizes(segmentation.profile, names)],
            tables=[("", labels[["segment", "name", "users", "keywords"]])],
        )
    ]
    if survival is not None:
        paragraphs = ["Share of each segment's users who have not churned yet, by periods since "
                      "their first activity (Kaplan–Meier, with 95% bands)."]  # fmt: skip
        if survival.logrank is not None:
            paragraphs.append(survival.logrank.sentence)
        sections.append(
            Section(
                "Retention",
                paragraphs=paragraphs,
                figures=[retention_charts.survival_figure(survival)],
            )
        )
    policy_paragraphs = [
        f"The learned policy reaches {policy.fraction_of_optimum:.1%} of the best possible value "
        f"on the estimated model ({policy.value:.3f} vs {policy.optimal_value:.3f})."
    ]
    warnings = [f"Assumption: {a}" for a in policy.assumptions]
    figures = [policy_charts.policy_map(policy.recommendations, policy.actions, names)]
    if policy.projections is not None and not policy.projections.empty:
        figures.append(policy_charts.retention_projection(policy.projections, names))
    if not policy.curve.empty:
        figures.append(policy_charts.learning_curve(policy.curve))
    tables = []
    if policy.ope is not None and not policy.ope.empty:
        figures.append(policy_charts.ope_forest(policy.ope))
        tables.append(
            (
                "Off-policy estimates on held-out users (value per logged decision, 95% bootstrap "
                "intervals).",
                policy.ope,
            )
        )
    sections.append(
        Section(
            "Policy",
            paragraphs=policy_paragraphs,
            warnings=warnings,
            figures=figures,
            tables=tables,
        )
    )
    campaign = campaign_section(policy.campaign, policy.evidence, policy.ope_segments, names)
    if campaign is not None:
        sections.append(campaign)
    hurt = strategies.table[strategies.table["verdict"] == "leave alone: every action hurts"]
    sections.append(
        Section(
            "Strategies",
            paragraphs=["What to do with each segment at each engagement stage."],
            warnings=[
                f"Leave them alone: every action is estimated to do worse than doing nothing for "
                f"{r.label} ({r.stage}), even before its cost."
                for r in hurt.itertuples(index=False)
            ],
            tables=[
                ("Per segment", strategies.segments),
                ("Per segment and stage", strategies.table),
            ],
        )
    )
    return render_report(title, facts, sections)


def run_pipeline(
    config: PipelineConfig, out: Path, progress: Progress | None = None
) -> dict[str, Any]:
    """Run everything and write summary.json, strategies.csv, user_segments.csv and
    report.html into ``out`` (an existing, empty folder). Returns the summary."""
    timer = _Timer()
    say = progress or (lambda f, m: None)
    with timer.step("ingest"):
        say(0.0, "Reading the data")
        # A local file on the command line is not an upload: no upload size limit.
        prepared = ingest(
            config.input,
            campaigns_path=config.campaigns,
            overrides=config.overrides,
            max_bytes=LOCAL_FILE_LIMIT,
            campaign_timing=config.campaign_timing,
        )
    if config.period is not None and config.period not in ("day", "week", "month"):
        raise InputError(f"--period must be day, week or month. Got {config.period!r}.")

    ws = Workspace(config.workspace)
    with timer.step("store"):
        dataset_id = store_dataset(ws, prepared, Path(config.input).name)
    info = ws.dataset(dataset_id)
    con = ws.cursor()
    events_ref = ws.table(dataset_id, "events") if info.shape == "events" else None

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
            durations = churn_durations(
                con, events_ref, period=period, churn_after=config.churn_after
            )
            retention_block = retention_summary(
                con,
                events_ref,
                period=period,
                churn_after=config.churn_after,
                assignments=segmentation.assignments,
                durations=durations,
            )
            survival = retention_curves(
                con,
                events_ref,
                period=period,
                churn_after=config.churn_after,
                by=segmentation.assignments,
                names=names,
                durations=durations,
            )
            del durations
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
        "workspace": {
            "folder": str(ws.folder),
            "dataset": dataset_id,
            "segmentation_run": seg_run,
            "policy_run": policy_run,
        },  # fmt: skip
    }
    if prepared.campaign_mapping:
        summary["campaign_mapping"] = prepared.campaign_mapping
    if summary_policy.get("ope"):
        summary["ope"] = summary_policy["ope"]
    if summary_policy.get("campaign"):
        summary["campaign"] = summary_policy["campaign"]

    with timer.step("report"):
        say(0.96, "Writing the report")
        facts = {
            "input file": Path(config.input).name,
            "input sha256": prepared.sha256,
            "campaign log": Path(config.campaigns).name if config.campaigns else "none",
            **({"campaign timing": config.campaign_timing} if config.campaigns else {}),
            "rows used / left out": f"{prepared.report.rows_used:,} / {prepared.report.rows_rejected:,}",
            "column mapping": prepared.mapping,
            "period": period,
            "churn after (periods)": config.churn_after,
            "segmentation settings": ws.load_run(seg_run, artifacts=False).settings,
            "policy settings": {
                k: v for k, v in policy.settings.items() if k not in ("segmentation_run", "request")
            },
            "seed": config.seed,
        }
        html_text = make_report(
            title=f"Retention report: {Path(config.input).name}",
            facts=facts,
            segmentation=segmentation,
            names=names,
            survival=survival,
            policy=policy,
            strategies=strategies,
        )
    summary["timings"] = timer.timings
    if timer.peak_mb:
        summary["peak_memory_mb"] = timer.peak_mb

    out.mkdir(parents=True, exist_ok=True)
    (out / "report.html").write_text(html_text, encoding="utf-8")
    (out / "strategies.csv").write_bytes(to_csv_bytes(strategies.table))
    (out / "user_segments.csv").write_bytes(to_csv_bytes(per_user))
    (out / "summary.json").write_text(
        json.dumps(summary, indent=2, default=_json_default, allow_nan=False), encoding="utf-8"
    )
    say(1.0, "Done")
    return summary


def _json_default(value: Any) -> Any:
    import numpy as np

    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"Cannot write {type(value).__name__} to JSON")


__all__ = [
    "PipelineConfig",
    "logrank_sentence",
    "make_report",
    "run_pipeline",
]
