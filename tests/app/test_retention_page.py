"""The Retention page: controls, cohort heatmap, Kaplan–Meier curves, log-rank sentence, caching."""

from __future__ import annotations

import pandas as pd
import pytest

import retention.results
from retention.synth import make_planted
from tests.app.conftest import finished_segmentation, make_app, save_planted

PAGE = "pages/3_retention.py"


@pytest.fixture(scope="module")
def planted():
    return make_planted(n_users=300, n_periods=20, seed=4)


@pytest.fixture
def events_dataset(app_workspace, planted) -> str:
    return save_planted(app_workspace, planted)


def add_segmentation(ws, dataset_id: str, truth: pd.DataFrame) -> str:
    return finished_segmentation(ws, dataset_id, truth, ["Kitchen", "Toys", "Garden", "Fashion"])


def charts(at) -> list[dict]:
    import json

    return [json.loads(c.proto.spec) for c in at.get("plotly_chart")]


def chart(at, key: str) -> dict:
    """The page's chart by its part: lines, heatmap, revenue, ltv or km."""
    import json

    found = [c for c in at.get("plotly_chart") if c.proto.id.endswith(f"retention.{key}")]
    if not found:  # element ids hash the key: fall back on what each chart shows
        specs = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
        pick = {
            "heatmap": lambda f: f["data"][0]["type"] == "heatmap",
            "km": lambda f: "not yet churned" in str(f["layout"].get("title", "")),
            "lines": lambda f: "came back" in str(f["layout"].get("title", "")),
            "revenue": lambda f: "Revenue retention" in str(f["layout"].get("title", "")),
            "ltv": lambda f: "LTV" in str(f["layout"].get("title", "")),
        }[key]
        return next(f for f in specs if pick(f))
    return json.loads(found[0].proto.spec)


def test_page_without_segmentation(app_workspace, events_dataset) -> None:
    at = make_app(PAGE)
    assert not at.exception
    assert at.selectbox(key="retention.period").value == "auto"
    assert "Automatic (week)" in at.selectbox(key="retention.period").format_func("auto")
    breakdown = at.selectbox(key="retention.breakdown")
    assert breakdown.value == "none"
    assert breakdown.options == [
        "Nothing (all users)",
        "Column: country",
        "Acquisition month",
        "First product or text (at the start)",
    ]
    # lines, heatmap, revenue retention or LTV (one at a time, issue 22), Kaplan–Meier
    assert len(charts(at)) == 4
    heatmap, km = chart(at, "heatmap"), chart(at, "km")
    assert heatmap["data"][0]["type"] == "heatmap"
    assert [t["name"] for t in km["data"] if t.get("showlegend", True)] == ["All users (n=300)"]
    assert not at.success and not at.info  # one group: no log-rank test
    at_risk = at.dataframe[0].value
    assert at_risk.index.tolist() == ["All users"]
    assert at_risk.iloc[0, 0] == "300"


def test_segments_breakdown_shows_logrank_sentence(app_workspace, events_dataset, planted) -> None:
    add_segmentation(app_workspace, events_dataset, planted.truth)
    at = make_app(PAGE)
    assert not at.exception
    assert at.selectbox(key="retention.breakdown").value == "segments"
    assert at.success, "expected the log-rank sentence"
    assert "very unlikely to be chance" in at.success[0].value
    at_risk = at.dataframe[0].value
    assert at_risk.index.tolist() == ["Kitchen", "Toys", "Garden", "Fashion"]
    assert at_risk.iloc[:, 0].map(int).sum() == 300
    # The cohort table for one segment only.
    at.selectbox(key="retention.cohort_group").set_value("Toys").run()
    assert not at.exception
    heatmap = chart(at, "heatmap")
    sizes = [int(y.split("n=")[1].rstrip(")")) for y in heatmap["data"][0]["y"]]
    assert sum(sizes) == int((planted.truth["segment"] == 1).sum())


def test_controls_update_results_and_session(app_workspace, events_dataset) -> None:
    at = make_app(PAGE)
    at.radio(key="retention.mode").set_value("unbounded").run()
    assert not at.exception
    assert any("or any later one" in c.value for c in at.caption)
    at.slider(key="retention.churn_after").set_value(6).run()
    at.selectbox(key="retention.period").set_value("day").run()
    assert not at.exception
    # 6 weeks are 42 days: the window keeps its length of time when the period changes.
    assert at.session_state["churn_after"] == 42
    assert at.session_state["period"] == "day"
    km = chart(at, "km")
    assert "42 days inactive" in km["layout"]["title"]["text"]
    at.selectbox(key="retention.breakdown").set_value("country").run()
    assert not at.exception
    assert set(at.dataframe[0].value.index) <= {
        "United Kingdom",
        "Germany",
        "France",
        "Netherlands",
    }


