"""What the pages show, put together from the workspace (``retention.results``), on a stand-in
workspace holding hand-made runs and events."""

from __future__ import annotations

from types import SimpleNamespace

import duckdb
import pandas as pd
import pytest

from retention.cohorts import ALL_USERS, cohort_table
from retention.errors import InputError
from retention.results import (
    BY_SEGMENTS,
    NO_BREAKDOWN,
    policy_runs,
    retention_cohorts,
    retention_survival,
    segmentation_runs,
)
from tests.unit.test_cohorts import weekly

EVENTS = weekly(
    [("a", 0), ("a", 1), ("a", 3), ("b", 0), ("c", 0), ("c", 2), ("c", 4), ("d", 1), ("d", 2)],
    country=["UK", "UK", "UK", "FR", "UK", "UK", "UK", "FR", "FR"],
)


class StandIn:
    """The parts of a :class:`~retention.workspace.Workspace` the results read."""

    def __init__(self, runs: pd.DataFrame) -> None:
        self._runs, self._con = runs, duckdb.connect()

    def runs(self, kind: str, dataset_id: str) -> pd.DataFrame:
        return self._runs[self._runs["kind"] == kind]

    def cursor(self) -> duckdb.DuckDBPyConnection:
        return self._con

    def table(self, dataset_id: str, kind: str) -> pd.DataFrame:
        return EVENTS

    def load_run(self, run_id: str) -> SimpleNamespace:
        assignments = pd.DataFrame({"user_id": list("abcd"), "segment": [0, 1, 0, 1]})
        return SimpleNamespace(artifacts={"assignments": assignments})


RUNS = pd.DataFrame(
    {
        "id": ["p1", "p2", "p3", "s1", "s2"],
        "kind": ["policy"] * 3 + ["segmentation"] * 2,
        "status": ["done", "done", "failed", "done", "running"],
        "settings": [{"segmentation_run": "s1"}, {"segmentation_run": "s0"}, {}, {}, {}],
    }
)


def test_finished_runs_of_a_segmentation():
    ws = StandIn(RUNS)
    assert list(policy_runs(ws, "d1")["id"]) == ["p1", "p2"]
    assert list(policy_runs(ws, "d1", "s1")["id"]) == ["p1"]
    assert list(policy_runs(ws, "d1", status="failed")["id"]) == ["p3"]
    assert list(segmentation_runs(ws, "d1")["id"]) == ["s1"]


def test_cohorts_of_one_group_are_its_users_cohorts():
    ws = StandIn(RUNS)
    con = duckdb.connect()
    fr = retention_cohorts(ws, "d1", "week", "classic", "country", group="FR")
    expected = cohort_table(con, EVENTS, period="week", mode="classic", user_ids=["b", "d"])
    pd.testing.assert_frame_equal(fr.counts, expected.counts)
    everyone = retention_cohorts(ws, "d1", "week", "classic", group=ALL_USERS)
    pd.testing.assert_frame_equal(everyone.counts, cohort_table(con, EVENTS, period="week").counts)


def test_survival_by_segments_and_without_a_breakdown():
    ws = StandIn(RUNS)
    shown = retention_survival(ws, "d1", "week", 2, BY_SEGMENTS, "s1", names={0: "A", 1: "B"})
    assert shown.grid.n_periods == 5 and int(shown.survival.sizes.sum()) == 4
    assert set(shown.survival.groups) == {"A", "B"}
    alone = retention_survival(ws, "d1", "week", 2, NO_BREAKDOWN)
    assert len(alone.survival.groups) == 1
    with pytest.raises(InputError, match="segmentation run"):
        retention_survival(ws, "d1", "week", 2, BY_SEGMENTS)
