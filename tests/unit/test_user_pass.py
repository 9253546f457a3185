"""The run's shared per-user pass (issue 19, :mod:`retention.user_pass`): every step that reads
it must give exactly what it gives when it reads the events itself (the oracle: the same
functions with sharing off), on a planted dataset stored as a workspace table."""

from __future__ import annotations

import contextlib
import dataclasses

import duckdb
import numpy as np
import pandas as pd
import pytest

from retention import user_pass
from retention.cohorts import (
    churn_durations,
    retention_by_segment,
    retention_curves,
    retention_summary,
    user_groups,
)
from retention.periods import period_grid, user_stages
from retention.pipeline import PipelineConfig, run_pipeline
from retention.segments import aggregate_users
from retention.synth import make_planted

REF = '"ds_planted_events"'


@pytest.fixture(scope="module")
def planted():
    planted = make_planted(n_users=600, n_periods=30, seed=11)
    events = planted.events.copy()
    # Users without an amount, a blank text, and a row without a time (left out everywhere).
    events.loc[events["user_id"] == "U00003", "amount"] = np.nan
    events.loc[events.index[:5], "text"] = "  "
    extra = events.iloc[[0]].assign(ts=pd.NaT, user_id="U99999")
    return dataclasses.replace(planted, events=pd.concat([events, extra], ignore_index=True))


@pytest.fixture
def con(planted):
    con = duckdb.connect()
    con.register("incoming", planted.events)
    con.execute(f"CREATE TABLE {REF} AS SELECT * FROM incoming")  # noqa: S608
    con.unregister("incoming")
    yield con
    user_pass.share_user_facts(False)
    con.close()


def both(con, compute):
    """``compute()`` with sharing off (reading the events) and on (reading the kept facts)."""
    user_pass.share_user_facts(False)
    alone = compute()
    user_pass.share_user_facts(True)
    assert user_pass.kept(con, REF) is not None  # the pass itself
    shared = compute()
    user_pass.share_user_facts(False)
    return alone, shared


def test_segment_features_are_the_same(con):
    alone, shared = both(con, lambda: aggregate_users(con, REF))
    pd.testing.assert_frame_equal(alone.users, shared.users)
    assert shared.items["user"].is_monotonic_increasing

    # A user's item rows come in no particular order (UserData): compare them sorted.
    def tidy(items):
        return items.sort_values(["user", "text"]).reset_index(drop=True)

    pd.testing.assert_frame_equal(tidy(alone.items), tidy(shared.items))
    np.testing.assert_array_equal(alone.texts, shared.texts)
    assert alone.has_amount == shared.has_amount
    assert "U99999" not in set(shared.users["user_id"])  # no time: not a user


@pytest.mark.parametrize(("period", "churn_after"), [("day", 3), ("week", 4), ("month", 2)])
def test_grid_stages_and_segment_retention_are_the_same(con, planted, period, churn_after):
    for compute in (
        lambda: period_grid(con, REF, period),
        lambda: user_stages(con, REF, period=period, churn_after=churn_after),
        lambda: retention_by_segment(con, REF, planted.truth, period=period),
        lambda: retention_by_segment(con, REF, planted.truth, period=period, after=(1, 2, 8)),
    ):
        alone, shared = both(con, compute)
        if isinstance(alone, pd.DataFrame):
            pd.testing.assert_frame_equal(alone, shared)
        elif isinstance(alone, tuple):
            pd.testing.assert_frame_equal(alone[0], shared[0])
            assert alone[1] == shared[1]
        else:
            assert alone == shared


def test_retention_curves_and_summary_are_the_same(con, planted):
    names = {0: "Zero", 1: "One"}
    some = planted.truth.iloc[::2]  # half the users segmented: the rest "Not segmented"
    for by in (None, planted.truth, some):
        alone, shared = both(con, lambda by=by: user_groups(con, REF, by, names=names))
        pd.testing.assert_frame_equal(alone, shared)

    def curves():
        durations = churn_durations(con, REF, period="week", churn_after=4)
        summary = retention_summary(
            con, REF, period="week", assignments=some, names=names, durations=durations
        )
        surv = retention_curves(con, REF, period="week", by=some, names=names, durations=durations)
        return summary, surv

    (s1, c1), (s2, c2) = both(con, curves)
    assert s1 == s2
    pd.testing.assert_frame_equal(c1.curves, c2.curves)
    pd.testing.assert_series_equal(c1.sizes, c2.sizes)
    assert c1.logrank == c2.logrank


