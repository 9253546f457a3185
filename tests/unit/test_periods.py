"""Periods, recency and stages (retention.periods) against hand-computed panels and a pandas
reference implementation."""

from __future__ import annotations

import duckdb
import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from retention.cohorts import churn_durations
from retention.errors import InputError
from retention.periods import (
    STAGES,
    build_panel,
    check_churn_window,
    choose_period,
    churn_after_in,
    convert_churn_after,
    inactive_runs,
    period_grid,
    period_of,
)
from retention.synth import make_planted

MONDAY = pd.Timestamp("2024-01-01")  # a Monday


@pytest.fixture
def con() -> duckdb.DuckDBPyConnection:
    c = duckdb.connect()
    yield c
    c.close()


def events(rows: list[tuple[str, str, float | None]]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "user_id": [r[0] for r in rows],
            "ts": pd.to_datetime([r[1] for r in rows]),
            "amount": [r[2] for r in rows],
        }
    )


# -- hand-computed ----------------------------------------------------------------------------

# Weekly log, churn_after W = 3, data weeks 0..6 (T = 6):
#   a: active weeks 0, 1, 5  -> gap of 3 inactive weeks: lapsing, at_risk, churned, then win-back
#   b: active weeks 0, 3     -> gap of 2: lapsing, at_risk, never churned; then inactive to T
#   c: active week 6 only    -> joins in the last (censored) period: one row
TINY = events(
    [
        ("a", "2024-01-01 09:00", 10.0),
        ("a", "2024-01-07 23:59", 5.0),  # Sunday: still week 0
        ("a", "2024-01-08 00:00", 1.0),  # Monday: week 1
        ("a", "2024-02-05 12:00", None),  # week 5, no amount
        ("b", "2024-01-03 10:00", 2.0),
        ("b", "2024-01-24 10:00", 3.0),  # week 3
        ("c", "2024-02-12 08:00", 7.0),  # week 6
    ]
)


def test_panel_by_hand(con: duckdb.DuckDBPyConnection) -> None:
    panel = build_panel(con, TINY, period="week", churn_after=3)
    expected = pd.DataFrame(
        [
            # user, t, k, active, recency, stage, revenue, n_events
            ("a", 0, 0, True, 0, "active", 15.0, 2),
            ("a", 1, 1, True, 0, "active", 1.0, 1),
            ("a", 2, 2, False, 1, "lapsing", 0.0, 0),
            ("a", 3, 3, False, 2, "at_risk", 0.0, 0),
            ("a", 4, 4, False, 3, "churned", 0.0, 0),
            ("a", 5, 5, True, 0, "active", 0.0, 1),  # win-back; NULL amount -> revenue 0
            ("a", 6, 6, False, 1, "lapsing", 0.0, 0),
            ("b", 0, 0, True, 0, "active", 2.0, 1),
            ("b", 1, 1, False, 1, "lapsing", 0.0, 0),
            ("b", 2, 2, False, 2, "at_risk", 0.0, 0),
            ("b", 3, 3, True, 0, "active", 3.0, 1),
            ("b", 4, 4, False, 1, "lapsing", 0.0, 0),
            ("b", 5, 5, False, 2, "at_risk", 0.0, 0),
            ("b", 6, 6, False, 3, "churned", 0.0, 0),
            ("c", 6, 0, True, 0, "active", 7.0, 1),
        ],
        columns=["user_id", "t", "k", "active", "recency", "stage", "revenue", "n_events"],
    )
    got = panel.astype({"stage": str, "t": int, "k": int, "recency": int, "n_events": int})
    pd.testing.assert_frame_equal(got, expected, check_dtype=False)
    assert list(panel["stage"].cat.categories) == list(STAGES)


