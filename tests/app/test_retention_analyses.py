"""The Retention page's analyses: retention lines per group with the average, % or users,
bracketed ranges, start and return events, cohort dates, money in the data's currency and the
churn window in days."""

from __future__ import annotations

import datetime as dt
import json

import numpy as np
import pandas as pd
import pytest

from retention.synth import make_planted
from tests.app.conftest import make_app

PAGE = "pages/3_retention.py"


@pytest.fixture(scope="module")
def planted() -> pd.DataFrame:
    events = make_planted(n_users=200, n_periods=16, seed=5).events.copy()
    rng = np.random.default_rng(1)
    events["event"] = rng.choice(["purchase", "view"], size=len(events), p=[0.6, 0.4])
    return events


@pytest.fixture
def dataset(app_workspace, planted) -> str:
    return app_workspace.save_dataset(
        name="Planted",
        source_name="planted.csv",
        sha256="planted-analyses",
        shape="events",
        frames={"events": planted},
        mapping={
            "user": "user_id",
            "time": "ts",
            "amount": "amount",
            "text": "text",
            "event": "event",
        },  # fmt: skip
        report={},
    )


def figure(at, part: str) -> dict:
    specs = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
    title = {"lines": "came back", "revenue": "Revenue retention", "ltv": "LTV"}
    if part == "heatmap":
        return next(f for f in specs if f["data"][0]["type"] == "heatmap")
    return next(f for f in specs if title[part] in str(f["layout"].get("title", "")))


def ys(trace: dict) -> list[float]:
    """A trace's y values (plotly writes numpy arrays as base64 binary)."""
    import base64

    y = trace["y"]
    if isinstance(y, dict):
        return np.frombuffer(base64.b64decode(y["bdata"]), dtype=y["dtype"]).tolist()
    return list(y)


def names(fig: dict) -> list[str]:
    return [t["name"] for t in fig["data"] if t.get("showlegend", True)]


def test_lines_counts_and_brackets(app_workspace, dataset) -> None:
    at = make_app(PAGE)
    assert not at.exception
    lines = figure(at, "lines")
    assert names(lines) == ["All users"]
    assert ys(lines["data"][0])[0] == 1.0  # everyone starts
    assert lines["layout"]["yaxis"]["tickformat"] == ".0%"
    at.radio(key="retention.measure").set_value("count").run()
    assert not at.exception
    lines = figure(at, "lines")
    assert ys(lines["data"][0])[0] == 200  # users, not shares
    heat = figure(at, "heatmap")
    assert "%" not in "".join(str(t) for t in heat["data"][0]["text"][0] if t)
    at.radio(key="retention.mode").set_value("brackets").run()
    assert not at.exception
    assert figure(at, "heatmap")["data"][0]["x"] == ["days 1–7", "days 8–30", "days 31–90"]
    at.text_input(key="retention.brackets").set_value("1-7, 8+").run()
    assert not at.exception and not at.error
    assert figure(at, "heatmap")["data"][0]["x"] == ["days 1–7", "days 8+"]
    at.text_input(key="retention.brackets").set_value("7-1").run()
    assert not at.exception
    assert at.error and "ends before it starts" in at.error[0].value
    assert figure(at, "heatmap")["data"][0]["x"] == ["days 1–7", "days 8–30", "days 31–90"]


def test_breakdown_by_acquisition_month_gives_a_line_each_and_the_average(
    app_workspace, dataset
) -> None:
    at = make_app(PAGE)
    at.selectbox(key="retention.period").set_value("month").run()
    at.selectbox(key="retention.breakdown").set_value("acquisition").run()
    assert not at.exception
    shown = names(figure(at, "lines"))
    assert shown[-1] == "Average (all users)"
    assert shown[0] == "Acquired 2024-01" and all(n.startswith("Acquired") for n in shown[:-1])
    # The latest month's line stops at an incomplete point, drawn open and dotted.
    tails = [t for t in figure(at, "lines")["data"] if t["line"].get("dash") == "dot"]
    assert tails, "an incomplete tail is marked"
    assert "not yet complete" in tails[0]["hovertemplate"]
    at.selectbox(key="retention.breakdown").set_value("first:text").run()
    assert not at.exception
    assert len(names(figure(at, "lines"))) >= 3