def test_the_facts_are_kept_once_and_forgotten_by_the_next_run(con):
    user_pass.share_user_facts(True)
    first = user_pass.kept(con, REF)
    assert user_pass.kept(con, REF) is first  # computed once, then reused
    assert len(first.users) == first.users["user_id"].nunique()
    user_pass.share_user_facts(True)  # a new run
    assert user_pass.kept(con, REF) is not first
    user_pass.share_user_facts(False)
    assert user_pass.kept(con, REF) is None  # sharing off: every step reads the events
    planted_frame = pd.DataFrame({"user_id": ["a"], "ts": [pd.Timestamp("2024-01-01")]})
    user_pass.share_user_facts(True)
    assert user_pass.kept(con, planted_frame) is None  # a DataFrame is never kept


def test_the_command_line_gives_the_same_results_with_and_without_sharing(
    tmp_path, planted, monkeypatch
):
    """The whole run (segments, retention, stages, policy, the users CSV) with the shared pass,
    against the same run whose steps each read the events (sharing kept off in the pipeline)."""
    import retention.pipeline as pipeline

    data = tmp_path / "events.parquet"
    planted.events.drop(columns=["country"]).to_parquet(data)

    def run(name: str) -> tuple[dict, bytes]:
        out = tmp_path / name
        config = PipelineConfig(
            input=data, workspace=tmp_path / f"ws_{name}", seed=3, segments=3, text_weight=0.0,
            episodes=20,
        )  # fmt: skip
        summary = run_pipeline(config, out)
        # Nothing the run kept outlives it: what runs next in this process reads its events.
        assert not user_pass.sharing()
        assert not user_pass._kept and not user_pass._kept_periods
        return summary, (out / "user_segments.csv").read_bytes()

    shared, shared_csv = run("shared")
    monkeypatch.setattr(pipeline, "shared_for_this_run", contextlib.nullcontext)
    alone, alone_csv = run("alone")
    for key in ("segments", "retention", "policy", "period"):
        assert shared[key] == alone[key], key
    assert shared_csv == alone_csv


# -- the shared per-(user, period) pass --------------------------------------------------------


def test_a_gap_at_the_end_of_the_data_and_one_event_users(con):
    """Edge cases of the churn durations from the per-period pass, against the events: users
    with one event, with a gap longer than the churn window and a return, and active in the
    data's last period (the oracle: the same function reading the events)."""
    t0 = pd.Timestamp("2024-01-01 10:00")
    rows = [
        ("solo", t0, 5.0),  # one event: churns once the window has passed
        ("back", t0, None), ("back", t0 + pd.Timedelta(days=70), 2.0),  # long gap, came back
        ("late", t0 + pd.Timedelta(days=97), 1.0),  # first seen in the last period
        ("busy", t0, 1.0), ("busy", t0 + pd.Timedelta(days=1), 1.0),  # two events, one week
        ("busy", t0 + pd.Timedelta(days=98), 3.0),  # the data's last event
    ]  # fmt: skip
    frame = pd.DataFrame(rows, columns=["user_id", "ts", "amount"])
    con.register("edge", frame)
    con.execute('CREATE TABLE "edge_events" AS SELECT * FROM edge')
    for period, churn_after in (("day", 5), ("week", 2), ("week", 20), ("month", 2)):
        alone, shared = both(
            con,
            lambda p=period, c=churn_after: churn_durations(
                con, '"edge_events"', period=p, churn_after=c
            ),
        )
        pd.testing.assert_frame_equal(alone, shared)


