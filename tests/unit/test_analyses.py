"""Retention analyses: definitions, classic/unbounded/bracketed retention, incomplete cells,
revenue retention and LTV, by hand on a tiny log and against a pandas oracle on a larger one."""

from __future__ import annotations

import json
from datetime import date

import duckdb
import numpy as np
import pandas as pd
import pytest

from retention.analyses import (
    ACQUISITION,
    AVERAGE,
    COMPLETE,
    INCOMPLETE,
    UNOBSERVED,
    Definition,
    analyses_summary,
    bracket_label,
    event_types,
    parse_brackets,
    property_groups,
    property_options,
    retention_matrix,
    segment_matrix,
)
from retention.errors import InputError
from retention.synth import make_planted

NAN = np.nan


@pytest.fixture
def con() -> duckdb.DuckDBPyConnection:
    c = duckdb.connect()
    yield c
    c.close()


def tiny() -> pd.DataFrame:
    """Four users over five weeks (Mondays 2024-01-01 .. 01-29); the data ends on Wednesday
    2024-01-31, so week 4 is not over."""
    rows = [
        ("A", "2024-01-01 10:00", "purchase", 10.0, "mug"),
        ("A", "2024-01-03 10:00", "view", NAN, "mug"),
        ("A", "2024-01-09 10:00", "purchase", 20.0, "lamp"),
        ("A", "2024-01-29 10:00", "purchase", 5.0, "mug"),
        ("B", "2024-01-02 10:00", "view", NAN, "lamp"),
        ("B", "2024-01-16 10:00", "purchase", 30.0, "lamp"),
        ("C", "2024-01-08 10:00", "purchase", 40.0, "rug"),
        ("C", "2024-01-10 10:00", "review", NAN, "rug"),
        ("C", "2024-01-22 10:00", "purchase", 15.0, "mug"),
        ("D", "2024-01-30 10:00", "view", NAN, "rug"),
        ("D", "2024-01-31 10:00", "view", NAN, "mug"),
    ]
    frame = pd.DataFrame(rows, columns=["user_id", "ts", "event", "amount", "text"])
    return frame.assign(ts=pd.to_datetime(frame["ts"]))


def rows(table: pd.DataFrame) -> list[list[float]]:
    return [[None if pd.isna(v) else round(float(v), 6) for v in r] for r in table.to_numpy()]


def test_classic_any_event_by_hand(con) -> None:
    m = retention_matrix(con, tiny(), period="week")
    assert m.grid.ends_mid_period and m.grid.last_t == 4
    assert rows(m.table(measure="count")) == [
        [2, 1, 1, 0, 1],
        [1, 0, 1, 0, None],
        [1, None, None, None, None],
    ]
    assert m.sizes().tolist() == [2, 1, 1]
    status = m.status()
    # The data's last week is not over: each cohort's cell there is incomplete, not a drop.
    assert status.iloc[0, 4] == INCOMPLETE and status.iloc[1, 3] == INCOMPLETE
    assert status.iloc[2, 0] == INCOMPLETE and status.iloc[0, 3] == COMPLETE
    assert status.iloc[2, 1] == UNOBSERVED
    line = m.curves("percent").set_index("column")
    # Complete cells only: k=1 -> cohorts 0 and 1 (1 of 3), k=3 -> cohort 0 only (0 of 2).
    assert line["value"].round(6).tolist() == [1.0, round(1 / 3, 6), round(2 / 3, 6), 0.0, 0.5]
    assert line["incomplete"].tolist() == [False, False, False, False, True]
    assert line["users"].tolist() == [3, 3, 3, 2, 2]


def test_unbounded_by_hand(con) -> None:
    m = retention_matrix(con, tiny(), period="week", mode="unbounded")
    assert rows(m.table(measure="count")) == [
        [2, 2, 2, 1, 1],
        [1, 1, 1, 0, None],
        [1, None, None, None, None],
    ]
    table = m.table()  # never rises along a row
    assert (table.diff(axis=1).fillna(0) <= 0).all().all()


