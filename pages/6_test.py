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
from retention.experiment import (
    DEFAULT_TEST_ACTIONS,
    JARGON,
    TEST_STAGES,
    ExperimentPlan,
    PlanSettings,
)
from retention.experiment_runs import (
    analyse,
    base_mdp,
    plan_for_dataset,
    read_results_files,
    store_measured_policy,
)
from retention.mdp import STAGES
from retention.periods import resolve_period
from retention.strategies import stage_words
from retention.words import period_word, period_word_singular, segment_name

ws = workspace()
info = require_dataset(needs_events=True)
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
    seg_ids = sorted(g for g in names if g >= 0)
    n1, n2 = st.columns(2)
    in_segments = n1.multiselect(
        "Segments in the test", seg_ids, seg_ids, format_func=lambda g: segment_name(names, g),
        help="Everyone not churned takes part unless you narrow it: leave a segment out to "
        "keep it on today's plan.",
    )  # fmt: skip
    in_stages = n2.multiselect(
        "Stages in the test", list(STAGES), list(TEST_STAGES),
        format_func=lambda s: stage_words(s, period),
        help="Churned users are left out by default (most will not come back whatever you "
        "send); add 'churned' to test win-back messages on them too.",
    )  # fmt: skip
    planned = st.form_submit_button("Plan the test", type="primary")


def _bar(text: str):
    """A progress bar that moves with the library's ``progress(fraction, message)``."""
    bar = st.progress(0.0, text=text)
    return bar, lambda f, m: bar.progress(min(1.0, max(0.0, float(f))), text=m)


@st.cache_data(max_entries=4, show_spinner=False)
def _plan(folder: str, dataset_id: str, seg_id: str, period: str, churn_after: int, settings_key: tuple,
          names_key: tuple) -> dict:  # fmt: skip
    bar, progress = _bar("Planning the test…")
    plan = plan_for_dataset(ws, dataset_id, seg_id, period=period, churn_after=churn_after,
                            settings=PlanSettings(**dict(settings_key)), names=dict(names_key),
                            progress=progress)  # fmt: skip
    bar.empty()
    return {"json": plan.to_json(), "assignment": plan.assignment}


if planned:
    try:
        if not in_segments:
            raise InputError("Choose at least one segment for the test.")
        settings = PlanSettings(actions=tuple(actions), holdout=holdout, mde=mde, power=power,
                                alpha=alpha, max_periods=longest, stages=tuple(in_stages),
                                segments=() if len(in_segments) == len(seg_ids)
                                else tuple(in_segments))  # fmt: skip
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


@st.cache_data(max_entries=2, show_spinner=False)
def _results(folder: str, dataset_id: str, seg_id: str, period: str, plan_key: tuple, log: bytes,
             log_name: str, ev: bytes, ev_name: str) -> tuple:  # fmt: skip
    """Measure the test and store the retrained policy as a policy run (once per upload)."""
    bar, progress = _bar("Reading the results…")
    campaigns, events = read_results_files(log, ev, log_name=log_name, events_name=ev_name)
    base = base_mdp(ws, dataset_id, seg_id, period=period, churn_after=plan.churn_after,
                    actions=plan.settings.arms)  # fmt: skip
    result = analyse(plan, campaigns, events, base, source=f"'{log_name}'",
                     progress=lambda f, m: progress(0.8 * f, m))  # fmt: skip
    run_id = store_measured_policy(ws, dataset_id, result, segmentation_run=seg_id,
                                   period=period, churn_after=plan.churn_after,
                                   progress=lambda f, m: progress(0.8 + 0.2 * f, m))  # fmt: skip
    bar.empty()
    return result, run_id


try:
    result, run_id = _results(
        str(ws.folder), info.id, seg_run.id, period, (plan.plan_id, plan.periods, plan.start),
        log_file.getvalue(), log_file.name, events_file.getvalue(), events_file.name,
    )  # fmt: skip
except InputError as exc:
    stop_with_error(exc, "Nothing was stored: the plan and the dataset are as they were.")
st.session_state["policy.run"] = st.session_state["policy.show"] = run_id
views.results_section(result, names, period_word_singular(period))
views.retrained_links(result.plan_id)
