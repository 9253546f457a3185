"""Saved views on the Retention page: save the settings by name, reopen them by a link
(``?view=<name>``) in a new session, list and delete them."""

from __future__ import annotations

import datetime as dt

import pytest

from retention.saved_views import list_views, load_view
from retention.synth import make_planted
from tests.app.conftest import ROOT, make_app, save_planted

PAGE = "pages/3_retention.py"


@pytest.fixture
def events_dataset(app_workspace) -> str:
    planted = make_planted(n_users=200, n_periods=40, seed=5)
    return save_planted(app_workspace, planted, sha256="planted-views")


def open_link(view: str):
    """A new session (a browser opening the link) on the Retention page with ``?view=``."""
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    at.run()
    at.switch_page(PAGE)
    at.query_params["view"] = view
    return at.run()


def save_as(at, name: str):
    at.text_input(key="saved_views.retention.name").set_value(name)
    return at.button(key="saved_views.retention.save").click().run()


def test_a_view_is_saved_and_reopened_by_its_link(app_workspace, events_dataset):
    at = make_app(PAGE)
    at.selectbox(key="retention.period").set_value("month").run()
    at.slider(key="retention.churn_after").set_value(3).run()
    at.radio(key="retention.mode").set_value("unbounded").run()
    save_as(at, "Monthly, 3-month churn")
    assert not at.exception
    assert any("Saved the view" in s.value for s in at.success)
    view = load_view(app_workspace, "retention", "Monthly, 3-month churn")
    assert view is not None and view.dataset_id == events_dataset
    assert view.settings["retention.period"] == "month"
    assert view.settings["retention.churn_after"] == 3
    assert view.settings["retention.mode"] == "unbounded"
    # The link is shown, to copy.
    assert any("?view=Monthly%2C%203-month%20churn" in c.value for c in at.code)

    # Other settings later (kept in the workspace as the last ones)...
    at.selectbox(key="retention.period").set_value("week").run()
    at.radio(key="retention.mode").set_value("classic").run()
    assert make_app(PAGE).selectbox(key="retention.period").value == "week"

    # ...and the link brings the saved ones back, in a new session.
    opened = open_link("Monthly, 3-month churn")
    assert not opened.exception
    assert opened.selectbox(key="retention.period").value == "month"
    assert opened.slider(key="retention.churn_after").value == 3
    assert opened.radio(key="retention.mode").value == "unbounded"
    assert any("Opened the saved view" in s.value for s in opened.success)
    assert "view" not in opened.query_params  # opened once; the settings are now the user's
    assert any("3 months inactive" in c.proto.spec for c in opened.get("plotly_chart"))  # KM


def test_views_are_listed_opened_and_deleted(app_workspace, events_dataset):
    at = make_app(PAGE)
    at.selectbox(key="retention.period").set_value("day").run()
    save_as(at, "Daily")
    at.selectbox(key="retention.period").set_value("month").run()
    save_as(at, "Monthly")
    assert [v.name for v in list_views(app_workspace, "retention")] == ["Daily", "Monthly"]
    assert at.expander[0].label == "Saved views"  # one label: a rerun keeps the box open
    assert at.expander[0].proto.expanded  # open once used
    assert any("2 saved so far" in c.value for c in at.caption)
    # Each view's settings in words.
    assert any(
        "period: day · churn window: " in c.value
        and "broken down by: nothing (all users)" in c.value
        for c in at.caption
    )

    at.button(key="saved_views.retention.open.0").click().run()  # "Daily", listed first
    assert not at.exception
    assert at.selectbox(key="retention.period").value == "day"

    at.button(key="saved_views.retention.delete.0").click().run()
    assert not at.exception
    assert any("Deleted the view" in i.value for i in at.info)
    assert [v.name for v in list_views(app_workspace, "retention")] == ["Monthly"]

    gone = open_link("Daily")  # the link of a deleted view says so, and the page still works
    assert not gone.exception
    assert any("no saved view called 'Daily'" in w.value for w in gone.warning)
    assert gone.selectbox(key="retention.period").value == "day"  # the last settings


def test_a_view_without_a_name_is_refused_in_words(app_workspace, events_dataset):
    at = make_app(PAGE)
    save_as(at, "   ")
    assert not at.exception
    assert any("needs a name" in e.value for e in at.error)
    assert list_views(app_workspace, "retention") == []


def test_a_view_keeps_the_analysis_settings_and_its_datasets_cohort_dates(
    app_workspace, events_dataset
):
    """The retention definition (mode, day ranges, % or users) and the cohort dates, which are
    kept per dataset, come back when the view is opened, on the page (the date box already on
    screen) and by its link."""
    at = make_app(PAGE)
    at.radio(key="retention.mode").set_value("brackets").run()
    at.text_input(key="retention.brackets").set_value("1-7, 8+").run()
    at.radio(key="retention.measure").set_value("count").run()
    picker = next(d for d in at.date_input if d.key.startswith("retention.cohort_dates."))
    lo, hi = picker.value
    first, last = lo + dt.timedelta(days=30), hi - dt.timedelta(days=60)
    picker.set_value((first, last)).run()
    save_as(at, "Ranges")
    assert not at.exception
    view = load_view(app_workspace, "retention", "Ranges")
    dates_key = f"retention.cohort_dates.{events_dataset}"
    assert view.settings[dates_key] == [first.isoformat(), last.isoformat()]
    assert view.settings["retention.brackets"] == "1-7, 8+"
    assert view.settings["retention.measure"] == "count"
    assert not [k for k in view.settings if k.startswith("retention.cohort_dates.widget")]
    assert any(
        "counted as back: within ranges of days" in c.value
        and "ranges of days: 1-7, 8+" in c.value
        and f"cohorts that started: {first.isoformat()} to {last.isoformat()}" in c.value
        for c in at.caption
    )

    # Other settings, then Open on the same page: the date box shows the view's dates again.
    at.radio(key="retention.mode").set_value("classic").run()
    picker = next(d for d in at.date_input if d.key.startswith("retention.cohort_dates."))
    picker.set_value((lo, hi)).run()
    at.button(key="saved_views.retention.open.0").click().run()
    assert not at.exception
    assert at.radio(key="retention.mode").value == "brackets"
    picker = next(d for d in at.date_input if d.key.startswith("retention.cohort_dates."))
    assert tuple(picker.value) == (first, last)
    heat = next(c for c in at.get("plotly_chart") if '"heatmap"' in c.proto.spec)
    assert "days 8+" in heat.proto.spec

    # And by its link, in a new session.
    at.radio(key="retention.mode").set_value("unbounded").run()
    opened = open_link("Ranges")
    assert not opened.exception
    assert opened.radio(key="retention.mode").value == "brackets"
    assert opened.text_input(key="retention.brackets").value == "1-7, 8+"
    picker = next(d for d in opened.date_input if d.key.startswith("retention.cohort_dates."))
    assert tuple(picker.value) == (first, last)