def test_churn_window_edges(con: duckdb.DuckDBPyConnection) -> None:
    # Daily, W = 2: a gap of exactly W - 1 = 1 inactive day is lapsing only; a gap of W = 2
    # inactive days reaches churned on the second day.
    ev = events(
        [
            ("u", "2024-03-01", 1.0),
            ("u", "2024-03-03", 1.0),  # 1 inactive day before
            ("u", "2024-03-06", 1.0),  # 2 inactive days before
        ]
    )
    panel = build_panel(con, ev, period="day", churn_after=2)
    assert panel["stage"].astype(str).tolist() == [
        "active",
        "lapsing",
        "active",
        "lapsing",
        "churned",
        "active",
    ]
    assert panel["recency"].tolist() == [0, 1, 0, 1, 2, 0]
    # No at_risk stage exists with W = 2; with W = 3 the same gap is at_risk, not churned.
    panel3 = build_panel(con, ev, period="day", churn_after=3)
    assert panel3["stage"].astype(str).tolist()[4] == "at_risk"


def test_month_and_day_indices(con: duckdb.DuckDBPyConnection) -> None:
    ev = events(
        [
            ("x", "2023-12-31 23:00", 1.0),
            ("x", "2024-01-01 01:00", 1.0),
            ("y", "2024-03-15 00:00", 1.0),
        ]
    )
    grid = period_grid(con, ev, "month")
    assert grid.origin == pd.Timestamp("2023-12-01") and grid.last_t == 3
    panel = build_panel(con, ev, period="month", churn_after=2)
    assert panel.loc[panel.user_id == "x", "t"].tolist() == [0, 1, 2, 3]
    assert panel.loc[panel.user_id == "x", "active"].tolist() == [True, True, False, False]
    assert panel.loc[panel.user_id == "y", ["t", "k"]].values.tolist() == [[3, 0]]
    day = period_grid(con, ev, "day")
    assert day.origin == pd.Timestamp("2023-12-31") and day.last_t == 75
    week = period_grid(con, ev, "week")  # 2023-12-31 is a Sunday: its week starts 12-25
    assert week.origin == pd.Timestamp("2023-12-25") and week.last_t == 11
    assert week.label(1) == "week of 2024-01-01" and grid.label(2) == "2024-02"


def test_period_of_campaigns(con: duckdb.DuckDBPyConnection) -> None:
    grid = period_grid(con, TINY, "week")
    campaigns = pd.DataFrame(
        {
            "user_id": ["a", "b", "a"],
            "ts": pd.to_datetime(["2024-01-08 01:00", "2023-12-31 12:00", "2024-02-11 23:00"]),
            "action": ["discount", "engagement", "recommendation"],
        }
    )
    out = period_of(con, campaigns, grid)
    assert out["t"].tolist() == [1, -1, 5]
    assert out["action"].tolist() == campaigns["action"].tolist()
    with pytest.raises(InputError, match="'when'"):
        period_of(con, campaigns, grid, ts_column="when")


def test_out_table_and_quoted_names(con: duckdb.DuckDBPyConnection) -> None:
    con.register("tmp", TINY)
    con.execute('CREATE TABLE "my ""events"" table" AS SELECT * FROM tmp')
    name = build_panel(
        con, '"my ""events"" table"', period="week", churn_after=3, out_table="panel out"
    )
    assert name == '"panel out"'
    stored = con.execute(f"SELECT * FROM {name} ORDER BY user_id, t").df()  # noqa: S608
    in_memory = build_panel(con, TINY, period="week", churn_after=3)
    pd.testing.assert_frame_equal(
        stored.assign(stage=stored["stage"].astype(str)),
        in_memory.assign(stage=in_memory["stage"].astype(str)),
        check_dtype=False,
    )
    # A plain name is quoted as one identifier, not parsed as SQL.
    with pytest.raises(InputError, match="no table"):
        build_panel(con, "tmp; DROP TABLE tmp", period="week")


def test_bad_input(con: duckdb.DuckDBPyConnection) -> None:
    with pytest.raises(InputError, match="'period'.*Got 'year'"):
        build_panel(con, TINY, period="year")
    with pytest.raises(InputError, match="'churn_after'.*Got 1"):
        build_panel(con, TINY, period="week", churn_after=1)
    with pytest.raises(InputError, match="user_id"):
        build_panel(con, TINY.rename(columns={"user_id": "customer"}), period="week")
    with pytest.raises(InputError, match="nothing to analyse"):
        period_grid(con, TINY.iloc[:0], "week")


# -- choose_period ----------------------------------------------------------------------------


