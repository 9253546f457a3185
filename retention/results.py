"""What the pages, the command line and the report show, put together from the workspace.

:mod:`retention.runs` stores and loads single runs; this module joins them with the data: the
segments' display names, each user's current stage, and the strategies of a stored
segmentation + policy (the Strategies page and its report rebuild them from ids alone).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pandas as pd

from retention.cohorts import retention_curves
from retention.learn import PolicyResult
from retention.periods import DEFAULT_CHURN_AFTER, user_stages
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
