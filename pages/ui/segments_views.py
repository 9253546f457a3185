"""Rendering for the Segments page: the run picker, the overview, the profile, the names
form and the download (the settings form is :mod:`pages.ui.segments_form`). Each function draws
one part and returns what the user chose; the page decides what to run, the library computes."""

from __future__ import annotations

import re
from typing import Any

import pandas as pd
import streamlit as st

from retention.charts.segments import (
    segment_map,
    segment_retention,
    segment_sizes,
    silhouette_curve,
)
from retention.segments import auto_k_rule, segmentation_basis
from retention.strategies import to_csv_bytes
from retention.words import period_word, segment_display_name, segment_name
from retention.workspace import Run

PROFILE_COLUMNS = {
    "name": "Segment",
    "users": "Users",
    "share": "Share",
    "recency_days": "Days since last",
    "frequency": "Active days",
    "monetary": "Spend per user",
    "revenue": "Revenue",
    "retention_1": "Retention after 1",
    "retention_4": "Retention after 4",
}
PROFILE_FORMATS = {
    "Share": st.column_config.NumberColumn(format="percent"),
    "Retention after 1": st.column_config.NumberColumn(format="percent"),
    "Retention after 4": st.column_config.NumberColumn(format="percent"),
    "Spend per user": st.column_config.NumberColumn(format="%.2f"),
    "Revenue": st.column_config.NumberColumn(format="%.0f"),
    "Days since last": st.column_config.NumberColumn(format="%.0f"),
    "Active days": st.column_config.NumberColumn(format="%.1f"),
}


def plain(text: str) -> str:
    """User text for st.markdown: markdown and Streamlit's :directives: escaped (no links,
    images or formatting from the data)."""
    return re.sub(r"([\\`*_{}\[\]()#+\-.!|<>~:$])", r"\\\1", text)


def run_picker(done: pd.DataFrame, shown_id: str) -> str:
    """With several finished segmentations, a picker of the one shown; its id."""
    if len(done) <= 1:
        return shown_id
    ids = done["id"].tolist()
    rows = done.set_index("id")

    def describe(run_id: str) -> str:
        row = rows.loc[run_id]
        s, m = row["settings"], row["metrics"]
        how = "HDBSCAN" if s.get("algorithm") == "hdbscan" else f"k = {s.get('k')}"
        return f"{row['created']:%Y-%m-%d %H:%M} · {m.get('k', '?')} segments ({how})"

    return st.selectbox(
        "Segmentation shown (used by the other pages)",
        ids,
        index=ids.index(shown_id) if shown_id in ids else 0,
        format_func=describe,
        key=f"segments.shown.{shown_id}",
    )


def overview(run: Run, names: dict[int, str], snapshot: bool) -> None:
    """Headline numbers, the map and the per-segment charts."""
    art, metrics = run.artifacts, run.metrics
    profile = art["profile"]
    users = int(metrics.get("users", len(art["assignments"])))
    c1, c2, c3, c4 = st.columns([1, 1, 2, 1])  # "text + behaviour" needs the room
    c1.metric("Users", f"{users:,}")
    c2.metric("Segments", metrics.get("k", len(profile)))
    c3.metric("Based on", segmentation_basis(metrics, run.settings, snapshot))
    if metrics.get("noise_users"):
        c4.metric("Unclustered users", f"{metrics['noise_users']:,}")
    elif metrics.get("silhouette_by_k"):
        c4.metric("Silhouette", f"{metrics['silhouette_by_k'].get(str(metrics['k']), 0):.2f}")

    st.plotly_chart(segment_map(art["map2d"], names), key="segments.map_chart")
    mapped = len(art["map2d"])
    st.caption(
        "Each dot is a user, placed so that users with similar purchases and behaviour are "
        "close. Hover to see a user's top items."
        + (
            f" The map shows a sample of {mapped:,} of the {users:,} users, drawn within each "
            "segment in proportion to its size."
            if mapped < users
            else ""
        )
    )
    left, right = st.columns(2)
    with left:
        st.plotly_chart(segment_sizes(profile, names), key="segments.sizes")
    with right:
        if any(c.startswith("retention_") for c in profile.columns):
            st.plotly_chart(segment_retention(profile, names), key="segments.retention")


def profile_table(profile: pd.DataFrame, names: dict[int, str], period: str | None) -> None:
    """The per-segment profile, with the meaning of "retention after k"."""
    st.subheader("Profile")
    table = profile.copy()
    table.insert(1, "name", table["segment"].map(lambda s: segment_name(names, s)))
    table = table.drop(columns=["label", "segment"], errors="ignore")
    st.dataframe(
        table.rename(columns=PROFILE_COLUMNS),
        hide_index=True,
        column_config=PROFILE_FORMATS,
        key="segments.profile",
    )
    if "retention_1" in profile.columns:
        units = period_word(period)
        st.caption(
            f"Retention after k: the share of the segment's users active k {units} after their "
            f"first {period or 'period'}, among the users observed that long (as in the cohort "
            "table on the Retention page)."
        )


def names_form(run: Run, names: dict[int, str]) -> dict[int, str]:
    """Keywords, representatives and a name field per segment; the names the user changed
    (``{segment: new name}``) when they press Save names, else an empty dict."""
    st.subheader("Names and keywords")
    st.caption(
        "Keywords are the words most distinctive of each segment (class-based TF-IDF); the "
        "representative users are those closest to the segment's centre. Names are kept."
    )
    labels = run.artifacts["labels"]
    with st.form(f"segments.names.{run.id}"):
        for row in labels.itertuples(index=False):
            seg = int(row.segment)
            a, b = st.columns([1, 2])
            a.text_input(
                segment_display_name(seg),
                value=names.get(seg, row.label),
                key=f"segments.name.{run.id}.{seg}",
            )
            # Keywords and user ids come from the data: shown as plain text, never as HTML.
            b.markdown(f"**{row.users:,} users** · {plain(str(row.keywords or '—'))}")
            b.caption(f"Representative users: {plain(str(row.representatives))}")
        saved = st.form_submit_button("Save names")
    if not saved:
        return {}
    changed = {}
    for row in labels.itertuples(index=False):
        seg = int(row.segment)
        new = st.session_state[f"segments.name.{run.id}.{seg}"].strip()
        if new != names.get(seg, row.label):
            changed[seg] = new
    return changed


def how_k_was_chosen(metrics: dict[str, Any]) -> None:
    """The silhouette by k of an automatic choice, and the rule that picked k."""
    curve = silhouette_curve(metrics)
    if curve is None:
        return
    with st.expander("How the number of segments was chosen"):
        st.plotly_chart(curve, key="segments.silhouette")
        st.caption(
            "Silhouette: how much closer users are to their own segment than to the next one. "
            + auto_k_rule()
        )


def download(assignments: pd.DataFrame, names: dict[int, str]) -> None:
    """The user → segment table as CSV, with each segment's name."""
    table = assignments.assign(name=lambda d: d["segment"].map(lambda s: segment_name(names, s)))
    st.download_button(
        "Download user → segment (CSV)",
        to_csv_bytes(table),  # formulas escaped, as every export
        file_name="user_segments.csv",
        mime="text/csv",
        icon=":material/download:",
    )