@pytest.mark.parametrize(("period", "churn_after"), [("day", 3), ("week", 4), ("month", 2)])
def test_per_period_steps_are_the_same(con, planted, period, churn_after):
    """Churn durations, the MDP's transition counts, the CRM columns and the retention
    analyses by segment from the shared per-(user, period) pass equal what each gives from
    the events."""
    from retention.analyses import Definition, retention_matrix, segment_matrix
    from retention.drill import user_activity
    from retention.mdp import summarize_events

    alone, shared = both(
        con, lambda: churn_durations(con, REF, period=period, churn_after=churn_after)
    )
    pd.testing.assert_frame_equal(alone, shared)

    some = planted.truth.iloc[::3]  # a third of the users segmented: the rest left out
    # planted.truth lists the users in the facts' own order (no lookup); shuffled, every user
    # is looked up
    shuffled = planted.truth.sample(frac=1, random_state=0)
    for who in (planted.truth, shuffled, some):
        alone, shared = both(
            con,
            lambda who=who: summarize_events(con, REF, who, period=period, churn_after=churn_after),
        )
        assert alone.segments == shared.segments
        pd.testing.assert_frame_equal(alone.transitions, shared.transitions)
        np.testing.assert_allclose(alone.revenue, shared.revenue, rtol=1e-12)
        np.testing.assert_array_equal(alone.current, shared.current)
        np.testing.assert_array_equal(alone.sizes, shared.sizes)

    alone, shared = both(con, lambda: user_activity(con, REF, period=period))
    pd.testing.assert_frame_equal(alone, shared)
    assert shared["spend"].isna().any()  # the user without amounts: no spend, not 0

    def matrices():
        return [
            segment_matrix(con, REF, some, period=period),
            retention_matrix(con, REF, period=period, mode="unbounded"),
            retention_matrix(con, REF, period=period, mode="brackets"),  # reads the events
            retention_matrix(
                con, REF, period=period, definition=Definition(return_event="purchase")
            ),
        ]

    for a, b in zip(*both(con, matrices), strict=True):
        assert a.columns == b.columns and a.groups == b.groups
        pd.testing.assert_frame_equal(a.cells, b.cells, check_exact=False, rtol=1e-12)


def test_the_period_pass_is_kept_per_grid_and_forgotten_with_the_user_facts(con):
    grid = period_grid(con, REF, "week")
    user_pass.share_user_facts(True)
    first = user_pass.kept_periods(con, REF, grid)
    assert user_pass.kept_periods(con, REF, grid) is first
    assert (np.diff(first.uid) >= 0).all()
    assert len(first.starts()) == len(user_pass.kept(con, REF).users)
    other = user_pass.kept_periods(con, REF, period_grid(con, REF, "month"))
    assert other is not first and len(other) < len(first)
    user_pass.share_user_facts(True)  # a new run
    assert user_pass.kept_periods(con, REF, grid) is not other
    user_pass.share_user_facts(False)
    assert user_pass.kept_periods(con, REF, grid) is None


@pytest.mark.parametrize("period", ["day", "week", "month"])
def test_the_period_pass_matches_a_pandas_groupby_of_the_events(con, planted, period):
    """Store50 (issue 19): the per-(user, period) rows, grouped by integer user codes, against
    pandas grouping the raw events by text id and period (rows without a time left out; a user
    without amounts has revenue 0)."""
    user_pass.share_user_facts(True)
    grid = period_grid(con, REF, period)
    got = user_pass.kept_periods(con, REF, grid)
    events = planted.events.dropna(subset=["user_id", "ts"]).copy()
    ts = pd.to_datetime(events["ts"])
    if period == "day":
        t = (ts.dt.normalize() - grid.origin).dt.days
    elif period == "week":
        t = (ts.dt.normalize() - ts.dt.weekday * pd.Timedelta(days=1) - grid.origin).dt.days // 7
    else:
        t = (ts.dt.year - grid.origin.year) * 12 + ts.dt.month - grid.origin.month
    events = events.assign(t=t.astype(int), us=ts.astype("datetime64[us]").astype(np.int64))
    want = (
        events.groupby(["user_id", "t"])
        .agg(first_us=("us", "min"), revenue=("amount", "sum"), n_events=("us", "size"))
        .reset_index()
        .sort_values(["user_id", "t"])
    )
    users = user_pass.kept(con, REF).users["user_id"].to_numpy()
    assert list(users) == sorted(events["user_id"].astype(str).unique())
    assert users[got.uid].tolist() == want["user_id"].tolist()
    assert got.t.tolist() == want["t"].tolist()
    assert got.first_us.tolist() == want["first_us"].tolist()
    assert got.n_events.tolist() == want["n_events"].tolist()
    np.testing.assert_allclose(got.revenue, want["revenue"].to_numpy(), rtol=1e-12)
    assert got.last_t == grid.last_t


# -- distinct active days (issue 19: a bitmap of days instead of count(DISTINCT)) --------------


def _pandas_days(frame: pd.DataFrame) -> pd.Series:
    """The oracle: each user's distinct calendar days, counted by pandas."""
    ok = frame.dropna(subset=["user_id", "ts"])
    return ok.assign(day=ok["ts"].dt.normalize()).groupby("user_id")["day"].nunique()


