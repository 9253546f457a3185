"""Retention: how each cohort comes back (lines per group with the average, the cohort table,
revenue retention and revenue per user), and how long users of each segment stay before they
churn (Kaplan–Meier), with the log-rank test in plain words.

The page reads the controls, computes through :mod:`retention.cohorts` (cached by workspace
folder + dataset id + settings, so a rerun with the same settings is a cache hit) and renders
(:mod:`pages.ui.retention_views`)."""

from __future__ import annotations

import streamlit as st

from pages.ui.common import (
    current_segmentation,
    dataset_currency,
    require_dataset,
    segment_names,
    stop_with_error,
    workspace,
)
from pages.ui.drill_views import cohort_users
from pages.ui.retention_views import (
    NONE,
    analysis_controls,
    churn_window_notice,
    cohort_controls,
    cohort_section,
    controls,
    money_section,
    retention_lines_section,
    span_caption,
    survival_section,
)
from pages.ui.saved_views import saved_views
from retention.analyses import Definition, RetentionMatrix, event_types, property_options
from retention.cohorts import categorical_columns
from retention.errors import InputError
from retention.periods import InactiveRuns, choose_period, inactive_runs
from retention.results import RetentionSurvival, retention_analysis, retention_survival

Names = tuple[tuple[int, str], ...]


# ----------------------------------------------------------------------------- cached results


@st.cache_data(max_entries=32, show_spinner=False)
def auto_period(folder: str, dataset_id: str) -> str:
    ws = workspace()
    return choose_period(ws.cursor(), ws.table(dataset_id, "events"))


@st.cache_data(max_entries=32, show_spinner=False)
def breakdown_columns(folder: str, dataset_id: str) -> list[str]:
    ws = workspace()
    return categorical_columns(ws.cursor(), ws.table(dataset_id, "events"))


@st.cache_data(max_entries=32, show_spinner=False)
def churn_runs(folder: str, dataset_id: str, period: str) -> InactiveRuns:
    ws = workspace()
    return inactive_runs(ws.cursor(), ws.table(dataset_id, "events"), period)


@st.cache_data(max_entries=32, show_spinner=False)
def start_options(folder: str, dataset_id: str) -> tuple[list[str], list[str]]:
    """The event types (for start and return events) and the breakdowns by a property of the
    users' start."""
    ws = workspace()
    con, events = ws.cursor(), ws.table(dataset_id, "events")
    return event_types(con, events), property_options(con, events)


@st.cache_data(max_entries=16, show_spinner="Counting who came back…")
def matrix_for(
    folder: str,
    dataset_id: str,
    period: str,
    mode: str,
    breakdown: str,
    seg_run_id: str | None,
    names: Names,
    top_n: int,
    definition: Definition,
    brackets: tuple[tuple[int, int | None], ...],
) -> RetentionMatrix:
    return retention_analysis(
        workspace(), dataset_id, period, mode, breakdown, seg_run_id, definition=definition,
        brackets=brackets, names=dict(names), top_n=top_n,
    )  # fmt: skip


@st.cache_data(max_entries=16, show_spinner="Fitting Kaplan–Meier curves…")
def survival_for(
    folder: str,
    dataset_id: str,
    period: str,
    churn_after: int,
    breakdown: str,
    seg_run_id: str | None,
    names: Names,
    top_n: int,
) -> RetentionSurvival:
    return retention_survival(
        workspace(), dataset_id, period, churn_after, breakdown, seg_run_id, names=dict(names),
        top_n=top_n,
    )  # fmt: skip


# ----------------------------------------------------------------------------- page
ws = workspace()
folder = str(ws.folder)
st.title("Retention")
st.caption(
    "How many users come back after their first period, and how long users stay before they "
    "churn — overall, per segment, or per value of any column such as country."
)
info = require_dataset(needs_events=True)
saved_views("retention", info.id)  # save these settings by name; open by ?view=<name>
if "events" not in info.kinds:
    st.info(
        "Retention curves need an event log (one row per purchase or visit with a time). This "
        "dataset is a campaign snapshot: one row per user, without a history over time."
    )
    st.stop()

try:
    auto = auto_period(folder, info.id)
    columns = breakdown_columns(folder, info.id)
    kinds, properties = start_options(folder, info.id)
except InputError as exc:
    stop_with_error(exc)

seg_run = current_segmentation(info.id)
names = segment_names(seg_run) if seg_run is not None else {}
try:
    chosen = controls(
        auto,
        columns,
        seg_run is not None,
        lambda p: churn_runs(folder, info.id, p),
        tuple(properties),
    )
except InputError as exc:
    stop_with_error(exc)
churn_window_notice(chosen)
period = chosen.period

names_key = tuple(sorted(names.items()))
seg_id = seg_run.id if seg_run is not None else None
by_key = (chosen.breakdown, seg_id, names_key, chosen.top_n)
try:
    shown = survival_for(folder, info.id, period, chosen.churn_after, *by_key)
except InputError as exc:
    stop_with_error(exc)
surv = shown.survival
span_caption(surv, shown.grid, period)

grid = shown.grid
first_day = grid.origin.date()
last_day = (grid.last_ts or grid.start_of(grid.last_t + 1)).date()
how = analysis_controls(info.id, period, kinds, first_day, last_day)
try:
    matrix = matrix_for(folder, info.id, period, how.mode, *by_key, how.definition, how.brackets)
    # Money is counted in periods: the day ranges' matrix has no revenue.
    money_matrix = (
        matrix
        if how.mode != "brackets"
        else matrix_for(folder, info.id, period, "classic", *by_key, how.definition, ())
    )
except InputError as exc:
    stop_with_error(exc)
# Where each result comes from (the cached functions' arguments): its charts are built once
# per key and shared by every rerun (issue 22), not drawn again on each.
matrix_key = (folder, info.id, period, how.mode, *by_key, how.definition, how.brackets)
money_key = (
    matrix_key if how.mode != "brackets" else (folder, info.id, period, "classic", *by_key,
                                                 how.definition, ())
)  # fmt: skip
surv_key = (folder, info.id, period, chosen.churn_after, *by_key)
retention_lines_section(matrix, how.measure, matrix_key)
cohort_group = cohort_controls(list(matrix.groups))
cohort_section(matrix, cohort_group, how.measure, matrix_key)
cohort_users(info, matrix, chosen, cohort_group, seg_run, names)  # drill-down: click a cell
money_section(money_matrix, dataset_currency(info.id), money_key)
survival_section(surv, chosen.churn_after, chosen.breakdown != NONE, surv_key)
