"""Cohort triangle, churn durations, Kaplan–Meier and log-rank (retention.cohorts) against
hand-computed tables, a pandas reference, lifelines and planted data."""

from __future__ import annotations

import duckdb
import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lifelines import KaplanMeierFitter
from lifelines.statistics import multivariate_logrank_test

from retention.cohorts import (
    ALL_USERS,
    MISSING,
    NOT_SEGMENTED,
    OTHER,
    Survival,
    categorical_columns,
    churn_durations,
    cohort_table,
    logrank_sentence,
    retention_by_segment,
    retention_curves,
    retention_summary,
    survival,
    user_groups,
)
from retention.errors import InputError
from retention.periods import build_panel
from retention.synth import make_planted
from retention.words import segment_display_name


@pytest.fixture
def con() -> duckdb.DuckDBPyConnection:
    c = duckdb.connect()
    yield c
    c.close()


def weekly(rows: list[tuple[str, int]], **cols: list[object]) -> pd.DataFrame:
    """Events at (user, week) with week 0 = the week of Monday 2024-01-01."""
    start = pd.Timestamp("2024-01-01 10:00")
    return pd.DataFrame(
        {
            "user_id": [u for u, _ in rows],
            "ts": [start + pd.Timedelta(weeks=w, days=w % 3) for _, w in rows],
            "amount": 1.0,
            **cols,
        }
    )


# Weeks 0..4 (T = 4). Cohort week 0: a (0, 1, 3), b (0), c (0, 2, 4); cohort week 1: d (1, 2);
# cohort week 3: e (3, 3).
TINY = weekly(
    [("a", 0), ("a", 1), ("a", 3), ("b", 0), ("c", 0), ("c", 2), ("c", 4)]
    + [("d", 1), ("d", 2), ("e", 3), ("e", 3)]
)
NAN = np.nan


def test_cohort_table_classic_by_hand(con: duckdb.DuckDBPyConnection) -> None:
    table = cohort_table(con, TINY, period="week", mode="classic")
    index = pd.DatetimeIndex(["2024-01-01", "2024-01-08", "2024-01-22"], name="cohort")
    assert table.sizes.tolist() == [3, 1, 1]
    assert (table.sizes.index == index).all()
    expected = [
        [3, 1, 1, 1, 1],  # k=1: a; k=2: c; k=3: a; k=4: c
        [1, 1, 0, 0, NAN],  # d active weeks 1, 2
        [1, 0, NAN, NAN, NAN],
    ]
    np.testing.assert_array_equal(table.counts.to_numpy(), np.array(expected, dtype=float))
    np.testing.assert_allclose(
        table.rates.to_numpy(), np.array(expected) / np.array([[3], [1], [1]])
    )


def test_cohort_table_unbounded_by_hand(con: duckdb.DuckDBPyConnection) -> None:
    table = cohort_table(con, TINY, period="week", mode="unbounded")
    expected = [
        [3, 2, 2, 2, 1],  # last k: a 3, b 0, c 4
        [1, 1, 0, 0, NAN],
        [1, 0, NAN, NAN, NAN],
    ]
    np.testing.assert_array_equal(table.counts.to_numpy(), np.array(expected, dtype=float))
    assert table.sizes.tolist() == [3, 1, 1]


def test_cohort_table_for_some_users_keeps_the_grid(con: duckdb.DuckDBPyConnection) -> None:
    table = cohort_table(con, TINY, period="week", user_ids=["a", "d"])
    assert table.sizes.tolist() == [1, 1]
    assert table.counts.shape == (2, 5)  # k still runs to the data's end (T = 4)
    assert table.counts.iloc[0].tolist() == [1, 1, 0, 1, 0]
    with pytest.raises(InputError, match="'mode'.*Got 'weekly'"):
        cohort_table(con, TINY, period="week", mode="weekly")


def test_durations_by_hand_and_censoring(con: duckdb.DuckDBPyConnection) -> None:
    # W = 2, T = 4.
    d = churn_durations(con, TINY, period="week", churn_after=2).set_index("user_id")
    # a: 0, 1, 3 -> gap of 1 after week 1 (lapsing only), then 3 -> 4 lapsing: censored at T=4
    # b: 0 only -> churned at week 2 (k=2)
    # c: 0, 2, 4 -> gaps of 1: never churned; active in the last period -> censored, k=4
    # d: 1, 2 -> churned at week 4 (k=3), exactly at T: observed
    # e: 3 -> lapsing at T: censored at k=1
    assert d.loc[["a", "b", "c", "d", "e"], "duration"].tolist() == [4, 2, 4, 3, 1]
    assert d.loc[["a", "b", "c", "d", "e"], "churned"].tolist() == [False, True, False, True, False]
    assert d.loc[["a", "d", "e"], "first_t"].tolist() == [0, 1, 3]


