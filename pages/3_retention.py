"""Retention: how each cohort comes back, and how long users of each segment stay before they
churn (Kaplan–Meier), with the log-rank test in plain words."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from pages.common import (
    current_segmentation,
    require_dataset,
    segment_names,
    stop_with_error,
    workspace,
)
from retention.charts.retention import (
    PERIOD_WORDS,
    at_risk_columns,
    cohort_heatmap,
    survival_figure,
)
from retention.cohorts import (
    ALL_USERS,
    DEFAULT_TOP_N,
    MODE_EXPLANATIONS,
    MODES,
    CohortTable,
    Survival,
    categorical_columns,
    churn_durations,
    cohort_table,
    survival,
    user_groups,
)
from retention.errors import InputError
from retention.periods import PERIODS, PeriodGrid, choose_period, period_grid

NONE = "none"
SEGMENTS = "segments"


# ----------------------------------------------------------------------------- cached results
# Keyed by workspace folder + dataset id + settings; a rerun with the same settings is a cache hit.


@st.cache_data(max_entries=32, show_spinner=False)
def auto_period(folder: str, dataset_id: str) -> str:
    ws = workspace()
    return choose_period(ws.cursor(), ws.table(dataset_id, "events"))


@st.cache_data(max_entries=32, show_spinner=False)
def breakdown_columns(folder: str, dataset_id: str) -> list[str]:
    ws = workspace()
    return categorical_columns(ws.cursor(), ws.table(dataset_id, "events"))


@st.cache_data(max_entries=16, show_spinner="Grouping users…")
def groups_for(
    folder: str,
    dataset_id: str,
    breakdown: str,
    seg_run_id: str | None,
    names: tuple[tuple[int, str], ...],
    top_n: int,
) -> pd.DataFrame:
    ws = workspace()
    events = ws.table(dataset_id, "events")
    if breakdown == NONE:
        by: str | pd.DataFrame | None = None
    elif breakdown == SEGMENTS:
        by = ws.load_run(seg_run_id).artifacts["assignments"][["user_id", "segment"]]
    else:
        by = breakdown
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
    names: tuple[tuple[int, str], ...],
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
    names: tuple[tuple[int, str], ...],
    top_n: int,
) -> Survival:
    durations = durations_for(folder, dataset_id, period, churn_after)
    groups = groups_for(folder, dataset_id, breakdown, seg_run_id, names, top_n)
    what = {NONE: "groups", SEGMENTS: "segments"}.get(breakdown, f"values of {breakdown}")
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

# Settings shared with the Policy page live in st.session_state["period"] / ["churn_after"].
period_options = ["auto", *PERIODS]
saved_period = st.session_state.get("period", "auto")
saved_churn = st.session_state.get("churn_after", 4)
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
                "How time is cut. Automatic picks the shortest period in which returning users "
                "typically come back in the very next period."
            ),
        )
    period = auto if period_choice == "auto" else period_choice
    words = PERIOD_WORDS[period]
    with mid:
        churn_after = st.slider(
            f"Churn window ({words} inactive)",
            2,
            26,
            min(26, max(2, int(saved_churn))),
            key="retention.churn_after",
            help=(
                f"A user who has been inactive this many {words} in a row counts as churned. "
                f"1 inactive {period} is 'lapsing', more is 'at risk' until the window is reached."
            ),
        )
    with right:
        options = ([SEGMENTS] if seg_run is not None else []) + [NONE] + columns
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

names_key = tuple(sorted(names.items()))
seg_id = seg_run.id if seg_run is not None else None
try:
    grid = grid_for(folder, info.id, period)
    surv = survival_for(
        folder, info.id, period, int(churn_after), breakdown, seg_id, names_key, int(top_n)
    )
except InputError as exc:
    stop_with_error(exc)

st.caption(
    f"{int(surv.sizes.sum()):,} users over {grid.n_periods} {words} "
    f"({grid.label(0)} to {grid.label(grid.last_t)}); the last {period} is still open, so users "
    "in it are followed up to there (censored), not counted as churned."
)

# ----------------------------------------------------------------------------- cohorts
st.subheader("Cohorts")
c1, c2 = st.columns([1, 1])
with c1:
    mode = st.radio(
        "Count a user in a cell when they were…",
        MODES,
        format_func=lambda m: {
            "classic": "active in that period (classic)",
            "unbounded": "active then or later (unbounded)",
        }[m],
        horizontal=True,
        key="retention.mode",
    )
with c2:
    cohort_group = st.selectbox(
        "Cohorts of",
        [ALL_USERS] + [g for g in surv.groups if g != ALL_USERS],
        key="retention.cohort_group",
    )
st.caption(MODE_EXPLANATIONS[mode])
try:
    table = cohorts_for(
        folder, info.id, period, mode, breakdown, seg_id, names_key, int(top_n), cohort_group
    )
except InputError as exc:
    stop_with_error(exc)
st.plotly_chart(cohort_heatmap(table), key="retention.heatmap")
st.caption(
    f"Each row is a cohort: the users whose first activity fell in that {period} (n = its size). "
    f"Each column counts {words} since then. The triangle ends where the data ends."
)

# ----------------------------------------------------------------------------- survival
st.subheader("Time to churn")
st.caption(
    f"Kaplan–Meier estimate of the share of users who have not yet churned (been inactive "
    f"{churn_after} {words} in a row) after each number of {words} since their first activity. "
    "The shaded band is the 95% confidence interval. A user who churns and later comes back "
    "counts as churned from their first churn."
)
st.plotly_chart(survival_figure(surv), key="retention.km")
if surv.logrank is not None:
    shown = st.success if surv.logrank.p_value < 0.05 else st.info
    shown(surv.logrank.sentence, icon=":material/query_stats:")
    st.caption(
        f"Log-rank test across {len(surv.groups)} groups: χ² = {surv.logrank.statistic:,.1f} "
        f"with {surv.logrank.dof} degree(s) of freedom, p = {surv.logrank.p_value:.3g}."
    )
elif breakdown != NONE:
    st.info("Only one group has users, so there is nothing to compare.")

st.markdown(f"**Users still followed (at risk) after each number of {words}**")
cols = at_risk_columns(surv)
at_risk = surv.at_risk.reindex(columns=cols).fillna(0).astype("int64")
at_risk.columns = [f"{c} {words}" for c in cols]
st.dataframe(at_risk)
st.caption(
    "A user stops being followed when they churn or when the data ends. Where few users are "
    "left, the curve is uncertain: the band widens."
)
