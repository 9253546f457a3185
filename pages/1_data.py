"""Data: upload a file (or use a sample), confirm the column roles, check the validation report,
save it to the workspace; rename and delete datasets."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import streamlit as st

from pages.common import (
    current_dataset,
    page_link,
    set_current_dataset,
    stop_with_error,
    workspace,
)
from retention.errors import InputError
from retention.ingest import (
    CAMPAIGN_ROLES,
    EVENT_ROLES,
    REQUIRED_ROLES,
    ROLE_HELP,
    SHAPE_LABELS,
    SNAPSHOT_ROLES,
    Detection,
    FrameSource,
    Prepared,
    TableSource,
    ValidationReport,
    detect_campaign_roles,
    detect_roles,
    open_source,
    prepare_source,
    read_table,
)
from retention.periods import DEFAULT_TIMING, TIMING_HELP, TIMINGS
from retention.runs import dataset_mapping
from retention.samples import SAMPLE_DIR, SAMPLES

NONE = "— not in this file —"

ws = workspace()
st.title("Data")
st.caption(
    "Bring the user data you already have. Retention Studio reads CSV (any delimiter, UTF-8, "
    "UTF-16 or Windows encoding), CSV.gz, Parquet, Excel (.xlsx) and JSON Lines."
)

flash = st.session_state.pop("data.flash", None)
if flash:
    st.success(flash, icon=":material/check_circle:")
    page_link("segments", "Next: find segments", ":material/bubble_chart:")
else:
    current = current_dataset()
    if current is not None:
        kind = "event log" if current.shape == "events" else "campaign snapshot"
        st.info(
            f"You are working on **{current.name}** ({current.rows:,} rows, {kind}). Explore it "
            "on the next pages, or add your own data below.",
            icon=":material/dataset:",
        )
        page_link("segments", "Find segments in it", ":material/bubble_chart:")

add_tab, manage_tab = st.tabs(["Add data", "Your datasets"])


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


def _show_report(report: ValidationReport, title: str) -> None:
    used, rejected = report.rows_used, report.rows_rejected
    c1, c2, c3 = st.columns(3)
    c1.metric("Rows in the file", f"{report.rows:,}")
    c2.metric("Rows used", f"{used:,}")
    c3.metric("Rows left out", f"{rejected:,}")
    if rejected:
        st.markdown(f"**{title}: why rows were left out**")
        st.dataframe(report.reasons_table(), hide_index=True, width="stretch")
        for reason, sample in report.samples.items():
            with st.expander(f"Examples: {reason}"):
                st.dataframe(sample, hide_index=True, width="stretch")
    for note in report.notes:
        st.caption(f"ℹ️ {note}")


def _pickers(
    columns: list[str], guess: dict[str, str | None], roles: tuple[str, ...], key: str,
    detection: Detection | None = None,
) -> dict[str, str | None]:  # fmt: skip
    """One select box per role, preset to the guess; {role: column or None}."""
    options = [NONE, *columns]
    derived = guess.get("amount")
    amount_options = options + ([derived] if derived and derived not in columns else [])
    chosen: dict[str, str | None] = {}
    cols = st.columns(min(len(roles), 5 if detection else 4))
    for i, role in enumerate(roles):
        here = amount_options if role == "amount" else options
        label, help = role.capitalize(), None
        if detection is not None:
            label += " *" if role in REQUIRED_ROLES[detection.shape] else ""
            help = ROLE_HELP[role] + (f" Detected: {detection.why[role]}" if role in detection.why else "")  # fmt: skip
        index = here.index(guess[role]) if guess.get(role) in here else 0
        pick = cols[i % len(cols)].selectbox(
            label, here, index=index, help=help, key=f"{key}.{role}"
        )
        chosen[role] = None if pick == NONE else pick
    return chosen


def _chosen_files() -> tuple[tuple[str, bytes] | None, tuple[str, bytes] | None]:
    """(name, bytes) of the file and of the campaign log, uploaded or a bundled sample."""
    source = st.radio(
        "Source",
        ["Upload a file", "A bundled sample"],
        horizontal=True,
        label_visibility="collapsed",
        key="data.source",
    )
    if source == "Upload a file":
        upload = st.file_uploader(
            "Your file",
            help="The data never leaves this computer: it is stored in the workspace folder.",
            key="upload",
        )
        with st.expander("Campaign log (optional, with an event log)"):
            st.caption(
                "One row per treatment a user received: user, time, action (and, if you have "
                "it, the propensity). Users without a row in a period got no action."
            )
            campaign_upload = st.file_uploader("Campaign log", key="campaign_upload")
        file = None if upload is None else (upload.name, upload.getvalue())
        campaigns = (
            None if campaign_upload is None else (campaign_upload.name, campaign_upload.getvalue())
        )
        return file, campaigns
    available = [s for s in SAMPLES if (SAMPLE_DIR / s.file).exists()]
    sample = st.selectbox("Sample", available, format_func=lambda s: s.name, key="data.sample")
    st.caption(sample.description)
    file = (sample.file, (SAMPLE_DIR / sample.file).read_bytes())
    if sample.campaigns:
        return file, (sample.campaigns, (SAMPLE_DIR / sample.campaigns).read_bytes())
    return file, None


with add_tab:
    file, campaign_file = _chosen_files()
    if file is None:
        st.info(
            "Upload a file to start. The sample datasets are already in your workspace: pick "
            "one in the sidebar.",
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
        mapping = _pickers(source.columns, detection.roles, roles, f"roles.{file_key}", detection)

        campaigns, campaign_mapping, campaign_sha, timing = None, None, None, DEFAULT_TIMING
        if campaign_file is not None and shape == "events":
            campaign_sha = hashlib.sha256(campaign_file[1]).hexdigest()
            try:
                campaigns = _open(campaign_sha, *campaign_file, campaigns=True)
            except InputError as exc:
                stop_with_error(exc)
            guess = _detect_campaigns(campaign_sha, campaigns)
            st.markdown("**Campaign log columns**")
            campaign_mapping = _pickers(campaigns.columns, guess, CAMPAIGN_ROLES, f"campaign.{file_key}")  # fmt: skip
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
        _show_report(prepared.report, "Your file")
        if prepared.campaign_report is not None:
            _show_report(prepared.campaign_report, "Campaign log")
        st.caption(f"{prepared.users:,} users.")

        name = st.text_input("Dataset name", value=Path(file_name).name.split(".")[0])
        if st.button("Save to workspace", type="primary", icon=":material/save:"):
            try:
                dataset_id = ws.save_dataset(
                    name=name,
                    source_name=file_name,
                    sha256=sha,
                    shape=shape,
                    frames=prepared.frames,
                    mapping=dataset_mapping(prepared),
                    report=prepared.report_dict(),
                )
            except InputError as exc:
                stop_with_error(exc)
            set_current_dataset(dataset_id)
            st.session_state["data.flash"] = f"Saved “{name}” and made it the current dataset."
            st.rerun()

with manage_tab:
    datasets = ws.datasets()
    if datasets.empty:
        st.info("No datasets yet.")
    else:
        table = datasets.assign(created=datasets["created"].dt.strftime("%Y-%m-%d %H:%M"))
        st.dataframe(
            table[["name", "shape", "rows", "source_name", "created"]].rename(
                columns={
                    "name": "Name",
                    "shape": "Kind",
                    "rows": "Rows",
                    "source_name": "File",
                    "created": "Added",
                }
            ),
            hide_index=True,
            width="stretch",
        )
        ids = list(datasets["id"])
        names = dict(zip(datasets["id"], datasets["name"], strict=True))
        target = st.selectbox("Dataset", ids, format_func=names.__getitem__, key="manage.target")
        info = ws.dataset(target)
        with st.expander("Column roles and validation report"):
            st.json(info.mapping, expanded=True)
            rep = info.report
            st.write(
                f"{rep.get('rows_used', info.rows):,} rows used, "
                f"{rep.get('rows_rejected', 0):,} left out."
            )
            if rep.get("reasons"):
                st.dataframe(pd.DataFrame(rep["reasons"]), hide_index=True)
        c1, c2 = st.columns(2)
        with c1:
            new_name = st.text_input("New name", value=names[target], key=f"rename.{target}")
            if st.button("Rename", key="rename"):
                try:
                    ws.rename_dataset(target, new_name)
                except InputError as exc:
                    stop_with_error(exc)
                st.rerun()
        with c2:
            sure = st.checkbox(
                f"Yes, delete “{names[target]}” and everything computed on it", key="delete.sure"
            )
            if st.button("Delete", disabled=not sure, key="delete", icon=":material/delete:"):
                ws.delete_dataset(target)
                st.session_state.pop("dataset_id", None)
                st.query_params.pop("dataset", None)
                st.rerun()
