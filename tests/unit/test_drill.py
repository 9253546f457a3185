"""Drill-down lists against a pandas oracle on a hand-made log, and against the retention
matrix's own counts (a cell's list has exactly the users the cell counts, in every mode: in that
period, or later, ranges of days; with start/return events, cohort dates and groups)."""

from __future__ import annotations

from datetime import date

import duckdb
import numpy as np
import pandas as pd
import pytest

from retention.analyses import MATRIX_MODES, Definition, cell_users, retention_matrix
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
#: An event type per row of ROWS (for start and return events).
KINDS = [
    "view", "purchase", "purchase", "purchase", "review", "purchase", "review", "view",
    "purchase", "view", "purchase", "review", "view", "purchase", "purchase", "view", "purchase",
]  # fmt: skip
BRACKETS = ((0, 0), (1, 7), (8, 30), (31, 60), (61, None))
DEFINITIONS = [
    Definition(),
    Definition(start_event="purchase", return_event="purchase"),
    Definition(start_event="view", return_event="purchase"),
    Definition(start=date(2024, 1, 10), end=date(2024, 3, 5)),
]
DEFINITION_IDS = ["any", "purchase", "view-purchase", "dates"]


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


def cell_oracle(
    events: pd.DataFrame, d: Definition, mode: str, cohort: pd.Timestamp, column: int
) -> set[str]:
    """The users of one cell, the slow obvious way in pandas (months)."""
    ev = events.assign(t=(events["ts"].dt.year - 2024) * 12 + events["ts"].dt.month - 1)
    starts = ev if d.start_event is None else ev[ev["event"] == d.start_event]
    start = starts.groupby("user_id")["ts"].min()
    if d.start is not None:
        start = start[start.dt.date >= d.start]
    if d.end is not None:
        start = start[start.dt.date <= d.end]
    month = (start.dt.year - 2024) * 12 + start.dt.month - 1
    cohort_t = (cohort.year - 2024) * 12 + cohort.month - 1
    members = set(month.index[month == cohort_t])
    back = ev if d.return_event is None else ev[ev["event"] == d.return_event]
    back = back[back["user_id"].isin(members)]
    back = back[back["ts"] >= back["user_id"].map(start)]
    k = back["t"] - cohort_t
    days = (back["ts"].dt.normalize() - back["user_id"].map(start).dt.normalize()).dt.days
    if mode == "classic":
        return set(back.loc[k == column, "user_id"])
    if mode == "unbounded":
        last = k.groupby(back["user_id"]).max()
        return set(last.index[last >= column])
    lo, hi = BRACKETS[column]
    return set(back.loc[(days >= lo) & (days <= (hi if hi is not None else 10**9)), "user_id"])


@pytest.fixture
def typed(events) -> pd.DataFrame:
    return events.assign(event=KINDS)


@pytest.mark.parametrize("definition", DEFINITIONS, ids=DEFINITION_IDS)
@pytest.mark.parametrize("mode", MATRIX_MODES)
def test_a_cohort_cell_holds_the_users_the_matrix_counts(con, typed, mode, definition):
    matrix = retention_matrix(
        con, typed, period="month", mode=mode, definition=definition, brackets=BRACKETS
    )
    counts = matrix.table(measure="count")
    assert not counts.empty
    checked = 0
    for cohort in counts.index:
        for column, count in counts.loc[cohort].items():
            if np.isnan(count):
                continue
            selection = Selection(
                cohort=cohort, column=int(column), mode=mode, definition=definition,
                brackets=BRACKETS,
            )  # fmt: skip
            got = drill_users(con, typed, selection, period="month")
            expected = cell_oracle(typed, definition, mode, cohort, int(column))
            assert sorted(got["user_id"]) == sorted(expected), (cohort, column)
            assert len(got) == int(count), (cohort, column)
            checked += 1
    assert checked >= len(counts)