def test_win_back_keeps_first_churn(con: duckdb.DuckDBPyConnection) -> None:
    ev = weekly([("w", 0), ("w", 4), ("w", 5), ("w", 9)])  # churned at 3 (W=3), back at 4
    d = churn_durations(con, ev, period="week", churn_after=3)
    assert d[["duration", "churned"]].values.tolist() == [[3, True]]


def test_durations_agree_with_the_panel(con: duckdb.DuckDBPyConnection) -> None:
    planted = make_planted(n_users=200, n_periods=20, seed=3)
    panel = build_panel(con, planted.events, period="week", churn_after=4)
    d = churn_durations(con, planted.events, period="week", churn_after=4).set_index("user_id")
    churn_k = panel[panel["stage"] == "churned"].groupby("user_id")["k"].min()
    last_k = panel.groupby("user_id")["k"].max()
    want = churn_k.reindex(last_k.index).fillna(last_k).astype(int)
    pd.testing.assert_series_equal(d["duration"], want, check_names=False, check_dtype=False)
    assert (d["churned"] == last_k.index.isin(churn_k.index)).all()


# -- Kaplan–Meier and log-rank ----------------------------------------------------------------


def product_limit(duration: np.ndarray, event: np.ndarray, k: int) -> float:
    """Hand-written Kaplan–Meier: product over event times <= k of (1 - d_i / n_i)."""
    s = 1.0
    for t in sorted(set(duration[event.astype(bool)])):
        if t > k:
            break
        n = (duration >= t).sum()
        d = ((duration == t) & event.astype(bool)).sum()
        s *= 1 - d / n
    return s


def test_km_equals_lifelines_and_hand_product_limit() -> None:
    rng = np.random.default_rng(7)
    duration = rng.integers(0, 12, size=60)
    event = rng.random(60) < 0.6
    durations = pd.DataFrame(
        {"user_id": [f"u{i}" for i in range(60)], "duration": duration, "churned": event}
    )
    surv = survival(durations)
    curve = surv.curve(ALL_USERS)
    kmf = KaplanMeierFitter().fit(duration, event)
    ks = np.arange(duration.max() + 1)
    np.testing.assert_allclose(curve["survival"], kmf.survival_function_at_times(ks).to_numpy())
    np.testing.assert_allclose(curve["survival"], [product_limit(duration, event, k) for k in ks])
    band = kmf.confidence_interval_survival_function_
    for k in set(duration.tolist()):  # at event/censoring times the band is lifelines' band
        assert curve.loc[k, "lower"] == pytest.approx(band.loc[k].iloc[0])
        assert curve.loc[k, "upper"] == pytest.approx(band.loc[k].iloc[1])
    assert (curve["lower"] <= curve["survival"] + 1e-12).all()
    assert (curve["survival"] <= curve["upper"] + 1e-12).all()
    np.testing.assert_array_equal(curve["at_risk"], [(duration >= k).sum() for k in ks])
    assert curve["churned"].sum() == event.sum()
    assert curve["censored"].sum() == (~event).sum()
    assert surv.logrank is None


