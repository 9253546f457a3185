"""Rendering for the Retention page: the controls, the cohort section and the time-to-churn
section. Each function draws one part and returns what the user chose; the page computes
through the library (:mod:`retention.cohorts`)."""

from __future__ import annotations

from dataclasses import dataclass

import streamlit as st

from retention.charts.retention import at_risk_table, cohort_heatmap, survival_figure
from retention.cohorts import (
    ALL_USERS,
    DEFAULT_TOP_N,
    MODE_EXPLANATIONS,
    MODES,
    CohortTable,
    Survival,
)
from retention.periods import DEFAULT_CHURN_AFTER, PERIODS, PeriodGrid
from retention.results import BY_SEGMENTS, NO_BREAKDOWN
from retention.words import period_word

NONE = NO_BREAKDOWN
SEGMENTS = BY_SEGMENTS
MODE_WORDS = {
    "classic": "active in that period (classic)",
    "unbounded": "active then or later (unbounded)",
}


@dataclass(frozen=True)
class Choices:
    """What the user chose in the controls (``period`` resolved, ``period_choice`` as picked)."""

    period_choice: str
    period: str
    churn_after: int
    breakdown: str
    top_n: int


def controls(auto: str, columns: list[str], has_segments: bool) -> Choices:
    """Period, churn window and breakdown, seeded from the settings the Policy page shares
    (``st.session_state["period"]`` / ``["churn_after"]``), which they then update."""
    period_options = ["auto", *PERIODS]
    saved_period = st.session_state.get("period", "auto")
    saved_churn = st.session_state.get("churn_after", DEFAULT_CHURN_AFTER)
    with st.container(border=True):
        left, mid, right = st.columns(3)
        with left:
            period_choice = st.selectbox(
                "Period",
                period_options,
                index=period_options.index(saved_period) if saved_period in period_options else 0,
                format_func=lambda p: f"Automatic ({auto})" if p == "auto" else p.capitalize(),
                key="retention.period",
                help=(
                    "How time is cut. Automatic picks the shortest period in which returning "
                    "users typically come back in the very next period."
                ),
            )
        period = auto if period_choice == "auto" else period_choice
        words = period_word(period)
        with mid:
            churn_after = st.slider(
                f"Churn window ({words} inactive)",
                2,
                26,
                min(26, max(2, int(saved_churn))),
                key="retention.churn_after",
                help=(
                    f"A user who has been inactive this many {words} in a row counts as churned. "
                    f"1 inactive {period} is 'lapsing', more is 'at risk' until the window is "
                    "reached."
                ),
            )
        with right:
            options = ([SEGMENTS] if has_segments else []) + [NONE] + columns
            breakdown = st.selectbox(
                "Break down by",
                options,
                format_func=lambda b: {
                    SEGMENTS: "Segments (current segmentation)",
                    NONE: "Nothing (all users)",
                }.get(b, f"Column: {b}"),
                key="retention.breakdown",
                help="Compare retention between segments, or between the values of a column.",
            )
        top_n = DEFAULT_TOP_N
        if breakdown not in (SEGMENTS, NONE):
            top_n = st.number_input(
                f"Most common values of {breakdown} to show (the rest are 'Other')",
                1,
                20,
                DEFAULT_TOP_N,
                key="retention.top_n",
            )
    st.session_state["period"] = period_choice
    st.session_state["churn_after"] = int(churn_after)
    return Choices(period_choice, period, int(churn_after), breakdown, int(top_n))


def span_caption(surv: Survival, grid: PeriodGrid, period: str) -> None:
    """How many users over which periods, and what censoring means here."""
    st.caption(
        f"{int(surv.sizes.sum()):,} users over {grid.n_periods} {period_word(period)} "
        f"({grid.label(0)} to {grid.label(grid.last_t)}); the last {period} is still open, so "
        "users in it are followed up to there (censored), not counted as churned."
    )


def cohort_controls(groups: list[str]) -> tuple[str, str]:
    """The cohort mode and whose cohorts to show."""
    st.subheader("Cohorts")
    c1, c2 = st.columns([1, 1])
    with c1:
        mode = st.radio(
            "Count a user in a cell when they were…",
            MODES,
            format_func=MODE_WORDS.__getitem__,
            horizontal=True,
            key="retention.mode",
        )
    with c2:
        group = st.selectbox(
            "Cohorts of",
            [ALL_USERS] + [g for g in groups if g != ALL_USERS],
            key="retention.cohort_group",
        )
    st.caption(MODE_EXPLANATIONS[mode])
    return mode, group


def cohort_section(table: CohortTable, period: str) -> None:
    """The cohort heatmap and how to read it."""
    st.plotly_chart(cohort_heatmap(table), key="retention.heatmap")
    st.caption(
        f"Each row is a cohort: the users whose first activity fell in that {period} (n = its "
        f"size). Each column counts {period_word(period)} since then. The triangle ends where "
        "the data ends."
    )


def survival_section(surv: Survival, churn_after: int, compared: bool) -> None:
    """Kaplan–Meier curves, the log-rank test in words and the at-risk table. ``compared``:
    the user asked for a breakdown (so one group only deserves a word)."""
    words = period_word(surv.period)
    st.subheader("Time to churn")
    st.caption(
        f"Kaplan–Meier estimate of the share of users who have not yet churned (been inactive "
        f"{churn_after} {words} in a row) after each number of {words} since their first "
        "activity. The shaded band is the 95% confidence interval. A user who churns and later "
        "comes back counts as churned from their first churn."
    )
    st.plotly_chart(survival_figure(surv), key="retention.km")
    if surv.logrank is not None:
        shown = st.success if surv.logrank.p_value < 0.05 else st.info
        shown(surv.logrank.sentence, icon=":material/query_stats:")
        st.caption(
            f"Log-rank test across {len(surv.groups)} groups: χ² = "
            f"{surv.logrank.statistic:,.1f} with {surv.logrank.dof} degree(s) of freedom, "
            f"p = {surv.logrank.p_value:.3g}."
        )
    elif compared:
        st.info("Only one group has users, so there is nothing to compare.")

    st.markdown(f"**Users still followed (at risk) after each number of {words}**")
    st.dataframe(at_risk_table(surv))
    st.caption(
        "A user stops being followed when they churn or when the data ends. Where few users are "
        "left, the curve is uncertain: the band widens."
    )
