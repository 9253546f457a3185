"""The Test page: plan a test on the planted demo, and the results view (SRM warning, measured
effects) on a simulated test."""

from __future__ import annotations

import pytest

from tests.app.conftest import make_app


@pytest.fixture
def segmented(app_workspace, planted_dataset):
    """The planted demo with a 4-segment segmentation in the app's workspace."""
    from retention.runs import run_segmentation

    run_segmentation(app_workspace, planted_dataset, settings={"k": 4, "random_state": 0})
    return planted_dataset


def test_test_page_plans_a_test_in_plain_words(segmented):
    at = make_app("pages/6_test.py")
    assert not at.exception, at.exception
    assert at.title[0].value == "Test"
    helps = [w.proto.help for w in at.number_input]
    assert any("minimum detectable effect" in h for h in helps)
    assert any("significance level" in h for h in helps)
    at.button[0].click().run()  # the form's "Plan the test"
    assert not at.exception, at.exception
    table = at.dataframe[0].value
    assert {"Users now", "Chance active the next week now (%)", "Users needed per strategy",
            "Can the test tell?"} <= set(table.columns)  # fmt: skip
    assert any("cannot reach power" in w.value for w in at.warning)
    labels = [b.proto.label for b in at.get("download_button")]
    assert labels == ["Assignment (CSV)", "Plan (JSON)"]


def test_test_page_without_segments_points_to_segments(app_workspace, planted_dataset):
    at = make_app("pages/6_test.py")
    assert not at.exception
    assert any("Find segments first" in i.value for i in at.info)


def test_results_view_warns_of_a_sample_ratio_mismatch():
    from streamlit.testing.v1 import AppTest

    def page():
        import duckdb

        from pages.ui.test_views import results_section
        from retention.experiment import PlanSettings, World, plan_inputs, plan_test
        from retention.experiment_runs import analyse
        from retention.mdp import mdp_from_summary, summarize_events
        from retention.synth import make_planted

        planted = make_planted(n_users=3000, n_periods=30, seed=3)
        con = duckdb.connect()
        inputs = plan_inputs(con, planted.events, planted.truth, period="week")
        plan = plan_test(inputs.users, inputs.baseline, PlanSettings(), start=str(inputs.start),
                         periods=6)  # fmt: skip
        campaigns, events = World.planted().simulate_logs(plan, seed=1)
        dropped = plan.assignment[plan.assignment["action"] == "discount"]["user_id"]
        dropped = dropped.iloc[: len(dropped) // 5]  # a fifth of one arm never logged
        campaigns = campaigns[~campaigns["user_id"].isin(dropped)]
        summary = summarize_events(con, planted.events, planted.truth, period="week")
        base = mdp_from_summary(summary, lift={a: 1.0 for a in plan.settings.arms})
        results_section(analyse(plan, campaigns, events, base), {}, "week")

    at = AppTest.from_function(page, default_timeout=120)
    at.run()
    assert not at.exception, at.exception
    assert any("do not match the planned shares" in w.value for w in at.warning)
    assert any("measured in test" in m.value for m in at.markdown)
    assert "Verdict" in at.dataframe[0].value.columns
    labels = [b.proto.label for b in at.get("download_button")]
    assert labels == ["Measured effects (CSV)", "Next wave (CSV)"]


@pytest.fixture
def measured(app_workspace, segmented):
    """A test planned on the planted demo, run in the planted world, its retrained policy
    stored as the newest policy run (what the Test page does after an upload)."""
    import pandas as pd

    from retention.experiment import PlanSettings, simulate_test
    from retention.experiment_runs import analyse, base_mdp, plan_for_dataset, store_measured_policy
    from retention.samples import SAMPLE_DIR

    seg_run = app_workspace.latest_run("segmentation", segmented).id
    plan = plan_for_dataset(app_workspace, segmented, seg_run, period="week", churn_after=4,
                            settings=PlanSettings())  # fmt: skip
    truth = pd.read_csv(SAMPLE_DIR / "planted_truth.csv", dtype={"user_id": str})
    campaigns, events = simulate_test(plan, truth, seed=1)
    base = base_mdp(app_workspace, segmented, seg_run, period="week", churn_after=4,
                    actions=plan.settings.arms)  # fmt: skip
    result = analyse(plan, campaigns, events, base)
    store_measured_policy(app_workspace, segmented, result, segmentation_run=seg_run,
                          period="week", churn_after=4)  # fmt: skip
    return plan.plan_id


def test_strategies_and_policy_pages_show_the_effects_measured_in_the_test(measured):
    at = make_app("pages/5_strategies.py")
    assert not at.exception, at.exception
    heads = [h.value for h in at.subheader]
    assert any(f"What the test measured (measured in test {measured}" in h for h in heads)
    table = next(d.value for d in at.dataframe if "source" in d.value.columns)
    assert f"measured in test {measured}" in set(table["source"])
    assert "assumed" in set(table["source"])  # churned users were not in the test
    text = " ".join(m.value for m in at.markdown) + " ".join(c.value for c in at.caption)
    assert f"measured in test {measured}" in text
    assert not any("(assumed)**: the effect comes from the assumed lift table" in c.value
                   for c in at.caption)  # fmt: skip

    at = make_app("pages/4_policy.py")
    assert not at.exception, at.exception
    heads = [h.value for h in at.subheader]
    assert any(f"Effects behind this policy (measured in test {measured}" in h for h in heads)
