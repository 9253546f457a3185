"""Data: upload a file (or use a sample), confirm the column roles, check the validation report,
save it to the workspace; rename and delete datasets."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import streamlit as st

from pages.ui.common import (
    current_dataset,
    page_link,
    set_current_dataset,
    set_dataset_currency,
    stop_with_error,
    workspace,
)
from pages.ui.data_views import (
    chosen_files,
    currency_picker,
    dataset_summary,
    first_steps_overview,
    manage_datasets,
    role_pickers,
    show_report,
)
from retention.engine.routing import spark_dataset
from retention.errors import InputError
from retention.ingest import (
    CAMPAIGN_ROLES,
    EVENT_ROLES,
    SHAPE_LABELS,
    SNAPSHOT_ROLES,
    Detection,
    FrameSource,
    Prepared,
    TableSource,
    detect_campaign_roles,
    detect_roles,
    open_source,
    prepare_source,
    read_table,
)
from retention.periods import DEFAULT_TIMING, TIMING_HELP, TIMINGS
from retention.runs import find_dataset, store_dataset
from retention.samples import SAMPLES

ws = workspace()
st.title("Data")
st.caption(
    "Bring the user data you already have. Retention Studio reads CSV (any delimiter, UTF-8, "
    "UTF-16 or Windows encoding), CSV.gz, Parquet, Excel (.xlsx) and JSON Lines."
)

first_steps_overview(ws.datasets())
current = current_dataset()
flash = st.session_state.pop("data.flash", None)
if flash:
    st.success(flash, icon=":material/check_circle:")
    page_link("segments", "Next: find segments", ":material/bubble_chart:")
elif current is not None:
    st.info(
        f"You are working on **{current.name}** ({dataset_summary(current)}). Explore it on "
        "the next pages, or add your own data below.",
        icon=":material/dataset:",
    )
    if spark_dataset(current.report):  # its events are not here: only the command's policy is
        page_link("policy", "See the policy the command computed", ":material/model_training:")
    else:
        page_link("segments", "Find segments in it", ":material/bubble_chart:")

add_tab, manage_tab = st.tabs(["Add data", "Your datasets"])
# "Your datasets" first: a file the "Add data" tab refuses stops the page, and must not blank it.
with manage_tab:
    manage_datasets(ws)


# Read, detect and validate once per file hash (+ mapping): typing a name re-runs none of them.
# A source is a resource: a big upload is a temporary file DuckDB reads, deleted on eviction.
@st.cache_resource(max_entries=4, show_spinner="Reading the file…")
def _open(sha: str, name: str, _data: bytes, campaigns: bool = False) -> TableSource:
    # A campaign log is read whole, as `--campaigns` reads it on the command line.
    return FrameSource(read_table(_data, name)) if campaigns else open_source(_data, name)


@st.cache_data(max_entries=8, show_spinner=False)
def _detect(sha: str, shape: str | None, _source: TableSource) -> Detection:
    return detect_roles(_source.detection_frame, shape)  # type: ignore[arg-type]


@st.cache_data(max_entries=4, show_spinner=False)
def _detect_campaigns(sha: str, _source: TableSource) -> dict[str, str]:
    return detect_campaign_roles(_source.detection_frame)


def _prepare(key: tuple, run: Callable[[], Prepared]) -> Prepared:
    """This session's last validation, redone when ``key`` changes (session_state, not
    st.cache_data: a big input's rows are a StagedTable file living as long as its Prepared)."""
    cached = st.session_state.get("data.prepared")
    if cached is None or cached[0] != key:
        with st.spinner("Validating…"):
            cached = (key, run())
        st.session_state["data.prepared"] = cached
    return cached[1]


