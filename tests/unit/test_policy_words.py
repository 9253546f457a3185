"""What the Policy page says about a run (issue 17): the parts of a policy's value, the settings
it was trained with and how the form differs, stage words and order, and chart layouts that do
not collide."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from retention.charts.campaigns import send_time_histogram
from retention.charts.policy import policy_map, retention_projection, stability_map
from retention.learn import optimum, policy_value, start_value
from retention.mdp import DEFAULT_COSTS, RewardSettings, estimate_mdp
from retention.policy_runs import (
    PolicyChoices,
    PolicyForm,
    exact_preview,
    form_differences,
    policy_of,
    request_of,
    trained_with,
    value_parts,
)
from retention.words import stage_rank, stage_word


@pytest.fixture(scope="module")
def mdp():
    """A small MDP estimated from a hand-made panel: 2 segments, users coming and going."""
    rng = np.random.default_rng(0)
    rows = []
    for u in range(60):
        active = rng.random(12) < (0.7 if u % 2 else 0.35)
        recency, stage = 0, []
        for t, a in enumerate(active):
            recency = 0 if a else recency + 1
            stage.append(
                "active" if recency == 0 else "lapsing" if recency == 1 else
                "at_risk" if recency < 4 else "churned"
            )  # fmt: skip
            rows.append((str(u), t, stage[-1], bool(a), 10.0 * a * (1 + u % 3)))
    panel = pd.DataFrame(rows, columns=["user_id", "t", "stage", "active", "revenue"])
    assign = pd.DataFrame(
        {"user_id": [str(u) for u in range(60)], "segment": [u % 2 for u in range(60)]}
    )
    return estimate_mdp(panel, assign)


def test_value_parts_add_up_to_the_value_and_count_active_periods(mdp):
    reward = RewardSettings(
        retain_reward=1.5, churn_penalty=4.0, revenue_weight=0.05, gamma=0.8,
        action_costs=DEFAULT_COSTS,
    )  # fmt: skip
    solved = mdp.with_reward(reward)
    policy = optimum(solved, 0.8).policy
    parts = value_parts(mdp, policy, reward)
    assert parts.total == pytest.approx(start_value(solved, policy, 0.8))
    assert parts.total == pytest.approx(
        1.5 * parts.active_periods + 0.05 * parts.revenue - 4.0 * parts.churns - parts.cost
    )
    # With no future (γ = 0) the active periods are the chance of being active next period:
    # start distribution x one step of the policy's transitions, by hand.
    now = value_parts(mdp, policy, RewardSettings(gamma=0.0))
    step = mdp.T[np.arange(mdp.n_states), policy]  # s x s'
    active = (mdp.stage_of == 0).astype(float)
    assert now.active_periods == pytest.approx(mdp.start @ step @ active)
    assert -1 <= now.churns <= 1 and now.cost >= 0  # net losses: comebacks count back


def test_exact_preview_is_value_iteration_and_projects_the_best_policy(mdp):
    reward = RewardSettings(churn_penalty=12.0, gamma=0.6)
    shown = exact_preview(mdp, reward)
    v = policy_value(mdp.with_reward(reward), optimum(mdp.with_reward(reward), 0.6).policy, 0.6)
    assert shown.parts.total == pytest.approx(float(mdp.start @ v))
    assert (shown.recommendations["action"] == shown.recommendations["optimal_action"]).all()
    assert "best policy (exact)" in set(shown.projections()["policy"])
    # A stored run's recommendations come back as the same policy of the MDP.
    back = policy_of(mdp, shown.recommendations)
    assert back is not None and (shown.recommendations["action"].to_numpy()
                                 == np.asarray(mdp.actions, dtype=object)[back]).all()  # fmt: skip


def _settings() -> dict:
    return {
        "shape": "events", "algorithm": "q", "gamma": 0.9, "retain_reward": 1.0,
        "churn_penalty": 5.0, "revenue_weight": 0.0, "action_costs": dict(DEFAULT_COSTS),
        "actions": list(DEFAULT_COSTS), "seed": 0, "period": "month", "churn_after": 4,
        "segmentation_run": "seg", "lift": None,
        "learner": {"episodes": 200, "min_epsilon": 0.5, "learning_rate": 1.0},
    }  # fmt: skip


def test_trained_with_names_every_setting_in_the_forms_words():
    line = trained_with(_settings())
    for part in (
        "future counts × 0.9 per month", "reward 1 per active month", "churn penalty 5",
        "revenue weight 0", "discount 0.2", "Q-learning", "200 training rounds", "seed 0",
        "churned after 4 months",
    ):  # fmt: skip
        assert part in line, part


def test_form_differences_name_what_training_would_change():
    choices = PolicyChoices("events", "month", pd.DataFrame(), tuple(DEFAULT_COSTS), ("q",))
    same = PolicyForm(actions=choices.action_table(), epsilon=0.5)
    assert form_differences(same.request(choices, "seg"), _settings()) == []
    other = PolicyForm(actions=choices.action_table(), gamma=0.5, churn_penalty=10.0, epsilon=0.5)
    diffs = form_differences(other.request(choices, "seg"), _settings())
    assert diffs == ["future weight 0.5 (this run: 0.9)", "churn penalty 10 (this run: 5)"]
    request = request_of(_settings())
    assert request is not None and request.reward.churn_penalty == 5.0
    assert request_of({"shape": "snapshot"}) is None


def test_stages_read_as_words_in_lifecycle_order():
    assert stage_word("at_risk") == "at risk"
    assert sorted(["churned", "at_risk", "active", "lapsing"], key=stage_rank) == [
        "active", "lapsing", "at_risk", "churned",
    ]  # fmt: skip
    rec = pd.DataFrame(
        {"segment": [0] * 4, "stage": ["churned", "at_risk", "active", "lapsing"],
         "action": ["none"] * 4}
    )  # fmt: skip
    fig = policy_map(rec, ["none"])
    assert list(fig.data[0].x) == ["active", "lapsing", "at risk", "churned"]


def test_send_time_bars_are_labelled_in_the_axis_unit():
    sends = pd.DataFrame({"label": ["Mon", "Tue"], "share": [0.75, 0.25], "sends": [300, 100]})
    fig = send_time_histogram(sends, "week")
    assert "%" in fig.layout.yaxis.title.text
    assert list(fig.data[0].text) == ["75%", "25%"]
    assert list(fig.data[0].y) == [75.0, 25.0]


def test_projection_legend_and_axis_titles_do_not_collide():
    proj = pd.DataFrame(
        [(g, p, t, 0.9**t) for g in range(3) for p in ("learned", "always none")
         for t in range(4)], columns=["segment", "policy", "period", "active_share"],
    )  # fmt: skip
    fig = retention_projection(proj, period_word="weeks")
    assert fig.layout.legend.orientation == "v" and fig.layout.legend.x >= 1.0  # beside, not under
    layout = fig.layout.to_plotly_json()
    titled = {name for name, ax in layout.items() if name.startswith("xaxis")
              and ax.get("title", {}).get("text")}  # fmt: skip
    # 3 panels in 2 columns: "weeks from now" under panel 3 (column 1) and panel 2 (column 2,
    # nothing below it), never between two panels
    assert titled == {"xaxis2", "xaxis3"}


def test_stability_ticks_only_on_the_outer_panels():
    rows = [
        (g, st, gm, pen, "none")
        for g in range(2) for st in ("active", "at_risk") for gm in (0.5, 0.9, 0.99)
        for pen in (0.0, 5.0)
    ]  # fmt: skip
    frame = pd.DataFrame(rows, columns=["segment", "stage", "gamma", "churn_penalty", "action"])
    layout = stability_map(frame, ["none"], current=(0.9, 5.0)).layout.to_plotly_json()
    x_ticks = [k for k, ax in layout.items() if k.startswith("xaxis") and ax.get("showticklabels")]
    y_ticks = [k for k, ax in layout.items() if k.startswith("yaxis") and ax.get("showticklabels")]
    assert len(x_ticks) == 2 and len(y_ticks) == 2  # one row of γ ticks, one column of penalties
    titles = [a["text"] for a in layout["annotations"]]
    assert "at risk" in titles and "at_risk" not in titles


def test_disagreement_sentence_explains_a_share_that_reads_100_percent():
    from pages.ui.policy_views import disagreement_sentence

    result = SimpleNamespace(
        disagreements=pd.DataFrame({"value_loss": [0.0004]}),
        fraction_of_optimum=0.99996,
    )
    text = disagreement_sentence(result, 8)
    assert text.startswith("In 1 of 8 segment × stage cells")
    assert "worth almost the same" in text and "less than 0.001 points per user" in text
    assert "100.0% (rounded)" in text
    assert "best one; there the two actions" in text and "(at most less" not in text
    # Not near-ties: one sentence to train more, then its own sentence.
    far = SimpleNamespace(disagreements=result.disagreements, fraction_of_optimum=0.9)
    assert disagreement_sentence(far, 8).endswith(
        "best one. Train with more rounds (or another seed) to get closer to the best."
    )


def test_value_sentence_adds_up_and_reads_net_comebacks_as_such():
    from pages.ui.policy_views import value_sentence
    from retention.policy_runs import ValueParts

    parts = ValueParts(
        active_periods=6.0, revenue=100.0, churns=-0.1, cost=0.5, total=6.0 + 0.5 - 0.5, gamma=0.9
    )
    reward = {"retain_reward": 1.0, "churn_penalty": 5.0, "revenue_weight": 0.0}
    text = value_sentence(parts, reward, "week", "GBP")
    assert "0.10 more users won back than lost" in text and "-0.1" not in text
    assert "1 × 6.00 + 5 × 0.10 − 0.50 = 6.00." in text and "£100.00" in text
