"""The Policy page's settings form: reward sliders, the learner's settings and the action table
(widgets only; the library turns them into a training request).

Every widget keeps its value across pages, refreshes and restarts (:func:`remember`); labels say
what a setting is for, the term behind it (γ, ε, episodes, ...) is on hover."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd
import streamlit as st

from pages.ui.common import keep_table, remember, remembered_table
from retention.learn import QLearner
from retention.policy_runs import PolicyChoices, PolicyForm
from retention.settings import BY_KEY
from retention.words import money, period_word_singular

ALGORITHM_CHOICES = {
    "q": "Simulated users, best policy (Q-learning)",
    "sarsa": "Simulated users, cautious (SARSA)",
    "batch": "Only what the campaign log shows (batch Q-learning)",
}
#: Session key of the settings panel's opening state: fixed for a session, so the panel is not
#: rebuilt (and shut) when the first run appears.
OPEN_KEY = "policy.form_open"


def settings_form(
    choices: PolicyChoices, expanded: bool, currency: str | None = None
) -> PolicyForm:
    """The reward, learner and action settings, as a :class:`PolicyForm`. ``expanded`` is how
    the panel opens the first time in a session (later runs keep that: a changing ``expanded``
    makes Streamlit rebuild the panel, which shut it under the user's hand)."""
    open_now = st.session_state.setdefault(OPEN_KEY, bool(expanded))
    unit = period_word_singular(choices.period)
    with st.expander("Reward and learning settings", expanded=open_now):
        left, right = st.columns(2)
        with left:
            reward = _reward_sliders(choices.is_snapshot, unit)
        with right:
            learner = _learner_widgets(choices)
        actions = _action_table(choices, unit, reward["revenue_weight"], currency)
    return PolicyForm(actions=actions, **reward, **learner)


def _bounds(key: str) -> tuple[Any, Any]:
    """A slider's bounds: the settings table's (the command line's checks use the same)."""
    bounds = BY_KEY[key].slider
    assert bounds is not None, key
    return bounds


def _remember(key: str) -> str:
    """:func:`remember` a setting's widget (its key and default from the settings table)."""
    setting = BY_KEY[key]
    assert setting.widget is not None, key
    return remember(setting.widget, setting.default)


def _reward_sliders(disabled: bool, unit: str) -> dict[str, float]:
    st.markdown(f"**What a {unit} is worth**")
    return {
        "gamma": st.slider(
            f"How much the future counts (each {unit} ahead × this)", *_bounds("gamma"), step=0.01,
            key=_remember("gamma"), disabled=disabled,
            help=f"The discount γ (gamma). 0 = only this {unit} counts; 0.9 = next {unit} "
            f"counts 90% as much as this one; 0.99 = the long run counts almost fully.",
        ),
        "retain_reward": st.slider(
            f"Reward for each user still active (points per {unit})", *_bounds("retain_reward"),
            step=0.1, key=_remember("retain_reward"), disabled=disabled,
            help=f"Points earned for every user who is active in a {unit}. All rewards, "
            "penalties and costs are in these points; at 1, one point = one retained "
            f"user-{unit}.",
        ),
        "churn_penalty": st.slider(
            "Penalty when a user is lost (points, once per loss)", *_bounds("churn_penalty"),
            step=0.5, key=_remember("churn_penalty"), disabled=disabled,
            help="Points taken off each time a user moves into 'churned'.",
        ),
        "revenue_weight": st.slider(
            f"Weight on revenue (points per unit of money in an active {unit})",
            *_bounds("revenue_weight"), step=0.01, key=_remember("revenue_weight"),
            disabled=disabled,
            help=f"Adds this many points per unit of the segment's mean revenue of an active "
            f"{unit}. 0 = revenue does not count, only being active does.",
        ),
    }  # fmt: skip


def _remember_choice(key: str, options: Sequence[Any], default: Any) -> str:
    """:func:`remember` for a select box whose options depend on the dataset: a remembered
    value this dataset does not offer falls back to the default."""
    remember(key, default)
    if st.session_state[key] not in options:
        st.session_state[key] = default if default in options else options[0]
    return key


def _learner_widgets(choices: PolicyChoices) -> dict[str, Any]:
    st.markdown("**How the policy is learned**")
    options = list(choices.algorithms or ("q", "sarsa"))
    algorithm = st.selectbox(
        "Learning method", options, format_func=ALGORITHM_CHOICES.get,
        key=_remember_choice("policy.algorithm", options, "q"), disabled=choices.is_snapshot,
        help="Q-learning tries actions on users simulated from your data and learns the best "
        "policy whatever it tries; SARSA learns the value of what it actually does (more "
        "cautious). Batch Q-learning learns only from the actions in your campaign log.",
    )  # fmt: skip
    simulated = not choices.is_snapshot and algorithm != "batch"
    default = QLearner()
    episodes = st.slider(
        "Training rounds", *_bounds("episodes"), step=10, key=_remember("episodes"),
        disabled=not simulated,
        help=f"Episodes: each round simulates {default.n_users:,} users for {default.horizon} "
        "periods. More rounds: a steadier policy, a longer wait.",
    )  # fmt: skip
    epsilon = st.slider(
        "Share of random tries (at the end of training)", *_bounds("exploration"), step=0.05,
        key=remember(f"policy.epsilon.{algorithm}", 0.05 if algorithm == "sarsa" else 0.5),
        disabled=not simulated,
        help="Exploration ε (epsilon). Simulated users first get random actions only; the "
        "share falls to this floor. Q-learning learns the best policy whatever it explores "
        "(0.5 tries every action often); SARSA learns the value of what it does, so keep it low.",
    )  # fmt: skip
    lr = st.slider(
        "How far one outcome moves an estimate", *_bounds("learning_rate"), step=0.01,
        key=_remember("learning_rate"), disabled=not simulated,
        help="Learning rate (at a first visit): how far one simulated outcome moves an "
        "estimate the first time a segment and stage is tried with an action; it falls as "
        "that pair is seen more often.",
    )  # fmt: skip
    seed = st.number_input(
        "Random seed", *_bounds("seed"), key=_remember("seed"),
        help="The same seed and settings give the same policy; another seed is another draw "
        "of simulated users.",
    )  # fmt: skip
    return {
        "algorithm": algorithm,
        "episodes": int(episodes),
        "epsilon": epsilon,
        "learning_rate": lr,
        "seed": int(seed),
    }


def _action_table(
    choices: PolicyChoices, unit: str, revenue_weight: float, currency: str | None
) -> pd.DataFrame:
    st.markdown(
        f"**Actions: cost per user and {unit}, in points**"
        + (" and assumed lift" if choices.assumed_lift else "")
    )
    if choices.is_snapshot:
        st.caption("Costs are taken off each user's outcome, in the outcome's own unit.")
    elif revenue_weight > 0:
        st.caption(
            f"With revenue weighted {revenue_weight:g}, 1 point is worth "
            f"{money(1 / revenue_weight, currency)} of revenue: a cost of 0.2 points is "
            f"{money(0.2 / revenue_weight, currency)} per user and {unit}."
        )
    else:
        st.caption(
            f"Points as in the rewards above: a cost of 0.2 is a fifth of the reward for a user "
            f"active for one {unit} (at reward 1). Weigh revenue to see costs in money."
        )
    if choices.assumed_lift:
        st.warning(
            "This dataset has no campaign log, so the effect of each action is an **assumption**: "
            f"the lift multiplies the chance a user is active next {unit}. Edit it to match what "
            "you believe (add or rename actions here too).",
            icon=":material/lightbulb:",
        )
    cost_unit = "outcome units" if choices.is_snapshot else "points"
    # Kept per set of actions (a campaign log's or the defaults), across refreshes and restarts.
    kept_key = "policy.actions." + (
        "snapshot" if choices.is_snapshot else "|".join(choices.actions)
    )
    start = remembered_table(
        kept_key, choices.action_table(), fixed=None if choices.assumed_lift else "action"
    )
    edited = st.data_editor(
        start,
        key="policy.actions",
        hide_index=True,
        num_rows="dynamic" if choices.assumed_lift else "fixed",
        disabled=[] if choices.assumed_lift else ["action"],
        column_config={
            "action": "Action",
            "cost": st.column_config.NumberColumn(
                f"Cost per user and {unit} ({cost_unit})", min_value=0.0, step=0.01,
                format="%.3f", help="What one action for one user costs, in the same points as "
                "the rewards (for a snapshot: in the outcome's unit).",
            ),
            "lift": st.column_config.NumberColumn(
                f"Assumed lift (× chance of being active next {unit})", min_value=0.0, step=0.01,
                help="1.10 = the action makes a user 10% more likely to be active next "
                f"{unit}; 1 = no effect.",
            ),
        },
    )  # fmt: skip
    keep_table(kept_key, edited)
    return edited
