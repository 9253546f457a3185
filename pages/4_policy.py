"""Policy: learn which retention action to take for each segment and stage, check it against the
exact optimum and against logged outcomes, and see how it moves with the reward settings."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from pages.ui import campaign_views
from pages.ui import jobs_view as jobs
from pages.ui import policy_views as views
from pages.ui.common import (
    current_segmentation,
    page_link,
    require_dataset,
    segment_names,
    stop_with_error,
    workspace,
)
from pages.ui.policy_form import settings_form
from retention.campaigns import timing_sentence
from retention.errors import InputError
from retention.jobs import submit_training
from retention.policy_runs import PolicyChoices, policy_choices, run_label
from retention.results import policy_runs
from retention.runs import load_policy
from retention.words import period_word

ws = workspace()
st.title("Policy")
st.caption(
    "Which retention action should each segment get at each stage? A policy learned by "
    "Q-learning on users simulated from your data, checked against the exact optimum and "
    "against what really happened to users who got each action."
)
info = require_dataset()
seg_run = current_segmentation(info.id)
if seg_run is None:
    st.info("The policy is learned per segment: run a segmentation of this dataset first.")
    page_link("segments", "Go to the Segments page", ":material/bubble_chart:")
    st.stop()
names = segment_names(seg_run)
assignments = seg_run.artifacts["assignments"][["user_id", "segment"]]
period = st.session_state.get("period", "auto")
churn_after = int(st.session_state.get("churn_after", 4))


@st.cache_data(max_entries=4, show_spinner="Placing campaigns in periods…")
def choices_of(folder: str, dataset_id: str, period: str) -> PolicyChoices:
    """The page's choices for a dataset (cached per dataset and period)."""
    return policy_choices(workspace(), dataset_id, period)


try:
    choices = choices_of(str(ws.folder), info.id, period)
except InputError as exc:
    stop_with_error(exc)
if choices.timing:
    st.caption(f":material/schedule: {timing_sentence(choices.timing, choices.period)}")

# ----------------------------------------------------------------------------- train
form = settings_form(choices, expanded=ws.runs(kind="policy", dataset_id=info.id).empty)
if st.button("Train", type="primary", icon=":material/model_training:"):
    try:  # training is a background job (pages/ui/jobs_view.py)
        request = form.request(choices, seg_run.id, churn_after)
        jobs.start(submit_training(jobs.job_queue(), info.id, request, owner=jobs.current_owner()))
    except InputError as exc:
        stop_with_error(exc)
trained = jobs.follow("policy", info.id, "Training")
if trained is not None:
    st.session_state["policy.run"] = st.session_state["policy.show"] = trained

# ----------------------------------------------------------------------------- show a run
failed = policy_runs(ws, info.id, status="failed")
if not failed.empty:
    last = failed.iloc[0]
    st.caption(
        f"{len(failed)} training run(s) did not finish (latest: "
        f"{pd.Timestamp(last['created']):%Y-%m-%d %H:%M}, {last['error'] or 'no reason recorded'}); "
        "nothing from them is used."
    )
runs = policy_runs(ws, info.id)
if runs.empty:
    st.info("No policy trained on this dataset yet: set the rewards and press **Train**.")
    st.stop()

by_id = runs.set_index("id")
ids = list(runs["id"])
chosen = st.session_state.get("policy.run")
st.selectbox(
    "Policy run",
    ids,
    index=ids.index(chosen) if chosen in ids else 0,
    format_func=lambda run_id: run_label(by_id.loc[run_id]),
    key="policy.show",
)
try:
    result = load_policy(ws, st.session_state["policy.show"])
except InputError as exc:
    stop_with_error(exc, "Pick another run above, or train again.")

views.headline(result)
campaign_views.show(result, names)
views.disagreements(result, names)
views.tabs(result, names, period_word(result.settings.get("period")))

# ----------------------------------------------------------------------------- compare runs
if len(ids) > 1 and st.toggle("Compare two runs side by side", key="policy.compare"):
    other_ids = [i for i in ids if i != st.session_state["policy.show"]]
    st.selectbox(
        "Compare with",
        other_ids,
        format_func=lambda run_id: run_label(by_id.loc[run_id]),
        key="policy.other",
    )
    try:
        other = load_policy(ws, st.session_state["policy.other"])
    except InputError as exc:
        stop_with_error(exc, "Pick another run to compare with.")
    views.comparison(result, other, names)