def test_first_purchase_to_any_purchase_and_revenue_by_hand(con) -> None:
    d = Definition(start_event="purchase", return_event="purchase")
    m = retention_matrix(con, tiny(), period="week", definition=d)
    assert rows(m.table(measure="count")) == [
        [1, 1, 0, 0, 1],  # A from week 0
        [1, 0, 1, 0, None],  # C from week 1
        [1, 0, 0, None, None],  # B from week 2 (its first purchase; the view does not count)
    ]
    rev = m.curves("revenue_retention").set_index("column")["value"]
    assert rev[0] == 1.0
    assert rev[1] == pytest.approx(20 / 80)  # cohorts 0, 1, 2 are complete at k = 1
    assert rev[2] == pytest.approx((0 + 15) / (10 + 40))  # cohort 2's k = 2 is incomplete
    ltv = m.curves("ltv").set_index("column")
    assert ltv.loc[0, "value"] == pytest.approx((10 + 40 + 30) / 3)
    assert ltv.loc[2, "value"] == pytest.approx((30 + 55) / 2)
    assert ltv.loc[4, "value"] == pytest.approx(35.0) and ltv.loc[4, "incomplete"]


def test_review_to_purchase_counts_only_purchases_after_the_review(con) -> None:
    d = Definition(start_event="review", return_event="purchase")
    m = retention_matrix(con, tiny(), period="week", definition=d)
    assert m.sizes().tolist() == [1]  # only C wrote a review (week 1)
    assert rows(m.table(measure="count")) == [[0, 0, 1, 0, None]]  # not the purchase before
    assert d.describe() == "first review → any purchase"


def test_brackets_by_hand_with_incomplete_cells(con) -> None:
    m = retention_matrix(con, tiny(), period="week", mode="brackets", brackets=[(1, 7), (8, 30)])
    assert m.columns == ("days 1–7", "days 8–30")
    assert rows(m.table(measure="count")) == [[1, 2], [1, 1], [1, None]]  # D came back on day 1
    assert rows(m.table()) == [[0.5, 1.0], [1.0, 1.0], [1.0, None]]
    status = m.status()
    # B (day 1) and C (day 7) were not followed to day 30 yet: incomplete, not final.
    assert status.to_numpy().tolist() == [
        [COMPLETE, INCOMPLETE],
        [COMPLETE, INCOMPLETE],
        [INCOMPLETE, UNOBSERVED],
    ]
    line = m.curves().set_index("column")
    assert line.loc[0, "value"] == pytest.approx(2 / 3)  # A, B, C followed a whole week
    assert line.loc[1, "value"] == 1.0 and line.loc[1, "users"] == 1  # only A to day 30


def test_open_bracket_and_date_range(con) -> None:
    m = retention_matrix(
        con,
        tiny(),
        period="week",
        mode="brackets",
        brackets=[(1, None)],
        definition=Definition(start=date(2024, 1, 2), end=date(2024, 1, 8)),
    )
    assert m.sizes().tolist() == [1, 1]  # B (Jan 2) and C (Jan 8); A started before, D after
    assert rows(m.table(measure="count")) == [[1], [1]]


def test_groups_lines_and_average(con) -> None:
    groups = property_groups(con, tiny(), "first:text")
    assert dict(zip(groups["user_id"], groups["group"], strict=True)) == {
        "A": "mug",
        "B": "lamp",
        "C": "rug",
        "D": "rug",
    }
    m = retention_matrix(con, tiny(), period="week", groups=groups)
    lines = m.curves()
    assert list(dict.fromkeys(lines["line"])) == ["rug", "lamp", "mug", AVERAGE]
    overall = retention_matrix(con, tiny(), period="week").curves()
    avg = lines[lines["line"] == AVERAGE].reset_index(drop=True)
    pd.testing.assert_series_equal(avg["value"], overall["value"])
    acq = property_groups(con, tiny(), ACQUISITION, period="week")
    assert sorted(set(acq["group"])) == ["Acquired week of 2024-01-01", "Acquired week of 2024-01-08",
                                         "Acquired week of 2024-01-29"]  # fmt: skip
    assert property_options(con, tiny()) == [ACQUISITION, "first:text"]
    assert event_types(con, tiny()) == ["purchase", "view", "review"]


