"""The Data page's parts: the validation report, the role pickers, the file chooser and the
"Your datasets" tab (forms and rendering only; the library reads, detects and validates)."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from pages.ui.common import stop_with_error
from retention.errors import InputError
from retention.ingest import REQUIRED_ROLES, ROLE_HELP, Detection, ValidationReport
from retention.samples import SAMPLE_DIR, SAMPLES
from retention.workspace import Workspace

NONE = "— not in this file —"


def show_report(report: ValidationReport, title: str) -> None:
    """One file's validation report, under the file's own heading (the event log and the
    campaign log each get one)."""
    used, rejected = report.rows_used, report.rows_rejected
    st.markdown(f"**{title}**")
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


def role_pickers(
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


def chosen_files() -> tuple[tuple[str, bytes] | None, tuple[str, bytes] | None]:
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


def manage_datasets(ws: Workspace) -> None:
    """The 'Your datasets' tab: the list, each dataset's roles and report, rename, delete."""
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
