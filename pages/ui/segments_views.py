"""Rendering for the Segments page: the run picker, the overview, the profile, the names
form and the download (the settings form is :mod:`pages.ui.segments_form`). Each function draws
one part and returns what the user chose; the page decides what to run, the library computes."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pandas as pd
import streamlit as st

from pages.ui.common import workspace
from pages.ui.retention_views import shared_chart
from retention.charts.segments import (
    segment_map,
    segment_retention,
    segment_sizes,
    silhouette_curve,
)
from retention.segments import auto_k_rule, k_choice_reason, segmentation_basis
from retention.strategies import to_csv_bytes
from retention.words import (
    counted,
    currency_unit,
    money,
    period_word,
    period_word_singular,
    segment_display_name,
    segment_name,
)
from retention.workspace import Run

#: Columns of the profile, in order; what each means is :func:`profile_table`'s hover help.
PROFILE_COLUMNS = {
    "name": "Segment",
    "users": "Users",
    "share": "Share",
    "recency_days": "Days since active",
    "frequency": "Active days",
    "monetary": "Spend per user",
    "revenue": "Revenue",
}
MISSING = "—"


def _percent(value: float) -> str:
    return MISSING if pd.isna(value) else f"{value:.0%}"


def _number(value: float, decimals: int = 0) -> str:
    return MISSING if pd.isna(value) else f"{value:,.{decimals}f}"


def profile_display(
    profile: pd.DataFrame,
    names: dict[int, str],
    period: str | None,
    currency: str | None,
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The segment profile as a reader sees it, and its column settings (hover help).

    Every cell is text with its unit: thousands separators, percentages without decimals,
    money in the dataset's currency (or "your data's currency"), "—" where a value does not
    exist (never "None" or "nan"). Columns that are empty for every segment (revenue without
    amounts) are left out; other numeric columns (a snapshot's features) get two decimals.
    """
    words = period_word(period)
    word = period_word_singular(period)
    # The unit in the header when the currency is known; else said on hover (a header such as
    # "Revenue (your data's currency)" pushed the retention columns off the screen).
    unit = f" ({currency_unit(currency)})" if currency else ""
    in_currency = "" if currency else " In your data's currency (set it on the Data page)."
    retention_ks = sorted(
        int(c.removeprefix("retention_"))
        for c in profile.columns
        if c.startswith("retention_") and c.removeprefix("retention_").isdigit()
    )
    longest = retention_ks[-1] if retention_ks else 0
    out = pd.DataFrame({"Segment": [segment_name(names, s) for s in profile["segment"]]})
    help_: dict[str, str] = {
        "Segment": "The segment's name (rename it below).",
        "Users": "Users in the segment.",
        "Share": "The segment's share of all users segmented.",
        "Days since active": "Days from a user's last activity to the end of the data, "
        "averaged over the segment's users.",
        "Active days": "Days on which a user was active (bought or wrote something), averaged "
        "over the segment's users.",
        f"Spend per user{unit}": "Total spend of a user over the whole data, averaged over "
        "the segment's users." + in_currency,
        f"Revenue{unit}": "Total spend of all the segment's users over the whole data."
        + in_currency,
    }
    for column, header in PROFILE_COLUMNS.items():
        if column == "name" or column not in profile.columns:
            continue
        values = profile[column]
        if values.isna().all():
            continue
        if column == "users":
            out[header] = [_number(v) for v in values]
        elif column == "share":
            out[header] = [_percent(v) for v in values]
        elif column in ("monetary", "revenue"):
            decimals = 2 if column == "monetary" else 0
            out[f"{header}{unit}"] = [
                MISSING
                if pd.isna(v)
                else money(v, currency, decimals).removesuffix(" (currency of your data)")
                for v in values
            ]
        elif column == "frequency":  # 1.4 shows as 1.4, not 1 (issue 18)
            out[header] = [_number(v, 1) for v in values]
        else:
            out[header] = [_number(v) for v in values]
    for k in retention_ks:
        header = f"Retention after {counted(k, word, words)}"
        out[header] = [_percent(v) for v in profile[f"retention_{k}"]]
        help_[header] = (
            f"Share of the segment's users who came back {counted(k, word, words)} after their "
            f"first {word} or later. Counted over the same users for every column: those whose "
            f"first {word} is at least {counted(longest, word, words)} before the data ends, so "
            "it never rises from one column to the next. As the unbounded cohort table on the "
            "Retention page. — where no user of the segment started that early."
        )
    known = set(PROFILE_COLUMNS) | {"segment", "label"} | {f"retention_{k}" for k in retention_ks}
    for column in profile.columns:
        if column in known or not pd.api.types.is_numeric_dtype(profile[column]):
            continue
        out[str(column)] = [_number(v, 2) for v in profile[column]]
    config = {
        header: st.column_config.TextColumn(
            help=help_.get(header), alignment="left" if header == "Segment" else "right"
        )
        for header in out.columns
    }
    return out, config


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


def _chart_key(run: Run, names: dict[int, str], *more: Any) -> tuple:
    """What a segmentation's chart is drawn from: the workspace, the run (stored once, never
    changed), the names shown (a rename redraws it) and anything else given."""
    return (str(workspace().folder), run.id, tuple(sorted(names.items())), *more)