def test_parse_brackets() -> None:
    assert parse_brackets("1-7, 8-30, 31-90") == ((1, 7), (8, 30), (31, 90))
    assert parse_brackets("days 0; 1 to 7\n8+") == ((0, 0), (1, 7), (8, None))
    assert [bracket_label(*b) for b in parse_brackets("0, 1-7, 91+")] == [
        "day 0",
        "days 1–7",
        "days 91+",
    ]
    for bad, words in [
        ("", "at least one"),
        ("7-1", "ends before"),
        ("1-7, 5-9", "overlaps"),
        ("soon", "Cannot read"),
    ]:
        with pytest.raises(InputError, match=words):
            parse_brackets(bad)


def test_events_without_event_column_refuse_event_choice(con) -> None:
    frame = tiny().drop(columns=["event"])
    assert event_types(con, frame) == []
    with pytest.raises(InputError, match="event-type column"):
        retention_matrix(con, frame, definition=Definition(start_event="purchase"))


# -- pandas oracle -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def planted() -> pd.DataFrame:
    events = make_planted(n_users=250, n_periods=16, seed=3).events.copy()
    rng = np.random.default_rng(0)
    events["event"] = rng.choice(
        ["purchase", "view", "review"], size=len(events), p=[0.5, 0.4, 0.1]
    )
    return events


def oracle(events: pd.DataFrame, d: Definition, period: str = "week") -> dict[str, pd.Series]:
    """Retention the slow, obvious way in pandas: returned users per (cohort, k) and per
    (cohort, day range), revenue per (cohort, k)."""
    ev = events.assign(ts=pd.to_datetime(events["ts"]), amount=events["amount"].fillna(0))
    freq = {"week": "W-SUN", "month": "M", "day": "D"}[period]
    origin = ev["ts"].min().to_period(freq)
    ev["t"] = ev["ts"].dt.to_period(freq).map(lambda p: (p - origin).n)
    starts = ev if d.start_event is None else ev[ev["event"] == d.start_event]
    start = starts.groupby("user_id")["ts"].min().rename("start_ts")
    ret = ev if d.return_event is None else ev[ev["event"] == d.return_event]
    ret = ret.join(start, on="user_id", how="inner")
    ret = ret[ret["ts"] >= ret["start_ts"]]
    start_t = start.dt.to_period(freq).map(lambda p: (p - origin).n)
    ret = ret.assign(cohort=ret["user_id"].map(start_t))
    ret["k"] = ret["t"] - ret["cohort"]
    ret["d"] = (ret["ts"].dt.normalize() - ret["start_ts"].dt.normalize()).dt.days
    classic = ret.groupby(["cohort", "k"])["user_id"].nunique()
    last_k = ret.groupby("user_id").agg(cohort=("cohort", "first"), k=("k", "max"))
    revenue = ret.groupby(["cohort", "k"])["amount"].sum()
    b = pd.cut(ret["d"], bins=[0, 7, 30, 90], labels=False)  # (0,7], (7,30], (30,90]
    brackets = ret.assign(b=b).dropna(subset=["b"]).groupby(["cohort", "b"])["user_id"].nunique()
    return {"classic": classic, "last_k": last_k, "revenue": revenue, "brackets": brackets,
            "sizes": start_t.value_counts()}  # fmt: skip