def test_logrank_equals_lifelines() -> None:
    rng = np.random.default_rng(1)
    n = 90
    group = np.repeat(["x", "y", "z"], n // 3)
    duration = rng.integers(1, 10, size=n) + (group == "z") * 3
    event = rng.random(n) < 0.7
    ids = [f"u{i}" for i in range(n)]
    durations = pd.DataFrame({"user_id": ids, "duration": duration, "churned": event})
    groups = pd.DataFrame({"user_id": ids, "group": group})
    surv = survival(durations, groups)
    want = multivariate_logrank_test(duration, group, event)
    assert surv.logrank is not None
    assert surv.logrank.p_value == pytest.approx(want.p_value)
    assert surv.logrank.dof == 2
    assert surv.sizes.to_dict() == {"x": 30, "y": 30, "z": 30}
    assert surv.at_risk.shape[0] == 3


def test_censoring_at_the_end_by_hand(con: duckdb.DuckDBPyConnection) -> None:
    # T = 4, W = 2: b churns at k=2, d at k=3; a, c (k=4) and e (k=1) are censored. A user
    # censored at k is still at risk at k. At risk at k=2: a, b, c, d = 4, one churns -> S(2) =
    # 3/4; at k=3: a, c, d = 3, d churns -> S(3) = 3/4 * 2/3 = 1/2.
    surv = retention_curves(con, TINY, period="week", churn_after=2)
    curve = surv.curve(ALL_USERS)
    np.testing.assert_allclose(curve["survival"], [1, 1, 0.75, 0.5, 0.5])
    assert curve["at_risk"].tolist() == [5, 5, 4, 3, 2]
    assert curve["censored"].tolist() == [0, 1, 0, 0, 2]


def test_logrank_sentences() -> None:
    assert logrank_sentence(1e-5) == (
        "The difference in retention between segments is very unlikely to be chance (p < 0.001)."
    )
    assert "unlikely to be chance (p = 0.03)" in logrank_sentence(0.03)
    assert "could well be chance (p = 0.6)" in logrank_sentence(0.6, "countries")
    assert "not enough data" in logrank_sentence(float("nan"))


# -- groups -----------------------------------------------------------------------------------


def test_groups_by_column_top_n(con: duckdb.DuckDBPyConnection) -> None:
    ev = weekly(
        [("a", 0), ("a", 1), ("a", 2), ("b", 0), ("c", 0), ("d", 0), ("e", 0), ("f", 0)],
        country=["UK", "FR", "FR", "UK", "UK", "DE", "NL", None],
    )
    g = user_groups(con, ev, "country", top_n=2).set_index("user_id")["group"]
    # a's most frequent is FR; UK has 2 users (b, c), FR 1, DE 1, NL 1: ties by name -> DE
    assert g.to_dict() == {"a": OTHER, "b": "UK", "c": "UK", "d": "DE", "e": OTHER, "f": MISSING}
    assert list(g.cat.categories) == ["UK", "DE", OTHER, MISSING]
    assert categorical_columns(con, ev) == ["country"]
    with pytest.raises(InputError, match="'Country'.*country"):
        user_groups(con, ev, "Country")


def test_breakdown_columns_are_groups_not_per_row_numbers(con: duckdb.DuckDBPyConnection) -> None:
    # 40 users, 200 rows, like an Online Retail export read from CSV: Quantity and Price come as
    # numbers or as text of numbers, Invoice is unique per row, Email one per user.
    n = 200
    users = [f"u{i % 40:02d}" for i in range(n)]
    ev = pd.DataFrame(
        {
            "user_id": users,
            "ts": pd.Timestamp("2024-01-01") + pd.to_timedelta(np.arange(n), unit="h"),
            "amount": 1.0,
            "text": [f"item {i % 7}" for i in range(n)],
            "Country": [["UK", "France", "Germany"][i % 3] for i in range(n)],
            "Channel": pd.Categorical([["web", "shop"][i % 2] for i in range(n)]),
            "Returned": [i % 5 == 0 for i in range(n)],
            "Quantity": [i % 12 + 1 for i in range(n)],
            "Price": [1.25 * (i % 9) for i in range(n)],
            "QuantityText": [str(i % 12 + 1) for i in range(n)],
            "PriceText": [f"{1.25 * (i % 9):.2f}" for i in range(n)],
            "Invoice": [f"INV{i:05d}" for i in range(n)],
            "StockCode": [f"SKU{i % 150}" for i in range(n)],
            "Email": [f"{u}@example.com" for u in users],
            "Constant": "same",
        }
    )
    assert categorical_columns(con, ev) == ["Country", "Channel", "Returned"]


def test_groups_by_segments(con: duckdb.DuckDBPyConnection) -> None:
    assignments = pd.DataFrame({"user_id": ["a", "b", "c", "d"], "segment": [1, 0, -1, 1]})
    g = user_groups(con, TINY, assignments, names={1: "Gardeners"})
    got = g.set_index("user_id")["group"].astype(str).to_dict()
    # Unnamed segments get the name every page shows (1-based; -1 is "Unclustered").
    assert got == {
        "a": "Gardeners",
        "b": "Segment 1",
        "c": "Unclustered",
        "d": "Gardeners",
        "e": NOT_SEGMENTED,
    }
    assert list(g["group"].cat.categories) == [
        segment_display_name(0),
        "Gardeners",
        segment_display_name(-1),
        NOT_SEGMENTED,
    ]


# -- planted data -----------------------------------------------------------------------------


def test_planted_segments_differ(con: duckdb.DuckDBPyConnection) -> None:
    planted = make_planted(n_users=1200, n_periods=30, seed=0)
    surv = retention_curves(con, planted.events, period="auto", by=planted.truth)
    assert surv.period == "week"
    assert len(surv.groups) == 4
    for group in surv.groups:
        s = surv.curve(group)["survival"].to_numpy()
        assert s[0] == 1.0
        assert (np.diff(s) <= 1e-12).all()
    assert surv.logrank is not None and surv.logrank.p_value < 0.01
    assert "very unlikely to be chance" in surv.logrank.sentence
    # Under the randomised log (each action w.p. 1/4) an active user stays active with
    # p_active["active"] x mean lift: segment 0: 0.78 x 1.1375 = 0.89, segment 2: 0.70 x 1.1375
    # = 0.80, segment 1: 0.62 x 1.1375 = 0.71 -> that order of retention (shown 1-based).
    final = {g: surv.curve(g)["survival"].iloc[20] for g in surv.groups}
    assert final["Segment 1"] > final["Segment 3"] > final["Segment 2"]

    summary = retention_summary(con, planted.events, assignments=planted.truth)
    assert set(summary["curves"]) == {"0", "1", "2", "3"}
    assert summary["curves"]["3"][0] == 1.0
    assert summary["logrank_p"] < 0.01
    assert summary["period"] == "week" and summary["churn_after"] == 4


# -- property test against a pandas reference -------------------------------------------------


def reference_cohorts(ev: pd.DataFrame, mode: str) -> pd.DataFrame:
    """Day-period cohort counts with a pandas groupby."""
    day = ev["ts"].dt.normalize()
    act = pd.DataFrame({"user_id": ev["user_id"], "t": (day - day.min()).dt.days})
    act = act.drop_duplicates()
    last = act["t"].max()
    first = act.groupby("user_id")["t"].transform("min")
    act = act.assign(cohort=first, k=act["t"] - first)
    if mode == "classic":
        counts = act.groupby(["cohort", "k"]).size().unstack(fill_value=0)
    else:
        last_k = act.groupby("user_id").agg(cohort=("cohort", "first"), k=("k", "max"))
        cells = {
            c: {k: int((g["k"] >= k).sum()) for k in range(last - c + 1)}
            for c, g in last_k.groupby("cohort")
        }
        counts = pd.DataFrame(cells).T.fillna(0)
    counts = counts.reindex(columns=range(last + 1), fill_value=0).astype(float)
    for c in counts.index:
        counts.loc[c, counts.columns > last - c] = np.nan
    return counts


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    rows=st.lists(
        st.tuples(st.sampled_from(list("pqrstu")), st.integers(0, 20)), min_size=1, max_size=30
    ),
    mode=st.sampled_from(["classic", "unbounded"]),
)
def test_cohort_table_equals_pandas_reference(rows: list[tuple[str, int]], mode: str) -> None:
    ev = pd.DataFrame(
        {
            "user_id": [u for u, _ in rows],
            "ts": [pd.Timestamp("2024-05-01 13:00") + pd.Timedelta(days=d) for _, d in rows],
        }
    )
    with duckdb.connect() as c:
        got = cohort_table(c, ev, period="day", mode=mode)
    want = reference_cohorts(ev, mode)
    np.testing.assert_array_equal(got.counts.to_numpy(), want.to_numpy())
    assert (
        got.sizes.tolist()
        == ev.groupby("user_id")["ts"].min().dt.normalize().value_counts().sort_index().tolist()
    )


