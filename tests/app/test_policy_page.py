"""The Policy page: needs a segmentation, trains and stores a policy, reopens and compares runs."""

from __future__ import annotations

import pandas as pd

from retention.samples import SAMPLE_DIR
from tests.app.conftest import make_app

PAGE = "pages/4_policy.py"


def _segment(ws, dataset_id: str) -> str:
    """A finished segmentation run with the planted truth as its assignments."""
    truth = pd.read_csv(SAMPLE_DIR / "planted_truth.csv", dtype={"user_id": str})
    run_id = ws.start_run("segmentation", dataset_id, {"k": 4})
    labels = pd.DataFrame(
        {
            "segment": [0, 1, 2, 3],
            "label": ["home", "kids", "garden", "fashion"],
            "keywords": ["a", "b", "c", "d"],
            "users": truth["segment"].value_counts().sort_index().tolist(),
            "representatives": ["", "", "", ""],
        }
    )
    ws.finish_run(
        run_id,
        metrics={},
        artifacts={"assignments": truth[["user_id", "segment"]], "labels": labels},
    )
    return run_id


def _train(at, **sliders):
    for key, value in {"policy.episodes": 20, **sliders}.items():
        at.slider(key=key).set_value(value)
    next(b for b in at.button if b.label == "Train").click()
    at.run()
    return at


def test_without_segmentation_points_to_segments(app_workspace, planted_dataset):
    at = make_app(PAGE)
    assert not at.exception
    assert any("segmentation" in i.value for i in at.info)


def test_train_store_reopen_and_compare(app_workspace, planted_dataset):
    _segment(app_workspace, planted_dataset)
    at = make_app(PAGE)
    assert not at.exception
    assert any("No policy trained" in i.value for i in at.info)
    # The planted data has a campaign log: no assumed lift table, batch Q-learning offered.
    assert not any("assumption" in w.value for w in at.warning)
    assert "Batch Q-learning on the campaign log" in at.selectbox(key="policy.algorithm").options

    _train(at)
    assert not at.exception, at.exception
    runs = app_workspace.runs(kind="policy", dataset_id=planted_dataset)
    assert len(runs) == 1 and runs["status"].iloc[0] == "done"
    assert runs["settings"].iloc[0]["learner"]["episodes"] == 20
    labels = [m.label for m in at.metric]
    assert labels[:3] == [
        "Learned policy's value",
        "Optimum (value iteration)",
        "Share of the optimum",
    ]
    assert len(at.tabs) >= 6
    ope = at.dataframe[-1].value
    assert {"policy", "estimator", "value", "ci_lo", "ci_hi"} <= set(ope.columns)

    _train(at, **{"policy.gamma": 0.5, "policy.penalty": 10.0})
    assert not at.exception
    assert len(app_workspace.runs(kind="policy", dataset_id=planted_dataset)) == 2
    at.toggle(key="policy.compare").set_value(True).run()
    assert not at.exception
    diff = next(d.value for d in at.dataframe if "setting" in d.value.columns)
    assert {"gamma", "churn_penalty"} <= set(diff["setting"])

    fresh = make_app(PAGE)  # a refresh reopens the stored runs without training
    assert not fresh.exception
    assert len(fresh.selectbox(key="policy.show").options) == 2


def test_no_campaign_log_shows_the_lift_assumption(app_workspace, planted_dataset):
    events = app_workspace.load(planted_dataset, "events")
    ds = app_workspace.save_dataset(
        name="events only",
        source_name="x.csv",
        sha256="0",
        shape="events",
        frames={"events": events},
        mapping={},
        report={},
    )
    _segment(app_workspace, ds)
    at = make_app()
    at.sidebar.selectbox[0].set_value(ds).run()
    at.switch_page(PAGE).run()
    assert not at.exception
    assert any("assumption" in w.value for w in at.warning)
    assert len(at.selectbox(key="policy.algorithm").options) == 2  # no batch option
    _train(at)
    assert not at.exception
    assert any("no logged actions" in i.value.lower() for i in at.info)
