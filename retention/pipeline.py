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

from retention import compact
from retention.analyses import analyses_summary, segment_matrix
from retention.cohorts import (
    churn_durations,
    retention_curves,
    retention_summary,
    summary_from_curves,
)
from retention.config import PipelineConfig
from retention.drill import crm_users
from retention.ingest import LOCAL_FILE_BYTES, Prepared, ingest
from retention.learn import (
    PolicyResult,
)
from retention.periods import resolve_period
from retention.policy_runs import PolicyRequest, train_or_reuse_policy
from retention.report import make_report, shown_settings
from retention.results import make_strategies, segment_names, user_stage_table
from retention.runs import load_segmentation, run_segmentation, store_dataset
from retention.segments import SegmentationResult
from retention.strategies import Strategies, to_csv_bytes, user_actions
from retention.timing import StepTimer
from retention.user_pass import shared_for_this_run
from retention.words import scaled
from retention.workspace import Workspace

Progress = Callable[[float, str], None]


def run_pipeline(
    config: PipelineConfig, out: Path, progress: Progress | None = None
) -> dict[str, Any]:
    """Run everything and write summary.json, strategies.csv, user_segments.csv and
    report.html into ``out`` (an existing, empty folder). Returns the summary."""
    # Issue 19: the steps share per-user and per-(user, period) passes, forgotten when it ends.
    with shared_for_this_run():
        return _run_pipeline(config, out, progress)


def _run_pipeline(config: PipelineConfig, out: Path, progress: Progress | None) -> dict[str, Any]:
    timer = StepTimer()
    say = progress or (lambda f, m: None)
    spark = None  # issue 15: with --engine spark the events stay in Spark (retention.engine)
    with timer.step("ingest"):
        say(0.0, "Reading the data")
        if config.engine == "spark":
            from retention.engine.routing import spark_ingest

            spark, prepared = spark_ingest(config)
        else:
            # A local file on the command line is not an upload: no upload size limit.
            prepared = ingest(
                config.input,
                campaigns_path=config.campaigns,
                overrides=config.overrides,
                max_bytes=LOCAL_FILE_BYTES,
                campaign_timing=config.campaign_timing,
            )

    ws = _workspace(config, spark)
    # issue 19: DuckDB's cached blocks and freed memory handed back before each step
    timer.before_step.append(ws.release_cached_memory)
    with timer.step("store"):
        if spark is None:
            dataset_id = store_dataset(ws, prepared, Path(config.input).name)
        else:
            from retention.engine.routing import store_spark_dataset

            name = Path(str(config.input)).name
            dataset_id = store_spark_dataset(ws, prepared, name, config.spark_master)
    con = ws.cursor()
    events_ref = (
        ws.table(dataset_id, "events") if ws.dataset(dataset_id).shape == "events" else None
    )

    with timer.step("period"):  # the automatic choice reads every user's gaps: timed too
        period = (
            resolve_period(con, events_ref, config.period or "auto") if events_ref else "period"
        )
    with timer.step("segments"):
        seg_settings = config.segment_settings(period if events_ref else None)
        seg_run = run_segmentation(
            ws, dataset_id, settings=seg_settings, progress=scaled(progress, 0.05, 0.55)
        )
        segmentation = load_segmentation(ws, seg_run)
        names = segment_names(ws, seg_run, segmentation)

    survival = analyses = None
    retention_block: dict[str, Any] = {"curves": {}, "logrank_p": None}
    if events_ref:
        with timer.step("retention"):
            say(0.58, "Computing retention curves")
            retention_block, survival, analyses = _retention(
                con,
                events_ref,
                period,
                config.churn_after,
                segmentation.assignments,
                names,
                analyses_wanted=spark is None,
            )
    else:
        retention_block["note"] = "A campaign snapshot has no event times: no retention curves."

    with timer.step("stages"):
        users = user_stage_table(ws, dataset_id, period, config.churn_after)

    with timer.step("policy"):
        request = PolicyRequest.from_config(config, seg_run, period)
        policy_run, policy = train_or_reuse_policy(
            ws,
            dataset_id,
            segmentation.assignments,
            request,
            progress=scaled(progress, 0.62, 0.95),
        )

    with timer.step("strategies"):
        strategies = make_strategies(policy, names, users, segmentation.assignments)
        per_user = user_actions(users, segmentation.assignments, policy.recommendations, names)
        per_user = crm_users(ws, dataset_id, per_user, period)  # last seen, spend, ...

    workspace_ids = {"folder": str(ws.folder), "dataset": dataset_id,
                     "segmentation_run": seg_run, "policy_run": policy_run}  # fmt: skip
    summary = _summary(
        config, prepared, period, segmentation, names, retention_block, policy, workspace_ids
    )
    if spark is not None:  # where the events live, and which steps ran in Spark
        from retention.engine.routing import engine_record

        summary["engine"] = {**engine_record(prepared, config.spark_master),
                             "queries": dict(getattr(ws, "query_counts", {}))}  # fmt: skip
    if config.campaigns is not None:  # SPEC §8: the log read as an experiment
        summary["experiment"] = _experiment(con, ws.table(dataset_id, "campaigns"), policy)
    with timer.step("report"):
        say(0.96, "Writing the report")
        seg_settings = ws.load_run(seg_run, artifacts=False).settings
        html_text = make_report(
            title=f"Retention report: {Path(config.input).name}",
            facts=_facts(config, prepared, period, seg_settings, policy, spark is not None),
            segmentation=segmentation,
            names=names,
            survival=survival,
            policy=policy,
            strategies=strategies,
            currency=config.currency,
            analyses=analyses,
        )
    summary["timings"] = timer.timings
    if timer.peak_mb:
        summary["peak_memory_mb"] = timer.peak_mb

    _write_outputs(out, html_text, strategies, per_user, summary)
    say(1.0, "Done")
    return summary