@pytest.mark.parametrize("mode", MATRIX_MODES)
def test_cells_of_one_group_on_a_larger_log(con, mode):
    """On the planted generator's log, by groups: every cell's users, in every mode, are as
    many as the matrix of that group counts."""
    from retention.synth import make_planted

    events = make_planted(n_users=150, n_periods=10, seed=2).events
    rng = np.random.default_rng(1)
    events = events.assign(event=rng.choice(["purchase", "view"], size=len(events)))
    users = sorted(events["user_id"].astype(str).unique())
    groups = pd.DataFrame(
        {"user_id": users, "group": [("a", "b", "c")[i % 3] for i in range(len(users))]}
    )
    d = Definition(start_event="purchase", return_event="purchase")
    matrix = retention_matrix(
        con, events, period="week", mode=mode, definition=d, brackets=BRACKETS, groups=groups
    )
    for group in ("b", None):
        counts = matrix.table(group, "count").stack().dropna()
        assert len(counts) > 10
        ids = None if group is None else groups.loc[groups["group"] == group, "user_id"]
        for (cohort, column), count in counts.items():
            got = cell_users(
                con, events, cohort, int(column), period="week", mode=mode, definition=d,
                brackets=BRACKETS, groups=groups, group=group,
            )  # fmt: skip
            assert len(got) == int(count), (group, cohort, column)
            if ids is not None:
                assert set(got) <= set(ids)
        # Through the drill-down (the group's users) for a few cells: the same users.
        for (cohort, column), count in list(counts.items())[:3]:
            selection = Selection(
                cohort=cohort, column=int(column), mode=mode, definition=d, brackets=BRACKETS
            )
            listed = drill_users(con, events, selection, period="week", user_ids=ids)
            assert len(listed) == int(count)


def test_known_cells_by_hand(con, events):
    jan = pd.Timestamp("2024-01-01")
    # January cohort: u1, u2, u4, u6. Two months later (March): u6 only (classic);
    # March or later: u1 (April), u2 (June), u6 (March).
    classic = drill_users(con, events, Selection(cohort=jan, column=2), period="month")
    assert list(classic["user_id"]) == ["u6"]
    unbounded = drill_users(con, events, Selection(cohort=jan, column=2, mode="unbounded"))
    assert sorted(unbounded["user_id"]) == ["u1", "u2", "u6"]
    # Days 31-60 after the start: u1 (Jan 3 -> Feb 10 is day 38) and u6 (Jan 9 -> Mar 9 is
    # day 60); not u2 (Jan 20 -> Jun 15 is day 147) nor u4 (no return).
    month = drill_users(
        con, events, Selection(cohort=jan, column=3, mode="brackets", brackets=BRACKETS),
        period="month",
    )  # fmt: skip
    assert sorted(month["user_id"]) == ["u1", "u6"]


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
    with pytest.raises(InputError, match="'column'"):
        Selection(cohort=pd.Timestamp("2024-01-01"))
    with pytest.raises(InputError, match="'mode'"):
        Selection(mode="weird")
    with pytest.raises(InputError, match="ranges"):
        Selection(cohort=pd.Timestamp("2024-01-01"), column=0, mode="brackets")
    with pytest.raises(InputError, match="segmentation"):
        drill_users(con, events, Selection(segment=0))
    with pytest.raises(InputError, match="no month starting on 2023-05-01"):
        drill_users(
            con, events, Selection(cohort=pd.Timestamp("2023-05-01"), column=0), period="month"
        )
    with pytest.raises(InputError, match="no column 6"):  # June's cohort has one month
        drill_users(
            con, events, Selection(cohort=pd.Timestamp("2024-06-01"), column=6), period="month"
        )


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


@pytest.mark.parametrize("mode", MATRIX_MODES)
def test_the_heatmap_gets_one_click_target_per_cell(con, typed, mode):
    from retention.charts.drill import clickable_cells
    from retention.charts.retention import matrix_heatmap

    matrix = retention_matrix(con, typed, period="month", mode=mode, brackets=BRACKETS)
    fig = clickable_cells(matrix_heatmap(matrix, None, "count"), matrix)
    cells = next(t for t in fig.data if t.name == "cells")
    known = matrix.table(measure="count").stack().dropna()  # (cohort, column) -> users
    shares = matrix.table().stack().dropna()
    status = matrix.status().stack()
    assert len(cells.customdata) == len(known)
    for cohort, column, users, _followed, share, note, words in cells.customdata:
        key = (pd.Timestamp(cohort), column)
        assert users == known[key]
        assert share == pytest.approx(shares[key])
        assert bool(note) == (status[key] == "incomplete")
        assert words.startswith("on " if mode == "brackets" else "in ")
    # The targets sit on the heatmap's own cells (its categories).
    heat = fig.data[0]
    assert set(cells.x) <= set(heat.x) and set(cells.y) <= set(heat.y)
    assert fig.layout.clickmode == "event+select"
