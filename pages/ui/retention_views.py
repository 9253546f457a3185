"""Rendering for the Retention page: the controls, the cohort section and the time-to-churn
section. Each function draws one part and returns what the user chose; the page computes
through the library (:mod:`retention.cohorts`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from typing import Any

import streamlit as st

from pages.ui.common import remember
from retention.analyses import (
    ACQUISITION,
    AVERAGE,
    FIRST_PREFIX,
    MATRIX_EXPLANATIONS,
    MATRIX_MODES,
    Definition,
    RetentionMatrix,
    parse_brackets,
)
from retention.charts.drill import clickable_cells
from retention.charts.retention import (
    at_risk_table,
    matrix_heatmap,
    retention_lines,
    survival_figure,
)
from retention.cohorts import (
    ALL_USERS,
    DEFAULT_TOP_N,
    Survival,
    p_value_text,
)
from retention.errors import InputError
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
from retention.words import counted, currency_unit, money, period_word, period_word_singular

NONE = NO_BREAKDOWN
SEGMENTS = BY_SEGMENTS
#: The page's settings, kept in the workspace across refreshes (:func:`remember`).
PERIOD_KEY = "retention.period"
CHURN_KEY = "retention.churn_after"
CHURN_UNIT_KEY = "retention.churn_unit"  # the period the churn window is counted in
CHURN_DAYS_KEY = "retention.churn_days"  # its length of time, in days
BREAKDOWN_KEY = "retention.breakdown"
TOP_N_KEY = "retention.top_n"
MODE_KEY = "retention.mode"
COHORT_GROUP_KEY = "retention.cohort_group"
MEASURE_KEY = "retention.measure"
BRACKETS_KEY = "retention.brackets"
START_KEY = "retention.start_event"
RETURN_KEY = "retention.return_event"
DATES_KEY = "retention.cohort_dates"  # kept as ISO dates
DATES_WIDGET = "retention.cohort_dates.widget"
CHURN_IN_KEY = "retention.churn_in"  # the churn window set in periods or in days
CHURN_DAYS_INPUT = "retention.churn_days_input"
ANY_EVENT = "(any)"
DEFAULT_BRACKETS_TEXT = "1-7, 8-30, 31-90"
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


def _churn_days_key(period: str, most: int, current: int) -> str:
    """The churn window in days: what the user typed, else the window's current length."""
    default = round(current * PERIOD_DAYS[period])
    key = remember(CHURN_DAYS_INPUT, default)
    try:
        value = int(st.session_state[key])
    except (TypeError, ValueError):
        value = default
    st.session_state[key] = max(1, min(value, most))
    return key


def breakdown_label(b: str) -> str:
    """How a breakdown is offered: "Segments (current segmentation)", "Column: country",
    "Acquisition month", "First text (at the start)"."""
    if b == SEGMENTS:
        return "Segments (current segmentation)"
    if b == NONE:
        return "Nothing (all users)"
    if b == ACQUISITION:
        return "Acquisition month"
    if b.startswith(FIRST_PREFIX):
        column = b.removeprefix(FIRST_PREFIX)
        if column == "text":
            return "First product or text (at the start)"
        return f"First {column} (at the start)"
    return f"Column: {b}"


