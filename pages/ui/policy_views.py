"""Rendering for the Policy page: the settings form, a run's headline and its tabs, and the
comparison of two runs. Widgets and charts only; every number comes from ``retention``."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import pandas as pd
import streamlit as st

from retention.charts.policy import (
    learning_curve,
    ope_forest,
    policy_map,
    q_heatmap,
    retention_projection,
    stability_map,
)
from retention.learn import PolicyResult, near_ties
from retention.policy_runs import number_text, settings_diff
from retention.words import segment_display_name


def show_frame(frame: pd.DataFrame | None, needed: set[str]) -> bool:
    """Whether a stored table has what a chart needs (runs stored by older versions may not)."""
    return frame is not None and not frame.empty and needed <= set(frame.columns)


def _names_of(names: Mapping[int, str]) -> Any:
    return lambda g: names.get(int(g), segment_display_name(int(g)))


def headline(result: PolicyResult) -> None:
    """The learned value beside the optimum, and the notes that go with them."""
    c1, c2, c3 = st.columns(3)
    c1.metric(
        "Learned policy's value",
        number_text(result.value),
        help="What applying the learned policy is worth per user: the reward you set, added up "
        "over the coming periods (later periods count less, by the discount γ).",
    )
    c2.metric(
        "Optimum (value iteration)",
        number_text(result.optimal_value),
        help="The best any policy can do on the same estimated model, computed exactly.",
    )
    c3.metric(
        "Share of the optimum",
        number_text(result.fraction_of_optimum, ".1%"),
        help="How close the learned policy comes to the best possible; 100% = as good as it gets.",
    )
    if result.kind == "events":
        st.caption(
            "Values are the expected reward per user, added up over the coming periods, from "
            "where your users are now; computed exactly on the model estimated from your data."
        )
    for note in result.assumptions:
        st.caption(f":material/info: {note}")
    if result.kind == "events" and math.isnan(result.optimal_value):
        st.caption(
            ":material/history: This run was stored by an older version without the optimum; "
            "train again to see how close the policy comes to it."
        )


def disagreements(result: PolicyResult, names: Mapping[int, str]) -> None:
    """Where the learned action is not the exact best one, and what that costs."""
    dis = result.disagreements
    if result.kind != "events":
        return
    if not show_frame(dis, {"segment", "stage", "action", "optimal_action"}):
        if dis is not None and not math.isnan(result.fraction_of_optimum):
            st.success(
                "The learned policy takes the exact best action in every segment and stage.",
                icon=":material/check_circle:",
            )
        return
    share = result.fraction_of_optimum
    text = (
        f"In {len(dis)} of {len(result.recommendations)} segment × stage cells the learned "
        "action is not the exact best one."
    )
    if near_ties(share):
        st.info(
            text + f" These are near-ties: together they cost {max(0.0, 1 - share):.2%} of the "
            "best possible value.",
            icon=":material/info:",
        )
    else:
        st.warning(
            text + " Train with more episodes (or another seed) to get closer to the optimum.",
            icon=":material/warning:",
        )
    st.dataframe(
        dis.assign(segment=dis["segment"].map(_names_of(names))),
        hide_index=True,
        column_config={
            "segment": "Segment",
            "stage": "Stage",
            "action": "Learned action",
            "optimal_action": "Best action",
            "value_loss": st.column_config.NumberColumn(
                "Value lost per user there",
                format="%.4f",
                help="Exact value of the best action minus that of the learned one, for a user "
                "in this segment and stage.",
            ),
        },
    )


def tabs(result: PolicyResult, names: Mapping[int, str], period_word: str) -> None:
    """The policy map, the Q-table, the learning curve, the projections, the stability map and
    the off-policy check, one tab each."""
    policy_tab, q_tab, curve_tab, proj_tab, stab_tab, ope_tab = st.tabs(
        [
            "Policy map",
            "Value of each action",
            "Learning curve",
            "Projected retention",
            "Stability",
            "Check on real outcomes",
        ]
    )
    rec = result.recommendations
    with policy_tab:
        st.caption("The action to take for the users of each segment while they are in each stage.")
        st.plotly_chart(policy_map(rec, result.actions, names), key="policy.map")
    with q_tab:
        _q_table(result, names)
    with curve_tab:
        st.caption(
            "The learned policy's exact value as training goes, against the best possible (dashed)."
        )
        st.plotly_chart(learning_curve(result.curve), key="policy.curve")
    with proj_tab:
        if result.kind == "snapshot":
            st.info("A campaign snapshot is a single decision: there is no retention to project.")
        elif not show_frame(result.projections, {"segment", "policy", "period", "active_share"}):
            st.info("This run has no projected retention stored; train again to get it.")
        else:
            figure = retention_projection(result.projections, names, period_word=period_word)
            st.plotly_chart(figure, key="policy.proj")
    with stab_tab:
        _stability(result, names)
    with ope_tab:
        _ope(result)


def _q_table(result: PolicyResult, names: Mapping[int, str]) -> None:
    rec = result.recommendations
    st.caption(
        "For each segment and stage: what each action is worth per user, the immediate "
        "reward plus what follows (the Q-table). ★ marks the action the policy takes."
    )
    st.plotly_chart(q_heatmap(rec, result.actions, names), key="policy.q")
    with st.expander("The numbers"):
        config: dict[str, Any] = {
            "segment": "Segment",
            "stage": "Stage",
            "action": "Recommended",
            "optimal_action": "Best (exact)",
            "n": st.column_config.NumberColumn(
                "Observed", help="User-periods of the data in this segment and stage."
            ),
        }
        for act in result.actions:
            config[f"q_{act}"] = st.column_config.NumberColumn(f"value if {act}", format="%.3f")
        table = rec.assign(segment=rec["segment"].map(_names_of(names)))
        st.dataframe(table, hide_index=True, column_config=config)


def _stability(result: PolicyResult, names: Mapping[int, str]) -> None:
    gamma_used = result.settings.get("gamma", result.gamma)
    penalty_used = result.settings.get("churn_penalty")
    if result.kind == "snapshot":
        st.info("A campaign snapshot is a single decision: γ and the churn penalty play no role.")
        return
    if not show_frame(result.stability, {"segment", "stage", "gamma", "churn_penalty", "action"}):
        st.info("This run has no stability map stored; train again to get it.")
        return
    current = None
    if gamma_used is not None and penalty_used is not None:
        current = (float(gamma_used), float(penalty_used))
    st.caption(
        "Does the advice hold if you value the future (γ) or churn (penalty) differently? "
        "Each small map is one segment and stage; × marks the settings of this run."
    )
    st.plotly_chart(
        stability_map(result.stability, result.actions, names, current=current),
        key="policy.stab",
    )


def _ope(result: PolicyResult) -> None:
    if result.ope is None or result.ope.empty:
        st.info(
            "No logged actions behind this policy, so it cannot be checked against real "
            "outcomes. Add a campaign log on the Data page to get off-policy estimates."
        )
        return
    st.caption(
        "Estimated on held-out users the policy never saw, from what really happened to "
        "users who got each action (IPS, SNIPS and doubly robust estimates, 95% intervals). "
        + (
            "Each value is the mean reward of one period had the policy chosen the action."
            if result.kind == "events"
            else "Each value is the mean outcome − cost per user had the policy chosen "
            "the treatment."
        )
    )
    st.plotly_chart(ope_forest(result.ope), key="policy.ope")
    st.dataframe(
        result.ope,
        hide_index=True,
        column_config={
            "policy": "Policy",
            "estimator": "Estimator",
            "value": st.column_config.NumberColumn("Estimate", format="%.4f"),
            "ci_lo": st.column_config.NumberColumn("95% low", format="%.4f"),
            "ci_hi": st.column_config.NumberColumn("95% high", format="%.4f"),
            "n": st.column_config.NumberColumn("Decisions"),
        },
    )


def comparison(result: PolicyResult, other: PolicyResult, names: Mapping[int, str]) -> None:
    """Two runs side by side: the settings they differ in, their values and policy maps."""
    diff = settings_diff(result.settings, other.settings)
    if diff.empty:
        st.caption("The two runs have the same settings.")
    else:
        st.dataframe(diff, hide_index=True)
    left, right = st.columns(2)
    for col, res, key in ((left, result, "a"), (right, other, "b")):
        with col:
            st.metric(
                "Value",
                number_text(res.value),
                f"{number_text(res.fraction_of_optimum, '.1%')} of the optimum",
                delta_color="off",
                delta_arrow="off",
            )
            st.plotly_chart(
                policy_map(res.recommendations, res.actions, names), key=f"policy.cmp.{key}"
            )
