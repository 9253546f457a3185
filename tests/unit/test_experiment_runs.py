"""A test's results become a stored policy run: measured cells say "measured in test X" with
their interval, unmeasured ones "assumed" (issue 13)."""

from __future__ import annotations

from dataclasses import replace

import pandas as pd
import pytest

from retention.experiment import PlanSettings, World
from retention.experiment_runs import (
    analyse,
    base_mdp,
    plan_for_dataset,
    store_measured_policy,
)
from retention.results import policy_runs, stored_strategies
from retention.runs import load_policy, run_segmentation, store_dataset
from retention.strategies import (
    effect_source,
    effects_behind,
    lift_is_assumed,
    segment_cards,
    with_effect_sources,
)
from retention.synth import make_planted
from retention.workspace import Workspace


@pytest.fixture(scope="module")
def tested(tmp_path_factory):
    """The planted events (no campaign log) in a workspace, segmented, a test planned on them,
    run in the planted world, analysed and its retrained policy stored."""
    from retention.ingest import ingest

    folder = tmp_path_factory.mktemp("exp")
    planted = make_planted(n_users=2000, n_periods=30, seed=3)
    planted.events.to_csv(folder / "events.csv", index=False)
    ws = Workspace(folder / "ws")
    dataset_id = store_dataset(ws, ingest(folder / "events.csv"), "events.csv")
    seg_run = run_segmentation(ws, dataset_id, settings={"k": 4, "random_state": 0,
                                                         "period": "week"})  # fmt: skip
    steps: list[tuple[float, str]] = []
    plan = plan_for_dataset(ws, dataset_id, seg_run, period="week", churn_after=4,
                            settings=PlanSettings(holdout=0.2, segments=(0, 1, 2)),
                            progress=lambda f, m: steps.append((f, m)))  # fmt: skip
    truth = planted.truth.set_index("user_id")["segment"]
    world_plan = replace(
        plan, assignment=plan.assignment.assign(segment=plan.assignment["user_id"].map(truth))
    )
    campaigns, events = World.planted().simulate_logs(world_plan, seed=2)
    base = base_mdp(ws, dataset_id, seg_run, period="week", churn_after=4,
                    actions=plan.settings.arms)  # fmt: skip
    result = analyse(plan, campaigns, events, base, progress=lambda f, m: steps.append((f, m)))
    run_id = store_measured_policy(ws, dataset_id, result, segmentation_run=seg_run,
                                   period="week", churn_after=4)  # fmt: skip
    yield ws, dataset_id, seg_run, plan, result, run_id, steps
    ws.close()


def test_progress_moves_through_plan_and_results(tested):
    *_, steps = tested
    fractions = [f for f, _ in steps]
    assert len(steps) >= 6 and fractions[-1] == 1.0
    assert any("Measuring" in m for _, m in steps) and any("next wave" in m for _, m in steps)


def test_the_retrained_policy_is_stored_as_the_newest_run_tagged_with_its_test(tested):
    ws, dataset_id, seg_run, plan, result, run_id, _ = tested
    runs = policy_runs(ws, dataset_id, seg_run)
    assert runs.iloc[0]["id"] == run_id
    policy = load_policy(ws, run_id)
    assert policy.settings["experiment"]["plan_id"] == plan.plan_id
    assert not lift_is_assumed(policy.settings)
    label = effect_source(policy.settings)
    assert label.startswith(f"measured in test {plan.plan_id}")
    assert "partly assumed" in label  # segment 3 was left out of the test
    assert set(plan.assignment["segment"]) == {0, 1, 2}
    lifts = pd.DataFrame(policy.settings["experiment"]["lifts"])
    measured = lifts[lifts["source"] == f"measured in test {plan.plan_id}"]
    assumed = lifts[lifts["source"] == "assumed"]
    assert set(measured["segment"]) == {0, 1, 2}
    assert {"active", "lapsing", "at_risk"} <= set(measured["stage"])
    assert 3 in set(assumed["segment"]) and assumed["ci"].isna().all()
    assert all(lo <= lift <= hi for lift, (lo, hi) in zip(measured["lift"], measured["ci"],
                                                         strict=True))  # fmt: skip
    assert policy.ope is not None and not policy.ope.empty
    assert any(f"measured in test {plan.plan_id}" in a for a in policy.assumptions)


def test_strategies_and_downloads_say_measured_in_test_or_assumed(tested):
    ws, dataset_id, seg_run, plan, _, run_id, _ = tested
    stored = stored_strategies(ws, dataset_id, seg_run, run_id, {})
    settings = stored.policy.settings
    view = effects_behind(settings, {}, "week")
    assert view is not None and set(view["source"]) == {
        f"measured in test {plan.plan_id}",
        "assumed",
    }
    measured = view[view["source"] != "assumed"]
    assert (measured["95% interval (%)"] != "—").all()
    assert (view[view["source"] == "assumed"]["95% interval (%)"] == "—").all()
    cards = segment_cards(stored.strategies, period="week", source=effect_source(settings))
    assert any(c.effect and f"measured in test {plan.plan_id}" in c.effect for c in cards)
    table = with_effect_sources(stored.strategies.table, settings)
    acting = table[(table["action"] != "none") & (table["segment"] != 3)
                   & table["stage"].isin(["active", "lapsing", "at_risk"])]  # fmt: skip
    assert (acting["effect_source"] == f"measured in test {plan.plan_id}").all()
    assert acting["effect_ci_lo"].notna().all()


def test_bad_results_store_nothing_and_leave_the_plan_as_it_was(tested):
    from retention.errors import InputError

    ws, dataset_id, seg_run, plan, result, _, _ = tested
    before = list(policy_runs(ws, dataset_id, seg_run)["id"])
    kept = plan.assignment.copy()
    campaigns = pd.DataFrame({"user_id": ["nobody"], "ts": [plan.start], "action": ["none"],
                              "propensity": [0.2]})  # fmt: skip
    base = base_mdp(ws, dataset_id, seg_run, period="week", churn_after=4,
                    actions=plan.settings.arms)  # fmt: skip
    with pytest.raises(InputError, match="not in plan"):
        analyse(plan, campaigns, pd.DataFrame({"user_id": [], "ts": []}), base)
    assert list(policy_runs(ws, dataset_id, seg_run)["id"]) == before
    assert plan.assignment.equals(kept)