# -- figures ----------------------------------------------------------------------------------


def test_figures_show_the_results(con: duckdb.DuckDBPyConnection) -> None:
    from retention.charts.retention import at_risk_figure, cohort_heatmap, survival_figure

    table = cohort_table(con, TINY, period="week")
    heat = cohort_heatmap(table)
    # TINY ends on a Monday: its last week's cells are the grey "incomplete" trace.
    main, partial = (np.asarray(t.z, dtype=float) for t in heat.data)
    np.testing.assert_array_equal(np.where(np.isnan(main), partial, main), table.rates.to_numpy())
    assert heat.data[0].y[0] == "wk 2024-01-01 (n=3)"
    assignments = pd.DataFrame({"user_id": list("abcde"), "segment": [0, 0, 1, 1, 1]})
    surv = retention_curves(con, TINY, period="week", churn_after=2, by=assignments)
    fig = survival_figure(surv)
    lines = [t for t in fig.data if t.showlegend is not False]
    assert [t.name for t in lines] == ["Segment 1 (n=2)", "Segment 2 (n=3)"]  # 1-based
    np.testing.assert_allclose(lines[0].y, surv.curve("Segment 1")["survival"])
    assert len(fig.data) == 4  # a band per curve
    cells = at_risk_figure(surv).data[0].cells.values
    assert list(cells[0]) == ["Segment 1", "Segment 2"]


