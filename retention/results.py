"""What the pages, the command line and the report show, put together from the workspace.

:mod:`retention.runs` stores and loads single runs; this module joins them with the data: the
segments' display names, each user's current stage, the finished runs a page offers
(:func:`segmentation_runs`, :func:`policy_runs`), the Retention page's curves and cohorts of a
breakdown (:func:`retention_survival`, :func:`retention_cohorts`), and the strategies of a stored
segmentation + policy (the Strategies page and its report rebuild them from ids alone).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pandas as pd

from retention.analyses import (
    ACQUISITION,
    FIRST_PREFIX,
    Definition,
    RetentionMatrix,
    property_groups,
    property_word,
    retention_matrix,
)
from retention.cohorts import (
    ALL_USERS,
    DEFAULT_TOP_N,
    CohortTable,
    Survival,
    churn_durations,
    cohort_table,
    groups_word,
    retention_curves,
    survival,
    user_groups,
)
from retention.errors import InputError
from retention.learn import PolicyResult
from retention.periods import DEFAULT_CHURN_AFTER, PeriodGrid, period_grid, user_stages
from retention.policy import snapshot_stage
from retention.runs import load_policy, load_segmentation
from retention.segments import SegmentationResult
from retention.strategies import Strategies, build_strategies, stage_counts, user_actions
from retention.workspace import Workspace


def display_names(labels: pd.DataFrame | None, renames: Mapping[int, str]) -> dict[int, str]:
    """Each segment's display name: the user's rename, else the computed label."""
    names: dict[int, str] = {}
    if labels is not None:
        names.update(
            {int(s): str(n) for s, n in zip(labels["segment"], labels["label"], strict=True)}
        )
    names.update(renames)
    return names


def segment_names(ws: Workspace, run_id: str, segmentation: SegmentationResult) -> dict[int, str]:
    """The display names of a stored segmentation's segments."""
    return display_names(segmentation.labels, ws.segment_names(run_id))


def finished_runs(ws: Workspace, kind: str, dataset_id: str, status: str = "done") -> pd.DataFrame:
    """A dataset's runs of one ``kind`` in one ``status`` (default: finished), newest first."""
    runs = ws.runs(kind, dataset_id)
    return runs[runs["status"] == status]


def segmentation_runs(ws: Workspace, dataset_id: str) -> pd.DataFrame:
    """A dataset's finished segmentation runs, newest first."""
    return finished_runs(ws, "segmentation", dataset_id)


def policy_runs(
    ws: Workspace, dataset_id: str, segmentation_run: str | None = None, status: str = "done"
) -> pd.DataFrame:
    """A dataset's policy runs in one ``status`` (default: finished), newest first; with
    ``segmentation_run``, only those trained on that segmentation."""
    runs = finished_runs(ws, "policy", dataset_id, status)
    if segmentation_run is not None:
        runs = runs[runs["settings"].map(lambda s: s.get("segmentation_run") == segmentation_run)]
    return runs


# --------------------------------------------------------------------------- retention

#: The Retention page's breakdowns besides a column name: all users together, or the segments.
NO_BREAKDOWN = "none"
BY_SEGMENTS = "segments"


def _breakdown(
    ws: Workspace, breakdown: str | None, segmentation_run: str | None
) -> str | pd.DataFrame | None:
    """A breakdown as :func:`~retention.cohorts.user_groups` takes it (the segments: their
    stored assignments)."""
    if breakdown in (None, NO_BREAKDOWN):
        return None
    if breakdown == BY_SEGMENTS:
        if segmentation_run is None:
            raise InputError("Grouping by segments needs a segmentation run: run one first.")
        return ws.load_run(segmentation_run).artifacts["assignments"][["user_id", "segment"]]
    return breakdown