def controls(
    auto: str,
    columns: list[str],
    has_segments: bool,
    runs_for: Callable[[str], InactiveRuns],
    properties: tuple[str, ...] = (),
) -> Choices:
    """Period, churn window and breakdown, kept across refreshes in the workspace; they also
    set the period and churn window the other pages read (``st.session_state["period"]`` /
    ``["churn_after"]``). ``runs_for(period)``: how long users are seen inactive in that period,
    which bounds the churn window. ``properties``: breakdowns by a property of the users' start
    (:func:`~retention.analyses.property_options`)."""
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
            in_days = (
                st.radio(
                    "Churn window in",
                    ("periods", "days"),
                    format_func={"periods": words, "days": "days"}.__getitem__,
                    horizontal=True,
                    key=_remember_choice(CHURN_IN_KEY, ["periods", "days"], "periods"),
                    help="Set the churn window as a number of periods or of days.",
                )
                == "days"
            )
            key = _churn_window_key(period, longest)
            if in_days:
                most = int(longest * PERIOD_DAYS[period])
                days = st.number_input(
                    "Churn window (days inactive)",
                    min_value=1,
                    max_value=most,
                    step=1,
                    key=_churn_days_key(period, most, int(st.session_state[key])),
                    help=(
                        "A user inactive this many days in a row counts as churned. Stages are "
                        f"counted in whole {words}, so the window is rounded to the nearest "
                        f"whole number of {words} (at least 2)."
                    ),
                )
                churn_after = min(churn_after_in(float(days), period), longest)
                st.session_state[key] = churn_after
                st.session_state[CHURN_DAYS_KEY] = churn_after * PERIOD_DAYS[period]
                st.caption(f"= {counted(churn_after, word, words)} inactive in a row")
            else:
                churn_after = st.slider(
                    f"Churn window ({words} inactive)",
                    2,
                    longest,
                    key=key,
                    help=(
                        f"A user who has been inactive this many {words} in a row counts as "
                        f"churned. 1 inactive {word} is 'lapsing', more is 'at risk' until the "
                        "window is reached. Changing the period keeps the same length of time "
                        "(4 months become 17 weeks)."
                    ),
                )
        with right:
            options = ([SEGMENTS] if has_segments else []) + [NONE] + columns
            options += [p for p in properties if p.removeprefix(FIRST_PREFIX) not in columns]
            breakdown = st.selectbox(
                "Break down by",
                options,
                format_func=breakdown_label,
                key=_remember_choice(BREAKDOWN_KEY, options, options[0]),
                help=(
                    "Compare retention between segments, between the values of a column "
                    "that sorts users into a few groups (text or categories, such as country; "
                    "per-purchase numbers such as quantity or price are not offered), by the "
                    "month users were acquired, or by what they did first (the first product "
                    "they bought)."
                ),
            )
            top_n = DEFAULT_TOP_N
            if breakdown not in (SEGMENTS, NONE, ACQUISITION):
                shown = breakdown_label(breakdown).removeprefix("Column: ")
                top_n = st.number_input(
                    f"Values of {shown} to show",
                    1,
                    20,
                    key=remember(TOP_N_KEY, DEFAULT_TOP_N),
                    help=f"The most common values of {shown}, by users; the rest are "
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


@dataclass(frozen=True)
class AnalysisChoices:
    """How the retention lines and cohorts are counted: ``mode`` (classic, unbounded or
    brackets), ``measure`` (percent or count), the definition and the day ranges."""

    mode: str
    measure: str
    definition: Definition
    brackets: tuple[tuple[int, int | None], ...]


def _any(value: str) -> str:
    return "Any event" if value == ANY_EVENT else value


def _remember_dates(dataset_id: str, lo: date, hi: date) -> tuple[str, str]:
    """The cohort date range's keys for one dataset (its widget, and where it is kept in the
    workspace as ISO dates: dates are not JSON). The range always lies within the data's days:
    one kept from other data falls back to all of them. The widget's own value wins, unless the
    kept range changed since the page last wrote it (a saved view was opened)."""
    saved_key = remember(f"{DATES_KEY}.{dataset_id}", None)
    widget = f"{DATES_WIDGET}.{dataset_id}"
    saved = st.session_state[saved_key]
    kept = [str(v) for v in saved] if isinstance(saved, tuple | list) else saved
    if widget in st.session_state and kept == st.session_state.get(f"{widget}.written"):
        value = st.session_state[widget]
    else:
        value = saved
    if (
        isinstance(value, tuple | list)
        and len(value) == 1
        and isinstance(value[0], date)
        and lo <= value[0] <= hi
    ):
        return widget, saved_key  # the user is picking: the first day so far
    try:
        first, last = (v if isinstance(v, date) else date.fromisoformat(str(v)) for v in value)
    except (TypeError, ValueError):
        first, last = lo, hi
    if not lo <= first <= last <= hi:
        first, last = lo, hi
    st.session_state[widget] = (first, last)
    return widget, saved_key


def analysis_controls(
    dataset_id: str, period: str, event_kinds: list[str], first_day: date, last_day: date
) -> AnalysisChoices:
    """How to count a user as retained (in that period, then or later, or in ranges of days),
    percent or users, and, in an expander, the start and return events and the cohorts'
    dates. Kept across refreshes in the workspace."""
    word = period_word_singular(period)
    st.subheader("Retention over time")
    with st.container(border=True):
        c1, c2 = st.columns([3, 1])
        with c1:
            mode = st.radio(
                "Count a user as retained when they came back…",
                MATRIX_MODES,
                format_func=lambda m: {
                    "classic": f"in that {word}",
                    "unbounded": f"in that {word} or later",
                    "brackets": "within ranges of days",
                }[m],
                horizontal=True,
                key=_remember_choice(MODE_KEY, list(MATRIX_MODES), MATRIX_MODES[0]),
                help=(
                    f"In that {word}: N-{word} retention, the share who came back in exactly "
                    f"that {word} after they started. Or later: unbounded retention, the share "
                    f"who came back then or in any later {word} (it never goes up). Ranges of "
                    "days: bracketed retention, such as days 1–7, 8–30 and 31–90."
                ),
            )
        with c2:
            measure = st.radio(
                "Show",
                ("percent", "count"),
                format_func={"percent": "% of cohort", "count": "Number of users"}.__getitem__,
                horizontal=True,
                key=_remember_choice(MEASURE_KEY, ["percent", "count"], "percent"),
                help="The share of each cohort that came back, or how many users did.",
            )
        brackets: tuple[tuple[int, int | None], ...] = ()
        if mode == "brackets":
            text = st.text_input(
                "Ranges of days since the start",
                key=remember(BRACKETS_KEY, DEFAULT_BRACKETS_TEXT),
                help=(
                    "Whole days after each user's start (the start day is day 0), separated by "
                    "commas: 1-7, 8-30, 31-90. Write 91+ for 'day 91 or later'."
                ),
            )
            try:
                brackets = parse_brackets(text)
            except InputError as exc:
                st.error(str(exc), icon=":material/edit:")
                brackets = parse_brackets(DEFAULT_BRACKETS_TEXT)
                st.caption(f"Showing the usual ranges instead: {DEFAULT_BRACKETS_TEXT}.")
        with st.expander("Start and return events, cohort dates"):
            e1, e2 = st.columns(2)
            options = [ANY_EVENT, *event_kinds]
            with e1:
                start = st.selectbox(
                    "A user starts with their first…",
                    options,
                    format_func=_any,
                    key=_remember_choice(START_KEY, options, ANY_EVENT),
                    disabled=not event_kinds,
                    help="The event that puts a user in a cohort, e.g. their first purchase.",
                )
            with e2:
                back = st.selectbox(
                    "…and counts as back with any…",
                    options,
                    format_func=_any,
                    key=_remember_choice(RETURN_KEY, options, ANY_EVENT),
                    disabled=not event_kinds,
                    help=(
                        "The event that counts as coming back, at or after the start: e.g. "
                        "first review → any purchase."
                    ),
                )
            if not event_kinds:
                st.caption(
                    "This dataset has no event-type column (purchase, visit, review…), so "
                    "every event counts as a start and as a return."
                )
            widget, saved_key = _remember_dates(dataset_id, first_day, last_day)
            dates = st.date_input(
                "Cohorts that started between",
                min_value=first_day,
                max_value=last_day,
                key=widget,
                help="Only users whose start falls within these days (both included).",
                format="YYYY-MM-DD",
            )
            picked = tuple(dates) if isinstance(dates, tuple | list) else (dates,)
            lo = picked[0] if picked else first_day
            hi = picked[1] if len(picked) > 1 else last_day
            st.session_state[saved_key] = [lo.isoformat(), hi.isoformat()]
            st.session_state[f"{widget}.written"] = st.session_state[saved_key]
            remember(saved_key, None)  # saves the range just picked
    definition = Definition(
        start_event=None if start == ANY_EVENT else start,
        return_event=None if back == ANY_EVENT else back,
        start=None if lo <= first_day else lo,
        end=None if hi >= last_day else hi,
    )
    return AnalysisChoices(mode, measure, definition, brackets)


def _definition_words(matrix: RetentionMatrix) -> str:
    d = matrix.definition
    words = d.describe()
    if d.start or d.end:
        lo = f"{d.start:%Y-%m-%d}" if d.start else "the start of the data"
        hi = f"{d.end:%Y-%m-%d}" if d.end else "the end of the data"
        words += f", cohorts that started from {lo} to {hi}"
    return words


#: A chart's data: the arguments of the cached result it is drawn from (workspace folder,
#: dataset, period, ...), the same result every time they are the same.
DataKey = tuple


@st.cache_resource(max_entries=64, show_spinner=False)
def _shared_chart(name: str, data_key: DataKey, _build: Callable[[], Any]) -> Any:
    return _build()


def shared_chart(name: str, data_key: DataKey | None, build: Callable[[], Any]) -> Any:
    """The figure ``build()`` draws, built once per chart ``name`` (with every choice that
    changes it) and ``data_key`` and then shared by every rerun and session (issue 22: building
    the Retention page's five plotly figures again on each rerun was most of its CPU on the
    server). The figure is shared: never change it after this. Without a ``data_key`` (the
    data's origin unknown) it is built each time."""
    if data_key is None:
        return build()
    return _shared_chart(name, data_key, build)


def retention_lines_section(
    matrix: RetentionMatrix, measure: str, data_key: DataKey | None = None
) -> None:
    """One line per group (and the average) with how to read it; ``data_key``: where
    ``matrix`` comes from (:func:`shared_chart`)."""
    if matrix.cells.empty:
        st.info(
            "No user starts with this definition and these dates: pick another start event "
            "or a wider range of dates."
        )
        return
    title = "Share of users who came back" if measure == "percent" else "Users who came back"
    figure = shared_chart(
        f"lines.{measure}",
        data_key,
        lambda: retention_lines(matrix, matrix.curves(measure), measure, title=title),
    )
    st.plotly_chart(figure, key="retention.lines")
    word = period_word_singular(matrix.period)
    unit = "day range" if matrix.mode == "brackets" else word
    counted_as = (
        "Each point counts the users of the cohorts the data has followed through that whole "
        f"{unit}."
        if measure == "count"
        else "Each point averages the cohorts the data has followed through that whole "
        f"{unit}, weighted by their users."
    )
    average = ""
    if len(matrix.groups) > 1:
        average = (
            " The dark dashed line is all users together."
            if measure == "count"
            else " The dark dashed line is the average over all users."
        )
    late = (
        ""
        if matrix.mode == "brackets"
        else " The last points rest on the oldest cohorts only (hover for how many users), so "
        "they jump more."
    )
    st.caption(
        f"Retention of {_definition_words(matrix)}. {counted_as}{average}{late} An open "
        "circle on a dotted line is not complete yet (the data ends before these users got "
        f"through that {unit}): it will still grow, it is not a drop."
    )


def cohort_controls(groups: list[str]) -> str:
    """Whose cohorts to show."""
    st.subheader("Cohorts")
    options = [ALL_USERS] + [g for g in groups if g != ALL_USERS]
    return st.selectbox(
        "Cohorts of",
        options,
        key=_remember_choice(COHORT_GROUP_KEY, options, ALL_USERS),
        help="All users, or one group of the breakdown.",
    )


def cohort_section(
    matrix: RetentionMatrix, group: str, measure: str, data_key: DataKey | None = None
) -> None:
    """The cohort heatmap and how to read it."""
    if matrix.cells.empty:
        return
    shown = None if group == ALL_USERS else group
    figure = shared_chart(
        f"heatmap.{measure}.{group}",
        data_key,
        lambda: clickable_cells(matrix_heatmap(matrix, shown, measure), matrix, shown),
    )
    st.plotly_chart(  # a click on a cell lists its users (pages/ui/drill_views.py)
        figure, key="retention.heatmap", on_select="rerun", selection_mode="points",
    )  # fmt: skip
    word = period_word_singular(matrix.period)
    columns = (
        "Each column is a range of days since the user's start."
        if matrix.mode == "brackets"
        else f"Each column counts {period_word(matrix.period)} since the start."
    )
    grey = (
        " Grey cells are not complete yet: the data ends before all of their users got "
        "through them, so they will still grow."
        if (matrix.status(shown) == "incomplete").any().any()
        else ""
    )
    note = ""
    grid = matrix.grid
    if grid.ends_mid_period and grid.last_ts is not None and matrix.mode != "brackets":
        note = (
            f" {grid.label(grid.last_t)} is incomplete: the data ends on {grid.last_ts:%Y-%m-%d}."
        )
    hover = (
        ""
        if figure.data[0].texttemplate  # the chart's own choice (cell_text_shown)
        else " The darker the cell, the larger the share that came back: point at a cell for "
        "its share and users (the cells are too small to print them in)."
    )
    st.caption(
        f"Each row is a cohort: the users who started in that {word} (n = its number of "
        f"users). {columns} {MATRIX_EXPLANATIONS[matrix.mode]}{hover}{grey}{note}"
    )


#: The Money section's two charts, one drawn at a time (issue 22).
MONEY_VIEW_KEY = "retention.money_view"
REVENUE_RETENTION = "Revenue retention"
LTV = "Revenue per user so far (LTV)"


def money_section(
    matrix: RetentionMatrix, currency: str | None, data_key: DataKey | None = None
) -> None:
    """Revenue retention or the cumulative revenue per user (LTV) per group, in the data's
    currency: one chart at a time, picked above it (issue 22: drawing the page's five plotly
    charts at once was most of what a visit cost the browser); the LTV in words is always
    shown."""
    if matrix.cells.empty or float(matrix.cells["revenue"].abs().sum()) == 0:
        return
    unit = currency_unit(currency)
    words = period_word(matrix.period)
    st.subheader("Money")
    view = st.radio(
        "Show",
        [REVENUE_RETENTION, LTV],
        horizontal=True,
        key=remember(MONEY_VIEW_KEY, REVENUE_RETENTION),
        help="Revenue retention: what the cohorts spend each "
        f"{period_word_singular(matrix.period)} against their first one. Revenue per user so "
        "far (LTV): everything a user spent since their start.",
    )
    ltv = matrix.curves("ltv")
    if view == REVENUE_RETENTION:
        revenue = shared_chart(
            "revenue",
            data_key,
            lambda: retention_lines(
                matrix,
                matrix.curves("revenue_retention"),
                "revenue_retention",
                title="Revenue retention",
            ),
        )
        st.plotly_chart(revenue, key="retention.revenue")
        st.caption(
            f"Revenue the cohorts bring in each {period_word_singular(matrix.period)}, as a "
            "share of what the same cohorts spent in their first one. Above 100%: they spend "
            "more than when they started."
        )
    else:
        ltv_figure = shared_chart(
            f"ltv.{unit}",
            data_key,
            lambda: retention_lines(
                matrix, ltv, "ltv", title="Revenue per user so far (LTV)", unit=unit
            ),
        )
        st.plotly_chart(ltv_figure, key="retention.ltv")
    average = ltv[ltv["line"] == (AVERAGE if len(matrix.groups) > 1 else matrix.groups[0])]
    done = average[~average["incomplete"]]
    if not done.empty:
        last = done.iloc[-1]
        st.caption(
            f"Revenue per user so far (LTV): everything a user spent from their start, summed "
            f"and divided by the users who started: after {int(last['column'])} {words}, "
            f"{money(last['value'], currency)} per user (over {int(last['users']):,} users)."
        )
    if currency is None:
        st.caption(
            "Set the currency of this dataset on the Data page to see amounts with their symbol."
        )


def survival_section(
    surv: Survival, churn_after: int, compared: bool, data_key: DataKey | None = None
) -> None:
    """Kaplan–Meier curves, the log-rank test in words and the at-risk table. ``compared``:
    the user asked for a breakdown (so one group only deserves a word); ``data_key``: where
    ``surv`` comes from (:func:`shared_chart`)."""
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
    figure = shared_chart(f"km.{bands}", data_key, lambda: survival_figure(surv, bands=bands))
    st.plotly_chart(figure, key="retention.km")
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