# -- retention after k periods, per segment (the segment profile) ---------------------------


def test_retention_by_segment_after_k_periods_by_hand() -> None:
    # Weekly, last week 4. u1 active weeks 0,1,4; u2 weeks 0,2,4; u3 weeks 0,1; u4 first in
    # week 3 (cannot be seen 4 weeks: left out of every k, so all k count the same users).
    # Retention after k = active k weeks after the first week or later.
    weeks = {"u1": [0, 1, 4], "u2": [0, 2, 4], "u3": [0, 1], "u4": [3, 4]}
    rows = [
        (u, pd.Timestamp("2024-01-01") + pd.Timedelta(weeks=w, hours=1))
        for u, ws in weeks.items()
        for w in ws
    ]
    events = pd.DataFrame(rows, columns=["user_id", "ts"])
    assignments = pd.DataFrame({"user_id": ["u1", "u2", "u3", "u4"], "segment": [0, 0, 1, 1]})
    con = duckdb.connect()
    con.register("ev", events)
    frame, period = retention_by_segment(con, '"ev"', assignments, period="week")
    assert period == "week"
    frame = frame.set_index("segment")
    # Once, "after 4" (1.0) was above "after 1" (0.5) for segment 0: different users per k and
    # "active in exactly week k". Now u2 counts for k = 1 too (active in week 2, i.e. later).
    assert frame.loc[0, "retention_1"] == pytest.approx(1.0)
    assert frame.loc[0, "retention_4"] == pytest.approx(1.0)
    assert frame.loc[1, "retention_1"] == pytest.approx(1.0)  # u3 only (u4 started too late)
    assert frame.loc[1, "retention_4"] == pytest.approx(0.0)


def test_retention_after_k_never_rises_with_k() -> None:
    # Monthly, last month 6. Hand-computed over the users whose first month is <= 6 - 4 = 2:
    #   a: months 0, 4      -> last k 4: retained after 1, 2, 4
    #   b: months 0, 1      -> last k 1: retained after 1
    #   c: months 1, 3      -> last k 2: retained after 1, 2
    #   d: month 2          -> last k 0: never
    #   e: months 5, 6      -> first month 5: not seen 4 months, left out
    # Classic retention ("active in exactly month k") would give 1/4 after 1 and 1/4 after 4
    # but 0 after 3: not a curve. Unbounded: 3/4, 2/4, 1/4, 1/4.
    months = {"a": [0, 4], "b": [0, 1], "c": [1, 3], "d": [2], "e": [5, 6]}
    rows = [
        (u, pd.Timestamp("2024-01-03") + pd.DateOffset(months=m))
        for u, ms in months.items()
        for m in ms
    ]
    events = pd.DataFrame(rows, columns=["user_id", "ts"])
    assignments = pd.DataFrame({"user_id": list(months), "segment": 0})
    con = duckdb.connect()
    frame, _ = retention_by_segment(con, events, assignments, period="month", after=(1, 2, 3, 4))
    got = frame.set_index("segment").loc[0].tolist()
    assert got == pytest.approx([3 / 4, 2 / 4, 1 / 4, 1 / 4])
    assert all(later <= earlier for earlier, later in zip(got, got[1:], strict=False))


