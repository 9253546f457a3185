"""What the Test page draws: the plan table and its downloads, the results (sample-ratio check,
measured effects, retrained policy, off-policy check, next wave). The library decides every
verdict (:mod:`retention.experiment`); these functions only render."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from retention.charts.experiment import effects_figure
from retention.experiment import ExperimentPlan, effects_view, plan_view
from retention.experiment_runs import ExperimentResult
from retention.strategies import action_words, stage_words, to_csv_bytes
from retention.words import segment_display_name


def plan_section(plan: ExperimentPlan, periods: str) -> None:
    """The plan in plain words, with its two downloads."""
    st.subheader(f"Test {plan.plan_id}")
    view = plan_view(plan.cells, periods, periods.removesuffix("s"))
    n_users = len(plan.assignment)
    blocked = int((~plan.cells["reachable"].astype(bool)).sum())
    st.markdown(
        f"**{n_users:,}** users take part, each in one group for the whole test, which runs "
        f"**{plan.periods} {periods}** from {plan.start[:10]}. "
        f"{plan.settings.holdout:.0%} of every segment and stage get nothing (the comparison "
        "group); the rest are split evenly between the strategies."
    )
    if blocked:
        st.warning(
            f"In {blocked} of {len(view)} groups the test **cannot reach power**: there are not "
            f"enough users to notice a {plan.settings.mde:.0%} change within "
            f"{plan.settings.max_periods} {periods}. Those groups still take part, and their "
            "results will come with wide intervals.",
            icon=":material/warning:",
        )
    st.dataframe(view, hide_index=True, width="stretch")
    with st.expander("How the sizes are worked out"):
        st.caption(plan.formula)
    c1, c2 = st.columns(2)
    c1.download_button(
        "Assignment (CSV)",
        plan.assignment_csv(),
        file_name=f"{plan.plan_id}-assignment.csv",
        mime="text/csv",
        icon=":material/download:",
        help="One row per user: segment, stage and the group (strategy) to send. Load it into "
        "your e-mail or CRM tool. Safe to open in a spreadsheet (formula-like cells escaped).",
    )
    c2.download_button(
        "Plan (JSON)",
        plan.plan_json(),
        file_name=f"{plan.plan_id}-plan.json",
        mime="application/json",
        icon=":material/download:",
        help="Keep it: the results are read against this plan.",
    )


def results_section(result: ExperimentResult, names: dict[int, str], period: str) -> None:
    """The results: the sample-ratio check first, then what was measured and what follows."""
    st.subheader(f"Results of test {result.plan_id}")
    if result.srm.flagged:
        st.warning(result.srm.sentence(), icon=":material/warning:")
    else:
        st.success(result.srm.sentence(), icon=":material/check_circle:")
    st.markdown(
        f"The effects below are **measured in test {result.plan_id}** and replace the assumed "
        "lift table for these segments; where a group had few users its estimate leans on the "
        "other segments (shrinkage)."
    )
    st.plotly_chart(effects_figure(result.effects, names, period), width="stretch")
    st.dataframe(effects_view(result.effects, names, period), hide_index=True, width="stretch")

    st.subheader("Retrained plan")
    recs = result.recommendations
    st.caption(
        "What to do with each segment at each stage, chosen on the measured effects (where the "
        "test measured nothing, on the assumed lift table) and your reward settings."
    )
    st.dataframe(
        pd.DataFrame(
            {
                "Segment": [names.get(int(g), segment_display_name(int(g))) for g in recs["segment"]],
                "Stage": [stage_words(str(x), period) for x in recs["stage"]],
                "What to do": [action_words(str(a), str(x)) for a, x in
                               zip(recs["action"], recs["stage"], strict=True)],
            }
        ),
        hide_index=True,
        width="stretch",
    )  # fmt: skip
    pol = result.ope[(result.ope["estimator"] == "dr")].set_index("policy")
    if "learned policy" in pol.index:
        r = pol.loc["learned policy"]
        st.markdown(
            f"On {result.held_out_users:,} test users held out from the measurement, the "
            f"retrained plan is estimated to earn **{r['value']:.3f} points** per user per {period} "
            f"(95% interval {r['ci_lo']:.3f} to {r['ci_hi']:.3f}; doubly robust off-policy "
            "estimate with the propensities the test logged)."
        )
    with st.expander("All off-policy estimates"):
        st.dataframe(result.ope, hide_index=True, width="stretch")
    c1, c2 = st.columns(2)
    c1.download_button(
        "Measured effects (CSV)",
        to_csv_bytes(result.effects),
        file_name=f"{result.plan_id}-effects.csv",
        mime="text/csv",
        icon=":material/download:",
    )
    c2.download_button(
        "Next wave (CSV)",
        to_csv_bytes(result.next_assignment),
        file_name=f"{result.plan_id}-2-assignment.csv",
        mime="text/csv",
        icon=":material/download:",
        help="The same users, with more of each group sent to what worked best so far "
        "(Thompson sampling); every strategy keeps at least 5% and the comparison group is "
        "kept, so the next results can still be checked.",
    )


def retrained_links(plan_id: str) -> None:
    """Where the retrained policy now shows (it is stored as the newest policy run)."""
    from pages.ui.common import page_link

    st.success(
        f"The retrained policy is stored as the newest policy run, marked **measured in test "
        f"{plan_id}**: the Policy and Strategies pages and the report now show it, with each "
        "effect's interval; effects the test could not measure still say 'assumed'.",
        icon=":material/check_circle:",
    )
    c1, c2 = st.columns(2)
    with c1:
        page_link("policy", "See it on Policy", ":material/model_training:")
    with c2:
        page_link("strategies", "See the strategies", ":material/checklist:")
