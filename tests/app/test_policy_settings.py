"""The Policy page (issue 17): policies belong to a segmentation, settings survive a refresh and
the run on screen says what it was trained with, the settings panel stays open, and moving a
reward slider previews the exact best policy of the new settings at once."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from retention.learn import value_iteration
from retention.mdp import DEFAULT_ACTIONS, DEFAULT_COSTS, DEFAULT_LIFT, RewardSettings, estimate_mdp
from retention.periods import build_panel
from retention.policy_runs import PolicyForm, policy_choices, train_from_form
from retention.samples import SAMPLE_DIR
from tests.app.conftest import finish_jobs, make_app

PAGE = "pages/4_policy.py"
TRUTH = pd.read_csv(SAMPLE_DIR / "planted_truth.csv", dtype={"user_id": str})


def _segment(ws, dataset_id: str, names: list[str], assignments: pd.DataFrame | None = None):
    """A finished segmentation run named ``names`` (the planted truth by default)."""
    assignments = TRUTH[["user_id", "segment"]] if assignments is None else assignments
    k = len(names)
    run_id = ws.start_run("segmentation", dataset_id, {"k": k})
    labels = pd.DataFrame(
        {"segment": range(k), "label": names, "keywords": [""] * k,
         "users": assignments["segment"].value_counts().sort_index().tolist(),
         "representatives": [""] * k}
    )  # fmt: skip
    ws.finish_run(run_id, metrics={}, artifacts={"assignments": assignments, "labels": labels})
    return run_id


def _events_only(ws, planted_dataset: str) -> str:
    """The planted events without their campaign log (the assumed-lift case), made current."""
    events = ws.load(planted_dataset, "events")
    ds = ws.save_dataset(
        name="events only", source_name="x.csv", sha256="0", shape="events",
        frames={"events": events}, mapping={}, report={},
    )  # fmt: skip
    ws.set_meta("ui.last_dataset", ds)
    return ds


def _chart_specs(at) -> list[dict]:
    return [json.loads(c.proto.spec) for c in at.get("plotly_chart")]


def _texts(at) -> str:
    parts = [e.value for kind in ("caption", "markdown", "info", "warning") for e in at.get(kind)]
    return " ".join(str(p) for p in parts)


def test_a_new_segmentation_hides_the_old_policy(app_workspace, planted_dataset):
    """Train on one segmentation, segment again: the page must not show the old policy under
    the new segments' names; asked for, the old one comes with its own names and a warning."""
    ws = app_workspace
    first = _segment(ws, planted_dataset, ["home", "kids", "garden", "fashion"])
    choices = policy_choices(ws, planted_dataset, "auto")
    form = PolicyForm(actions=choices.action_table(), episodes=20)
    train_from_form(ws, planted_dataset, first, TRUTH[["user_id", "segment"]], choices, form)
    # A second segmentation: 2 segments with other names.
    two = TRUTH[["user_id"]].assign(segment=(TRUTH["segment"] % 2).to_numpy())
    _segment(ws, planted_dataset, ["early birds", "night owls"], two)

    at = make_app(PAGE)
    assert not at.exception, at.exception
    assert any("No policy trained on the current segmentation" in i.value for i in at.info)
    assert not at.metric  # no value of the old policy
    maps = [s for s in _chart_specs(at) if "Recommended action" in str(s["layout"]["title"])]
    assert not maps
    # The preview is the current segmentation's: its two segments, under their names.
    preview = next(s for s in _chart_specs(at) if "Preview" in str(s["layout"]["title"]))
    rows = preview["data"][0]["y"]
    assert len(rows) == 2 and all(("early birds" in r or "night owls" in r) for r in rows)

    at.toggle(key="policy.older").set_value(True).run()
    assert not at.exception, at.exception
    assert any("not on the current one" in w.value for w in at.warning)
    shown = next(s for s in _chart_specs(at) if "Recommended action" in str(s["layout"]["title"]))
    labels = " ".join(shown["data"][0]["y"])
    assert "home" in labels and "fashion" in labels
    assert "early birds" not in labels and "night owls" not in labels