def overview(run: Run, names: dict[int, str], snapshot: bool, profile: pd.DataFrame) -> None:
    """Headline numbers, the map and the per-segment charts (``profile``: the run's profile as
    shown, see the page). Each chart is built once per run and names
    (:func:`pages.ui.retention_views.shared_chart`), not on every rerun of the page (issue 19,
    s7-segdraw: the map of 4,339 users alone took 0.14 s a rerun)."""
    art, metrics = run.artifacts, run.metrics
    users = int(metrics.get("users", len(art["assignments"])))
    c1, c2, c3, c4 = st.columns([1, 1, 2, 1])  # "text + behaviour" needs the room
    c1.metric("Users", f"{users:,}")
    c2.metric("Segments", metrics.get("k", len(profile)))
    c3.metric("Based on", segmentation_basis(metrics, run.settings, snapshot))
    if metrics.get("noise_users"):
        c4.metric("Unclustered users", f"{metrics['noise_users']:,}")
    elif metrics.get("silhouette_by_k"):
        c4.metric(
            "Separation (silhouette)",
            f"{metrics['silhouette_by_k'].get(str(metrics['k']), 0):.2f}",
            help="How much closer users are to their own segment than to the next one, from "
            "−1 to 1. As a rule of thumb, above 0.5 the segments are clearly apart, from 0.25 "
            "to 0.5 they overlap somewhat, below 0.25 they blur into each other.",
        )

    reason = k_choice_reason(metrics)
    if reason:  # why this many segments, in plain words (the details: how_k_was_chosen)
        st.caption(reason, help=auto_k_rule())
    key = _chart_key(run, names)
    figure = shared_chart("segments.map", key, lambda: segment_map(art["map2d"], names))
    st.plotly_chart(figure, key="segments.map_chart")
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
        sizes = shared_chart("segments.sizes", key, lambda: segment_sizes(profile, names))
        st.plotly_chart(sizes, key="segments.sizes")
    with right:
        if any(c.startswith("retention_") for c in profile.columns):
            figure = shared_chart(
                "segments.retention",
                key,
                lambda: segment_retention(profile, names, metrics.get("period")),
            )
            st.plotly_chart(figure, key="segments.retention")


def profile_table(
    profile: pd.DataFrame, names: dict[int, str], period: str | None, currency: str | None
) -> None:
    """The per-segment profile, each column explained on hover."""
    st.subheader("Profile")
    table, config = profile_display(profile, names, period, currency)
    st.dataframe(  # a click on a row lists its users (pages/ui/drill_views.py)
        table, hide_index=True, column_config=config, key="segments.profile",
        on_select="rerun", selection_mode="single-row",
    )  # fmt: skip
    if any(c.startswith("Retention after") for c in table.columns):
        word = period_word_singular(period)
        st.caption(
            f"Retention after k {period_word(period)}: the share of the segment's users who came "
            f"back k {period_word(period)} after their first {word} or later, over the same "
            "users for every k (hover a column for the details)."
        )


def names_form(run: Run, names: dict[int, str]) -> dict[int, str]:
    """Keywords, representatives and a name field per segment; the names the user changed
    (``{segment: new name}``) when they press Save names, else an empty dict."""
    st.subheader("Names and keywords")
    st.caption(
        "How they behave compares the segment's average active days, spend and days since last "
        'active with all users\' ("loyal": active on at least 1.5 times as many days as '
        "average, and recently). Keywords are the words most distinctive of each segment "
        '(class-based TF-IDF), leaving out common words, sentiment ("great", "love") and '
        "ratings. The representative users are those closest to the segment's centre. Names are "
        "kept."
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
            behaviour = str(getattr(row, "behaviour", "") or "")
            b.markdown(
                f"**{counted(row.users, 'user')}**"
                + (f" · how they behave: *{plain(behaviour)}*" if behaviour else "")
                + f" · words: {plain(str(row.keywords or '—'))}"
            )
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


def how_k_was_chosen(run: Run) -> None:
    """The silhouette by k of an automatic choice, and the rule that picked k (the chart built
    once per run)."""
    metrics = run.metrics
    curve = shared_chart(
        "segments.silhouette", _chart_key(run, {}), lambda: silhouette_curve(metrics)
    )
    if curve is None:
        return
    with st.expander("How the number of segments was chosen"):
        st.plotly_chart(curve, key="segments.silhouette")
        if metrics.get("stability_by_k"):
            st.caption(
                "Separation (silhouette): how much closer users are to their own segment than "
                "to the next one. Stability: segments found on two random samples of 80% of the "
                "users, compared (adjusted Rand index: 1 = the same segments, 0 = no better than "
                "chance). " + auto_k_rule()
            )
        else:  # a run from before stability was measured
            st.caption(
                "Silhouette: how much closer users are to their own segment than to the next "
                "one. This segmentation was made by an earlier version, which took the fewest "
                "segments within 5% of the best silhouette; press Find segments for today's "
                "choice. " + auto_k_rule()
            )


def users_csv(assignments: pd.DataFrame, names: dict[int, str]) -> bytes:
    """The user → segment table as CSV, with each segment's name (formulas escaped, as every
    export)."""
    table = assignments.assign(name=lambda d: d["segment"].map(lambda s: segment_name(names, s)))
    return to_csv_bytes(table)


def download(users: Callable[[], pd.DataFrame], names: dict[int, str]) -> None:
    """The user → segment CSV (:func:`users_csv` of ``users()``), made when the button is
    pressed, not on every draw of the page (issue 19, s7-segdraw: 0.12 s a rerun on 4,339
    users; s8-segk: ``users()`` too, whose users' activity reads every event, 0.5–2 s on the
    first draw of a dataset's run); pressing it does not rerun the page."""
    names = dict(names)
    st.download_button(
        "Download user → segment (CSV)",
        lambda: users_csv(users(), names),
        file_name="user_segments.csv",
        mime="text/csv",
        icon=":material/download:",
        on_click="ignore",
    )
