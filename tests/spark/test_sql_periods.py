"""Differential tests: periods, stages, churn durations, per-user CRM facts and the panel, each
computed by the library's SQL on DuckDB and on Spark (transpiled), compared exactly.

Few fat tests: every Spark query costs a second or more, so each test checks many results.
"""

from __future__ import annotations

import pytest

from retention import cohorts, drill, periods
from tests.spark.compare import assert_same, assert_same_frame


def test_period_choice_is_the_same(engines):
    con, cur = engines
    assert_same(periods.typical_gaps(con, "events"), periods.typical_gaps(cur, "events"), "gaps")
    assert periods.choose_period(cur, "events") == periods.choose_period(con, "events")


@pytest.mark.parametrize("period", ["day", "week", "month"])
def test_grid_stages_durations_activity_and_panel_are_the_same(engines, period):
    con, cur = engines
    grid = periods.period_grid(con, "events", period)
    assert_same(grid, periods.period_grid(cur, "events", period), "grid")
    assert_same(
        periods.inactive_runs(con, "events", period),
        periods.inactive_runs(cur, "events", period),
        "inactive runs",
    )
    stages = periods.user_stages(con, "events", period=period, churn_after=3)
    assert set(stages["stage"]) >= {"active", "churned"}
    assert_same_frame(
        stages, periods.user_stages(cur, "events", period=period, churn_after=3), what="stages"
    )
    durations = cohorts.churn_durations(con, "events", period=period, churn_after=3)
    assert durations["churned"].any() and not durations["churned"].all()
    assert_same_frame(
        durations,
        cohorts.churn_durations(cur, "events", period=period, churn_after=3),
        what="durations",
    )
    activity = drill.user_activity(con, "events", grid=grid)
    assert activity["spend"].isna().any()  # the user whose amounts are all missing
    assert_same_frame(activity, drill.user_activity(cur, "events", grid=grid), what="crm activity")
    panel = periods.build_panel(con, "events", period=period, churn_after=3)
    assert_same_frame(
        panel, periods.build_panel(cur, "events", period=period, churn_after=3), what="panel"
    )