def test_choose_period_on_planted_data(con: duckdb.DuckDBPyConnection) -> None:
    weekly = make_planted(n_users=300, n_periods=20, period="week", seed=1).events
    daily = make_planted(n_users=300, n_periods=20, period="day", seed=1).events
    assert choose_period(con, weekly) == "week"
    assert choose_period(con, daily) == "day"


def test_choose_period_month_and_no_repeats(con: duckdb.DuckDBPyConnection) -> None:
    rng = np.random.default_rng(0)
    rows = []
    for u in range(40):  # buys every 5 to 8 weeks
        day = 0
        for _ in range(6):
            rows.append((f"u{u}", MONDAY + pd.Timedelta(days=day), 1.0))
            day += int(rng.integers(35, 57))
    assert choose_period(con, events(rows)) == "month"
    once = events([(f"u{u}", f"2024-01-{u + 1:02d}", 1.0) for u in range(10)])
    assert choose_period(con, once) == "week"


# -- property test against a pandas reference -------------------------------------------------


def reference_panel(ev: pd.DataFrame, period: str, churn_after: int) -> pd.DataFrame:
    """Straightforward pandas/Python panel: loop over users and periods."""
    ts = ev["ts"]
    if period == "day":
        key = ts.dt.normalize()
        origin = key.min()
        t = (key - origin).dt.days
    elif period == "week":
        key = ts.dt.normalize() - pd.to_timedelta(ts.dt.weekday, unit="D")
        origin = key.min()
        t = (key - origin).dt.days // 7
    else:
        key = ts.dt.year * 12 + ts.dt.month - 1
        t = key - key.min()
    ev = ev.assign(t=t.astype(int))
    last = int(ev["t"].max())
    rows = []
    for user, g in ev.groupby("user_id"):
        by_t = g.groupby("t")
        revenue = by_t["amount"].sum(min_count=1).fillna(0.0).to_dict()
        counts = by_t.size().to_dict()
        first = min(counts)
        r = 0
        for tt in range(first, last + 1):
            active = tt in counts
            r = 0 if active else r + 1
            stage = STAGES[0 if r == 0 else 1 if r == 1 else 2 if r < churn_after else 3]
            rows.append(
                (user, tt, tt - first, active, r, stage, revenue.get(tt, 0.0), counts.get(tt, 0))
            )
    return pd.DataFrame(
        rows, columns=["user_id", "t", "k", "active", "recency", "stage", "revenue", "n_events"]
    )


event_rows = st.lists(
    st.tuples(
        st.sampled_from(["u1", "u2", "u3", "u4", "u5"]),
        st.integers(0, 120),  # day offset
        st.integers(0, 23),  # hour
        st.one_of(st.none(), st.floats(0, 100, allow_nan=False).map(lambda x: round(x, 2))),
    ),
    min_size=1,
    max_size=25,
)


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    rows=event_rows,
    period=st.sampled_from(["day", "week", "month"]),
    churn_after=st.integers(2, 5),
)
def test_panel_equals_pandas_reference(
    rows: list[tuple[str, int, int, float | None]], period: str, churn_after: int
) -> None:
    start = pd.Timestamp("2024-01-03")  # a Wednesday
    ev = pd.DataFrame(
        {
            "user_id": [r[0] for r in rows],
            "ts": [start + pd.Timedelta(days=r[1], hours=r[2]) for r in rows],
            "amount": pd.array([r[3] for r in rows], dtype="Float64").astype(float),
        }
    )
    with duckdb.connect() as c:
        got = build_panel(c, ev, period=period, churn_after=churn_after)
    want = reference_panel(ev, period, churn_after)
    got = got.astype({"stage": str, "t": int, "k": int, "recency": int, "n_events": int})
    pd.testing.assert_frame_equal(got, want, check_dtype=False, atol=1e-9)


def test_period_choice_on_a_hash_sample_of_users_agrees(monkeypatch):
    """Above GAP_SAMPLE_USERS users the typical gaps come from a fixed hash-sample of users:
    the same period is chosen and the gaps stay close to the exact ones."""
    import duckdb

    from retention import periods
    from retention.synth import make_planted

    events = make_planted(n_users=3000, n_periods=30, seed=4).events
    con = duckdb.connect()
    con.register("ev", events)
    exact = periods.typical_gaps(con, "ev")
    monkeypatch.setattr(periods, "GAP_SAMPLE_USERS", 500)
    sampled = periods.typical_gaps(con, "ev")
    assert periods.choose_period(con, "ev") == "week"
    for period, gap in exact.items():
        assert gap is not None and sampled[period] is not None
        assert abs(sampled[period] - gap) <= 0.25 * gap + 0.5, (period, gap, sampled[period])