with add_tab:
    file, campaign_file = chosen_files()
    if file is None:
        names = set(ws.datasets()["name"])
        here = [sample.name for sample in SAMPLES if sample.name in names]
        st.info(
            "Upload a file to start. "
            + (
                f"The sample dataset{'s' if len(here) > 1 else ''} "
                f"{' and '.join(f'*{n}*' for n in here)} "
                f"{'are' if len(here) > 1 else 'is'} already in your workspace: pick one in the "
                "sidebar."
                if here
                else "Or choose *A bundled sample* above to try the app on one."
            ),
            icon=":material/info:",
        )
    else:
        file_name, data = file
        sha = hashlib.sha256(data).hexdigest()
        file_key = sha[:16]
        try:
            source = _open(sha, file_name, data)
        except InputError as exc:
            stop_with_error(exc)
        st.success(
            f"Read **{file_name}**: {source.rows():,} rows, {len(source.columns)} columns "
            f"({source.describe()})."
        )
        st.dataframe(source.preview(50), width="stretch", height=240)

        detected = _detect(sha, None, source)
        shape = st.radio(
            "What kind of data is this?",
            list(SHAPE_LABELS),
            index=list(SHAPE_LABELS).index(detected.shape),
            format_func=SHAPE_LABELS.__getitem__,
            horizontal=True,
            key=f"shape.{file_key}",
        )
        detection = detected if shape == detected.shape else _detect(sha, shape, source)
        st.markdown("**Which column is which?** Detected for you — change anything that is wrong.")
        roles = EVENT_ROLES if shape == "events" else SNAPSHOT_ROLES
        mapping = role_pickers(
            source.columns, detection.roles, roles, f"roles.{file_key}", detection
        )

        campaigns, campaign_mapping, campaign_sha, timing = None, None, None, DEFAULT_TIMING
        if campaign_file is not None and shape == "events":
            campaign_sha = hashlib.sha256(campaign_file[1]).hexdigest()
            try:
                campaigns = _open(campaign_sha, *campaign_file, campaigns=True)
            except InputError as exc:
                stop_with_error(exc)
            guess = _detect_campaigns(campaign_sha, campaigns)
            st.markdown("**Campaign log columns**")
            campaign_mapping = role_pickers(campaigns.columns, guess, CAMPAIGN_ROLES, f"campaign.{file_key}")  # fmt: skip
            timing = st.selectbox(
                "Which period does a send count for?",
                TIMINGS,
                format_func=lambda t: f"{t}: {TIMING_HELP[t]}",
                help="A campaign acts on what happens after it is sent. 'nearest' suits most "
                "schedules, including sends on the evening before a period starts.",
                key=f"campaign.timing.{file_key}",
            )

        key = (sha, shape, tuple(mapping.items()), campaign_sha, str(campaign_mapping), timing)
        try:
            prepared = _prepare(
                key,
                lambda: prepare_source(
                    source,
                    mapping,
                    shape,  # type: ignore[arg-type]
                    detection=detection,
                    campaigns=campaigns,
                    campaign_mapping=campaign_mapping,
                    campaign_timing=timing,
                ),
            )
        except InputError as exc:
            stop_with_error(exc)

        st.subheader("Validation report")
        show_report(prepared.report, f"Your file: {file_name}")
        if prepared.campaign_report is not None and campaign_file is not None:
            show_report(prepared.campaign_report, f"Campaign log: {campaign_file[0]}")

        stored = find_dataset(ws, prepared)
        if stored is not None and current is not None and stored == current.id:
            # Saved (now or before) and being worked on: nothing left to do here but move on.
            st.success(
                f"Saved ✓ — this file, read with these columns, is **{current.name}**, the "
                "dataset you are working on.",
                icon=":material/check_circle:",
            )
            page_link("segments", "Go to Segments", ":material/bubble_chart:")
        elif stored is not None:
            # The same bytes and columns again: offer the stored dataset, never a second copy.
            name = ws.dataset(stored).name
            st.info(
                f"This file, read with these columns, is already in your workspace as "
                f"**{name}**; nothing needs saving twice.",
                icon=":material/content_copy:",
            )
            if st.button(f"Work on “{name}”", type="primary", icon=":material/dataset:"):
                set_current_dataset(stored)
                st.session_state["data.flash"] = f"“{name}” is now the current dataset."
                st.rerun()
        else:
            c1, c2 = st.columns(2)
            name = c1.text_input("Dataset name", value=Path(file_name).name.split(".")[0])
            with c2:
                currency = currency_picker(f"currency.new.{file_key}")
            if st.button("Save to workspace", type="primary", icon=":material/save:"):
                try:
                    dataset_id = store_dataset(ws, prepared, name)
                except InputError as exc:
                    stop_with_error(exc)
                if currency:
                    set_dataset_currency(dataset_id, currency)
                set_current_dataset(dataset_id)
                st.session_state["data.flash"] = f"Saved “{name}” and made it the current dataset."
                st.rerun()
