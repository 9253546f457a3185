"""Issue 19 (s7-segdraw): the Segments page draws a finished run without doing any work twice:
each chart built once per run and names, the run read once, the CRM CSV made on the click."""

from __future__ import annotations

import io
import json

import pandas as pd
import plotly.io as pio
import pytest
import streamlit

import pages.ui.segments_views as views
import retention.drill
import retention.workspace
from retention.charts.segments import (
    segment_map,
    segment_retention,
    segment_sizes,
    silhouette_curve,
)
from retention.drill import crm_users
from retention.synth import make_planted
from retention.words import segment_name
from tests.app.conftest import finish_jobs, make_app
from tests.fakes import save_events

PAGE = "pages/2_segments.py"
CSV_LABEL = "Download user → segment (CSV)"
BUILDERS = ("segment_map", "segment_sizes", "segment_retention", "silhouette_curve")


@pytest.fixture(scope="module")
def planted():
    return make_planted(n_users=150, n_periods=12, seed=3, n_segments=3)


@pytest.fixture
def built(monkeypatch):
    """How many times each chart of the page was built."""
    counts = dict.fromkeys(BUILDERS, 0)
    for name in BUILDERS:
        real = getattr(views, name)

        def counted(*args, _real=real, _name=name, **kwargs):
            counts[_name] += 1
            return _real(*args, **kwargs)

        monkeypatch.setattr(views, name, counted)
    return counts


@pytest.fixture
def csv_button(monkeypatch):
    """What the users CSV button was given on the page's last run."""
    got: dict = {}
    real = streamlit.download_button

    def spy(label, data=None, *args, **kwargs):
        if label == CSV_LABEL:
            got["data"] = data
        return real(label, data, *args, **kwargs)

    monkeypatch.setattr(streamlit, "download_button", spy)
    return got


def _auto_run(at):
    """Find segments with the automatic k (so the "how k was chosen" chart is drawn too)."""
    at.selectbox(key="segments.k").set_value("auto").run()
    next(b for b in at.button if b.label == "Find segments").click().run()
    finish_jobs(at)
    assert not at.exception, at.exception
    return at


def _specs(at) -> list[dict]:
    return [json.loads(c.proto.spec) for c in at.get("plotly_chart")]


def test_each_chart_is_built_once_per_run_and_redrawn_after_a_rename(app_workspace, planted, built):
    dataset_id = save_events(app_workspace, planted.events)
    at = _auto_run(make_app(PAGE))
    assert built == dict.fromkeys(BUILDERS, 1)
    first = _specs(at)

    # The charts on screen are exactly those the builders draw from the stored run.
    run = app_workspace.load_run(app_workspace.runs("segmentation", dataset_id)["id"].iloc[0])
    names = {int(r.segment): str(r.label) for r in run.artifacts["labels"].itertuples()}
    profile, period = run.artifacts["profile"], run.metrics.get("period")
    expected = [
        segment_map(run.artifacts["map2d"], names),
        segment_sizes(profile, names),
        segment_retention(profile, names, period),
        silhouette_curve(run.metrics),
    ]
    assert first == [json.loads(pio.to_json(f, validate=False)) for f in expected]

    at.run()  # another rerun of the page (any click on it): nothing built again, same charts
    at.run()
    assert built == dict.fromkeys(BUILDERS, 1)
    assert _specs(at) == first

    # A rename changes the names on the charts: they are drawn again, with the new name.
    at.text_input(key=f"segments.name.{run.id}.0").set_value("Gardeners")
    next(b for b in at.button if b.label == "Save names").click().run()
    assert not at.exception
    assert built["segment_map"] == 2 and built["silhouette_curve"] == 1  # no names on it
    assert "Gardeners" in [t["name"] for t in _specs(at)[0]["data"]]


def test_a_rerun_does_not_read_the_shown_run_again(app_workspace, planted, monkeypatch):
    save_events(app_workspace, planted.events)
    at = _auto_run(make_app(PAGE))
    reads: list[str] = []
    real = retention.workspace.Workspace.load_run

    def counted(self, run_id):
        reads.append(run_id)
        return real(self, run_id)

    monkeypatch.setattr(retention.workspace.Workspace, "load_run", counted)
    at.run()
    at.run()
    assert not at.exception and reads == []
    assert [m.value for m in at.metric if m.label == "Segments"]


def test_the_crm_csv_is_made_on_the_click_and_holds_every_user(
    app_workspace, planted, csv_button, monkeypatch
):
    dataset_id = save_events(app_workspace, planted.events)
    made: list[int] = []
    real = views.to_csv_bytes

    def counted(frame):
        made.append(len(frame))
        return real(frame)

    monkeypatch.setattr(views, "to_csv_bytes", counted)
    read: list[str] = []  # whose users' activity (every event read) was computed
    real_activity = retention.drill.user_activity

    def activity(con, ref, **kwargs):
        read.append(ref)
        return real_activity(con, ref, **kwargs)

    monkeypatch.setattr(retention.drill, "user_activity", activity)
    at = _auto_run(make_app(PAGE))
    at.run()
    assert made == [] and read == []  # drawing the page made no CSV, read no activity (s8)
    data = csv_button["data"]
    assert callable(data)
    got = pd.read_csv(io.BytesIO(data()), dtype={"user_id": str})
    assert made == [150] and len(read) == 1

    # The oracle: the library's CSV for a CRM (last seen, active periods, spend), named.
    run = app_workspace.load_run(app_workspace.runs("segmentation", dataset_id)["id"].iloc[0])
    names = {int(r.segment): str(r.label) for r in run.artifacts["labels"].itertuples()}
    want = crm_users(app_workspace, dataset_id, run.artifacts["assignments"], "auto")
    want = want.assign(name=want["segment"].map(lambda s: segment_name(names, s)))
    want = pd.read_csv(io.BytesIO(want.to_csv(index=False).encode()), dtype={"user_id": str})
    pd.testing.assert_frame_equal(got, want)


def test_another_k_reuses_the_users_activity_for_the_crm_csv(
    app_workspace, planted, csv_button, monkeypatch
):
    """issue 19: the CSV's last seen, active periods and spend depend on the dataset and the
    period only. Drawing a run reads no activity (s8); the first click reads it once, and the
    click after a re-run with another k reuses it (s7)."""
    calls: list[str] = []
    original = retention.drill.user_activity

    def counted(con, events, **kwargs):
        calls.append(kwargs.get("period", "auto"))
        return original(con, events, **kwargs)

    monkeypatch.setattr(retention.drill, "user_activity", counted)
    save_events(app_workspace, planted.events)
    at = _auto_run(make_app(PAGE))
    assert calls == []
    first = pd.read_csv(io.BytesIO(csv_button["data"]()), dtype={"user_id": str})
    assert len(calls) == 1
    at.selectbox(key="segments.k").set_value(4).run()
    next(b for b in at.button if b.label == "Find segments").click().run()
    finish_jobs(at)
    assert not at.exception, at.exception
    assert [m.value for m in at.metric if m.label == "Segments"] == ["4"]
    assert len(calls) == 1  # the draw of the second run read nothing
    second = pd.read_csv(io.BytesIO(csv_button["data"]()), dtype={"user_id": str})
    assert len(calls) == 1  # its CSV reused the users' activity
    assert second["user_id"].tolist() == first["user_id"].tolist()
    assert second["segment"].nunique() == 4
