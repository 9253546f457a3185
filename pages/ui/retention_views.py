"""Rendering for the Retention page: the controls, the cohort section and the time-to-churn
section. Each function draws one part and returns what the user chose; the page computes
through the library (:mod:`retention.cohorts`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import streamlit as st

from pages.ui.common import remember
from retention.charts.drill import clickable_cells
from retention.charts.retention import (
    at_risk_table,
    cohort_heatmap,
    incomplete_note,
    survival_figure,
)
from retention.cohorts import (
    ALL_USERS,
    DEFAULT_TOP_N,
    MODE_EXPLANATIONS,
    MODES,
    CohortTable,
    Survival,
    p_value_text,
)
from retention.periods import (
    DEFAULT_CHURN_AFTER,
    PERIOD_DAYS,
    PERIODS,
    ChurnWindowCheck,
    InactiveRuns,
    PeriodGrid,
    check_churn_window,
    churn_after_in,
)
from retention.results import BY_SEGMENTS, NO_BREAKDOWN
from retention.words import counted, period_word, period_word_singular

NONE = NO_BREAKDOWN
SEGMENTS = BY_SEGMENTS
MODE_WORDS = {
    "classic": "active in that period (classic)",
    "unbounded": "active then or later (unbounded)",
}
#: The page's settings, kept in the workspace across refreshes (:func:`remember`).
PERIOD_KEY = "retention.period"
CHURN_KEY = "retention.churn_after"
CHURN_UNIT_KEY = "retention.churn_unit"  # the period the churn window is counted in
CHURN_DAYS_KEY = "retention.churn_days"  # its length of time, in days
BREAKDOWN_KEY = "retention.breakdown"
TOP_N_KEY = "retention.top_n"
MODE_KEY = "retention.mode"
COHORT_GROUP_KEY = "retention.cohort_group"
#: What the Policy and Segments pages read: the period as picked ("auto" or a period) and the
#: churn window in that period.
SHARED_PERIOD = "period"
SHARED_CHURN = "churn_after"
MAX_BANDS = 4  # more groups than this: curves without their confidence bands


@dataclass(frozen=True)
class Choices:
    """What the user chose in the controls (``period`` resolved, ``period_choice`` as picked)
    and whether the data can show the churn window (``window``)."""

    period_choice: str
    period: str
    churn_after: int
    breakdown: str
    top_n: int
    window: ChurnWindowCheck


def _remember_choice(key: str, options: list, default: object) -> str:
    """:func:`remember` for a selectbox or radio whose options depend on the data: a kept value
    that is not among today's options (a column of another dataset) falls back to ``default``."""
    remember(key, default)
    if st.session_state[key] not in options:
        st.session_state[key] = default if default in options else options[0]
    return key


def _churn_window_key(period: str, highest: int) -> str:
    """The churn window's widget key, its value carried over as the same length of time when
    the period changes (4 months -> 17 weeks) and kept within the slider's range.

    The length in days is kept beside it and changes only when the user moves the slider, so
    going through a coarser period and back does not drift (4 weeks -> 2 months, the least, ->
    4 weeks again, not 9)."""
    key = remember(CHURN_KEY, DEFAULT_CHURN_AFTER)
    unit_key = remember(CHURN_UNIT_KEY, period)
    unit = st.session_state[unit_key] if st.session_state[unit_key] in PERIODS else period
    try:
        value = max(2, int(st.session_state[key]))
    except (TypeError, ValueError):
        value = DEFAULT_CHURN_AFTER
    days_key = remember(CHURN_DAYS_KEY, value * PERIOD_DAYS[unit])
    try:
        days = float(st.session_state[days_key])
    except (TypeError, ValueError):
        days = value * PERIOD_DAYS[unit]
    if churn_after_in(days, unit) != value:  # the user moved the slider
        days = value * PERIOD_DAYS[unit]
    if unit != period:
        value = churn_after_in(days, period)
    st.session_state[days_key] = days
    st.session_state[unit_key] = period
    st.session_state[key] = min(value, highest)
    return key


