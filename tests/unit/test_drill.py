"""Drill-down lists against a pandas oracle on a hand-made log, and against the cohort table's
own counts (a cell's list has exactly as many users as the cell says)."""

from __future__ import annotations

import duckdb
import numpy as np
import pandas as pd
import pytest

from retention.cohorts import cohort_table
from retention.drill import COLUMNS, Selection, drill_users, user_activity, with_activity
from retention.errors import InputError

# Months: Jan..Jun 2024. u1 Jan, Feb, Apr; u2 Jan, Jun; u3 Feb, Mar; u4 Jan only; u5 Mar..Jun;
# u6 Jan, Mar (two events in March); u7 Feb, Jun.
ROWS = [
    ("u1", "2024-01-03", 10.0), ("u1", "2024-02-10", 5.0), ("u1", "2024-04-01", 2.5),
    ("u2", "2024-01-20", 100.0), ("u2", "2024-06-15", 1.0),
    ("u3", "2024-02-01", 7.0), ("u3", "2024-03-31 23:00", 3.0),
    ("u4", "2024-01-31", 4.0),
    ("u5", "2024-03-05", 1.0), ("u5", "2024-04-05", 1.0), ("u5", "2024-05-05", 1.0),
    ("u5", "2024-06-05", 1.0),
    ("u6", "2024-01-09", 2.0), ("u6", "2024-03-09", 2.0), ("u6", "2024-03-19", 6.0),
    ("u7", "2024-02-29", 0.5), ("u7", "2024-06-30", 0.5),
]  # fmt: skip
ASSIGN = pd.DataFrame(
    {"user_id": ["u1", "u2", "u3", "u4", "u5", "u6"], "segment": [0, 1, 0, 1, 0, 1]}
)  # u7 has no segment
NAMES = {0: "Loyal"}  # segment 1 keeps its default name


@pytest.fixture
def events() -> pd.DataFrame:
    frame = pd.DataFrame(ROWS, columns=["user_id", "ts", "amount"])
    frame["ts"] = pd.to_datetime(frame["ts"], format="ISO8601")
    return frame


@pytest.fixture
def con():
    c = duckdb.connect()
    yield c
    c.close()


def oracle(events: pd.DataFrame, churn_after: int) -> pd.DataFrame:
    """Per user, by hand in pandas: first/last month index, active months, spend, stage."""
    e = events.assign(t=(events["ts"].dt.year - 2024) * 12 + events["ts"].dt.month - 1)
    last_t = int(e["t"].max())
    g = e.groupby("user_id")
    out = pd.DataFrame(
        {
            "first_t": g["t"].min(),
            "last_t": g["t"].max(),
            "months": g["t"].agg(lambda s: sorted(set(s))),
            "active_periods": g["t"].nunique(),
            "last_seen": g["ts"].max().dt.date,
            "spend": g["amount"].sum(),
        }
    )
    r = last_t - out["last_t"]
    out["stage"] = np.select(
        [r == 0, r == 1, r < churn_after], ["active", "lapsing", "at_risk"], "churned"
    )
    return out


def test_every_user_with_their_facts(con, events):
    got = drill_users(con, events, period="month", churn_after=3, assignments=ASSIGN, names=NAMES)
    want = oracle(events, churn_after=3)
    assert list(got.columns) == list(COLUMNS)
    assert sorted(got["user_id"]) == sorted(want.index)
    got = got.set_index("user_id")
    for user, row in want.iterrows():
        assert got.loc[user, "last_seen"] == row["last_seen"]
        assert got.loc[user, "active_periods"] == row["active_periods"]
        assert got.loc[user, "spend"] == pytest.approx(row["spend"])
        assert got.loc[user, "stage"] == row["stage"]
    assert got.loc["u1", "segment"] == "Loyal"
    assert got.loc["u2", "segment"] == "Segment 2"
    assert got.loc["u7", "segment"] == "Not segmented"
    # u2's data by hand: Jan and Jun, last seen 15 June, 101 spent, active in the last month.
    assert (got.loc["u2", "active_periods"], got.loc["u2", "spend"]) == (2, 101.0)
    assert str(got.loc["u2", "last_seen"]) == "2024-06-15"
    assert got.loc["u4", "stage"] == "churned"  # last seen Jan, 5 months before June


def test_biggest_spenders_first(con, events):
    got = drill_users(con, events, period="month")
    assert list(got["spend"]) == sorted(got["spend"], reverse=True)
    assert got["user_id"].iloc[0] == "u2"