def _workspace(config: PipelineConfig, spark: Any) -> Workspace:
    """The workspace; with Spark, one whose cursors send queries over Spark-resident events
    to Spark (:mod:`retention.engine.routing`)."""
    if spark is None:
        return Workspace(config.workspace)
    from retention.engine.routing import RoutedWorkspace

    return RoutedWorkspace(config.workspace, spark)


def _retention(
    con: duckdb.DuckDBPyConnection,
    events_ref: str,
    period: str,
    churn_after: int,
    assignments: pd.DataFrame,
    names: Mapping[int, str],
    *,
    analyses_wanted: bool = True,
) -> tuple[dict[str, Any], Any, Any]:
    """The summary's retention block, the Kaplan–Meier curves by segment (one pass over the
    users' churn durations, shared by both) and the retention analyses by segment (retention,
    revenue retention and LTV lines; ``retention.analyses`` in the summary). Without
    ``analyses_wanted`` (events in Spark: the analyses read every event into memory) the
    analyses are skipped and ``retention.analyses_skipped`` says why."""
    durations = churn_durations(con, events_ref, period=period, churn_after=churn_after)
    survival = retention_curves(
        con,
        events_ref,
        period=period,
        churn_after=churn_after,
        by=assignments,
        names=names,
        durations=durations,
    )
    # issue 19: the summary's curves are the report's, fitted once (when both group the same
    # users, as they do after a segmentation of the same events; else fitted again).
    block = summary_from_curves(survival, durations, assignments, names)
    if block is None:
        block = retention_summary(
            con,
            events_ref,
            period=period,
            churn_after=churn_after,
            assignments=assignments,
            names=names,
            durations=durations,
        )
    if not analyses_wanted:
        from retention.engine.routing import ANALYSES_SKIPPED

        block["analyses_skipped"] = ANALYSES_SKIPPED
        return block, survival, None
    # With the run's shared per-(user, period) pass (retention.user_pass) the analyses read it
    # and no compact copy of the events is built; should one have been (sharing off), free it
    # before the policy step (at 50M events it is ~1.3 GB).
    analyses = segment_matrix(con, events_ref, assignments, period=period)
    compact.forget_memory()
    block["analyses"] = analyses_summary(analyses)
    return block, survival, analyses


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
        "currency": config.currency,
        "seed": config.seed,
        "segments": [
            {
                "segment": int(r.segment),
                "label": names.get(int(r.segment), str(r.label)),
                "behaviour": str(getattr(r, "behaviour", "") or ""),  # issue 18: behaviour tag
                "keywords": [k.strip() for k in str(r.keywords).split(",") if k.strip()],
                "users": int(r.users),
            }
            for r in segmentation.labels.itertuples(index=False)
        ],
        "text_model": segmentation.metrics.get("text_model"),  # which ran and why (issue 14)
        "retention": retention_block,
        "policy": summary_policy["policy"],
        "workspace": workspace_ids,
    }
    if prepared.campaign_mapping:
        summary["campaign_mapping"] = prepared.campaign_mapping
    if summary_policy.get("ope"):
        summary["ope"] = summary_policy["ope"]
    if summary_policy.get("campaign"):
        summary["campaign"] = summary_policy["campaign"]
    return summary


def _experiment(
    con: duckdb.DuckDBPyConnection, campaigns_ref: str, policy: PolicyResult
) -> dict[str, Any] | None:
    """``experiment`` {``srm``, ``lifts``} of a campaign log (:mod:`retention.experiment`)."""
    from retention.experiment import log_experiment, srm_from_log

    known = "CASE WHEN count(propensity) = count(*) THEN avg(propensity) END"
    sql = f"SELECT action, count(*) AS rows, {known} AS propensity FROM {campaigns_ref} GROUP BY 1"  # noqa: S608 -- a quoted table name only
    per_action = con.execute(sql).df()
    return log_experiment(srm_from_log(per_action), policy.evidence)


def _facts(
    config: PipelineConfig,
    prepared: Prepared,
    period: str,
    segmentation_settings: dict[str, Any],
    policy: PolicyResult,
    on_spark: bool = False,
) -> dict[str, Any]:
    """The report's "Settings, data and versions" table for one command-line run."""
    report = prepared.report
    engine: dict[str, Any] = {}
    if on_spark:
        from retention.engine.routing import ANALYSES_SKIPPED

        where = f"Spark ({config.spark_master}); the events stay there, results come back here"
        engine = {"engine": where, "retention analyses": ANALYSES_SKIPPED}
    return {
        "input file": Path(str(config.input)).name,
        **engine,
        "input sha256": prepared.sha256,
        "campaign log": Path(config.campaigns).name if config.campaigns else "none",
        **({"campaign timing": config.campaign_timing} if config.campaigns else {}),
        "rows used / left out": f"{report.rows_used:,} / {report.rows_rejected:,}",
        "column mapping": prepared.mapping,
        "period": period,
        "churn after (periods)": config.churn_after,
        "currency of the revenue": config.currency or "not set",
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


__all__ = ["PipelineConfig", "run_pipeline"]
