"""The Retention page: controls, cohort heatmap, Kaplan–Meier curves, log-rank sentence, caching."""

from __future__ import annotations

import pandas as pd
import pytest

import retention.results
from retention.synth import make_planted
from tests.app.conftest import make_app

PAGE = "pages/3_retention.py"


@pytest.fixture(scope="module")
def planted():
    return make_planted(n_users=300, n_periods=20, seed=4)


@pytest.fixture
def events_dataset(app_workspace, planted) -> str:
    return app_workspace.save_dataset(
        name="Planted",
        source_name="planted.csv",
        sha256="planted-test",
        shape="events",
        frames={"events": planted.events},
        mapping={"user": "user_id", "time": "ts", "amount": "amount", "text": "text"},
        report={},
    )


def add_segmentation(ws, dataset_id: str, truth: pd.DataFrame) -> str:
    run = ws.start_run("segmentation", dataset_id, {"k": 4})
    labels = pd.DataFrame(
        {
            "segment": [0, 1, 2, 3],
            "label": ["Kitchen", "Toys", "Garden", "Fashion"],
            "keywords": ["", "", "", ""],
            "users": truth["segment"].value_counts().sort_index().tolist(),
            "representatives": ["", "", "", ""],
        }
    )
    ws.finish_run(run, metrics={}, artifacts={"assignments": truth, "labels": labels})
    return run


def charts(at) -> list[dict]:
    import json

    return [json.loads(c.proto.spec) for c in at.get("plotly_chart")]


def test_page_without_segmentation(app_workspace, events_dataset) -> None:
    at = make_app(PAGE)
    assert not at.exception
    assert at.selectbox(key="retention.period").value == "auto"
    assert "Automatic (week)" in at.selectbox(key="retention.period").format_func("auto")
    breakdown = at.selectbox(key="retention.breakdown")
    assert breakdown.value == "none"
    assert breakdown.options == ["Nothing (all users)", "Column: country"]
    figures = charts(at)
    assert len(figures) == 2  # heatmap, Kaplan–Meier
    heatmap, km = figures
    assert heatmap["data"][0]["type"] == "heatmap"
    assert [t["name"] for t in km["data"] if t.get("showlegend", True)] == ["All users (n=300)"]
    assert not at.success and not at.info  # one group: no log-rank test
    at_risk = at.dataframe[0].value
    assert at_risk.index.tolist() == ["All users"]
    assert at_risk.iloc[0, 0] == 300


def test_segments_breakdown_shows_logrank_sentence(app_workspace, events_dataset, planted) -> None:
    add_segmentation(app_workspace, events_dataset, planted.truth)
    at = make_app(PAGE)
    assert not at.exception
    assert at.selectbox(key="retention.breakdown").value == "segments"
    assert at.success, "expected the log-rank sentence"
    assert "very unlikely to be chance" in at.success[0].value
    at_risk = at.dataframe[0].value
    assert at_risk.index.tolist() == ["Kitchen", "Toys", "Garden", "Fashion"]
    assert at_risk.iloc[:, 0].sum() == 300
    # The cohort table for one segment only.
    at.selectbox(key="retention.cohort_group").set_value("Toys").run()
    assert not at.exception
    heatmap = charts(at)[0]
    sizes = [int(y.split("n=")[1].rstrip(")")) for y in heatmap["data"][0]["y"]]
    assert sum(sizes) == int((planted.truth["segment"] == 1).sum())


def test_controls_update_results_and_session(app_workspace, events_dataset) -> None:
    at = make_app(PAGE)
    at.radio(key="retention.mode").set_value("unbounded").run()
    assert not at.exception
    assert any("Unbounded" in c.value for c in at.caption)
    at.slider(key="retention.churn_after").set_value(6).run()
    at.selectbox(key="retention.period").set_value("day").run()
    assert not at.exception
    assert at.session_state["churn_after"] == 6
    assert at.session_state["period"] == "day"
    km = charts(at)[1]
    assert "6 days inactive" in km["layout"]["title"]["text"]
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
