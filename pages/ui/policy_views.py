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
from retention.mdp import RewardSettings
from retention.policy_runs import (
    Preview,
    ValueParts,
    number_text,
    reward_differences,
    settings_diff,
)
from retention.words import money, period_word, segment_display_name, stage_rank, stage_word


def show_frame(frame: pd.DataFrame | None, needed: set[str]) -> bool:
    """Whether a stored table has what a chart needs (runs stored by older versions may not)."""
    return frame is not None and not frame.empty and needed <= set(frame.columns)


def _names_of(names: Mapping[int, str]) -> Any:
    return lambda g: names.get(int(g), segment_display_name(int(g)))


POINTS_HELP = (
    "Points are the reward you set: the reward for each active user and period, plus revenue × "
    "its weight, minus the churn penalty at each loss and the cost of each action, added up "
    "over the coming periods from where your users are now (each period ahead counting the "
    "future weight γ times the one before)."
)


def points(value: Any) -> str:
    """A value in reward points per user ("4.82 points per user"; a dash when unknown)."""
    text = number_text(value, ".2f")
    return text if text == "—" else f"{text} points per user"


def value_sentence(
    parts: ValueParts, reward: Mapping[str, Any], unit: str, currency: str | None
) -> str:
    """What a policy's value is made of, in the user's terms (active periods, money, losses,
    costs) and how they add up to the points."""
    words = period_word(unit)
    retain = float(reward.get("retain_reward") or 0.0)
    weight = float(reward.get("revenue_weight") or 0.0)
    penalty = float(reward.get("churn_penalty") or 0.0)
    revenue = money(parts.revenue, currency)
    return (
        f"Per user, from where your users are now, with each {unit} ahead counting "
        f"× {parts.gamma:g} of the one before: **{parts.active_periods:.2f} active {words}**, "
        f"**{revenue} of revenue**"
        + ("" if weight else " (not counted: revenue weight 0)")
        + (
            f", **{parts.churns:.2f} net losses** (users moving into churned, less those won back)"
            if parts.churns >= 0
            else f", **{-parts.churns:.2f} more users won back than lost**"
        )
        + f" and **{parts.cost:.2f} points of action costs**. In points: {retain:g} × "
        f"{parts.active_periods:.2f}"
        + (f" + {weight:g} × {parts.revenue:,.2f}" if weight else "")
        + f" {'−' if parts.churns >= 0 else '+'} {penalty:g} × {abs(parts.churns):.2f}"
        + f" − {parts.cost:.2f} = {parts.total:.2f}."
    )


def headline(
    result: PolicyResult,
    parts: ValueParts | None = None,
    *,
    unit: str = "period",
    currency: str | None = None,
) -> None:
    """The learned value beside the best possible, in points per user and (``parts``) in the
    user's terms, and the notes that go with them."""
    c1, c2, c3 = st.columns(3)
    c1.metric("Learned policy's worth", points(result.value), help=POINTS_HELP)
    c2.metric(
        "Best possible",
        points(result.optimal_value),
        help="The best any policy can do on the same model of your users, computed exactly "
        "(by value iteration).",
    )
    c3.metric(
        "Share of the best",
        number_text(result.fraction_of_optimum, ".1%"),
        help="How close the learned policy comes to the best possible; 100% = as good as it "
        "gets (1 − shortfall ÷ best).",
    )
    if parts is not None and not math.isclose(
        parts.total, result.value, rel_tol=1e-6, abs_tol=1e-6
    ):
        st.caption(
            ":material/history: This run was stored under an earlier reward rule (its worth, "
            f"{result.value:.2f}, is not what today's rule gives its policy, {parts.total:.2f} "
            "points per user): train again to see its worth broken down."
        )
        parts = None
    if result.kind == "events" and parts is not None:
        st.markdown(value_sentence(parts, result.settings, unit, currency))
    elif result.kind == "events":
        st.caption(
            "Points per user: the reward you set, added up over the coming periods from where "
            "your users are now; computed exactly on the model estimated from your data."
        )
    else:
        st.caption("Points per user: the mean outcome minus the action's cost, per user.")
    for note in result.assumptions:
        st.caption(f":material/info: {note.replace('at_risk', 'at risk')}")
    if result.kind == "events" and math.isnan(result.optimal_value):
        st.caption(
            ":material/history: This run was stored by an older version without the best "
            "possible value; train again to see how close the policy comes to it."
        )


