"""Segments: groups of users who buy or write alike and behave alike, labelled by their most
distinctive words, on a 2-D map; rename a segment and the name is kept.

The page reads the settings, queues a segmentation job (:mod:`retention.jobs`) and renders the run
(:mod:`pages.ui.segments_form`, :mod:`pages.ui.segments_views`)."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from pages.ui import jobs_view as jobs
from pages.ui.common import (
    current_segmentation,
    dataset_currency,
    require_dataset,
    segment_names,
    stop_with_error,
    workspace,
)
from pages.ui.drill_views import segment_users
from pages.ui.retention_views import shared_settings
from pages.ui.segments_form import FORM_KEY, settings_form
from pages.ui.segments_views import (
    download,
    how_k_was_chosen,
    names_form,
    overview,
    profile_table,
    run_picker,
)
from pages.ui.settings_download import download_button
from pages.ui.text_model_view import text_model_note
from retention.cohorts import retention_by_segment
from retention.drill import user_activity, with_activity
from retention.errors import InputError
from retention.jobs import submit_segmentation
from retention.results import segmentation_runs
from retention.segments import SegmentSettings, has_text
from retention.segments.pipeline import PROFILE_RETENTION
from retention.workspace import Run

ARTIFACTS = {"assignments", "labels", "map2d", "profile"}


# ----------------------------------------------------------------------------- cached helpers


@st.cache_data(max_entries=32, show_spinner=False)
def text_available(folder: str, dataset_id: str) -> bool:
    """Whether the dataset's events have any text to embed."""
    ws = workspace()
    return has_text(ws.cursor(), ws.table(dataset_id, "events"))


@st.cache_data(max_entries=16, show_spinner=False)
def load_run(folder: str, run_id: str) -> Run:
    """A finished run (immutable, so cached by id)."""
    return workspace().load_run(run_id)


@st.cache_data(max_entries=16, show_spinner=False)
def shown_profile(folder: str, run_id: str) -> pd.DataFrame:
    """The run's profile, its "retention after k" computed by today's single definition
    (:func:`retention.cohorts.retention_by_segment`), so a run stored before that definition
    shows the same kind of number as a new one."""
    run = load_run(folder, run_id)
    profile = run.artifacts["profile"]
    if run.metrics.get("retention") == PROFILE_RETENTION:  # stored by today's definition
        return profile
    old = [c for c in profile.columns if c.startswith("retention_")]
    ks = [int(c.removeprefix("retention_")) for c in old if c.removeprefix("retention_").isdigit()]
    if not ks:
        return profile
    ws = workspace()
    retention, _ = retention_by_segment(
        ws.cursor(),
        ws.table(run.dataset_id, "events"),
        run.artifacts["assignments"],
        period=run.metrics.get("period") or "auto",
        after=ks,
    )
    return profile.drop(columns=old).merge(retention, on="segment", how="left")


@st.cache_data(max_entries=8, show_spinner=False)
def dataset_activity(folder: str, dataset_id: str, period: str) -> pd.DataFrame | None:
    """Each user's last seen date, active periods and spend (None for a campaign snapshot): it
    depends on the dataset and the period only, so another run (another k) reuses it (issue 19:
    0.5–1.7 s on Online Retail, most of it choosing the automatic period)."""
    ws = workspace()
    if ws.dataset(dataset_id).shape != "events":
        return None
    return user_activity(ws.cursor(), ws.table(dataset_id, "events"), period=period)


@st.cache_resource(max_entries=8, show_spinner=False)
def users_for_crm(folder: str, dataset_id: str, run_id: str, period: str) -> pd.DataFrame:
    """The run's users for a CRM (with last seen, active periods and spend): computed once
    per run and period, not on every redraw of the page (issue 19: half a second each time on
    Online Retail); the same as :func:`retention.drill.crm_users`. Shared by every rerun and
    session without a copy (issue 19, s7-segdraw: copying it back out of the cache took 0.07 s
    a rerun on 4,339 users): never change it."""
    assignments = load_run(folder, run_id).artifacts["assignments"]
    return with_activity(assignments, dataset_activity(folder, dataset_id, period))


