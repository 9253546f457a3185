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
    dataset_currency,
    page_link,
    remember,
    require_dataset,
    segment_names,
    stop_with_error,
    workspace,
)
from pages.ui.drill_views import policy_stage_users
from pages.ui.policy_form import settings_form
from pages.ui.retention_views import shared_settings
from pages.ui.settings_download import download_button, policy_values
from retention.campaigns import timing_sentence
from retention.errors import InputError
from retention.jobs import submit_training, training_segmentation
from retention.mdp import MDP
from retention.policy_runs import (
    PolicyChoices,
    PolicyForm,
    PolicyRequest,
    estimated_mdp,
    exact_preview,
    form_differences,
    policy_choices,
    policy_of,
    request_of,
    run_label,
    trained_with,
    value_parts,
)
from retention.results import display_names, policy_runs
from retention.runs import load_policy
from retention.words import period_word, period_word_singular
from retention.workspace import Job

ws = workspace()
st.title("Policy")
st.caption(
    "Which retention action should each segment get at each stage? A policy learned on users "
    "simulated from your data, checked against the exact best policy and against what really "
    "happened to users who got each action.",
    help="The policy is learned by Q-learning (reinforcement learning) on a model of your users "
    "estimated from the data; the exact best policy of that model comes from value iteration.",
)
info = require_dataset()
seg_run = current_segmentation(info.id)
if seg_run is None:
    st.info("The policy is learned per segment: run a segmentation of this dataset first.")
    page_link("segments", "Go to the Segments page", ":material/bubble_chart:")
    st.stop()
names = segment_names(seg_run)
assignments = seg_run.artifacts["assignments"][["user_id", "segment"]]
period, churn_after = shared_settings()  # the Retention page's, kept across refreshes
currency = dataset_currency(info.id)


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
unit = period_word_singular(choices.period)


@st.cache_resource(max_entries=8, show_spinner="Estimating how your users move between stages…")
def model_of(
    folder: str,
    dataset_id: str,
    seg_id: str,
    key: tuple,
    _assignments: pd.DataFrame,
    _request: PolicyRequest,
) -> MDP:
    """The estimated MDP of a request: its dynamics depend on the data, the segmentation, the
    period, the actions (and lift) and, with a campaign log, the seed; never on the reward, so
    moving a reward slider only re-solves it (milliseconds)."""
    return estimated_mdp(workspace(), dataset_id, _assignments, _request)


def model_for(request: PolicyRequest) -> MDP | None:
    """The estimated MDP behind ``request`` (cached), or None when there is none to show."""
    if choices.is_snapshot or request.segmentation_run != seg_run.id:
        return None
    lift = None if request.lift is None else tuple(sorted(request.lift.items()))
    key = (
        request.period, request.churn_after, request.actions, lift,
        request.seed if choices.campaigns is not None else 0, request.prior_strength,
    )  # fmt: skip
    try:
        return model_of(str(ws.folder), info.id, seg_run.id, key, assignments, request)
    except InputError:
        return None


# ----------------------------------------------------------------------------- the runs
all_runs = policy_runs(ws, info.id)
runs = policy_runs(ws, info.id, seg_run.id)
ids = list(runs["id"]) if not runs.empty else []
older = all_runs[~all_runs["id"].isin(ids)] if not all_runs.empty else all_runs
remember("policy.older", False)  # the run picker's remembered state, before its widgets
remember("policy.show", None)
offered = ids + (list(older["id"]) if st.session_state["policy.older"] else [])
if st.session_state.get("policy.show") not in offered and offered:
    chosen = st.session_state.get("policy.run")
    st.session_state["policy.show"] = chosen if chosen in offered else offered[0]
shown_id = st.session_state.get("policy.show") if offered else None
shown_settings = all_runs.set_index("id").loc[shown_id, "settings"] if shown_id else None
#: Differences from the run on screen that change what the policy is for (not just how it is
#: learned): the exact preview is worth showing for them.
REWARD_DIFFERENCES = ("future weight", "retain reward", "churn penalty", "revenue weight",
                      "action costs", "assumed lift", "actions", "period", "churned after")  # fmt: skip


def show_preview(asked: PolicyRequest) -> None:
    """The exact best policy for the form's settings (event logs on the current segmentation)."""
    mdp = model_for(asked)
    if mdp is None:
        return
    try:
        shown = exact_preview(mdp, asked.reward)
    except InputError as exc:
        st.error(str(exc), icon=":material/error:")
        return
    views.preview(shown, names, unit=unit, currency=currency)


@st.fragment
def settings_and_preview(settings: dict | None) -> PolicyForm:
    """The settings form, how it differs from the run on screen (``settings``) and the exact
    preview of its settings. A fragment: moving a slider reruns this part only, so the preview
    follows at once without redrawing the run below."""
    form = settings_form(choices, expanded=not ids, currency=currency)
    download_button(
        info.id, "the Policy page", segmentation=seg_run.settings, policy=policy_values(form)
    )
    try:
        asked = form.request(choices, seg_run.id, churn_after)
    except InputError as exc:
        st.error(f"{exc} Correct the action table above.", icon=":material/error:")
        return form
    if settings is None:
        show_preview(asked)
        return form
    differences = form_differences(asked, settings)
    views.differences(differences)
    if settings.get("segmentation_run") != seg_run.id or any(
        d.startswith(REWARD_DIFFERENCES) for d in differences
    ):
        show_preview(asked)
    return form