def test_rerun_uses_cached_results(app_workspace, events_dataset, monkeypatch) -> None:
    calls = []
    real = retention.results.churn_durations

    def counted(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(retention.results, "churn_durations", counted)
    at = make_app(PAGE)
    assert not at.exception and len(calls) == 1
    at.run()
    at.radio(key="retention.mode").set_value("unbounded").run()  # cohorts only
    assert not at.exception and len(calls) == 1


def test_snapshot_dataset_is_explained(app_workspace) -> None:
    snapshot = pd.DataFrame(
        {
            "user_id": ["a", "b", "c"],
            "action": ["none", "discount", "none"],
            "outcome": [0.0, 1.0, 1.0],
            "propensity": [None, None, None],
            "recency": [None, None, None],
        }
    )
    app_workspace.save_dataset(
        name="Snapshot",
        source_name="s.csv",
        sha256="s",
        shape="snapshot",
        frames={"snapshot": snapshot},
        mapping={"action": "action", "outcome": "outcome"},
        report={},
    )
    at = make_app(PAGE)
    assert not at.exception
    assert any("campaign snapshot" in i.value for i in at.info)


def test_a_refresh_keeps_every_setting(app_workspace, events_dataset) -> None:
    at = make_app(PAGE)
    at.selectbox(key="retention.period").set_value("month").run()
    at.slider(key="retention.churn_after").set_value(3).run()
    at.selectbox(key="retention.breakdown").set_value("country").run()
    at.number_input(key="retention.top_n").set_value(2).run()
    at.radio(key="retention.mode").set_value("unbounded").run()
    assert not at.exception

    fresh = make_app(PAGE)  # a refresh is a new session on the same workspace
    assert not fresh.exception
    assert fresh.selectbox(key="retention.period").value == "month"
    assert fresh.slider(key="retention.churn_after").value == 3
    assert fresh.selectbox(key="retention.breakdown").value == "country"
    assert fresh.number_input(key="retention.top_n").value == 2
    assert fresh.radio(key="retention.mode").value == "unbounded"
    # The other pages read these two.
    assert fresh.session_state["period"] == "month"
    assert fresh.session_state["churn_after"] == 3
    assert "3 months inactive" in chart(fresh, "km")["layout"]["title"]["text"]


def test_churn_window_keeps_its_length_when_the_period_changes(
    app_workspace, events_dataset
) -> None:
    at = make_app(PAGE)
    at.selectbox(key="retention.period").set_value("month").run()
    at.slider(key="retention.churn_after").set_value(4).run()
    at.selectbox(key="retention.period").set_value("week").run()
    assert at.slider(key="retention.churn_after").value == 17  # 4 months ≈ 17 weeks
    assert at.slider(key="retention.churn_after").label == "Churn window (weeks inactive)"
    at.selectbox(key="retention.period").set_value("month").run()
    assert not at.exception
    assert at.slider(key="retention.churn_after").value == 4
    # Through a coarser period and back, the length does not drift: 4 weeks -> 2 months (the
    # least) -> 4 weeks, not 9.
    at.selectbox(key="retention.period").set_value("week").run()
    at.slider(key="retention.churn_after").set_value(4).run()
    at.selectbox(key="retention.period").set_value("month").run()
    assert at.slider(key="retention.churn_after").value == 2
    at.selectbox(key="retention.period").set_value("week").run()
    assert at.slider(key="retention.churn_after").value == 4
    at.slider(key="retention.churn_after").set_value(9).run()  # moved by the user: 9 weeks
    at.selectbox(key="retention.period").set_value("day").run()
    assert at.slider(key="retention.churn_after").value == 63


def _monthly_buyers(ws, gone: int = 1) -> str:
    """13 months (January 2024 to January 2025); 30 users buy every month, 10 users skip
    months 3 to 5, ``gone`` users buy in month 0 and in the last month only (the longest gap:
    11 months). The data ends on 10 January 2025, mid-month."""
    rows = []
    for i in range(40 + gone):
        months = range(13)
        if 30 <= i < 40:
            months = [m for m in range(13) if m not in (3, 4, 5)]
        if i >= 40:
            months = [0, 12]
        rows += [
            (f"u{i:02d}", pd.Timestamp("2024-01-10") + pd.DateOffset(months=m)) for m in months
        ]
    events = pd.DataFrame(rows, columns=["user_id", "ts"]).assign(amount=1.0)
    return ws.save_dataset(
        name="Monthly",
        source_name="monthly.csv",
        sha256="monthly-test",
        shape="events",
        frames={"events": events},
        mapping={"user": "user_id", "time": "ts", "amount": "amount"},
        report={},
    )


def test_a_churn_window_the_data_cannot_show_is_refused_with_a_suggestion(app_workspace) -> None:
    _monthly_buyers(app_workspace)
    at = make_app(PAGE)
    assert at.selectbox(key="retention.period").format_func("auto") == "Automatic (month)"
    slider = at.slider(key="retention.churn_after")
    assert slider.max == 12  # 13 months of data: a window must fit inside it
    slider.set_value(12).run()
    assert not at.exception
    assert at.error, "a 12-month window on this data must be refused"
    message = at.error[0].value
    assert "No user in this data is inactive for 12 months in a row" in message
    assert "the longest gap is 11 months" in message
    assert "Try a churn window of 4 months" in message
    assert not charts(at), "no flat curves under a refused window"
    assert at.session_state["churn_after"] == 4, "a refused window is not passed on"
    # The suggestion is one click away.
    next(b for b in at.button if b.label == "Use 4 months").click().run()
    assert not at.exception and not at.error
    assert at.slider(key="retention.churn_after").value == 4
    assert chart(at, "km") and chart(at, "lines")
    # 11 months: one user of 41 can be seen churning (2.4%): refused too, every curve flat.
    at.slider(key="retention.churn_after").set_value(11).run()
    assert at.error and "(1 of 41 users, 2.4%)" in at.error[0].value


def test_a_long_window_some_users_reach_is_shown_with_a_caution(app_workspace) -> None:
    _monthly_buyers(app_workspace, gone=5)
    at = make_app(PAGE)
    at.slider(key="retention.churn_after").set_value(11).run()
    assert not at.exception and not at.error
    caution = at.warning[0].value
    assert "active in the first 2 months and then gone for 11 months" in caution
    assert "(5 of 45 users, 11.1%)" in caution
    assert chart(at, "km") and chart(at, "heatmap")


def test_last_incomplete_month_is_marked(app_workspace) -> None:
    _monthly_buyers(app_workspace)
    at = make_app(PAGE)
    heatmap = chart(at, "heatmap")
    # "cells": the click targets of the drill-down (retention/charts/drill.py)
    assert [t.get("name") for t in heatmap["data"]] == ["retained", "not yet complete", "cells"]
    note = "2025-01 is incomplete: the data ends on 2025-01-10"
    cells = heatmap["data"][2]["customdata"]
    assert note in cells[-1][5]  # said on hover of the not yet complete cell
    # One cohort (everyone started in January 2024): only its cell of January 2025 is grey.
    assert [note in c[5] for c in cells] == [c[1] == 12 for c in cells]
    assert any(note in c.value for c in at.caption)
    assert any("Grey cells are not complete yet" in c.value for c in at.caption)
    assert any(
        "the data ends on 2025-01-10, before the last month does" in c.value for c in at.caption
    )


def test_logrank_caption_in_plain_numbers(app_workspace, events_dataset, planted) -> None:
    add_segmentation(app_workspace, events_dataset, planted.truth)
    at = make_app(PAGE)
    caption = next(c.value for c in at.caption if "Log-rank test" in c.value)
    assert "with 3 degrees of freedom, p < 0.001." in caption
    assert "p = 0" not in caption and "e-" not in caption and "(s)" not in caption


def _shared_settings_script():
    import streamlit as st

    from pages.ui.retention_views import shared_settings

    period, churn_after = shared_settings()
    st.write(f"period={period} churn_after={churn_after}")


def test_other_pages_get_the_kept_period_and_window_after_a_refresh(
    app_workspace, events_dataset
) -> None:
    from streamlit.testing.v1 import AppTest

    at = make_app(PAGE)
    at.selectbox(key="retention.period").set_value("month").run()
    at.slider(key="retention.churn_after").set_value(3).run()
    assert not at.exception
    # A refresh on another page: a new session that never opened the Retention page.
    other = AppTest.from_function(_shared_settings_script, default_timeout=60)
    other.run()
    assert not other.exception
    assert other.markdown[0].value == "period=month churn_after=3"


def test_many_users_and_many_groups_stay_readable(app_workspace) -> None:
    # 1,200 users in 6 regions, each buying in months 0 and 6.
    users = [f"u{i:04d}" for i in range(1200)]
    events = pd.DataFrame(
        {
            "user_id": users * 2,
            "ts": [pd.Timestamp("2024-01-10")] * 1200 + [pd.Timestamp("2024-07-10")] * 1200,
            "region": [f"R{i % 6}" for i in range(1200)] * 2,
        }
    )
    app_workspace.save_dataset(
        name="Regions",
        source_name="regions.csv",
        sha256="regions-test",
        shape="events",
        frames={"events": events},
        mapping={"user": "user_id", "time": "ts"},
        report={},
    )
    at = make_app(PAGE)
    at.selectbox(key="retention.period").set_value("month").run()
    assert at.dataframe[0].value.iloc[0, 0] == "1,200"  # at-risk counts with separators
    assert any("1,200 users over 7 months" in c.value for c in at.caption)
    at.selectbox(key="retention.breakdown").set_value("region").run()
    assert not at.exception
    km = chart(at, "km")
    assert not [t for t in km["data"] if t.get("fill") == "toself"], "6 groups: no bands"
    assert any("bands are hidden with more than 4 groups" in c.value for c in at.caption)


def test_charts_are_drawn_once_and_follow_every_choice(
    app_workspace, events_dataset, monkeypatch
) -> None:
    """Issue 22: a rerun with the same choices shows the same charts without drawing them again
    (drawing the five figures was most of the page's CPU on the server); a choice that changes
    a chart draws it anew, and going back shows the first one again."""
    import pages.ui.retention_views as views

    drawn = {"heatmap": 0, "km": 0}

    def counting(name, real):
        def draw(*args, **kwargs):
            drawn[name] += 1
            return real(*args, **kwargs)

        return draw

    monkeypatch.setattr(views, "matrix_heatmap", counting("heatmap", views.matrix_heatmap))
    monkeypatch.setattr(views, "survival_figure", counting("km", views.survival_figure))
    at = make_app(PAGE)
    assert not at.exception
    first_heatmap, first_km = chart(at, "heatmap"), chart(at, "km")
    assert drawn == {"heatmap": 1, "km": 1}
    at.run()
    at.run()
    assert drawn == {"heatmap": 1, "km": 1}
    assert chart(at, "heatmap") == first_heatmap and chart(at, "km") == first_km

    at.radio(key="retention.measure").set_value("count").run()  # the heatmap changes
    assert not at.exception
    assert drawn == {"heatmap": 2, "km": 1}
    counts = chart(at, "heatmap")
    assert counts["data"][0]["text"] != first_heatmap["data"][0]["text"]  # numbers of users
    at.radio(key="retention.measure").set_value("percent").run()
    assert drawn == {"heatmap": 2, "km": 1} and chart(at, "heatmap") == first_heatmap

    at.slider(key="retention.churn_after").set_value(6).run()  # the curves change
    assert not at.exception
    assert drawn["km"] == 2 and "6 weeks inactive" in chart(at, "km")["layout"]["title"]["text"]


def test_money_shows_one_chart_at_a_time_and_keeps_the_choice(app_workspace, events_dataset):
    """issue 22: the Money section draws revenue retention or LTV, picked above it (one plotly
    chart less to draw per visit); the LTV in words is shown with either; the choice is kept
    when the page is opened again."""
    at = make_app(PAGE)
    assert not at.exception
    titles = [str(f["layout"].get("title", "")) for f in charts(at)]
    assert any("Revenue retention" in t for t in titles)
    assert not any("LTV" in t for t in titles)
    assert any("per user (over" in c.value for c in at.caption)
    at.radio(key="retention.money_view").set_value("Revenue per user so far (LTV)").run()
    assert not at.exception
    titles = [str(f["layout"].get("title", "")) for f in charts(at)]
    assert any("LTV" in t for t in titles) and not any("Revenue retention" in t for t in titles)
    assert len(charts(at)) == 4
    again = make_app(PAGE)  # a refresh: the workspace remembers the choice
    assert again.radio(key="retention.money_view").value == "Revenue per user so far (LTV)"


def test_heatmap_numbers_and_their_caption_agree(app_workspace) -> None:
    """Over 20 columns the cohort heatmap prints no numbers in its cells (too small to read)
    and its caption says to point at a cell; with few columns it prints them and says nothing
    of the kind."""
    wide = make_planted(n_users=200, n_periods=30, seed=5)
    save_planted(app_workspace, wide, name="Thirty weeks", sha256="planted-30")
    at = make_app(PAGE)
    assert not at.exception, at.exception
    heat = chart(at, "heatmap")
    assert len(heat["data"][0]["x"]) > 20
    assert not heat["data"][0].get("texttemplate")
    assert any("too small to print them in" in c.value for c in at.caption)


def test_a_small_heatmap_prints_its_numbers(app_workspace) -> None:
    _monthly_buyers(app_workspace)  # 13 monthly columns, one cohort
    at = make_app(PAGE)
    heat = chart(at, "heatmap")
    assert heat["data"][0]["texttemplate"] == "%{text}"
    assert not any("too small to print them in" in c.value for c in at.caption)
