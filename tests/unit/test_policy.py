"""The policy chain (estimate → fit → diagnose → evaluate), the snapshot policy and the Policy
page's library calls, on tiny hand-built data whose answers are known by hand."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from retention.errors import InputError
from retention.evaluate import split_users
from retention.learn import QLearner, optimum, start_value
from retention.mdp import RewardSettings, estimate_mdp, tabular_mdp
from retention.policy import (
    encoded_log,
    snapshot_stage,
    train_policy,
    train_snapshot_policy,
)
from retention.policy_runs import PolicyChoices, PolicyForm, PolicyRequest, settings_diff
from retention.strategies import build_strategies, user_actions
from tests.unit.test_mdp import ASSIGN, PANEL, _panel

FAST = {"learner": QLearner(episodes=3, n_users=50), "gammas": [0.9], "penalties": [5.0]}


def _logged_panel() -> tuple[pd.DataFrame, pd.DataFrame, list[str]]:
    """Ten users, all active then lapsing then active; the held-out users of seed 0."""
    users = [f"u{i}" for i in range(10)]
    panel = _panel({u: "AALA" for u in users})
    assign = pd.DataFrame({"user_id": users, "segment": 0})
    mask = split_users(users, test_size=0.3, seed=0)
    held_out = [u for u, out in zip(users, mask, strict=True) if out]
    return panel, assign, held_out


def test_an_action_only_held_out_users_got_is_its_own_action():
    """Fix: the held-out user's 'sms' was coded -1, i.e. read as the last action."""
    panel, assign, held_out = _logged_panel()
    train_user = next(u for u in assign["user_id"] if u not in held_out)
    campaigns = pd.DataFrame(
        {"user_id": [train_user, held_out[0]], "t": [1, 1], "action": ["discount", "sms"]}
    )
    result = train_policy(panel, assign, campaigns=campaigns, n_bootstrap=10, **FAST)
    assert result.actions == ("none", "discount", "sms")
    assert "always sms" in set(result.ope["policy"])
    # The encoder never maps an action the MDP lacks onto another one.
    mdp = estimate_mdp(PANEL, ASSIGN)
    rows = pd.DataFrame(
        {"user_id": ["u1"], "segment": [0], "stage": ["active"], "next_stage": ["active"],
         "action": ["sms"], "propensity": [np.nan]}
    )  # fmt: skip
    with pytest.raises(InputError, match="sms"):
        encoded_log(mdp, rows)


def test_missing_recency_is_unknown_not_churned():
    recency = pd.Series([0, 1, 2, 3, 4, 9, None, "n/a"])
    assert snapshot_stage(recency, churn_after=4).tolist() == [
        "active", "lapsing", "at_risk", "at_risk", "churned", "churned", "unknown", "unknown",
    ]  # fmt: skip


def _hillstrom_like(n: int = 600) -> pd.DataFrame:
    """Three arms with the same outcome (a tie everywhere): doing nothing must win the tie."""
    arms = ["Mens E-Mail", "No E-Mail", "Womens E-Mail"]
    return pd.DataFrame(
        {
            "user_id": [f"u{i}" for i in range(n)],
            "action": [arms[i % 3] for i in range(n)],
            "outcome": 0.0,
            "recency": [None if i % 10 == 0 else i % 6 for i in range(n)],
        }
    )


def test_snapshot_ties_go_to_the_data_control_arm_and_unknown_recency_is_a_stage():
    result = train_snapshot_policy(_hillstrom_like(), reward=RewardSettings(action_costs={}))
    assert result.actions[0] == "No E-Mail"
    assert set(result.recommendations["action"]) == {"No E-Mail"}
    assert "unknown" in result.stages and "churned" in result.stages
    unknown = result.recommendations[result.recommendations["stage"] == "unknown"]
    assert int(unknown["n"].sum()) == pytest.approx(0.7 * 60, abs=15)  # 60 users, ~70% train


def test_users_without_a_state_get_the_control_arm_not_none():
    recs = pd.DataFrame(
        {"segment": [0], "stage": ["active"], "action": ["Mens E-Mail"],
         "q_No E-Mail": [0.0], "q_Mens E-Mail": [1.0]}
    )  # fmt: skip
    stages = pd.DataFrame({"user_id": ["a", "b"], "stage": ["active", "churned"]})
    assign = pd.DataFrame({"user_id": ["a", "b"], "segment": [0, 0]})
    out = user_actions(stages, assign, recs, {0: "zero"})
    assert out["recommended_action"].tolist() == ["Mens E-Mail", "No E-Mail"]