def test_start_and_return_events_and_cohort_dates(app_workspace, dataset, planted) -> None:
    at = make_app(PAGE)
    assert at.selectbox(key="retention.start_event").options == ["Any event", "purchase", "view"]
    at.selectbox(key="retention.start_event").set_value("purchase").run()
    at.selectbox(key="retention.return_event").set_value("purchase").run()
    assert not at.exception
    assert any("first purchase → any purchase" in c.value for c in at.caption)
    buyers = planted[planted["event"] == "purchase"]["user_id"].nunique()
    heat = figure(at, "heatmap")
    sizes = [int(y.split("n=")[1].rstrip(")")) for y in heat["data"][0]["y"]]
    assert sum(sizes) == buyers
    first = pd.to_datetime(planted["ts"]).min().date()
    at.date_input(key=f"retention.cohort_dates.widget.{dataset}").set_value(
        (first, first + dt.timedelta(days=27))
    ).run()
    assert not at.exception
    heat = figure(at, "heatmap")
    assert len(heat["data"][0]["y"]) <= 5  # four weeks of cohorts (and the week they start in)
    # A refresh keeps the definition and the dates.
    fresh = make_app(PAGE)
    assert fresh.selectbox(key="retention.start_event").value == "purchase"
    widget = f"retention.cohort_dates.widget.{dataset}"
    assert fresh.date_input(key=widget).value[1] == first + dt.timedelta(days=27)
    # Another dataset, over other dates: its own range, all of its days (no crash).
    other = app_workspace.save_dataset(
        name="Later",
        source_name="later.csv",
        sha256="later",
        shape="events",
        frames={
            "events": planted.assign(ts=pd.to_datetime(planted["ts"]) + pd.DateOffset(years=3))
        },
        mapping={"user": "user_id", "time": "ts", "amount": "amount", "event": "event"},
        report={},
    )
    fresh.session_state["dataset_id"] = other  # what picking it in the sidebar does
    fresh.run()
    assert not fresh.exception
    later = fresh.date_input(key=f"retention.cohort_dates.widget.{other}").value
    assert later[0] > first + dt.timedelta(days=3 * 365 - 7)  # its own first week


def test_money_in_the_datasets_currency(app_workspace, dataset) -> None:
    app_workspace.set_meta("dataset.currency." + dataset, "GBP")
    at = make_app(PAGE)
    assert not at.exception
    assert ys(figure(at, "revenue")["data"][0])[0] == 1.0  # period 0 is 100% of itself
    at.radio(key="retention.money_view").set_value("Revenue per user so far (LTV)").run()
    assert not at.exception
    ltv = figure(at, "ltv")
    assert ltv["layout"]["yaxis"]["title"]["text"] == "Revenue per user so far (£)"
    assert any("per user (over" in c.value and "£" in c.value for c in at.caption)


def test_churn_window_in_days(app_workspace, dataset) -> None:
    at = make_app(PAGE)
    at.radio(key="retention.churn_in").set_value("days").run()
    at.number_input(key="retention.churn_days_input").set_value(30).run()
    assert not at.exception
    assert at.session_state["churn_after"] == 4  # 30 days are about 4 weeks
    assert any("= 4 weeks inactive in a row" in c.value for c in at.caption)
    km = next(
        json.loads(c.proto.spec)
        for c in at.get("plotly_chart")
        if "not yet churned" in c.proto.spec
    )
    assert "4 weeks inactive" in km["layout"]["title"]["text"]
    at.number_input(key="retention.churn_days_input").set_value(45).run()
    assert at.session_state["churn_after"] == 6


def _click(at, cell: list) -> None:
    """What a click on a heatmap cell leaves in the chart's state (a browser test clicks for
    real: tests/e2e/test_drilldown.py)."""
    point = {"customdata": cell, "curve_number": 2, "point_number": 0, "point_index": 0}
    at.session_state["retention.heatmap"] = {"selection": {"points": [point]}}


@pytest.mark.parametrize(
    ("mode", "dates"),
    [("classic", False), ("unbounded", True), ("brackets", False)],
)
def test_a_clicked_cell_lists_the_users_it_counts(app_workspace, dataset, mode, dates) -> None:
    """The drill-down under the heatmap lists as many users as the clicked cell counts, in each
    mode, with start/return events and cohort dates."""
    at = make_app(PAGE)
    at.radio(key="retention.mode").set_value(mode).run()
    at.radio(key="retention.measure").set_value("count").run()
    at.selectbox(key="retention.start_event").set_value("purchase").run()
    at.selectbox(key="retention.return_event").set_value("purchase").run()
    if dates:
        picker = next(d for d in at.date_input if d.key.startswith("retention.cohort_dates."))
        lo, hi = picker.value
        picker.set_value((lo + dt.timedelta(days=14), hi - dt.timedelta(days=14))).run()
    assert not at.exception
    assert any("Click a cell of the cohort table" in c.value for c in at.caption)
    heat = figure(at, "heatmap")
    cells = heat["data"][-1]["customdata"]
    assert heat["data"][-1]["name"] == "cells"
    for cell in (cells[0], cells[len(cells) // 2], cells[-1]):
        _click(at, cell)
        at.run()
        assert not at.exception
        assert not at.warning  # the list's size differs from the cell's: never
        title = next(m.value for m in at.markdown if "Users of the" in m.value)
        assert "started with their first purchase" in title and "who had a purchase" in title
        count = cell[2]
        noun = "user" if count == 1 else "users"
        assert any(c.value.startswith(f"{count:,} {noun}") for c in at.caption), cell
        if count:
            listed = next(d.value for d in at.dataframe if "user_id" in d.value.columns)
            assert len(listed) == min(count, 1000)
