"""Retention: how each cohort comes back, and how long users of each segment stay before they
churn (Kaplan–Meier), with the log-rank test in plain words.

The page reads the controls, computes through :mod:`retention.cohorts` (cached by workspace
folder + dataset id + settings, so a rerun with the same settings is a cache hit) and renders
(:mod:`pages.ui.retention_views`)."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from pages.ui.common import (
    current_segmentation,
    require_dataset,
    segment_names,
    stop_with_error,
    workspace,
)
from pages.ui.retention_views import (
    NONE,
    SEGMENTS,
    cohort_controls,
    cohort_section,
    controls,
    span_caption,
    survival_section,
)
from retention.cohorts import (
    ALL_USERS,
    CohortTable,
    Survival,
    categorical_columns,
    churn_durations,
    cohort_table,
    groups_word,
    survival,
    user_groups,
)
from retention.errors import InputError
from retention.periods import PeriodGrid, choose_period, period_grid

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


def breakdown_by(breakdown: str, seg_run_id: str | None) -> str | pd.DataFrame | None:
    """The breakdown picked, as :func:`retention.cohorts.user_groups` takes it."""
    if breakdown == NONE:
        return None
    if breakdown == SEGMENTS:
        return workspace().load_run(seg_run_id).artifacts["assignments"][["user_id", "segment"]]
    return breakdown


@st.cache_data(max_entries=16, show_spinner="Grouping users…")
def groups_for(
    folder: str, dataset_id: str, breakdown: str, seg_run_id: str | None, names: Names, top_n: int
) -> pd.DataFrame:
    ws = workspace()
    by = breakdown_by(breakdown, seg_run_id)
    events = ws.table(dataset_id, "events")
    return user_groups(ws.cursor(), events, by, names=dict(names), top_n=top_n)


@st.cache_data(max_entries=32, show_spinner=False)
def grid_for(folder: str, dataset_id: str, period: str) -> PeriodGrid:
    ws = workspace()
    return period_grid(ws.cursor(), ws.table(dataset_id, "events"), period)


@st.cache_data(max_entries=16, show_spinner="Computing the cohort table…")
def cohorts_for(
    folder: str,
    dataset_id: str,
    period: str,
    mode: str,
    breakdown: str,
    seg_run_id: str | None,
    names: Names,
    top_n: int,
    group: str,
) -> CohortTable:
    ws = workspace()
    user_ids = None
    if group != ALL_USERS:
        groups = groups_for(folder, dataset_id, breakdown, seg_run_id, names, top_n)
        user_ids = groups.loc[groups["group"] == group, "user_id"]
    return cohort_table(
        ws.cursor(), ws.table(dataset_id, "events"), period=period, mode=mode, user_ids=user_ids
    )


@st.cache_data(max_entries=16, show_spinner="Computing time to churn…")
def durations_for(folder: str, dataset_id: str, period: str, churn_after: int) -> pd.DataFrame:
    ws = workspace()
    return churn_durations(
        ws.cursor(), ws.table(dataset_id, "events"), period=period, churn_after=churn_after
    )


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
) -> Survival:
    durations = durations_for(folder, dataset_id, period, churn_after)
    groups = groups_for(folder, dataset_id, breakdown, seg_run_id, names, top_n)
    what = groups_word(breakdown_by(breakdown, seg_run_id))
    return survival(durations, groups, period=period, churn_after=churn_after, what=what)


# ----------------------------------------------------------------------------- page
ws = workspace()
folder = str(ws.folder)
st.title("Retention")
st.caption(
    "How many users come back after their first period, and how long users stay before they "
    "churn — overall, per segment, or per value of any column such as country."
)
info = require_dataset()
if "events" not in info.kinds:
    st.info(
        "Retention curves need an event log (one row per purchase or visit with a time). This "
        "dataset is a campaign snapshot: one row per user, without a history over time."
    )
    st.stop()

try:
    auto = auto_period(folder, info.id)
    columns = breakdown_columns(folder, info.id)
except InputError as exc:
    stop_with_error(exc)

seg_run = current_segmentation(info.id)
names = segment_names(seg_run) if seg_run is not None else {}
chosen = controls(auto, columns, seg_run is not None)
period = chosen.period

names_key = tuple(sorted(names.items()))
seg_id = seg_run.id if seg_run is not None else None
by_key = (chosen.breakdown, seg_id, names_key, chosen.top_n)
try:
    grid = grid_for(folder, info.id, period)
    surv = survival_for(folder, info.id, period, chosen.churn_after, *by_key)
except InputError as exc:
    stop_with_error(exc)
span_caption(surv, grid, period)

mode, cohort_group = cohort_controls(surv.groups)
try:
    table = cohorts_for(folder, info.id, period, mode, *by_key, cohort_group)
except InputError as exc:
    stop_with_error(exc)
cohort_section(table, period)
survival_section(surv, chosen.churn_after, compared=chosen.breakdown != NONE)