def disagreement_sentence(result: PolicyResult, n_cells: int) -> str:
    """One plain sentence on the cells where the learned action is not the exact best one,
    beside the share of the best (which can read 100% when they are near-ties)."""
    dis = result.disagreements
    share = result.fraction_of_optimum
    loss = float(dis["value_loss"].max()) if "value_loss" in dis else float("nan")
    head = (
        f"In {len(dis)} of {n_cells} segment × stage cells the learned action is not the exact "
        "best one"
    )
    if not near_ties(share):
        return head + ". Train with more rounds (or another seed) to get closer to the best."
    rounded = " — which is why the share of the best still reads " + (
        f"{share:.1%}" + (" (rounded)" if share < 1 and f"{share:.1%}" == "100.0%" else "")
    )
    worth = (
        "; there the two actions are worth almost the same ("
        + (f"at most {loss:.3f}" if loss >= 0.001 else "less than 0.001")
        + " points per user in such a cell)"
        if math.isfinite(loss)
        else "; these are near-ties"
    )
    return (
        head
        + worth
        + f", so together they cost {max(0.0, 1 - share):.2%} of the best possible value"
        + rounded
        + "."
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
    text = disagreement_sentence(result, len(result.recommendations))
    if near_ties(result.fraction_of_optimum):
        st.info(text, icon=":material/info:")
    else:
        st.warning(text, icon=":material/warning:")
    st.dataframe(
        dis.assign(
            segment=dis["segment"].map(_names_of(names)), stage=dis["stage"].map(stage_word)
        ),
        hide_index=True,
        column_config={
            "segment": "Segment",
            "stage": "Stage",
            "action": "Learned action",
            "optimal_action": "Best action",
            "value_loss": st.column_config.NumberColumn(
                "Points lost per user there",
                format="%.4f",
                help="Worth of the best action minus that of the learned one, for a user in "
                "this segment and stage (points per user).",
            ),
        },
    )


def tabs(result: PolicyResult, names: Mapping[int, str], period_word: str) -> None:
    """The policy map, the Q-table, the learning curve, the projections, the stability map and
    the off-policy check, one tab each."""
    policy_tab, q_tab, curve_tab, proj_tab, stab_tab, ope_tab = st.tabs(
        [
            "Policy map",
            "Worth of each action",
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
            "The learned policy's worth (points per user, computed exactly) after each training "
            "round, against the best possible (dashed)."
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
        "For each segment and stage: what each action is worth per user in points, this "
        "period's reward plus what follows. ★ marks the action the policy takes.",
        help="This table is what reinforcement learning calls the Q-table: Q(state, action).",
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
            config[f"q_{act}"] = st.column_config.NumberColumn(
                f"worth if {act} (points)", format="%.3f"
            )
        table = rec.assign(
            segment=rec["segment"].map(_names_of(names)), stage=rec["stage"].map(stage_word)
        )
        st.dataframe(table, hide_index=True, column_config=config)


def _stability(result: PolicyResult, names: Mapping[int, str]) -> None:
    gamma_used = result.settings.get("gamma", result.gamma)
    penalty_used = result.settings.get("churn_penalty")
    if result.kind == "snapshot":
        st.info(
            "A campaign snapshot is a single decision: the future weight and the churn penalty "
            "play no role."
        )
        return
    if not show_frame(result.stability, {"segment", "stage", "gamma", "churn_penalty", "action"}):
        st.info("This run has no stability map stored; train again to get it.")
        return
    current = None
    if gamma_used is not None and penalty_used is not None:
        current = (float(gamma_used), float(penalty_used))
    st.caption(
        "Does the advice hold if you value the future (γ) or losing a user (churn penalty) "
        "differently? Each small map is one segment and stage, coloured by the best action; "
        "× marks the settings of this run."
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
        "users who got each action (three estimates with 95% intervals). "
        + (
            "Each value is the mean reward of one period, in points, had the policy chosen the "
            "action."
            if result.kind == "events"
            else "Each value is the mean outcome − cost per user had the policy chosen "
            "the treatment."
        ),
        help="Off-policy evaluation: inverse propensity scoring (IPS), its self-normalised form "
        "(SNIPS) and the doubly robust estimate (DR), with bootstrap intervals.",
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
    """Two runs side by side: the settings they differ in, their worth and policy maps; when
    their rewards differ, their worths are in different points and the page says so."""
    diff = settings_diff(result.settings, other.settings)
    if diff.empty:
        st.caption("The two runs have the same settings.")
    else:
        st.dataframe(diff, hide_index=True)
    rewards = reward_differences(result.settings, other.settings)
    if rewards:
        st.warning(
            f"These runs value things differently ({', '.join(rewards)}): their worth per user "
            "is counted in different points and cannot be compared. Compare their maps, or "
            "train both with the same rewards.",
            icon=":material/compare_arrows:",
        )
    left, right = st.columns(2)
    for col, res, key in ((left, result, "a"), (right, other, "b")):
        with col:
            st.metric(
                "Worth" + (" (its own points)" if rewards else ""),
                points(res.value),
                f"{number_text(res.fraction_of_optimum, '.1%')} of its best possible",
                delta_color="off",
                delta_arrow="off",
                help=POINTS_HELP,
            )
            st.plotly_chart(
                policy_map(res.recommendations, res.actions, names), key=f"policy.cmp.{key}"
            )


def run_notes(trained_line: str, older: str | None) -> None:
    """Under the run picker: the settings the run was trained with and (``older``) that it
    belongs to an earlier segmentation."""
    if older:
        st.warning(older, icon=":material/history:")
    st.caption(f"**Trained with:** {trained_line}")


def differences(found: list[str]) -> None:
    """How the form's settings differ from the run on screen, above the Train button."""
    if found:
        st.info(
            "Your settings differ from this run's: " + "; ".join(found) + " — press "
            "**Train** to learn them.",
            icon=":material/tune:",
        )


PREVIEW_TITLE = "Preview — exact solution for these settings; press Train to learn it by Q-learning"


def preview(
    shown: Preview,
    names: Mapping[int, str],
    *,
    unit: str,
    currency: str | None,
) -> None:
    """The exact best policy for the form's settings, at once: its map, per-segment
    recommendations and projected retention, marked as a preview."""
    with st.container(border=True, key="policy-preview"):
        st.markdown(f"**:material/bolt: {PREVIEW_TITLE}**")
        rec = shown.recommendations
        st.markdown(value_sentence(shown.parts, shown.reward.as_dict(), unit, currency))
        # Only the open tab is drawn (a chart of every segment's projections takes longer to
        # build than the exact solution itself): a slider move redraws what is on screen.
        map_tab, seg_tab, proj_tab = st.tabs(
            ["Policy map (preview)", "Per segment (preview)", "Projected retention (preview)"],
            key="policy.preview.tab",
            on_change="rerun",
        )
        if map_tab.open:
            with map_tab:
                st.plotly_chart(
                    policy_map(rec, shown.actions, names, title=preview_title(shown.reward)),
                    key="policy.preview.map",
                )
        if seg_tab.open:
            with seg_tab:
                st.dataframe(recommendation_table(rec, names), hide_index=True)
        if proj_tab.open:
            with proj_tab:
                st.plotly_chart(
                    retention_projection(shown.projections(), names, period_word=period_word(unit)),
                    key="policy.preview.proj",
                )


def preview_title(reward: RewardSettings) -> str:
    """The preview map's title, naming the settings it is for (so nobody mistakes it for the
    map of another move of a slider)."""
    return (
        f"Preview: best action for future weight {reward.gamma:g}, reward "
        f"{reward.retain_reward:g}, churn penalty {reward.churn_penalty:g}, revenue weight "
        f"{reward.revenue_weight:g}"
    )


def recommendation_table(rec: pd.DataFrame, names: Mapping[int, str]) -> pd.DataFrame:
    """One row per segment, one column per stage (lifecycle order): the action to take."""
    wide = rec.pivot(index="segment", columns="stage", values="action")
    wide = wide.reindex(columns=sorted(wide.columns, key=stage_rank))
    wide.columns = [stage_word(c) for c in wide.columns]
    wide.columns.name = None
    wide.insert(0, "Segment", [_names_of(names)(g) for g in wide.index])
    return wide.reset_index(drop=True)


def measured_effects(result: PolicyResult, names: dict[int, str]) -> None:
    """The effects a policy retrained on a test stands on (issue 13): per segment × stage ×
    strategy, "measured in test X" with the 95% interval, or "assumed" where the test did not
    measure it. Nothing for other runs (their action table above says what they assume)."""
    from retention.strategies import effect_source, effects_behind

    behind = effects_behind(result.settings, names, result.settings.get("period"))
    if behind is None:
        return
    st.subheader(f"Effects behind this policy ({effect_source(result.settings)})")
    st.caption(
        "This policy was retrained on a randomised test: it uses these measured effects instead "
        "of the assumed lift table. Cells the test did not cover say 'assumed'. Pressing "
        "**Train** here learns a new policy on the assumed lift table; to retrain on the test "
        "again (e.g. with other rewards), read its results on the Test page."
    )
    st.dataframe(behind, hide_index=True, width="stretch")