def test_retention_by_segment_is_the_unbounded_cohort_table_pooled(
    con: duckdb.DuckDBPyConnection,
) -> None:
    # One definition: for each segment, retention after k is the unbounded cohort table of its
    # users, column k, pooled over the same cohorts for every k (those that reach the largest k).
    planted = make_planted(n_users=200, n_periods=14, seed=2, n_segments=3)
    frame, period = retention_by_segment(
        con, planted.events, planted.truth, period="week", after=(1, 2, 5)
    )
    frame = frame.set_index("segment")
    for segment, users in planted.truth.groupby("segment")["user_id"]:
        table = cohort_table(con, planted.events, period=period, mode="unbounded", user_ids=users)
        reached = table.counts[5].notna()
        for k in (1, 2, 5):
            expected = table.counts.loc[reached, k].sum() / table.sizes[reached].sum()
            assert frame.loc[segment, f"retention_{k}"] == pytest.approx(expected)
        shares = frame.loc[segment, ["retention_1", "retention_2", "retention_5"]].tolist()
        assert shares == sorted(shares, reverse=True)


def test_the_confidence_band_steps_where_its_curve_steps() -> None:
    """The 95% band holds each period's bounds from that period until the next, on both edges
    (the lower edge used to be drawn one period early, leaving the curve outside its band)."""
    from retention.charts.retention import steps, survival_figure

    k = np.array([0, 1, 2, 3])
    curves = pd.DataFrame(
        {
            "group": "g",
            "k": k,
            "survival": [1.0, 0.8, 0.5, 0.4],
            "lower": [1.0, 0.7, 0.3, 0.2],
            "upper": [1.0, 0.9, 0.7, 0.6],
            "at_risk": [10, 8, 5, 4],
            "churned": [0, 2, 3, 1],
            "censored": [0, 0, 0, 4],
        }
    ).set_index(["group", "k"])
    surv = Survival(
        period="month", churn_after=4, ci=0.95, curves=curves,
        at_risk=pd.DataFrame([[10, 8, 5, 4]], index=["g"], columns=k),
        sizes=pd.Series({"g": 10}), logrank=None,
    )  # fmt: skip
    band, line = survival_figure(surv).data
    assert band.mode == "lines"  # no stray corner markers on short curves
    x, y = np.asarray(band.x, dtype=float), np.asarray(band.y, dtype=float)
    # The closed shape: the upper edge's steps forward, then the lower edge's steps back.
    ux, uy = steps(k, curves["upper"].to_numpy())
    lx, ly = steps(k, curves["lower"].to_numpy())
    np.testing.assert_array_equal(x, np.concatenate([ux, lx[::-1]]))
    np.testing.assert_array_equal(y, np.concatenate([uy, ly[::-1]]))
    # Hand-checked corners: each bound holds over [k, k+1) and drops at k+1.
    assert list(zip(lx, ly, strict=True)) == [
        (0, 1.0), (1, 1.0), (1, 0.7), (2, 0.7), (2, 0.3), (3, 0.3), (3, 0.2),
    ]  # fmt: skip
    assert list(line.x) == [0, 1, 2, 3]


@pytest.mark.parametrize(
    "names", [{0: "Zero", 1: "One"}, {}, {0: "Same", 1: "Same", 2: "Same"}]
)  # some named, none named, duplicate names (kept apart by user_groups)
def test_summary_from_curves_is_the_summary_fitted_on_its_own(names):
    """Issue 19: the command line fits the Kaplan–Meier curves once and reads the summary's
    block from them; the oracle is retention_summary fitting its own curves by segment id."""
    from retention.cohorts import summary_from_curves

    planted = make_planted(n_users=500, n_periods=26, seed=21)
    con = duckdb.connect()
    try:
        con.register("events", planted.events)
        durations = churn_durations(con, "events", period="week", churn_after=3)
        truth = planted.truth
        for by in (truth, truth.iloc[::-1]):  # any row order of the assignments
            curves = retention_curves(
                con, "events", period="week", churn_after=3, by=by, names=names,
                durations=durations,
            )  # fmt: skip
            alone = retention_summary(
                con, "events", period="week", churn_after=3, assignments=by, names=names,
                durations=durations,
            )  # fmt: skip
            shared = summary_from_curves(curves, durations, by, names)
            assert shared is not None
            p_alone, p_shared = alone.pop("logrank_p"), shared.pop("logrank_p")
            assert p_shared == pytest.approx(p_alone, rel=1e-12, abs=1e-300)
            assert shared == alone
        # Users without a segment: the report's curves have a "Not segmented" group that the
        # summary leaves out, so the summary is fitted on its own.
        some = truth.iloc[::2]
        curves = retention_curves(
            con, "events", period="week", churn_after=3, by=some, names=names,
            durations=durations,
        )  # fmt: skip
        assert summary_from_curves(curves, durations, some, names) is None
    finally:
        con.close()
