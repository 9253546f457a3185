"""The retention MDP: transition counts, reward formula, shrinkage, lift table."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from retention.errors import InputError
from retention.learn import policy_value, value_iteration
from retention.mdp import (
    CHURN_RULE,
    STAGES,
    RewardSettings,
    estimate_mdp,
    logged_transitions,
    reward_tensor,
    tabular_mdp,
)


def _panel(rows: dict[str, str]) -> pd.DataFrame:
    """A panel from per-user stage strings: 'A' active, 'L' lapsing, 'R' at_risk, 'C' churned.
    Every user starts at t = 0; revenue 10 per active period."""
    code = {"A": "active", "L": "lapsing", "R": "at_risk", "C": "churned"}
    out = []
    for user, stages in rows.items():
        for t, ch in enumerate(stages):
            out.append(
                {
                    "user_id": user,
                    "t": t,
                    "k": t,
                    "active": ch == "A",
                    "recency": 0,
                    "stage": code[ch],
                    "revenue": 10.0 if ch == "A" else 0.0,
                    "n_events": int(ch == "A"),
                }
            )
    return pd.DataFrame(out)


PANEL = _panel({"u1": "AALRC", "u2": "AAAAA", "u3": "ALARC"})
ASSIGN = pd.DataFrame({"user_id": ["u1", "u2", "u3"], "segment": [0, 0, 0]})
A, L, R, C = range(4)


def test_no_action_transitions_are_stage_counts():
    mdp = estimate_mdp(PANEL, ASSIGN, reward=RewardSettings(action_costs={}))
    # From active: u1 A->A, A->L; u2 4x A->A; u3 A->L, A->R?  no: u3 is A L A R C: A->L, L->A, A->R
    # Transitions from active: AA, AL (u1), AA x4 (u2), AL, AR (u3): 5 AA, 2 AL, 1 AR.
    np.testing.assert_allclose(mdp.T[A, 0, [A, L, R, C]], [5 / 8, 2 / 8, 1 / 8, 0])
    # From lapsing: u1 L->R, u3 L->A.
    np.testing.assert_allclose(mdp.T[L, 0, [A, L, R, C]], [0.5, 0, 0.5, 0])
    # From at_risk: u1 R->C, u3 R->C.
    np.testing.assert_allclose(mdp.T[R, 0, [A, L, R, C]], [0, 0, 0, 1])
    assert mdp.support[A, 0] == 8
    assert mdp.n_states == 4 and mdp.state_names[0] == "0/active"
    # Churned never left: fallback pools the stage over segments, then stays put.
    np.testing.assert_allclose(mdp.T[C, 0], [0, 0, 0, 1])


def test_reward_formula_by_hand():
    reward = RewardSettings(
        retain_reward=2.0,
        churn_penalty=7.0,
        revenue_weight=0.5,
        action_costs={"discount": 0.3},
        gamma=0.8,
    )
    mdp = estimate_mdp(PANEL, ASSIGN, reward=reward)
    d = mdp.actions.index("discount")
    none = mdp.actions.index("none")
    # Mean revenue of an active period in the segment = 10.
    assert mdp.R[L, d, A] == pytest.approx(2.0 + 0.5 * 10.0 - 0.3)
    assert mdp.R[A, none, L] == pytest.approx(0.0)
    assert mdp.R[R, d, C] == pytest.approx(-7.0 - 0.3)
    assert mdp.R[C, none, C] == pytest.approx(0.0)  # already churned: no new penalty
    # Churned -> active: the win-back earns the period and gets the penalty back.
    assert mdp.R[C, d, A] == pytest.approx(2.0 + 5.0 + 7.0 - 0.3)
    assert mdp.gamma == 0.8
    # The same dynamics under other settings.
    other = mdp.with_reward(RewardSettings(churn_penalty=1.0, action_costs={}))
    assert other.R[R, d, C] == pytest.approx(-1.0)
    np.testing.assert_array_equal(other.T, mdp.T)


def test_lift_table_scales_p_active_and_renormalises():
    lift = pd.DataFrame(
        {"action": ["recommendation", "engagement", "discount"], "lift": [1.2, 1.0, 2.0]}
    )
    mdp = estimate_mdp(PANEL, ASSIGN, lift=lift)
    rec, eng, disc = (mdp.actions.index(a) for a in ("recommendation", "engagement", "discount"))
    base = mdp.T[A, 0]
    assert mdp.T[A, rec, A] == pytest.approx(1.2 * 5 / 8)
    # The rest keeps its proportions (2:1 lapsing:at_risk) and the row sums to one.
    rest = 1 - 1.2 * 5 / 8
    np.testing.assert_allclose(mdp.T[A, rec, [L, R]], [rest * 2 / 3, rest * 1 / 3])
    np.testing.assert_allclose(mdp.T[A, eng], base)
    assert mdp.T[A, disc, A] == pytest.approx(1.0)  # capped at one
    np.testing.assert_allclose(mdp.T.sum(axis=2), 1.0)
    assert any("assumed lift table" in a for a in mdp.assumptions)
    assert mdp.support[A, rec] == 0  # assumed, not observed


def test_dirichlet_shrinkage_toward_no_action():
    # u2's second and third transitions (A->A at t=2, t=3) got a discount; u1's A->L at t=2 too.
    camp = pd.DataFrame(
        {
            "user_id": ["u2", "u2", "u1"],
            "t": [2, 3, 2],
            "action": ["discount", "discount", "discount"],
            "propensity": [0.5, 0.5, 0.5],
        }
    )
    k = 4.0
    mdp = estimate_mdp(PANEL, ASSIGN, campaigns=camp, prior_strength=k)
    assert mdp.actions == ("none", "discount")
    # No-action transitions from active: 8 - 3 = 5: AA (u1 t1), AA x2 (u2 t1, t4), AL (u3), AR (u3)
    p_none = np.array([3, 1, 1, 0]) / 5
    np.testing.assert_allclose(mdp.T[A, 0], p_none)
    n_disc = np.array([2, 1, 0, 0])
    np.testing.assert_allclose(mdp.T[A, 1], (n_disc + k * p_none) / (3 + k))
    # Lapsing never saw a discount: it behaves like doing nothing.
    np.testing.assert_allclose(mdp.T[L, 1], mdp.T[L, 0])
    assert mdp.support[A, 1] == 3


def test_logged_transitions_timing_and_last_row_wins():
    camp = pd.DataFrame(
        {
            "user_id": ["u1", "u1", "u1", "u3"],
            "t": [0, 1, 1, 2],
            "action": ["discount", "engagement", "recommendation", "discount"],
        }
    )
    tr = logged_transitions(PANEL, ASSIGN, camp)
    u1 = tr[tr["user_id"] == "u1"].set_index("t")
    assert 0 not in u1.index  # no state before a user's first period
    assert u1.loc[1, "action"] == "recommendation"  # the last row of period 1 counts
    assert (u1.loc[1, "stage"], u1.loc[1, "next_stage"]) == ("active", "active")
    assert u1.loc[2, "action"] == "none"
    u3 = tr[tr["user_id"] == "u3"].set_index("t")
    assert (u3.loc[2, "stage"], u3.loc[2, "next_stage"], u3.loc[2, "action"]) == (
        "lapsing",
        "active",
        "discount",
    )


def test_start_distribution_current_and_first():
    two = pd.concat([PANEL, _panel({"v1": "AAAAA"})])
    assign = pd.concat([ASSIGN, pd.DataFrame({"user_id": ["v1"], "segment": [1]})])
    cur = estimate_mdp(two, assign)
    # Last period: u1 churned, u2 active, u3 churned (segment 0), v1 active (segment 1).
    np.testing.assert_allclose(cur.start[[C, A, 4]], [0.5, 0.25, 0.25])
    first = estimate_mdp(two, assign, start="first")
    np.testing.assert_allclose(first.start[[A, 4]], [0.75, 0.25])
    assert cur.state_index(1, "active") == 4


def test_input_errors():
    camp = pd.DataFrame({"user_id": ["u1"], "t": [1], "action": ["sms"]})
    with pytest.raises(InputError, match="sms"):
        estimate_mdp(PANEL, ASSIGN, campaigns=camp, actions=["none", "discount"])
    with pytest.raises(InputError, match="share user ids"):
        estimate_mdp(PANEL, pd.DataFrame({"user_id": ["x"], "segment": [0]}))
    with pytest.raises(InputError, match="stage"):
        estimate_mdp(PANEL.drop(columns="stage"), ASSIGN)
    with pytest.raises(InputError, match="gamma"):
        RewardSettings(gamma=1.0)


def test_tabular_mdp_validation_and_terminal():
    T = np.array([[[0.0, 1.0]], [[0.0, 1.0]]])
    mdp = tabular_mdp(T, np.ones((2, 1)), terminal=[False, True])
    assert mdp.start.tolist() == [1.0, 0.0]
    assert mdp.P[0][0] == [(1.0, 1, 1.0, True)]
    with pytest.raises(InputError):
        tabular_mdp(np.ones((2, 1, 2)), np.zeros((2, 1)))
    assert STAGES == ("active", "lapsing", "at_risk", "churned")


# -- the churn-penalty rule (issue 17): charged on churning, given back on coming back ----------


def _two_stage(p_back: float, reward: RewardSettings) -> object:
    """Two stages, active and churned; actions none and winback. From active half the users stay
    and half churn, whatever is done; a churned user stays churned with none and comes back
    with probability ``p_back`` with winback."""
    T = np.zeros((2, 2, 2))
    T[0, :, :] = [0.5, 0.5]
    T[1, 0] = [0.0, 1.0]
    T[1, 1] = [p_back, 1.0 - p_back]
    stages = ("active", "churned")
    R = reward_tensor(np.array([0, 1]), np.zeros(2), ("none", "winback"), reward, stages)
    return tabular_mdp(T, R, gamma=reward.gamma, actions=("none", "winback"))


REWARD = RewardSettings(
    retain_reward=1.0, churn_penalty=5.0, action_costs={"winback": 0.2}, gamma=0.9
)


def test_churn_penalty_is_charged_once_per_loss_along_a_path():
    reward = RewardSettings(retain_reward=1.0, churn_penalty=5.0, action_costs={}, gamma=0.9)
    rew = reward_tensor(np.arange(4), np.zeros(4), ("none",), reward)[:, 0]
    # active -> at_risk -> churned -> active (won back) -> at_risk -> churned (lost again)
    path = [A, R, C, A, R, C]
    total = sum(rew[s, s2] for s, s2 in zip(path[:-1], path[1:], strict=True))
    assert total == pytest.approx(1.0 - 5.0)  # one period retained, one loss: charged once
    assert rew[C, A] == pytest.approx(1.0 + 5.0)  # the penalty comes back with the user
    assert rew[C, C] == 0.0 and rew[R, C] == -5.0 and rew[L, C] == -5.0
    assert "charged once" in CHURN_RULE


def test_value_of_a_win_back_policy_by_hand():
    mdp = _two_stage(0.5, REWARD)
    # Policy: nothing while active, winback while churned. By hand, with a = V(active) and
    # b = V(churned):
    #   a = 0.5 (1 + 0.9 a) + 0.5 (-5 + 0.9 b)           ->  0.55 a - 0.45 b = -2
    #   b = -0.2 + 0.5 (1 + 5 + 0.9 a) + 0.5 (0.9 b)     -> -0.45 a + 0.55 b = 2.8
    # so b = 6.4 and a = 1.6.
    np.testing.assert_allclose(policy_value(mdp, np.array([0, 1])), [1.6, 6.4])
    # Doing nothing ever: a = 0.5 (1 + 0.9 a) - 2.5 -> a = -2 / 0.55; a churned user is worth 0.
    np.testing.assert_allclose(policy_value(mdp, np.array([0, 0])), [-2 / 0.55, 0.0])
    v, q, policy = value_iteration(mdp)
    assert policy.tolist() == [0, 1]  # win them back
    np.testing.assert_allclose(v, [1.6, 6.4])
    # The rule ranks policies as "a churned user costs (1 - gamma) P every period away" does
    # (potential-based shaping): values differ by exactly P in the churned state.
    per_period = tabular_mdp(
        mdp.T,
        np.array([[[1.0, -0.5], [1.0, -0.5]], [[1.0, -0.5], [0.8, -0.7]]]),
        gamma=0.9,
    )
    for pol in ([0, 0], [0, 1]):
        np.testing.assert_allclose(
            policy_value(mdp, np.array(pol)) - [0.0, 5.0], policy_value(per_period, np.array(pol))
        )


def test_under_the_old_rule_every_win_back_read_worse_than_nothing():
    """The rule before issue 17 charged the penalty again on every new churn and never gave it
    back: winning a user back then only exposed them to a second penalty."""
    mdp = _two_stage(0.5, REWARD)
    old_rewards = mdp.R.copy()
    old_rewards[1, :, 0] -= 5.0  # churned -> active without the penalty given back
    old = tabular_mdp(mdp.T, old_rewards, gamma=0.9)
    _, q_old, _ = value_iteration(old)
    assert q_old[1, 1] < q_old[1, 0]  # the bug: win-back worse than nothing at 50% success
    _, q_new, _ = value_iteration(mdp)
    assert q_new[1, 1] > q_new[1, 0]


def _planted_win_back(winners: int, losers: int) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Churned users: 8 left alone stay churned; at t = 4, ``winners`` + ``losers`` get a
    'winback' campaign and the winners come back (a planted win-back rate)."""
    rows = {f"n{i}": "ALRCCCCC" for i in range(8)}
    rows |= {f"w{i}": "ALRCALRC" for i in range(winners)}
    rows |= {f"l{i}": "ALRCCCCC" for i in range(losers)}
    treated = [f"w{i}" for i in range(winners)] + [f"l{i}" for i in range(losers)]
    campaigns = pd.DataFrame({"user_id": treated, "t": 4, "action": "winback"})
    return _panel(rows), pd.DataFrame({"user_id": list(rows), "segment": 0}), campaigns


@pytest.mark.parametrize(
    ("winners", "losers", "win_back"), [(4, 4, True), (2, 6, True), (1, 39, False)]
)
def test_win_back_on_churned_users_pays_when_it_works_often_enough(winners, losers, win_back):
    panel, assign, campaigns = _planted_win_back(winners, losers)
    reward = RewardSettings(action_costs={"winback": 0.2})
    mdp = estimate_mdp(panel, assign, campaigns=campaigns, prior_strength=0.0, reward=reward)
    assert mdp.T[C, 1, A] == pytest.approx(winners / (winners + losers))
    _, q, policy = value_iteration(mdp)
    assert (mdp.actions[policy[C]] == "winback") is win_back
    # Every reward the learners and the evaluation read comes from R: the logged win-back
    # transition earns the period and the penalty back, minus the campaign's cost.
    assert mdp.R[C, 1, A] == pytest.approx(1.0 + 5.0 - 0.2)