@pytest.mark.parametrize("span_days", [3, 1_999, 2_000, 2_001, 40_000])
def test_distinct_active_days_match_pandas(span_days):
    """Days either side of midnight, the same day twice, days before 1970, and spans below, at
    and above the bitmap's limit (above it the count falls back to count(DISTINCT)): both the
    shared pass and the segments' own aggregation count what pandas counts."""
    rng = np.random.default_rng(span_days)
    start = pd.Timestamp("1969-12-30 23:59:59")  # crosses 1970: negative day numbers too
    offsets = rng.integers(0, span_days * 86_400, size=3_000)
    frame = pd.DataFrame(
        {
            "user_id": rng.choice([f"u{i}" for i in range(40)], size=3_000),
            "ts": start + pd.to_timedelta(offsets, unit="s"),
            "amount": rng.random(3_000),
            "text": "item",
        }
    )
    edges = pd.DataFrame(
        {
            "user_id": ["edge"] * 4 + [None, "nots"],
            "ts": pd.to_datetime(
                [
                    "1969-12-31 23:59:59.999999",
                    "1970-01-01 00:00:00",
                    "1970-01-01 12:00",
                    "1969-12-30 23:59:59",
                    "1969-12-31 00:00:01",
                    None,
                ],  # fmt: skip
                format="ISO8601",
            ),
            "amount": 1.0,
            "text": "item",
        }
    )
    frame = pd.concat([frame, edges], ignore_index=True)
    expected = _pandas_days(frame).sort_index()
    with duckdb.connect() as con:
        con.register("incoming", frame)
        con.execute('CREATE TABLE "days_events" AS SELECT * FROM incoming')
        days, params = user_pass.days_count_sql(con, '"days_events"')
        span = (frame["ts"].max().normalize() - frame["ts"].min().normalize()).days + 1
        assert ("bitstring_agg" in days) == (span <= user_pass.BITMAP_MAX_DAYS)
        assert ("bitstring_agg" in days) == (span_days < 2_000) or span_days in (2_000, 2_001)
        try:
            user_pass.share_user_facts(True)
            shared = user_pass.kept(con, '"days_events"').users.set_index("user_id")["days"]
        finally:
            user_pass.share_user_facts(False)
        alone = aggregate_users(con, '"days_events"').users.set_index("user_id")["frequency"]
    assert expected["edge"] == 3  # 30 Dec 1969, 31 Dec (a microsecond before midnight), 1 Jan
    # 1970 (at midnight and at noon)
    pd.testing.assert_series_equal(shared.astype(np.int64), expected, check_names=False)
    pd.testing.assert_series_equal(alone.astype(np.int64), expected, check_names=False)


def test_distinct_active_days_without_events():
    """No usable event: the count's own query still runs (no range to build a bitmap on)."""
    with duckdb.connect() as con:
        con.execute('CREATE TABLE "empty_events" (user_id VARCHAR, ts TIMESTAMP, amount DOUBLE)')
        days, params = user_pass.days_count_sql(con, '"empty_events"')
        assert params == {} and "DISTINCT" in days
        sql = user_pass.user_facts_sql('SELECT * FROM "empty_events"', days)
        assert con.execute(sql, params).df().empty


def test_distinct_active_days_on_another_engine_use_count_distinct():
    """The Spark engine's routing cursor is not DuckDB's connection: Spark SQL has no
    bitstring_agg, so the plain count is used and no range query is sent."""

    class Elsewhere:
        def execute(self, *args, **kwargs):
            raise AssertionError("no query should be sent")

    days, params = user_pass.days_count_sql(Elsewhere(), '"events"', "e.ts")
    assert (days, params) == ("count(DISTINCT CAST(e.ts AS DATE))", {})


@pytest.mark.parametrize(
    "wanted",
    [
        ["a", "b", "c", "d"],  # the same users in the same order: no lookup
        ["c", "a", "d", "b"],  # shuffled
        ["b", "d"],  # some of them
        ["a", "b", "c", "x"],  # as many, one of them unknown
        ["x", "y"],  # none of them
    ],
)
@pytest.mark.parametrize("dtype", [object, "string"])
def test_rows_of_finds_each_user_as_a_dictionary_would(wanted, dtype):
    """The policy's runs find each segmented user's row in the per-user facts; the shortcut
    for the same users in the same order gives what a plain lookup gives."""
    ids = pd.Series(["a", "b", "c", "d"], dtype=dtype)
    asked = pd.Series(wanted, dtype=dtype)
    where = {user: row for row, user in enumerate(["a", "b", "c", "d"])}
    expected = [where.get(user, -1) for user in wanted]
    assert user_pass._rows_of(ids, asked).tolist() == expected