# ----------------------------------------------------------------------------- train
form = settings_and_preview(shown_settings)
before = st.session_state.get("policy.run")
if st.button("Train", type="primary", icon=":material/model_training:"):
    try:  # training is a background job (pages/ui/jobs_view.py)
        request = form.request(choices, seg_run.id, churn_after)
        jobs.start(submit_training(jobs.job_queue(), info.id, request, owner=jobs.current_owner()))
    except InputError as exc:
        stop_with_error(exc)
trained = jobs.follow("policy", info.id, "Training")
if trained is not None:
    st.session_state["policy.run"] = st.session_state["policy.show"] = trained

if st.session_state.get("policy.run") != before:
    st.rerun()  # the settings above were compared with the run shown before this one

# ----------------------------------------------------------------------------- show a run
failed = policy_runs(ws, info.id, status="failed")
if not failed.empty:
    last = failed.iloc[0]
    st.caption(
        f"{len(failed)} training run(s) did not finish (latest: "
        f"{pd.Timestamp(last['created']):%Y-%m-%d %H:%M}, {last['error'] or 'no reason recorded'}); "
        "nothing from them is used."
    )


def _for_current_segments(job: Job) -> bool:
    """A training job for the segmentation on screen (its policy will be shown, not hidden)."""
    return training_segmentation(job) == seg_run.id


def _policy_coming() -> bool:
    return jobs.show_result_coming(
        "policy",
        info.id,
        "The learned policy will show here as soon as its training ends.",
        wanted=_for_current_segments,
    )


if all_runs.empty:
    if not _policy_coming():
        st.info("No policy trained on this dataset yet: set the rewards and press **Train**.")
    st.stop()
if not older.empty:
    st.toggle(
        f"Also show policies of earlier segmentations ({len(older)})",
        key=remember("policy.older", False),
        help="Policies learned on another segmentation of this dataset: their segments are not "
        "today's segments.",
    )
    if st.session_state["policy.older"]:
        ids += list(older["id"])
if not ids and _policy_coming():
    st.stop()
if not ids:
    st.info(
        f"No policy trained on the current segmentation yet. {len(older)} earlier "
        f"polic{'y was' if len(older) == 1 else 'ies were'} trained on another segmentation of "
        "this dataset, whose segments are not today's: they are hidden. Press **Train** to "
        "learn a policy for the current segments."
    )
    st.stop()

by_id = all_runs.set_index("id")
if st.session_state.get("policy.show") not in ids:
    st.session_state["policy.show"] = ids[0]
st.selectbox(
    "Policy run",
    ids,
    format_func=lambda run_id: run_label(by_id.loc[run_id]),
    key=remember("policy.show", ids[0]),
)
if st.session_state["policy.show"] != shown_id:
    st.rerun()  # another run picked: compare the settings above with it
try:
    result = load_policy(ws, st.session_state["policy.show"])
except InputError as exc:
    stop_with_error(exc, "Pick another run above, or train again.")


def names_of_run(settings: dict) -> tuple[dict[int, str], str | None]:
    """The segment names a run's policy is about, and a warning when its segmentation is not
    the current one (never the current segments' names on another segmentation's policy)."""
    run_seg = settings.get("segmentation_run")
    if run_seg == seg_run.id:
        return names, None
    try:
        other = ws.load_run(run_seg) if run_seg else None
    except InputError:
        other = None
    when = (
        f"the segmentation of {pd.Timestamp(other.created):%Y-%m-%d %H:%M}"
        if other is not None and other.created is not None
        else "an earlier segmentation"
    )
    run_names = (
        display_names(other.artifacts.get("labels"), ws.segment_names(other.id))
        if other is not None and other.artifacts
        else {}
    )
    return run_names, (
        f"This policy was trained on {when}, not on the current one: its segments are that "
        "segmentation's, not today's. Train again to get a policy for the current segments."
    )


run_names, older_warning = names_of_run(result.settings)
views.run_notes(trained_with(result.settings, choices.period), older_warning)
parts = None
if result.kind == "events" and older_warning is None:
    own = request_of(result.settings)
    mdp = model_for(own) if own is not None else None
    policy = policy_of(mdp, result.recommendations) if mdp is not None else None
    if policy is not None:
        parts = value_parts(mdp, policy, own.reward)
views.headline(result, parts, unit=period_word_singular(result.settings.get("period")),
               currency=currency)  # fmt: skip
campaign_views.show(result, run_names)
views.measured_effects(result, run_names)  # issue 13: a policy retrained on a test
views.disagreements(result, run_names)
views.tabs(result, run_names, period_word(result.settings.get("period")))
if result.kind == "events" and older_warning is None:  # click a segment x stage: its users
    policy_stage_users(
        info, seg_run=seg_run, names=names, period=result.settings.get("period") or period,
        churn_after=int(result.settings.get("churn_after", churn_after)),
    )  # fmt: skip

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
    views.comparison(result, other, run_names)
