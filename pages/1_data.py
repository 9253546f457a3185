"""Data: upload a file (or use a sample), confirm the column roles, check the validation report,
save it to the workspace; rename and delete datasets."""

from __future__ import annotations

import hashlib
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
    EVENT_ROLES,
    REQUIRED_ROLES,
    SNAPSHOT_ROLES,
    Detection,
    Prepared,
    ValidationReport,
    detect_campaign_roles,
    detect_roles,
    prepare,
    read_table,
)
from retention.samples import SAMPLE_DIR, SAMPLES

NONE = "— not in this file —"
ROLE_HELP = {
    "user": "Who did it: a customer or user id.",
    "time": "When it happened: a date or date-time.",
    "amount": "Money spent (optional). Quantity × unit price works too.",
    "text": "What users bought or wrote: product names, reviews, searches (optional).",
    "event": "The kind of event: purchase, visit, review… (optional).",
    "action": "The treatment each user got (e.g. which e-mail).",
    "outcome": "What happened after: visited, converted, spend.",
    "propensity": "The chance the user had of getting that treatment (optional).",
    "recency": "How long since the user's last activity (optional).",
}
SHAPES = {
    "events": "Event log — one row per purchase, visit, review…",
    "snapshot": "Campaign snapshot — one row per user, with the treatment and the outcome",
}

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


@st.cache_data(max_entries=4, show_spinner="Reading the file…")
def _read(data: bytes, name: str) -> tuple[pd.DataFrame, str]:
    frame = read_table(data, name)
    info = frame.attrs.get("source")
    return frame, info.describe() if info is not None else ""


@st.cache_data(max_entries=8, show_spinner=False)
def _detect(frame: pd.DataFrame, shape: str | None) -> Detection:
    return detect_roles(frame, shape)  # type: ignore[arg-type]


def _show_report(report: ValidationReport, title: str) -> None:
    used, rejected = report.rows_used, report.rows_rejected
    c1, c2, c3 = st.columns(3)
    c1.metric("Rows in the file", f"{report.rows:,}")
    c2.metric("Rows used", f"{used:,}")
    c3.metric("Rows left out", f"{rejected:,}")
    if rejected:
        st.markdown(f"**{title}: why rows were left out**")
        reasons = report.reasons.copy()
        reasons["sample"] = reasons["sample"].map(
            lambda rows: ", ".join(str(r) for r in rows) if len(rows) else ""
        )
        st.dataframe(
            reasons.rename(
                columns={"reason": "Reason", "rows": "Rows", "sample": "Example row numbers"}
            ),
            hide_index=True,
            width="stretch",
        )
        for reason, sample in report.samples.items():
            with st.expander(f"Examples: {reason}"):
                st.dataframe(sample, hide_index=True, width="stretch")
    for note in report.notes:
        st.caption(f"ℹ️ {note}")


def _role_pickers(
    frame: pd.DataFrame, detection: Detection, roles: tuple[str, ...], key: str
) -> dict[str, str | None]:
    columns = [str(c) for c in frame.columns]
    options = [NONE, *columns]
    derived = detection.roles.get("amount")
    if derived and derived not in columns:
        options.append(derived)
    chosen: dict[str, str | None] = {}
    cols = st.columns(min(len(roles), 5))
    for i, role in enumerate(roles):
        guess = detection.roles.get(role)
        label = role.capitalize() + (" *" if role in REQUIRED_ROLES[detection.shape] else "")
        pick = cols[i % len(cols)].selectbox(
            label,
            options if role == "amount" else [NONE, *columns],
            index=(options.index(guess) if guess in options else 0),
            help=ROLE_HELP[role]
            + (f" Detected: {detection.why[role]}" if role in detection.why else ""),
            key=f"{key}.{role}",
        )
        chosen[role] = None if pick == NONE else pick
    return chosen


with add_tab:
    source = st.radio(
        "Source",
        ["Upload a file", "A bundled sample"],
        horizontal=True,
        label_visibility="collapsed",
        key="data.source",
    )
    file: tuple[str, bytes] | None = None
    campaign_file: tuple[str, bytes] | None = None
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
        if upload is not None:
            file = (upload.name, upload.getvalue())
        if campaign_upload is not None:
            campaign_file = (campaign_upload.name, campaign_upload.getvalue())
    else:
        available = [s for s in SAMPLES if (SAMPLE_DIR / s.file).exists()]
        sample = st.selectbox("Sample", available, format_func=lambda s: s.name, key="data.sample")
        st.caption(sample.description)
        file = (sample.file, (SAMPLE_DIR / sample.file).read_bytes())
        if sample.campaigns:
            campaign_file = (sample.campaigns, (SAMPLE_DIR / sample.campaigns).read_bytes())

    if file is None:
        st.info(
            "Upload a file to start. The sample datasets are already in your workspace: pick "
            "one in the sidebar.",
            icon=":material/info:",
        )
    else:
        file_name, data = file
        file_key = hashlib.sha256(data).hexdigest()[:16]
        try:
            raw, how = _read(data, file_name)
        except InputError as exc:
            stop_with_error(exc)
        st.success(f"Read **{file_name}**: {len(raw):,} rows, {raw.shape[1]} columns ({how}).")
        preview = raw.head(50).copy()
        preview.attrs = {}
        st.dataframe(preview, width="stretch", height=240)

        detected = _detect(raw, None)
        shape = st.radio(
            "What kind of data is this?",
            list(SHAPES),
            index=list(SHAPES).index(detected.shape),
            format_func=SHAPES.__getitem__,
            horizontal=True,
            key=f"shape.{file_key}",
        )
        detection = detected if shape == detected.shape else _detect(raw, shape)
        st.markdown("**Which column is which?** Detected for you — change anything that is wrong.")
        mapping = _role_pickers(
            raw,
            detection,
            EVENT_ROLES if shape == "events" else SNAPSHOT_ROLES,
            f"roles.{file_key}",
        )

        campaigns_raw, campaign_mapping = None, None
        if campaign_file is not None and shape == "events":
            try:
                campaigns_raw, _ = _read(campaign_file[1], campaign_file[0])
            except InputError as exc:
                stop_with_error(exc)
            guess = detect_campaign_roles(campaigns_raw)
            st.markdown("**Campaign log columns**")
            cols = st.columns(4)
            campaign_mapping = {}
            for i, role in enumerate(("user", "time", "action", "propensity")):
                options = [NONE, *[str(c) for c in campaigns_raw.columns]]
                pick = cols[i].selectbox(
                    role.capitalize(),
                    options,
                    index=options.index(guess[role]) if guess.get(role) in options else 0,
                    key=f"campaign.{file_key}.{role}",
                )
                campaign_mapping[role] = None if pick == NONE else pick

        try:
            prepared: Prepared = prepare(
                raw,
                mapping,
                shape,  # type: ignore[arg-type]
                campaigns=campaigns_raw,
                campaign_mapping=campaign_mapping,
                source_name=file_name,
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
            report = prepared.report.to_dict()
            if prepared.campaign_report is not None:
                report["campaigns"] = prepared.campaign_report.to_dict()
            try:
                dataset_id = ws.save_dataset(
                    name=name,
                    source_name=file_name,
                    sha256=hashlib.sha256(data).hexdigest(),
                    shape=shape,
                    frames=prepared.frames,
                    mapping={
                        **prepared.mapping,
                        **{
                            f"campaign.{k}": v for k, v in (prepared.campaign_mapping or {}).items()
                        },
                    },
                    report=report,
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