# -- which churn windows the data can show ----------------------------------------------------

# Monthly, months 0..6 (2024-01 to 2024-07, T = 6), the data ends on 2024-07-10 (mid-month):
#   a: months 0, 1, 5  -> inactive runs 0, 3 (months 2-4), 1 (month 6): longest 3
#   b: months 0, 6     -> inactive run 5 (months 1-5): longest 5
#   c: month 6 only    -> 0
#   d: every month     -> 0
MONTHLY = events(
    [("a", f"2024-{m:02d}-15", 1.0) for m in (1, 2, 6)]
    + [("b", "2024-01-20", 1.0), ("b", "2024-07-01", 1.0)]
    + [("c", "2024-07-10", 1.0)]
    + [("d", f"2024-{m:02d}-05", 1.0) for m in range(1, 8)]
)


def test_inactive_runs_by_hand(con: duckdb.DuckDBPyConnection) -> None:
    runs = inactive_runs(con, MONTHLY, "month")
    assert runs.grid.n_periods == 7
    assert runs.longest.to_dict() == {0: 2, 3: 1, 5: 1}
    assert runs.users == 4 and runs.longest_run == 5
    assert [runs.churners(w) for w in (2, 3, 4, 5, 6)] == [2, 2, 1, 1, 0]
    # The oracle of "seen churning": churn_durations' own churn events.
    for w in (2, 3, 4, 5, 6):
        churned = churn_durations(con, MONTHLY, period="month", churn_after=w)["churned"].sum()
        assert runs.churners(w) == churned


def test_churn_window_the_data_cannot_show_is_refused_with_a_suggestion(
    con: duckdb.DuckDBPyConnection,
) -> None:
    runs = inactive_runs(con, MONTHLY, "month")
    # As long as the data: nobody can be seen inactive that long.
    span = check_churn_window(runs, 7)
    assert span.problem and "covers 7 months (2024-01 to 2024-07)" in span.problem
    assert "Try a churn window of 3 months" in span.problem and span.suggested == 3
    # Shorter than the data, but no user is ever inactive 6 months in a row.
    none = check_churn_window(runs, 6)
    assert none.problem and "longest gap is 5 months" in none.problem
    assert "every curve would stay at 100%" in none.problem
    # 5 months: one user (b) can be seen churning; a caution, not a refusal.
    thin = check_churn_window(runs, 5)
    assert thin.problem is None
    assert thin.caution and "active in the first 2 months and then gone for 5" in thin.caution
    assert "(1 of 4 users, 25.0%)" in thin.caution
    # Within half the data: fine.
    fine = check_churn_window(runs, 3)
    assert fine.problem is None and fine.caution is None
    with pytest.raises(InputError, match="churn_after"):
        check_churn_window(runs, 1)


def test_a_long_window_that_few_users_can_reach_is_refused(con: duckdb.DuckDBPyConnection) -> None:
    # 40 users buy every month of 7; one buys in months 0 and 6 only (gap 5). A 5-month window
    # (over half the data) is reached by 1 user of 41: 2.4%, under 5%. 12 months on 13 months
    # of Online Retail looked like this (every curve flat).
    log = events(
        [(f"x{i}", f"2024-{m:02d}-05", 1.0) for i in range(40) for m in range(1, 8)]
        + [("y", "2024-01-05", 1.0), ("y", "2024-07-05", 1.0)]
    )
    runs = inactive_runs(con, log, "month")
    refused = check_churn_window(runs, 5)
    assert refused.problem and "(1 of 41 users, 2.4%)" in refused.problem
    assert "active in the first 2 months and then gone for 5 months" in refused.problem
    assert "nearly flat" in refused.problem and refused.suggested == 3
    assert check_churn_window(runs, 3).problem is None  # within half the data: the data's answer