@pytest.mark.parametrize("mode", ["classic", "unbounded"])
def test_a_cohort_cell_holds_the_users_the_table_counts(con, events, mode):
    table = cohort_table(con, events, period="month", mode=mode)
    want = oracle(events, churn_after=4)
    for cohort in table.counts.index:
        cohort_t = (cohort.year - 2024) * 12 + cohort.month - 1
        for k, count in table.counts.loc[cohort].items():
            if np.isnan(count):
                continue
            got = drill_users(con, events, Selection(cohort=cohort, k=int(k), mode=mode))
            first = want[want["first_t"] == cohort_t]
            if mode == "classic":
                expected = first[first["months"].map(lambda m, t=cohort_t + k: t in m)]
            else:
                expected = first[first["last_t"] >= cohort_t + k]
            assert sorted(got["user_id"]) == sorted(expected.index), (cohort, k)
            assert len(got) == int(count)


def test_known_cells_by_hand(con, events):
    jan = pd.Timestamp("2024-01-01")
    # January cohort: u1, u2, u4, u6. Two months later (March): u6 only (classic);
    # March or later: u1 (April), u2 (June), u6 (March).
    classic = drill_users(con, events, Selection(cohort=jan, k=2), period="month")
    assert list(classic["user_id"]) == ["u6"]
    unbounded = drill_users(con, events, Selection(cohort=jan, k=2, mode="unbounded"))
    assert sorted(unbounded["user_id"]) == ["u1", "u2", "u6"]


def test_segment_stage_and_group_narrow_the_list(con, events):
    want = oracle(events, churn_after=3)
    seg0 = drill_users(
        con, events, Selection(segment=0), period="month", churn_after=3, assignments=ASSIGN
    )
    assert sorted(seg0["user_id"]) == ["u1", "u3", "u5"]
    for stage in ("active", "lapsing", "at_risk", "churned"):
        got = drill_users(con, events, Selection(stage=stage), period="month", churn_after=3)
        assert sorted(got["user_id"]) == sorted(want.index[want["stage"] == stage]), stage
    both = drill_users(
        con,
        events,
        Selection(segment=1, stage="churned"),
        period="month",
        churn_after=3,
        assignments=ASSIGN,
    )
    assert sorted(both["user_id"]) == sorted(
        u for u in ("u2", "u4", "u6") if want.loc[u, "stage"] == "churned"
    )
    group = drill_users(con, events, period="month", user_ids=["u1", "u7"])
    assert sorted(group["user_id"]) == ["u1", "u7"]
    # A group's users keep the whole data's grid: u7 is still "active" in June.
    assert group.set_index("user_id").loc["u7", "stage"] == "active"


def test_without_amounts_spend_is_empty(con, events):
    got = drill_users(con, events.drop(columns="amount"), period="month")
    assert got["spend"].isna().all()


def test_bad_selections_say_what_is_wrong(con, events):
    with pytest.raises(InputError, match="'k'"):
        Selection(cohort=pd.Timestamp("2024-01-01"))
    with pytest.raises(InputError, match="'mode'"):
        Selection(mode="weird")
    with pytest.raises(InputError, match="segmentation"):
        drill_users(con, events, Selection(segment=0))
    with pytest.raises(InputError, match="no month starting on 2023-05-01"):
        drill_users(con, events, Selection(cohort=pd.Timestamp("2023-05-01"), k=0), period="month")


def test_user_activity_and_the_crm_columns(con, events):
    want = oracle(events, churn_after=4)
    activity = user_activity(con, events, period="month").set_index("user_id")
    assert list(activity.index) == sorted(want.index)
    assert (activity["active_periods"] == want["active_periods"]).all()
    assert (activity["last_seen"] == want["last_seen"]).all()
    assert np.allclose(activity["spend"], want["spend"])
    per_user = pd.DataFrame({"user_id": ["u3", "u1", "zz"], "segment": [0, 0, 1]})
    merged = with_activity(per_user, activity.reset_index())
    assert list(merged["user_id"]) == ["u3", "u1", "zz"]  # the export's order is kept
    assert list(merged.columns) == ["user_id", "segment", "last_seen", "active_periods", "spend"]
    assert merged.loc[0, "active_periods"] == 2 and merged.loc[1, "spend"] == 17.5
    assert pd.isna(merged.loc[2, "spend"])  # a user without events gets empty facts
    assert with_activity(per_user, None) is per_user


def test_the_heatmap_gets_one_click_target_per_cell(con, events):
    from retention.charts.drill import clickable_cells
    from retention.charts.retention import cohort_heatmap

    table = cohort_table(con, events, period="month")
    fig = clickable_cells(cohort_heatmap(table), table)
    cells = next(t for t in fig.data if t.name == "cells")
    known = table.counts.stack().dropna()  # (cohort, k) -> users
    assert len(cells.customdata) == len(known)
    for cohort, k, users, size, share, _note in cells.customdata:
        assert users == known[(pd.Timestamp(cohort), k)]
        assert size == table.sizes[pd.Timestamp(cohort)]
        assert share == pytest.approx(users / size)
    assert fig.layout.clickmode == "event+select"