def breakdown_groups(
    ws: Workspace,
    dataset_id: str,
    breakdown: str | None,
    segmentation_run: str | None = None,
    *,
    names: Mapping[int, str] | None = None,
    top_n: int = DEFAULT_TOP_N,
) -> tuple[pd.DataFrame, str]:
    """Each user's group under ``breakdown`` (:data:`NO_BREAKDOWN`, :data:`BY_SEGMENTS` of
    ``segmentation_run``, a column of the events (the ``top_n`` largest values), or a property
    of each user's start: ``acquisition`` month or ``first:<column>``, see
    :func:`~retention.analyses.property_groups`) and what the groups are called in a sentence."""
    events = ws.table(dataset_id, "events")
    if breakdown == ACQUISITION or (breakdown or "").startswith(FIRST_PREFIX):
        groups = property_groups(ws.cursor(), events, breakdown, top_n=top_n)
        return groups, f"groups by {property_word(breakdown)}"
    by = _breakdown(ws, breakdown, segmentation_run)
    return user_groups(ws.cursor(), events, by, names=names, top_n=top_n), groups_word(by)


@dataclass(frozen=True, eq=False)
class RetentionSurvival:
    """The top of the Retention page: the events' period ``grid`` and the time-to-churn
    ``survival`` curves of a breakdown."""

    grid: PeriodGrid
    survival: Survival


def retention_survival(
    ws: Workspace,
    dataset_id: str,
    period: str,
    churn_after: int,
    breakdown: str | None,
    segmentation_run: str | None = None,
    *,
    names: Mapping[int, str] | None = None,
    top_n: int = DEFAULT_TOP_N,
) -> RetentionSurvival:
    """Kaplan–Meier time-to-churn curves per group of ``breakdown`` (see
    :func:`breakdown_groups`), with the period grid they are measured on."""
    con, events = ws.cursor(), ws.table(dataset_id, "events")
    durations = churn_durations(con, events, period=period, churn_after=churn_after)
    groups, what = breakdown_groups(
        ws, dataset_id, breakdown, segmentation_run, names=names, top_n=top_n
    )
    return RetentionSurvival(
        grid=period_grid(con, events, period),
        survival=survival(durations, groups, period=period, churn_after=churn_after, what=what),
    )


def retention_cohorts(
    ws: Workspace,
    dataset_id: str,
    period: str,
    mode: str,
    breakdown: str | None = None,
    segmentation_run: str | None = None,
    *,
    group: str = ALL_USERS,
    names: Mapping[int, str] | None = None,
    top_n: int = DEFAULT_TOP_N,
) -> CohortTable:
    """The cohort triangle of all users, or of one ``group`` of ``breakdown`` (see
    :func:`breakdown_groups`)."""
    user_ids = None
    if group != ALL_USERS:
        groups, _ = breakdown_groups(
            ws, dataset_id, breakdown, segmentation_run, names=names, top_n=top_n
        )
        user_ids = groups.loc[groups["group"] == group, "user_id"]
    con, events = ws.cursor(), ws.table(dataset_id, "events")
    return cohort_table(con, events, period=period, mode=mode, user_ids=user_ids)


def retention_analysis(
    ws: Workspace,
    dataset_id: str,
    period: str,
    mode: str,
    breakdown: str | None = None,
    segmentation_run: str | None = None,
    *,
    definition: Definition | None = None,
    brackets: tuple[tuple[int, int | None], ...] = (),
    names: Mapping[int, str] | None = None,
    top_n: int = DEFAULT_TOP_N,
) -> RetentionMatrix:
    """The Retention page's retention lines, cohorts and money: a
    :func:`~retention.analyses.retention_matrix` per group of ``breakdown`` (see
    :func:`breakdown_groups`)."""
    groups = None
    if breakdown not in (None, NO_BREAKDOWN):
        groups, _ = breakdown_groups(
            ws, dataset_id, breakdown, segmentation_run, names=names, top_n=top_n
        )
    con, events = ws.cursor(), ws.table(dataset_id, "events")
    kwargs = {"brackets": brackets} if brackets else {}
    return retention_matrix(
        con, events, period=period, mode=mode, definition=definition, groups=groups, **kwargs
    )


# --------------------------------------------------------------------------- stages, strategies


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
    """The strategy tables of a policy, with how many users stand in each segment and stage."""
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
    churn_after = int(policy.settings.get("churn_after", DEFAULT_CHURN_AFTER))
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