def controls(
    auto: str, columns: list[str], has_segments: bool, runs_for: Callable[[str], InactiveRuns]
) -> Choices:
    """Period, churn window and breakdown, kept across refreshes in the workspace; they also
    set the period and churn window the other pages read (``st.session_state["period"]`` /
    ``["churn_after"]``). ``runs_for(period)``: how long users are seen inactive in that period,
    which bounds the churn window."""
    period_options = ["auto", *PERIODS]
    with st.container(border=True):
        left, mid, right = st.columns(3)
        with left:
            period_choice = st.selectbox(
                "Period",
                period_options,
                format_func=lambda p: f"Automatic ({auto})" if p == "auto" else p.capitalize(),
                key=_remember_choice(PERIOD_KEY, period_options, "auto"),
                help=(
                    "How time is cut. Automatic picks the shortest period in which returning "
                    "users typically come back in the very next period."
                ),
            )
        period = auto if period_choice == "auto" else period_choice
        words, word = period_word(period), period_word_singular(period)
        runs = runs_for(period)
        longest = max(3, runs.grid.n_periods - 1)  # a window must fit inside the data
        with mid:
            churn_after = st.slider(
                f"Churn window ({words} inactive)",
                2,
                longest,
                key=_churn_window_key(period, longest),
                help=(
                    f"A user who has been inactive this many {words} in a row counts as churned. "
                    f"1 inactive {word} is 'lapsing', more is 'at risk' until the window is "
                    "reached. Changing the period keeps the same length of time (4 months "
                    "become 17 weeks)."
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
                key=_remember_choice(BREAKDOWN_KEY, options, options[0]),
                help=(
                    "Compare retention between segments, or between the values of a column "
                    "that sorts users into a few groups (text or categories, such as country; "
                    "per-purchase numbers such as quantity or price are not offered)."
                ),
            )
            top_n = DEFAULT_TOP_N
            if breakdown not in (SEGMENTS, NONE):
                top_n = st.number_input(
                    f"Values of {breakdown} to show",
                    1,
                    20,
                    key=remember(TOP_N_KEY, DEFAULT_TOP_N),
                    help=f"The most common values of {breakdown}, by users; the rest are "
                    "grouped as 'Other'.",
                )
    window = check_churn_window(runs, int(churn_after))
    if window.problem is None:  # a refused window is not passed on to the Policy page
        st.session_state[SHARED_PERIOD] = period_choice
        st.session_state[SHARED_CHURN] = int(churn_after)
    return Choices(period_choice, period, int(churn_after), breakdown, int(top_n), window)


def shared_settings() -> tuple[str, int]:
    """The period (as picked: "auto" or a period) and the churn window (in that period) that
    the Retention page set, for the other pages: this session's, else the ones kept in the
    workspace, so that a refresh on another page keeps them too."""
    if SHARED_PERIOD in st.session_state and SHARED_CHURN in st.session_state:
        return str(st.session_state[SHARED_PERIOD]), int(st.session_state[SHARED_CHURN])
    period = st.session_state[remember(PERIOD_KEY, "auto")]
    churn_after = st.session_state[remember(CHURN_KEY, DEFAULT_CHURN_AFTER)]
    if period not in ("auto", *PERIODS):
        period = "auto"
    try:
        churn_after = max(2, int(churn_after))
    except (TypeError, ValueError):
        churn_after = DEFAULT_CHURN_AFTER
    return period, churn_after


def use_churn_window(value: int) -> None:
    """Button callback: set the churn window slider to ``value``."""
    st.session_state[CHURN_KEY] = int(value)


def churn_window_notice(choices: Choices) -> None:
    """Refuse a churn window the data cannot show (with the suggested one a click away) and
    stop; caution about one it shows only thinly."""
    window, words = choices.window, period_word(choices.period)
    if window.problem:
        st.error(window.problem, icon=":material/block:")
        if window.suggested != choices.churn_after:
            st.button(
                f"Use {window.suggested} {words}",
                on_click=use_churn_window,
                args=(window.suggested,),
                key="retention.use_suggested",
            )
        st.stop()
    if window.caution:
        st.warning(window.caution, icon=":material/warning:")


def span_caption(surv: Survival, grid: PeriodGrid, period: str) -> None:
    """How many users over which periods, and what censoring means here."""
    word = period_word_singular(period)
    ends = (
        f"the data ends on {grid.last_ts:%Y-%m-%d}, before the last {word} does, so"
        if grid.ends_mid_period and grid.last_ts is not None
        else f"the last {word} is the end of the data, so"
    )
    st.caption(
        f"{counted(surv.sizes.sum(), 'user')} over {counted(grid.n_periods, word)} "
        f"({grid.label(0)} to {grid.label(grid.last_t)}); {ends} users still active then are "
        "followed up to there (censored), not counted as churned."
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
            key=_remember_choice(MODE_KEY, list(MODES), MODES[0]),
        )
    with c2:
        options = [ALL_USERS] + [g for g in groups if g != ALL_USERS]
        group = st.selectbox(
            "Cohorts of",
            options,
            key=_remember_choice(COHORT_GROUP_KEY, options, ALL_USERS),
        )
    st.caption(MODE_EXPLANATIONS[mode])
    return mode, group


def cohort_section(table: CohortTable, period: str) -> None:
    """The cohort heatmap and how to read it."""
    word = period_word_singular(period)
    st.plotly_chart(  # a click on a cell lists its users (pages/ui/drill_views.py)
        clickable_cells(cohort_heatmap(table), table), key="retention.heatmap",
        on_select="rerun", selection_mode="points",
    )  # fmt: skip
    note = incomplete_note(table)
    st.caption(
        f"Each row is a cohort: the users whose first activity fell in that {word} (n = its "
        f"number of users). Each column counts {period_word(period)} since then. The triangle "
        "ends where the data ends." + (f" {note[0].upper()}{note[1:]}." if note else "")
    )


def survival_section(surv: Survival, churn_after: int, compared: bool) -> None:
    """Kaplan–Meier curves, the log-rank test in words and the at-risk table. ``compared``:
    the user asked for a breakdown (so one group only deserves a word)."""
    words = period_word(surv.period)
    bands = len(surv.groups) <= MAX_BANDS
    st.subheader("Time to churn")
    st.caption(
        f"Kaplan–Meier estimate of the share of users who have not yet churned (been inactive "
        f"{churn_after} {words} in a row) after each number of {words} since their first "
        "activity. "
        + (
            "The shaded band is the 95% confidence interval. "
            if bands
            else f"The 95% confidence bands are hidden with more than {MAX_BANDS} groups (they "
            "would cover each other): show fewer values to see them. "
        )
        + "A user who churns and later comes back counts as churned from their first churn."
    )
    st.plotly_chart(survival_figure(surv, bands=bands), key="retention.km")
    if surv.logrank is not None:
        shown = st.success if surv.logrank.p_value < 0.05 else st.info
        shown(surv.logrank.sentence, icon=":material/query_stats:")
        st.caption(
            f"Log-rank test (do the curves differ by more than chance?) across "
            f"{len(surv.groups)} groups: χ² = {surv.logrank.statistic:,.1f} with "
            f"{counted(surv.logrank.dof, 'degree')} of freedom, "
            f"{p_value_text(surv.logrank.p_value)}."
        )
    elif compared:
        st.info("Only one group has users, so there is nothing to compare.")

    st.markdown(f"**Users still followed (at risk) after each number of {words}**")
    table = at_risk_table(surv).map(lambda n: f"{n:,}")  # thousands separators, always
    st.dataframe(
        table,
        column_config={c: st.column_config.TextColumn(alignment="right") for c in table.columns},
    )
    st.caption(
        "A user stops being followed when they churn or when the data ends. Where few users are "
        "left, the curve is uncertain: the band widens."
    )