def test_no_gap_at_all_asks_for_a_shorter_period(con: duckdb.DuckDBPyConnection) -> None:
    every_month = events([(u, f"2024-{m:02d}-05", 1.0) for u in "xy" for m in range(1, 8)])
    check = check_churn_window(inactive_runs(con, every_month, "month"), 2)
    assert check.problem and "Choose a shorter period" in check.problem


def test_churn_window_keeps_its_length_of_time_across_periods() -> None:
    assert convert_churn_after(4, "month", "week") == 17
    assert convert_churn_after(17, "week", "month") == 4
    assert convert_churn_after(4, "month", "day") == 122
    assert convert_churn_after(122, "day", "month") == 4
    assert convert_churn_after(3, "week", "month") == 2  # never below 2
    assert convert_churn_after(6, "week", "week") == 6
    assert churn_after_in(28, "month") == 2 and churn_after_in(28, "week") == 4


def test_grid_knows_when_the_data_ends_mid_period(con: duckdb.DuckDBPyConnection) -> None:
    grid = period_grid(con, MONTHLY, "month")
    assert grid.last_ts == pd.Timestamp("2024-07-10")
    assert grid.ends_mid_period
    full = events([("x", "2024-01-03 09:00", 1.0), ("y", "2024-02-29 18:00", 1.0)])
    assert not period_grid(con, full, "month").ends_mid_period  # ends on the last day
    assert period_grid(con, full, "week").ends_mid_period  # a Thursday


def _pandas_typical_gaps(events: pd.DataFrame) -> dict[str, float | None]:
    """The typical gaps counted user by user with pandas and NumPy (the oracle)."""
    ev = events.dropna(subset=["user_id", "ts"])
    d = pd.to_datetime(ev["ts"]).dt.normalize()
    monday = pd.Timestamp("2000-01-03")
    index = {
        "day": (d - monday).dt.days,
        "week": (d - pd.to_timedelta(d.dt.weekday, unit="D") - monday).dt.days // 7,
        "month": (d.dt.year - 2000) * 12 + d.dt.month - 1,
    }
    out: dict[str, float | None] = {}
    for period, t in index.items():
        per_user = []
        for _, ts in pd.Series(t.to_numpy(), index=ev["user_id"].astype(str)).groupby(level=0):
            u = np.unique(ts.to_numpy())
            if len(u) >= 2:
                per_user.append(np.median(np.diff(u)))
        out[period] = float(np.median(per_user)) if per_user else None
    return out


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_typical_gaps_match_a_user_by_user_count(seed):
    """Store50 (issue 19): the gaps counted in NumPy from each user's sorted active days equal
    a user-by-user median with pandas — days before and after the 2000-01-03 origin, several
    events a day, one-event users, rows without a user or time, odd and even gap counts."""
    from retention.periods import typical_gaps

    rng = np.random.default_rng(seed)
    n = 3000
    start = pd.Timestamp("1999-10-01")
    ts = start + pd.to_timedelta(rng.integers(0, 900 * 24, n), unit="h")
    users = rng.choice([f"u{i}" for i in range(300)], n)
    events = pd.DataFrame({"user_id": users, "ts": ts, "amount": 1.0})
    events.loc[rng.random(n) < 0.02, "user_id"] = None
    events.loc[rng.random(n) < 0.02, "ts"] = pd.NaT
    lonely = pd.DataFrame({"user_id": ["solo"], "ts": [start], "amount": [1.0]})
    events = pd.concat([events, lonely], ignore_index=True)
    con = duckdb.connect()
    got = typical_gaps(con, events)
    assert got == _pandas_typical_gaps(events)
    one = events[events["user_id"] == "solo"]  # no user with two periods: no gap at all
    assert typical_gaps(con, one) == {"day": None, "week": None, "month": None}
    # Another engine's cursor (Spark's routing cursor has no Arrow lists): the plain-SQL form.
    other = _NotDuckDB(con)
    assert typical_gaps(other, events) == _pandas_typical_gaps(events)
    assert typical_gaps(other, one) == {"day": None, "week": None, "month": None}


class _NotDuckDB:
    """A cursor that is not DuckDB's own connection (as the Spark engine's), delegating SQL."""

    def __init__(self, con):
        self._con = con

    def __getattr__(self, name):
        return getattr(self._con, name)
