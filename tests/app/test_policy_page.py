"""The Policy page: needs a segmentation, trains and stores a policy, reopens and compares runs."""

from __future__ import annotations

import numpy as np
import pandas as pd

from retention.learn import QLearner
from retention.periods import build_panel
from retention.policy import train_policy
from retention.runs import save_policy
from retention.samples import SAMPLE_DIR
from tests.app.conftest import finish_jobs, make_app, truth_segmentation

PAGE = "pages/4_policy.py"


def _train(at, **sliders):
    for key, value in {"policy.episodes": 20, **sliders}.items():
        at.slider(key=key).set_value(value)
    next(b for b in at.button if b.label == "Train").click()
    at.run()
    return finish_jobs(at)  # training is a background job


def test_without_segmentation_points_to_segments(app_workspace, planted_dataset):
    at = make_app(PAGE)
    assert not at.exception
    assert any("segmentation" in i.value for i in at.info)


def test_train_store_reopen_and_compare(app_workspace, planted_dataset):
    truth_segmentation(app_workspace, planted_dataset)
    at = make_app(PAGE)
    assert not at.exception
    assert any("No policy trained" in i.value for i in at.info)
    # The planted data has a campaign log: no assumed lift table, batch Q-learning offered.
    assert not any("assumption" in w.value for w in at.warning)
    assert (
        "Only what the campaign log shows (batch Q-learning)"
        in at.selectbox(key="policy.algorithm").options
    )

    _train(at)
    assert not at.exception, at.exception
    runs = app_workspace.runs(kind="policy", dataset_id=planted_dataset)
    assert len(runs) == 1 and runs["status"].iloc[0] == "done"
    assert runs["settings"].iloc[0]["learner"]["episodes"] == 20
    labels = [m.label for m in at.metric]
    assert labels[:3] == ["Learned policy's worth", "Best possible", "Share of the best"]
    assert len(at.tabs) >= 6
    # The check on real outcomes (the page's last table is now "Who is where now").
    ope_cols = {"policy", "estimator", "value", "ci_lo", "ci_hi"}
    assert any(ope_cols <= set(d.value.columns) for d in at.dataframe)

    _train(at, **{"policy.gamma": 0.5, "policy.penalty": 10.0})
    assert not at.exception
    assert len(app_workspace.runs(kind="policy", dataset_id=planted_dataset)) == 2
    at.toggle(key="policy.compare").set_value(True).run()
    assert not at.exception
    diff = next(d.value for d in at.dataframe if "setting" in d.value.columns)
    assert {"future weight γ (discount)", "churn penalty"} <= set(diff["setting"])
    assert any("cannot be compared" in w.value for w in at.warning)  # other rewards, other points

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
    truth_segmentation(app_workspace, ds)
    at = make_app()
    at.sidebar.selectbox[0].set_value(ds).run()
    at.switch_page(PAGE).run()
    assert not at.exception
    assert any("assumption" in w.value for w in at.warning)
    assert len(at.selectbox(key="policy.algorithm").options) == 2  # no batch option
    _train(at)
    assert not at.exception
    assert any("no logged actions" in i.value.lower() for i in at.info)


def test_reopens_runs_stored_in_other_shapes(app_workspace, planted_dataset):
    """Runs stored by the command-line pipeline or by older versions (settings of another shape,
    thinner metadata, missing tables) are shown without a traceback; one that cannot be shown
    says so."""
    seg_run = truth_segmentation(app_workspace, planted_dataset)
    truth = pd.read_csv(SAMPLE_DIR / "planted_truth.csv", dtype={"user_id": str})
    panel = build_panel(
        app_workspace.cursor(), app_workspace.table(planted_dataset, "events"), period="week"
    )
    result = train_policy(
        panel, truth, learner=QLearner(episodes=5, n_users=300), gammas=[0.9], penalties=[5.0]
    )
    ws = app_workspace
    # The pipeline's shape: the learner's settings plus where they came from and the request.
    request = {"segmentation_run": seg_run, "period": "week", "churn_after": 4, "episodes": 5}
    result.settings.update(request, request=request)
    save_policy(ws, planted_dataset, result)
    # An older pipeline: the bare request as settings, a thin meta, no stored tables.
    old = ws.start_run("policy", planted_dataset, {"episodes": 200, "seed": 1})
    recs = result.recommendations.drop(columns=["n", "optimal_action"])
    ws.finish_run(
        old,
        metrics={"value": result.value},
        artifacts={"recommendations": recs, "meta": {"actions": list(result.actions)}},
    )
    at = make_app(PAGE)
    assert not at.exception, at.exception
    # The older run records no segmentation: hidden until asked for, then shown with a warning.
    assert len(at.selectbox(key="policy.show").options) == 1
    at.toggle(key="policy.older").set_value(True).run()
    show = at.selectbox(key="policy.show")
    assert show.value != old  # the current segmentation's run comes first
    show.set_value(old).run()
    assert not at.exception, at.exception
    assert any("not on the current one" in w.value for w in at.warning)
    assert [m.value for m in at.metric][:3] == [f"{result.value:.2f} points per user", "—", "—"]
    assert any("no stability map" in i.value for i in at.info)
    at.toggle(key="policy.compare").set_value(True).run()
    assert not at.exception, at.exception
    diff = next(d.value for d in at.dataframe if "setting" in d.value.columns)
    assert "future weight γ (discount)" in set(diff["setting"]) and "request" not in set(
        diff["setting"]
    )

    # A run with neither Q-table nor recommendations: an error message, not a traceback.
    broken = ws.start_run("policy", planted_dataset, {"seed": 2})
    ws.finish_run(broken, metrics={}, artifacts={"meta": {}})
    at = make_app(PAGE)  # the toggle is remembered: the older runs are still offered
    assert not at.exception, at.exception
    at.selectbox(key="policy.show").set_value(broken).run()
    assert any("cannot be shown" in e.value for e in at.error)
    at.selectbox(key="policy.show").set_value(old).run()
    assert not at.exception, at.exception
    assert np.isclose(float(at.metric[0].value.split()[0]), result.value, atol=1e-2)