@pytest.mark.parametrize(
    "definition",
    [
        Definition(),
        Definition(start_event="purchase", return_event="purchase"),
        Definition(start_event="review", return_event="purchase"),
    ],
    ids=["any", "purchase", "review-purchase"],
)
def test_matrix_agrees_with_pandas(con, planted, definition) -> None:
    truth = oracle(planted, definition)
    m = retention_matrix(con, planted, period="week", definition=definition)
    cells = m.cells.set_index(["cohort_t", "column"])
    got = cells["returned"][cells["returned"] > 0]
    expected = truth["classic"].rename_axis(["cohort_t", "column"]).astype("int64")
    pd.testing.assert_series_equal(got.sort_index(), expected.sort_index(), check_names=False)
    sizes = cells.xs(0, level="column")["users"]
    assert sizes.to_dict() == truth["sizes"].to_dict()
    rev = cells["revenue"][cells["revenue"] != 0]
    expected_rev = truth["revenue"][truth["revenue"] != 0].rename_axis(["cohort_t", "column"])
    pd.testing.assert_series_equal(
        rev.sort_index(), expected_rev.sort_index(), check_names=False, check_dtype=False
    )
    # Unbounded: users whose last return is at k or later.
    u = retention_matrix(con, planted, period="week", mode="unbounded", definition=definition)
    last = truth["last_k"]
    for (cohort_t, k), n in u.cells.set_index(["cohort_t", "column"])["returned"].items():
        assert n == int(((last["cohort"] == cohort_t) & (last["k"] >= k)).sum())
    # Brackets: days 1-7, 8-30, 31-90.
    b = retention_matrix(con, planted, period="week", mode="brackets", definition=definition,
                         brackets=[(1, 7), (8, 30), (31, 90)])  # fmt: skip
    got_b = b.cells.set_index(["cohort_t", "column"])["returned"]
    got_b = got_b[got_b > 0].sort_index()
    expected_b = truth["brackets"].rename_axis(["cohort_t", "column"]).astype("int64")
    expected_b.index = expected_b.index.set_levels(
        expected_b.index.levels[1].astype("int64"), level=1
    )
    pd.testing.assert_series_equal(got_b, expected_b.sort_index(), check_names=False)


def test_ltv_and_revenue_retention_agree_with_pandas(con, planted) -> None:
    m = retention_matrix(con, planted, period="week")
    cells = m.cells[m.cells["status"] == COMPLETE]
    ltv = m.curves("ltv").set_index("column")["value"]
    rr = m.curves("revenue_retention").set_index("column")["value"]
    ev = planted.assign(amount=planted["amount"].fillna(0))
    for k in (1, 3, 6):
        done = cells[cells["column"] == k]
        cohorts = set(done["cohort_t"])
        sub = m.cells[m.cells["cohort_t"].isin(cohorts)]
        expect_ltv = sub[sub["column"] <= k]["revenue"].sum() / done["users"].sum()
        assert ltv[k] == pytest.approx(expect_ltv)
        expect_rr = (
            sub[sub["column"] == k]["revenue"].sum() / sub[sub["column"] == 0]["revenue"].sum()
        )
        assert rr[k] == pytest.approx(expect_rr)
    # Everything the users spent is in the cells (any event -> any event keeps every event).
    assert m.cells["revenue"].sum() == pytest.approx(ev["amount"].sum())


# -- summary.json and the report ---------------------------------------------------------------


def test_summary_by_segment_by_hand(con) -> None:
    assignments = pd.DataFrame({"user_id": ["A", "B", "C", "D"], "segment": [0, 0, 1, 1]})
    m = segment_matrix(con, tiny(), assignments, period="week")
    block = analyses_summary(m)
    json.dumps(block)  # plain data
    assert block["definition"] == "first event → any event" and block["period"] == "week"
    assert block["retention"]["0"] == [1.0, 0.5, 0.5, 0.0, 0.5]
    assert block["retention"]["1"] == [1.0, 0.0, 1.0, 0.0]
    assert block["retention"]["all"] == [1.0, 0.333333, 0.666667, 0.0, 0.5]
    assert block["incomplete_from"] == {"0": 4, "1": 3, "all": 4}
    assert block["users"] == {"0": 2, "1": 2, "all": 4}
    # Segment 0: A spent 10 + 20 + 5, B 30 (week 2): revenue per user after week 2 = 60 / 2.
    assert block["ltv"]["0"][2] == 30.0
    assert block["revenue_retention"]["0"][:3] == [1.0, 2.0, 3.0]  # 20 and 30 vs 10


def test_report_section_by_segment_in_the_currency(con) -> None:
    from retention.report import _analyses_section

    assignments = pd.DataFrame({"user_id": ["A", "B", "C", "D"], "segment": [0, 0, 1, 1]})
    m = segment_matrix(con, tiny(), assignments, period="week")
    section = _analyses_section(m, {0: "Loyal", 1: "New"}, "GBP")
    assert len(section.figures) == 3  # retention, revenue retention, LTV
    lines = [t.name for t in section.figures[0].data if t.showlegend is not False]
    assert lines == ["Loyal", "New", AVERAGE]
    assert "£" in section.figures[2].layout.title.text
    assert "£" in section.paragraphs[0]