def shown_run(folder: str, dataset_id: str) -> Run | None:
    """:func:`pages.ui.common.current_segmentation`, with the run the user picked read through
    the page's cache (a finished run does not change): once per run, not on every rerun of the
    page (issue 19, s7-segdraw: 0.07 s a rerun on 4,339 users, and the page read it twice)."""
    chosen = st.session_state.get("segmentation_run")
    if chosen:
        try:
            run = load_run(folder, chosen)
        except InputError:
            run = None
        if run is not None and run.dataset_id == dataset_id and run.status == "done":
            return run
    return current_segmentation(dataset_id)


# ----------------------------------------------------------------------------- page
ws = workspace()
folder = str(ws.folder)
st.title("Segments")
st.caption(
    "Groups of users who buy (or write) similar things and behave alike. Each segment is named "
    'by how its users behave compared with everyone ("loyal, big spenders") and by its most '
    "distinctive words; rename it to something your team will recognise."
)
info = require_dataset(needs_events=True)
snapshot = info.shape == "snapshot"
try:
    text = False if snapshot else text_available(folder, info.id)
except InputError as exc:
    stop_with_error(exc)

shown = shown_run(folder, info.id)
try:
    settings = SegmentSettings.coerce(shown.settings) if shown is not None else SegmentSettings()
except InputError:  # a run stored with settings this version does not know: start from defaults
    settings = SegmentSettings()

chosen = settings_form(settings, text, snapshot)
try:
    on_screen = SegmentSettings(**st.session_state[FORM_KEY]).to_dict()
except InputError:
    on_screen = None
if on_screen is not None:
    download_button(info.id, "the Segments page", segmentation=on_screen)
if chosen is not None:  # segmenting is a background job (pages/ui/jobs_view.py)
    try:
        wanted = SegmentSettings(**chosen, period=shared_settings()[0])
        jobs.start(
            submit_segmentation(jobs.job_queue(), info.id, wanted, owner=jobs.current_owner())
        )
    except InputError as exc:
        stop_with_error(exc)
finished = jobs.follow("segmentation", info.id, "Finding segments")
if finished is not None:
    st.session_state["segmentation_run"] = finished
    shown = load_run(folder, finished)

if shown is None:
    coming = "The segments will show here as soon as they are found."
    if not jobs.show_result_coming("segmentation", info.id, coming):
        st.info(
            "No segmentation yet for this dataset. Choose the settings and press Find segments."
        )
    st.stop()

picked = run_picker(segmentation_runs(ws, info.id), shown.id)
if picked != shown.id:
    st.session_state["segmentation_run"] = picked
    st.rerun()

run = load_run(folder, shown.id)
missing = ARTIFACTS - set(run.artifacts)
if missing:
    st.warning(
        f"The segmentation shown was stored without its {', '.join(sorted(missing))}. "
        "Press Find segments to compute a complete one.",
        icon=":material/warning:",
    )
    st.stop()
names = segment_names(run)

try:
    profile = shown_profile(folder, run.id)
except InputError as exc:
    stop_with_error(exc)
overview(run, names, snapshot, profile)
text_model_note(run.metrics, run.settings)
profile_table(profile, names, run.metrics.get("period"), dataset_currency(info.id))
segment_users(info, run, names, profile, *shared_settings())  # drill-down: click a row
renamed = names_form(run, names)
if renamed:
    try:
        for segment, name in renamed.items():
            ws.rename_segment(run.id, segment, name)
    except InputError as exc:
        stop_with_error(exc)
    st.rerun()
how_k_was_chosen(run)
# the users CSV for a CRM, with last seen, active periods and spend: read when its button is
# pressed, not when a run is drawn (issue 19, s8-segk: the users' activity reads every event)
period = shared_settings()[0]
download(lambda: users_for_crm(folder, info.id, run.id, period), names)