def test_unclustered_users_get_no_segment_of_their_own():
    assign = ASSIGN.assign(segment=[0, 0, -1])
    result = train_policy(PANEL, assign, **FAST)
    assert result.segments == (0,)
    snap = _hillstrom_like(30)
    snap_assign = pd.DataFrame({"user_id": snap["user_id"], "segment": [-1] * 10 + [0] * 20})
    assert train_snapshot_policy(snap, snap_assign).segments == (0,)
    # Strategies: no row for segment -1; its users are counted and left alone.
    recs = pd.DataFrame(
        {"segment": [0, -1], "stage": ["active"] * 2, "action": ["discount"] * 2, "n": [40, 5],
         "q_none": [0.0, 0.0], "q_discount": [1.0, 1.0]}
    )  # fmt: skip
    counts = pd.DataFrame({"segment": [0, -1], "stage": ["active"] * 2, "users": [7, 3]})
    strategies = build_strategies(recs, actions=["none", "discount"], names={}, stage_counts=counts)
    assert strategies.table["segment"].tolist() == [0]
    assert (strategies.unclustered, strategies.nothing) == (3, "none")
    users = pd.DataFrame({"user_id": ["a", "b"], "stage": ["active", "active"]})
    out = user_actions(users, pd.DataFrame({"user_id": ["a", "b"], "segment": [0, -1]}), recs, {})
    assert out["recommended_action"].tolist() == ["discount", "none"]
    assert out["segment_name"].tolist() == ["Segment 1", "Unclustered"]
    with pytest.raises(InputError, match="unclustered"):
        train_policy(PANEL, ASSIGN.assign(segment=-1), **FAST)


def test_one_optimum_for_the_curve_and_the_metrics():
    """Fix: the curve used the exact value of the optimal policy, the metrics value
    iteration's approximate V*; now both are :func:`optimum`."""
    result = train_policy(PANEL, ASSIGN, **FAST)
    exact = optimum(result.mdp).value
    assert result.optimal_value == exact
    assert result.metrics["optimal_value"] == exact
    assert result.curve["optimal_value"].iloc[-1] == exact
    # By hand: s0 pays 1 and stays or moves to s1 paying 2 for ever; V*(s0) = 0.9 * 2 / 0.1 = 18.
    T = np.array([[[1.0, 0.0], [0.0, 1.0]], [[0.0, 1.0], [0.0, 1.0]]])
    mdp = tabular_mdp(T, np.array([[1.0, 0.0], [2.0, 2.0]]), gamma=0.9, start=[1, 0])
    best = optimum(mdp)
    assert best.policy.tolist() == [1, 0]
    assert best.value == pytest.approx(18.0, abs=1e-12)
    assert best.value == start_value(mdp, best.policy)


def test_settings_diff_names_what_differs():
    mine = {"gamma": 0.9, "seed": 0, "learner": {"episodes": 20, "seed": 0}, "request": {}}
    theirs = {"gamma": 0.5, "seed": 0, "learner": {"episodes": 40, "seed": 0}}
    diff = settings_diff(mine, theirs)
    assert diff.values.tolist() == [
        ["episodes", "20", "40"],
        ["future weight γ (discount)", "0.9", "0.5"],
    ]


def test_a_command_line_request_stores_as_it_always_has():
    """The command line's request keeps its stored keys (old runs are still found again)."""
    from retention.config import PipelineConfig

    config = PipelineConfig(input=Path("x.csv"), episodes=30, seed=2)
    request = PolicyRequest.from_config(config, "seg1", "week")
    stored = request.as_dict()
    assert list(stored) == [
        "segmentation_run", "period", "churn_after", "reward", "episodes", "seed", "algorithm"
    ]  # fmt: skip
    assert stored["reward"] == config.reward().as_dict() and stored["episodes"] == 30
    assert request.learner().get_params()["episodes"] == 30
    assert PolicyRequest("seg1", "week").learner() is None  # all the learner's defaults


def test_the_policy_form_builds_the_same_kind_of_request():
    """The page's form: the edited actions, their costs and (without a log) the assumed lift."""
    table = pd.DataFrame({"action": [" email", "none", None], "cost": [0.5, None, 1.0],
                          "lift": [1.2, None, 1.0]})  # fmt: skip
    choices = PolicyChoices("events", "week", None, ("email", "none"), ("q", "sarsa"))
    request = PolicyForm(actions=table, gamma=0.8, episodes=20, epsilon=0.1).request(
        choices, "seg1", churn_after=3
    )
    assert request.actions == ("email", "none") and request.lift == {"email": 1.2, "none": 1.0}
    assert request.reward.action_costs == {"email": 0.5, "none": 0.0}
    assert request.reward.gamma == 0.8 and request.churn_after == 3
    assert request.learner().get_params()["min_epsilon"] == 0.1
    assert request.as_dict()["actions"] == ["email", "none"]