def test_settings_survive_a_refresh_and_the_run_says_what_it_was_trained_with(
    app_workspace, planted_dataset
):
    _segment(app_workspace, planted_dataset, ["home", "kids", "garden", "fashion"])
    at = make_app(PAGE)
    at.slider(key="policy.gamma").set_value(0.5)
    at.slider(key="policy.penalty").set_value(10.0)
    at.slider(key="policy.episodes").set_value(20)
    at.run()
    refreshed = make_app(PAGE)  # a new session: a browser refresh
    assert refreshed.slider(key="policy.gamma").value == 0.5
    assert refreshed.slider(key="policy.penalty").value == 10.0
    assert refreshed.slider(key="policy.episodes").value == 20

    next(b for b in refreshed.button if b.label == "Train").click()
    finish_jobs(refreshed.run())  # training is a background job
    assert not refreshed.exception, refreshed.exception
    again = make_app(PAGE)
    shown = _texts(again)
    assert "Trained with:" in shown
    assert "future counts × 0.5 per week" in shown and "churn penalty 10" in shown
    assert "20 training rounds" in shown
    assert not any("Your settings differ" in i.value for i in again.info)

    again.slider(key="policy.penalty").set_value(2.0).run()
    note = next(i.value for i in again.info if "Your settings differ" in i.value)
    assert "churn penalty 2 (this run: 10)" in note and "press **Train**" in note


def test_the_settings_panel_does_not_snap_shut_after_the_first_training(
    app_workspace, planted_dataset
):
    """Its ``expanded`` argument must not change when the first run appears (Streamlit rebuilds
    an expander whose arguments change, shutting it under the user's hand)."""
    _segment(app_workspace, planted_dataset, ["home", "kids", "garden", "fashion"])
    at = make_app(PAGE)

    def panel():
        return next(e for e in at.expander if e.label == "Reward and learning settings")

    before = panel().proto.expanded
    assert before  # no run yet: opens to invite settings
    at.slider(key="policy.episodes").set_value(20).run()
    next(b for b in at.button if b.label == "Train").click()
    finish_jobs(at.run())
    assert not at.exception, at.exception
    at.slider(key="policy.gamma").set_value(0.8).run()
    assert panel().proto.expanded == before
    at.slider(key="policy.penalty").set_value(7.0).run()
    assert panel().proto.expanded == before


def test_moving_a_slider_previews_the_exact_optimum_of_the_new_settings(
    app_workspace, planted_dataset
):
    """Oracle: value iteration called directly on the MDP estimated from the pandas panel with
    the same actions, lift and reward."""
    ws = app_workspace
    ds = _events_only(ws, planted_dataset)
    _segment(ws, ds, ["home", "kids", "garden", "fashion"])
    at = make_app(PAGE)
    assert not at.exception, at.exception
    at.session_state["policy.preview.tab"] = "Per segment (preview)"  # open that tab
    for gamma, penalty, revenue in ((0.5, 12.0, 0.0), (0.95, 0.0, 0.2)):
        at.slider(key="policy.gamma").set_value(gamma)
        at.slider(key="policy.penalty").set_value(penalty)
        at.slider(key="policy.revenue").set_value(revenue).run()
        assert not at.exception, at.exception
        assert "Preview — exact solution for these settings" in _texts(at)
        table = next(d.value for d in at.dataframe if "Segment" in d.value.columns)

        panel = build_panel(ws.cursor(), ws.table(ds, "events"), period="week")
        reward = RewardSettings(
            churn_penalty=penalty, revenue_weight=revenue, gamma=gamma,
            action_costs=DEFAULT_COSTS,
        )  # fmt: skip
        mdp = estimate_mdp(panel, TRUTH, actions=DEFAULT_ACTIONS, lift=DEFAULT_LIFT, reward=reward)
        _, _, best = value_iteration(mdp, gamma)
        expected = np.asarray(mdp.actions, dtype=object)[best].reshape(4, len(mdp.stages))
        shown = table[["active", "lapsing", "at risk", "churned"]].to_numpy()
        assert (shown == expected).all(), (gamma, penalty, shown, expected)
        assert list(table["Segment"]) == ["home", "kids", "garden", "fashion"]


def test_worth_in_the_users_terms_with_the_datasets_currency(app_workspace, planted_dataset):
    ws = app_workspace
    ws.set_meta(f"dataset.currency.{planted_dataset}", "GBP")
    _segment(ws, planted_dataset, ["home", "kids", "garden", "fashion"])
    at = make_app(PAGE)
    at.slider(key="policy.revenue").set_value(0.1)
    at.slider(key="policy.episodes").set_value(20)
    next(b for b in at.button if b.label == "Train").click()
    finish_jobs(at.run())
    assert not at.exception, at.exception
    shown = _texts(at)
    assert "active weeks" in shown and "£" in shown
    assert "net losses" in shown or "more users won back than lost" in shown
    assert "earlier reward rule" not in shown  # its worth is broken down: the parts add up
    assert "1 point is worth £10.00 of revenue" in shown  # the action costs, in money
    assert all("points per user" in m.value for m in at.metric[:2])
    assert "value −" not in shown and "at_risk" not in shown
