"""The Policy page's settings form: reward sliders, the learner's settings and the action table
(widgets only; the library turns them into a training request)."""

from __future__ import annotations

from typing import Any

import pandas as pd
import streamlit as st

from retention.learn import QLearner
from retention.policy_runs import PolicyChoices, PolicyForm

ALGORITHM_CHOICES = {
    "q": "Q-learning",
    "sarsa": "SARSA",
    "batch": "Batch Q-learning on the campaign log",
}


def settings_form(choices: PolicyChoices, expanded: bool) -> PolicyForm:
    """The reward, learner and action settings, as a :class:`PolicyForm`."""
    with st.expander("Reward and learning settings", expanded=expanded):
        left, right = st.columns(2)
        with left:
            reward = _reward_sliders(choices.is_snapshot)
        with right:
            learner = _learner_widgets(choices)
        actions = _action_table(choices)
    return PolicyForm(actions=actions, **reward, **learner)


def _reward_sliders(disabled: bool) -> dict[str, float]:
    st.markdown("**What a period is worth**")
    return {
        "gamma": st.slider(
            "Discount γ (how much next period matters)", 0.0, 0.99, 0.9, 0.01,
            key="policy.gamma", disabled=disabled,
            help="0 = only this period counts; 0.99 = the long run counts almost fully.",
        ),
        "retain_reward": st.slider(
            "Retain reward (per active period)", 0.0, 5.0, 1.0, 0.1,
            key="policy.retain", disabled=disabled,
        ),
        "churn_penalty": st.slider(
            "Churn penalty (once, when a user churns)", 0.0, 20.0, 5.0, 0.5,
            key="policy.penalty", disabled=disabled,
        ),
        "revenue_weight": st.slider(
            "Revenue weight (× the segment's mean revenue of an active period)", 0.0, 1.0, 0.0,
            0.01, key="policy.revenue", disabled=disabled,
        ),
    }  # fmt: skip


def _learner_widgets(choices: PolicyChoices) -> dict[str, Any]:
    st.markdown("**How the policy is learned**")
    algorithm = st.selectbox(
        "Algorithm", list(choices.algorithms or ("q", "sarsa")),
        format_func=ALGORITHM_CHOICES.get, key="policy.algorithm", disabled=choices.is_snapshot,
    )  # fmt: skip
    simulated = not choices.is_snapshot and algorithm != "batch"
    default = QLearner()
    episodes = st.slider(
        "Episodes (rounds of simulated users)", 20, 1000, 200, 10, key="policy.episodes",
        disabled=not simulated,
        help=f"Each round simulates {default.n_users:,} users for {default.horizon} "
        "periods. More rounds: a steadier policy, a longer wait.",
    )  # fmt: skip
    epsilon = st.slider(
        "Exploration ε (share of random actions)", 0.0, 1.0,
        0.05 if algorithm == "sarsa" else 0.5, 0.05, key=f"policy.epsilon.{algorithm}",
        disabled=not simulated,
        help="Simulated users first get random actions only; the share falls to this "
        "floor. Q-learning learns the best policy whatever it explores (0.5 tries every "
        "action often); SARSA learns the value of what it does, so keep it low.",
    )  # fmt: skip
    lr = st.slider(
        "Learning rate (first visit)", 0.01, 1.0, 1.0, 0.01, key="policy.lr",
        disabled=not simulated,
        help="How far one simulated outcome moves an estimate the first time a segment "
        "and stage is tried with an action; it falls as that pair is seen more often.",
    )  # fmt: skip
    seed = st.number_input("Seed", 0, 10_000, 0, key="policy.seed")
    return {
        "algorithm": algorithm,
        "episodes": int(episodes),
        "epsilon": epsilon,
        "learning_rate": lr,
        "seed": int(seed),
    }


def _action_table(choices: PolicyChoices) -> pd.DataFrame:
    st.markdown(
        "**Actions: cost per user and period**"
        + (" and assumed lift" if choices.assumed_lift else "")
    )
    if choices.assumed_lift:
        st.warning(
            "This dataset has no campaign log, so the effect of each action is an **assumption**: "
            "the lift multiplies the chance a user is active next period. Edit it to match what "
            "you believe (add or rename actions here too).",
            icon=":material/lightbulb:",
        )
    return st.data_editor(
        choices.action_table(),
        key="policy.actions",
        hide_index=True,
        num_rows="dynamic" if choices.assumed_lift else "fixed",
        disabled=[] if choices.assumed_lift else ["action"],
        column_config={
            "cost": st.column_config.NumberColumn("cost", min_value=0.0, step=0.01, format="%.3f"),
            "lift": st.column_config.NumberColumn(
                "lift (× P(active next))", min_value=0.0, step=0.01
            ),
        },
    )
