"""Test: plan a randomised test of the strategies, export the assignment, upload what happened,
and see the measured effects replace the assumed ones (issue 13)."""

from __future__ import annotations

import json
from dataclasses import asdict

import pandas as pd
import streamlit as st

from pages.ui import test_views as views
from pages.ui.common import (
    current_segmentation,
    page_link,
    require_dataset,
    segment_names,
    stop_with_error,
    workspace,
)
from pages.ui.retention_views import shared_settings
from retention.errors import InputError
from retention.experiment import DEFAULT_TEST_ACTIONS, JARGON, ExperimentPlan, PlanSettings
from retention.experiment_runs import analyse, base_mdp, plan_for_dataset, read_results_files
from retention.periods import resolve_period
from retention.words import period_word, period_word_singular

ws = workspace()
info = require_dataset()
st.title("Test")
st.caption(
    "Without a campaign log, the effect of each strategy is an assumption. Plan a test: some "
    "users get each strategy, some get nothing. Send it, upload what happened, and the measured "
    "effects replace the assumed ones."
)
if info.shape != "events":
    st.info("A test is planned on an event log (who was active when); this is a snapshot.")
    st.stop()
seg_run = current_segmentation(info.id)
if seg_run is None:
    st.info("A test is planned per segment. Find segments first.")
    page_link("segments", "Go to Segments", ":material/bubble_chart:")
    st.stop()
names = segment_names(seg_run)
chosen_period, churn_after = shared_settings()  # the Retention page's, kept across refreshes
try:
    period = resolve_period(ws.cursor(), ws.table(info.id, "events"), chosen_period)
except InputError as exc:
    stop_with_error(exc)
periods = period_word(period)

with st.form("test.plan_form"):
    st.markdown("**Plan a test**")
    actions = st.multiselect("Strategies to test", DEFAULT_TEST_ACTIONS, DEFAULT_TEST_ACTIONS)
    c1, c2, c3, c4 = st.columns(4)
    holdout = c1.slider("Comparison group", 0.05, 0.5, 0.1, 0.05, help=JARGON["holdout"])
    mde = c2.number_input("Smallest change worth finding", 0.01, 2.0, 0.1, 0.01,
                          help=JARGON["mde"])  # fmt: skip
    power = c3.number_input("Chance to notice it", 0.5, 0.99, 0.8, 0.05, help=JARGON["power"])
    alpha = c4.number_input("False-alarm rate", 0.001, 0.2, 0.05, 0.005, format="%.3f",
                            help=JARGON["alpha"])  # fmt: skip
    longest = st.slider(f"Longest the test may run ({periods})", 1, 52, 12)
    planned = st.form_submit_button("Plan the test", type="primary")


@st.cache_data(max_entries=4, show_spinner="Planning the test…")
def _plan(folder: str, dataset_id: str, seg_id: str, period: str, churn_after: int, settings_key: tuple,
          names_key: tuple) -> dict:  # fmt: skip
    plan = plan_for_dataset(ws, dataset_id, seg_id, period=period, churn_after=churn_after,
                            settings=PlanSettings(**dict(settings_key)), names=dict(names_key))  # fmt: skip
    return {"json": plan.to_json(), "assignment": plan.assignment}


if planned:
    try:
        settings = PlanSettings(actions=tuple(actions), holdout=holdout, mde=mde, power=power,
                                alpha=alpha, max_periods=longest)  # fmt: skip
        st.session_state["test.planned"] = _plan(
            str(ws.folder), info.id, seg_run.id, period, churn_after, tuple(sorted(asdict(settings).items())),
            tuple(sorted(names.items())),
        )  # fmt: skip
    except InputError as exc:
        stop_with_error(exc)

stored = st.session_state.get("test.planned")
plan = ExperimentPlan.from_json(stored["json"], stored["assignment"]) if stored else None
if plan is not None:
    views.plan_section(plan, periods)

st.divider()
st.markdown("**Upload what happened**")
st.caption(
    "The campaign log of the test (user, time, strategy, propensity — the comparison group as "
    "'none' rows) and the events since the test started."
)
if plan is None:
    with st.expander("Reading the results of an earlier plan? Upload its plan and assignment"):
        plan_file = st.file_uploader("plan.json", type=["json"], key="test.plan_file")
        assignment_file = st.file_uploader("assignment.csv", key="test.assignment_file")
        if plan_file and assignment_file:
            try:
                plan = ExperimentPlan.from_json(
                    json.loads(plan_file.getvalue()),
                    pd.read_csv(assignment_file, dtype={"user_id": str}),
                )
            except (InputError, ValueError) as exc:
                stop_with_error(exc)
log_file = st.file_uploader("Campaign log of the test", key="test.log")
events_file = st.file_uploader("Events since the test started", key="test.events")
if plan is None or log_file is None or events_file is None:
    st.stop()
try:
    campaigns, events = read_results_files(log_file.getvalue(), events_file.getvalue(),
                                           log_name=log_file.name, events_name=events_file.name)  # fmt: skip
    base = base_mdp(ws, info.id, seg_run.id, period=period, churn_after=plan.churn_after,
                    actions=plan.settings.arms)  # fmt: skip
    result = analyse(plan, campaigns, events, base, source=f"'{log_file.name}'")
except InputError as exc:
    stop_with_error(exc, "Nothing was stored: the plan and the dataset are as they were.")
views.results_section(result, names, period_word_singular(period))