def test_campaign_checks_show_the_rule_and_warn_on_a_mistimed_log(app_workspace):
    """Sends at the end of the week before, stored with the rule 'start': the page names the
    rule and warns; the evidence table is there."""
    from retention.ingest import prepare
    from retention.policy_runs import PolicyForm, policy_choices, train_from_form
    from retention.runs import store_dataset
    from retention.synth import make_planted

    planted = make_planted(n_users=600, n_periods=20, seed=1, send_time="end_before")
    prepared = prepare(
        planted.events,
        {"user": "user_id", "time": "ts", "amount": "amount", "text": "text", "event": "event"},
        "events",
        campaigns=planted.campaigns,
        campaign_mapping={"user": "user_id", "time": "ts", "action": "action"},
        campaign_timing="start",
    )
    ds = store_dataset(app_workspace, prepared, "mistimed")
    run_id = app_workspace.start_run("segmentation", ds, {"k": 4})
    labels = pd.DataFrame(
        {"segment": [0, 1, 2, 3], "label": ["a", "b", "c", "d"], "keywords": ["", "", "", ""],
         "users": [150] * 4, "representatives": ["", "", "", ""]}
    )  # fmt: skip
    app_workspace.finish_run(
        run_id, metrics={}, artifacts={"assignments": planted.truth, "labels": labels}
    )
    choices = policy_choices(app_workspace, ds, "week")
    assert choices.timing == "start"
    form = PolicyForm(actions=choices.action_table(), episodes=20)
    train_from_form(app_workspace, ds, run_id, planted.truth, choices, form)
    at = make_app(PAGE)
    assert not at.exception, at.exception
    shown = " ".join(c.value for c in at.caption)
    assert "Campaign timing: 'start'" in shown
    warnings = " ".join(w.value for w in at.warning)
    assert "'nearest'" in warnings
    assert any("decisions with the action" in d.value.columns for d in at.dataframe)


def test_who_is_where_now_lists_the_users_of_a_clicked_stage(app_workspace, planted_dataset):
    """Under the policy: users per segment and stage now (the states it acts on); clicking a
    count lists exactly those users (segment, stage, last seen, active periods, spend) with a
    CSV download, as on the Strategies page."""
    from retention.periods import user_stages
    from retention.words import stage_word

    seg_run = truth_segmentation(app_workspace, planted_dataset)
    ws = app_workspace
    events = ws.table(planted_dataset, "events")
    panel = build_panel(ws.cursor(), events, period="week")
    truth = pd.read_csv(SAMPLE_DIR / "planted_truth.csv", dtype={"user_id": str})
    result = train_policy(
        panel, truth, learner=QLearner(episodes=5, n_users=300), gammas=[0.9], penalties=[5.0]
    )
    request = {"segmentation_run": seg_run, "period": "week", "churn_after": 4, "episodes": 5}
    result.settings.update(request, request=request)
    save_policy(ws, planted_dataset, result)

    at = make_app(PAGE)
    assert not at.exception, at.exception
    assert any(h.value == "Who is where now" for h in at.subheader)
    counts = next(d.value for d in at.dataframe if "Segment" in d.value.columns)
    # The oracle: each user's stage now (churn after 4 weeks) crossed with their segment.
    stages = user_stages(ws.cursor(), events, period="week", churn_after=4)
    both = truth.merge(stages, on="user_id")
    expected = pd.crosstab(both["segment"], both["stage"].map(stage_word))
    assert list(counts["Segment"]) == ["home", "kids", "garden", "fashion"]
    for column in counts.columns[1:]:
        assert counts[column].tolist() == expected[column].tolist()

    stage = next(c for c in counts.columns[1:] if counts[c].iloc[1] > 0)
    at.session_state["policy.stage_counts"] = {
        "selection": {"rows": [], "columns": [], "cells": [[1, stage]]}
    }
    at.run()
    assert not at.exception, at.exception
    assert any(m.value == f"**kids: users {stage} now**" for m in at.markdown)
    listed = next(d.value for d in at.dataframe if "user_id" in d.value.columns)
    assert len(listed) == counts[stage].iloc[1]
    mine = both[(both["segment"] == 1) & (both["stage"].map(stage_word) == stage)]
    assert set(listed["user_id"]) == set(mine["user_id"])
    assert set(listed["stage"]) == {stage}
    assert {"last_seen", "active_periods", "spend"} <= set(listed.columns)
    labels = [b.proto.label for b in at.get("download_button")]
    assert f"Download these {len(listed):,} users (CSV)" in labels
