"""The Policy page's campaign-log checks (issue 12): the timing rule in use, when sends fall,
the effects under each timing rule, the warnings, the evidence per segment × stage × action and
the off-policy estimates per segment. The library decides (``retention.campaigns``); this
renders."""

from __future__ import annotations

from collections.abc import Mapping

import pandas as pd
import streamlit as st

from retention.campaigns import (
    CampaignChecks,
    effects_side_by_side,
    evidence_view,
    randomisation_sentence,
    segment_ope_view,
    timing_sentence,
)
from retention.charts.campaigns import send_time_histogram
from retention.learn import PolicyResult
from retention.words import stage_word


def show(result: PolicyResult, names: Mapping[int, str]) -> None:
    """Everything the campaign log says about this run; nothing without a log."""
    if not result.campaign:
        return
    checks = CampaignChecks.from_dict(result.campaign)
    period = checks.period
    st.subheader("Can the campaign log be trusted?")
    st.caption(timing_sentence(checks.timing, period) + " Change it on the Data page.")
    for warning in checks.warnings:
        st.warning(warning, icon=":material/warning:")
    if checks.warnings:
        st.caption(
            "The share of the optimum above is measured on the model estimated from this log: "
            "it cannot tell whether the log was read the right way."
        )
    left, right = st.columns([2, 3])
    left.plotly_chart(send_time_histogram(checks.send_times, period), key="campaign.sends")
    randomised = randomisation_sentence(checks)
    with right:
        if randomised is not None:
            st.markdown(randomised)
        st.markdown(
            f"**Which {period} does a send act on?** The table below gives the change in the "
            f"chance of being active next {period} against doing nothing, per segment and "
            "action, if sends count under each rule (percentage points, 95% interval; ✓ = "
            "clear, p < 0.001). A randomised send credited to the wrong move shows no effect."
        )
    # Wide tables take the page's full width (in a half-width column they were cut off).
    st.dataframe(effects_table(checks.effects, period, names), hide_index=True)
    st.markdown(
        f"**Evidence per segment, stage and action** (rule '{checks.timing}'): the share of "
        f"users active next {period} after each action and after doing nothing, the change "
        "with its 95% interval (Newcombe), and how many logged decisions are behind each."
    )
    st.dataframe(evidence_table(result.evidence, names, period), hide_index=True)
    per_segment = segment_ope_view(result.ope_segments, dict(names))
    if not per_segment.empty:
        st.markdown(
            "**Off-policy estimates per segment** on its held-out users (doubly robust, mean "
            "reward of one period per logged decision, in points, 95% bootstrap intervals)."
        )
        st.dataframe(per_segment, hide_index=True)


def effects_table(effects: pd.DataFrame, period: str, names: Mapping[int, str]) -> pd.DataFrame:
    """The effects under each timing rule, with short column names."""
    table = effects_side_by_side(effects, period, names)
    short = {
        c: f"if sends count by {c.split(':')[0]} (pp)"
        for c in table.columns
        if c.startswith("'") and ":" in c
    }
    return table.rename(columns={"segment": "Segment", "action": "Action", **short})


def evidence_table(
    evidence: pd.DataFrame | None, names: Mapping[int, str], period: str
) -> pd.DataFrame:
    """The evidence per segment, stage and action, stages in lifecycle order (active, lapsing,
    at risk, churned), with short column names."""
    table = evidence_view(evidence, dict(names))
    if table.empty:
        return table
    table = table.assign(stage=table["stage"].map(stage_word))  # rows in lifecycle order already
    return table.rename(
        columns={
            "segment": "Segment",
            "stage": "Stage",
            "action": "Action",
            "active next period after the action (%)": f"active next {period} after it (%)",
            "after doing nothing (%)": "after doing nothing (%)",
            "change (percentage points)": "change (pp)",
        }
    )
