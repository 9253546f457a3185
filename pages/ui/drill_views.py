"""Drill-down: click a cohort cell (Retention), a segment (Segments) or a segment × stage count
(Strategies, Policy) and see those users — id, segment, stage, last seen, active periods, spend — with a
CSV download. The library (:mod:`retention.drill`) finds the users; this module reads the click
and renders the list.

Each page hooks in with one call after the element the user clicks: :func:`cohort_users`,
:func:`segment_users`, :func:`stage_users` (:func:`policy_stage_users` on the Policy page).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import pandas as pd
import streamlit as st

from pages.ui.common import dataset_currency, workspace
from retention.analyses import INCOMPLETE, RetentionMatrix
from retention.charts.drill import column_words
from retention.cohorts import ALL_USERS
from retention.drill import Selection, workspace_users
from retention.errors import InputError
from retention.periods import resolve_period
from retention.results import breakdown_groups, user_stage_table
from retention.strategies import stage_counts, to_csv_bytes
from retention.words import (
    STAGE_ORDER,
    counted,
    currency_unit,
    money,
    period_word,
    period_word_singular,
    segment_name,
    stage_rank,
    stage_word,
)
from retention.workspace import DatasetInfo, Run

#: Rows the on-screen list shows (the biggest spenders); the CSV always has every user.
SHOWN_ROWS = 1_000
HEATMAP_KEY = "retention.heatmap"  # the cohort heatmap's chart key (pages/ui/retention_views.py)
PROFILE_KEY = "segments.profile"  # the segment profile's table key (pages/ui/segments_views.py)
STAGES_KEY = "strategies.stage_counts"
POLICY_STAGES_KEY = "policy.stage_counts"

Names = tuple[tuple[int, str], ...]
UNKNOWN = " (currency of your data)"  # what money() adds when the currency is not set


@st.cache_data(max_entries=32, show_spinner=False)
def _resolved_period(folder: str, dataset_id: str, period: str) -> str | None:
    """``period`` with "auto" resolved on the dataset's events (None for a snapshot)."""
    ws = workspace()
    if ws.dataset(dataset_id).shape != "events":
        return None
    return resolve_period(ws.cursor(), ws.table(dataset_id, "events"), period)


@st.cache_data(max_entries=16, show_spinner="Finding these users…")
def _users(
    folder: str,
    dataset_id: str,
    selection: Selection,
    period: str,
    churn_after: int,
    seg_run_id: str | None,
    names: Names,
    group: tuple[str, str, int, str] | None = None,
) -> pd.DataFrame:
    """The users of ``selection`` (``group``: breakdown, segmentation run, top N, group name
    of the cohort table shown (or all of the breakdown's groups), whose users alone are in its
    cells)."""
    ws = workspace()
    user_ids = None
    if group is not None:
        breakdown, group_run, top_n, name = group
        groups, _ = breakdown_groups(
            ws, dataset_id, breakdown, group_run or None, names=dict(names), top_n=top_n
        )
        user_ids = groups["user_id"]
        if name != ALL_USERS:
            user_ids = groups.loc[groups["group"] == name, "user_id"]
    return workspace_users(
        ws, dataset_id, selection, period=period, churn_after=churn_after,
        segmentation_run=seg_run_id, names=dict(names), user_ids=user_ids,
    )  # fmt: skip


def _file_part(text: str) -> str:
    """``text`` as a piece of a file name (letters, digits, dashes)."""
    return re.sub(r"[^0-9A-Za-z]+", "-", str(text)).strip("-")[:40] or "users"


def user_list(
    users: pd.DataFrame,
    *,
    title: str,
    period: str | None,
    currency: str | None,
    file_name: str,
    key: str,
) -> None:
    """The list of ``users`` (:data:`retention.drill.COLUMNS`) with a CSV download."""
    words = period_word(period)
    unit = currency_unit(currency)
    spend = users["spend"]
    has_spend = spend.notna().any()
    st.markdown(f"**{title}**")
    facts = [counted(len(users), "user")]
    if has_spend and len(users):
        total, each = (
            money(v, currency).removesuffix(UNKNOWN) for v in (spend.sum(), spend.mean())
        )
        facts.append(f"{total} spent in all, {each} per user" + ("" if currency else UNKNOWN))
    if len(users) > SHOWN_ROWS:
        facts.append(f"the {SHOWN_ROWS:,} biggest spenders shown; the CSV has all of them")
    st.caption(" · ".join(facts) + ".")
    if users.empty:
        return
    shown = users.head(SHOWN_ROWS).assign(stage=lambda d: d["stage"].map(stage_word))
    spend_header = f"Spend ({unit})"
    config: dict[str, Any] = {
        "user_id": st.column_config.TextColumn("User", help="The user's id in your data."),
        "segment": st.column_config.TextColumn("Segment", help="The user's segment (its name)."),
        "stage": st.column_config.TextColumn(
            "Stage",
            help="Where the user stands at the end of the data: active (bought in the last "
            f"{period_word_singular(period)}), lapsing, at risk or churned.",
        ),
        "last_seen": st.column_config.DateColumn(
            "Last seen", format="YYYY-MM-DD", help="The date of the user's last activity."
        ),
        "active_periods": st.column_config.NumberColumn(
            f"Active {words}", format="%d", help=f"How many {words} the user was active in."
        ),
        "spend": st.column_config.NumberColumn(
            spend_header,
            format="localized",  # thousands separators, as every amount on the pages
            help="Total spend of the user over the whole data"
            + ("." if currency else ", in your data's currency (set it on the Data page)."),
        ),
    }
    if (users["segment"] == "").all():
        shown = shown.drop(columns="segment")
        config.pop("segment")
    if not has_spend:
        shown = shown.drop(columns="spend")
        config.pop("spend")
    st.dataframe(shown, hide_index=True, column_config=config, key=f"{key}.list")
    st.download_button(
        f"Download these {counted(len(users), 'user')} (CSV)",
        to_csv_bytes(users),  # formulas escaped, as every export
        file_name=file_name,
        mime="text/csv",
        icon=":material/download:",
        key=f"{key}.csv",
        help="One row per user: id, segment, stage, last seen, active periods, spend. Safe to "
        "open in a spreadsheet (formula-like cells are escaped).",
        # Downloading changes nothing on the page, so it does not rerun it: a rerun would also
        # replace the ids of the page's on-click downloads (the Segments page's user → segment
        # CSV), and a click on one of them just after would find its old id gone.
        on_click="ignore",
    )


# ----------------------------------------------------------------------------- Retention page


def _clicked_cell(
    matrix: RetentionMatrix, group: str | None
) -> tuple[pd.Timestamp, int, int] | None:
    """The cohort cell clicked in the heatmap (cohort start, column, users), if it is a cell of
    ``matrix`` as shown now (a click from other settings is ignored)."""
    state = st.session_state.get(HEATMAP_KEY)
    try:
        points = state["selection"]["points"] if state else []
    except (KeyError, TypeError):
        return None
    counts = matrix.table(group, "count")
    for point in points:
        custom = point.get("customdata")
        if not custom or len(custom) < 2:
            continue
        try:
            cohort, column = pd.Timestamp(custom[0]), int(custom[1])
        except (TypeError, ValueError):
            continue
        if cohort in counts.index and column in counts.columns:
            count = counts.loc[cohort, column]
            if pd.notna(count):
                return cohort, column, int(count)
    return None


def cohort_users(
    info: DatasetInfo,
    matrix: RetentionMatrix,
    chosen: Any,
    group: str,
    seg_run: Run | None,
    names: Mapping[int, str],
) -> None:
    """Under the cohort heatmap: the users of the cell the user clicked (or how to get them),
    exactly those the cell counts under the page's definition (``matrix``: its mode, start and
    return events, cohort dates and day ranges). ``chosen``: the page's :class:`~pages.ui.retention_views.Choices` (breakdown, churn window, top N);
    ``group``: whose cohorts the heatmap shows."""
    if matrix.cells.empty:
        return
    breakdown, churn_after, top_n = chosen.breakdown, int(chosen.churn_after), int(chosen.top_n)
    shown = None if group == ALL_USERS else group
    cell = _clicked_cell(matrix, shown)
    if cell is None:
        st.caption(
            ":material/touch_app: Click a cell of the cohort table to list its users, with a "
            "CSV download."
        )
        return
    cohort, column, count = cell
    period = matrix.period
    names_key = tuple(sorted(names.items()))
    seg_id = seg_run.id if seg_run is not None else None
    by = (breakdown, seg_id or "", top_n, group)  # the matrix counts only grouped users
    selection = Selection(
        cohort=cohort, column=column, mode=matrix.mode, definition=matrix.definition,
        brackets=matrix.brackets,
    )  # fmt: skip
    try:
        users = _users(
            str(workspace().folder), info.id, selection, period, churn_after, seg_id, names_key, by
        )
    except InputError as exc:
        st.info(exc.in_app)
        return
    label = matrix.grid.label(
        int(matrix.cells.loc[matrix.cells["cohort"] == cohort, "cohort_t"].iloc[0])
    )
    d = matrix.definition
    who = "" if shown is None else f" ({group})"
    started = f", started with their first {d.start_event}," if d.start_event else ""
    back = f"who had a {d.return_event}" if d.return_event else "who were active"
    user_list(
        users,
        title=f"Users of the {label} cohort{who}{started} {back} {column_words(matrix, column)}",
        period=period,
        currency=dataset_currency(info.id),
        file_name=f"{_file_part(info.name)}-cohort-{cohort:%Y-%m-%d}-"
        f"{_file_part(matrix.columns[column])}-{matrix.mode}-users.csv",
        key="drill.cohort",
    )
    if matrix.status(shown).loc[cohort, column] == INCOMPLETE:
        st.caption(
            "This cell is not complete yet: the data has not followed all of the cohort through "
            "it, so more users may still come back."
        )
    if len(users) != count:  # should never happen: the same rule and SQL as the cell
        st.warning(f"The table counts {count:,} users here; the list has {len(users):,}.")


# ----------------------------------------------------------------------------- Segments page


def _selection_users(
    info: Any,
    selection: Selection,
    period: str,
    churn_after: int,
    run_id: str,
    names: Names,
    *,
    title: str,
    file_parts: tuple[str, ...],
    key: str,
) -> None:
    """The users of a segment (or a segment x stage) of segmentation ``run_id``, listed with
    their CSV download (an input the data cannot answer is said in words)."""
    folder = str(workspace().folder)
    try:
        period = _resolved_period(folder, info.id, period) or period
        users = _users(folder, info.id, selection, period, churn_after, run_id,
                       tuple(sorted(names.items())))  # fmt: skip
    except InputError as exc:
        st.info(exc.in_app)
        return
    user_list(
        users,
        title=title,
        period=period,
        currency=dataset_currency(info.id),
        file_name="-".join(_file_part(part) for part in (info.name, *file_parts)) + "-users.csv",
        key=key,
    )


def segment_users(
    info: DatasetInfo,
    run: Run,
    names: Mapping[int, str],
    profile: pd.DataFrame,
    period: str,
    churn_after: int,
) -> None:
    """Under the segment profile: the users of the segment whose row the user clicked
    (``period``, ``churn_after``: the Retention page's, for the stage and active periods)."""
    state = st.session_state.get(PROFILE_KEY)
    try:
        rows = list(state["selection"]["rows"]) if state else []
    except (KeyError, TypeError):
        rows = []
    if not rows or rows[0] >= len(profile):
        st.caption(
            ":material/touch_app: Click a segment's row (the box at its left) to list its "
            "users, with a CSV download."
        )
        return
    segment = int(profile["segment"].iloc[rows[0]])
    name = segment_name(names, segment)
    _selection_users(info, Selection(segment=segment), period, churn_after, run.id, names,
                     title=f"Users of {name}", file_parts=(name,), key="drill.segment")  # fmt: skip


# ----------------------------------------------------------------------------- Strategies page


def stage_count_table(table: pd.DataFrame, period: str | None) -> pd.DataFrame:
    """Users now per segment (rows) and stage (columns, lifecycle order), from a strategy
    table (``segment, label, stage, users``); the index is the segment number."""
    stages = sorted(table["stage"].astype(str).unique(), key=stage_rank)
    wide = table.pivot_table(
        index=["segment", "label"], columns="stage", values="users", aggfunc="sum", fill_value=0
    ).reindex(columns=stages, fill_value=0)
    wide = wide.reset_index(level="label").rename(columns={"label": "Segment"})
    wide.columns = ["Segment", *[stage_word(s) for s in stages]]
    return wide.astype({c: "int64" for c in wide.columns[1:]})


def stage_users(
    info: DatasetInfo,
    strategy_table: pd.DataFrame,
    *,
    seg_run: Run,
    names: Mapping[int, str],
    period: str,
    churn_after: int,
    key: str = STAGES_KEY,
    list_key: str = "drill.stage",
    caption: str = "Users per segment and stage at the end of the data.",
) -> None:
    """A segment × stage table of how many users stand where now (``strategy_table``: one row
    per ``segment, label, stage`` with its ``users``); click a count to list them."""
    if strategy_table.empty or "stage" not in strategy_table:
        return
    counts = stage_count_table(strategy_table, period)
    st.subheader("Who is where now")
    st.caption(f"{caption} Click a number to list those users, with a CSV download.")
    event = st.dataframe(
        counts,
        hide_index=True,
        on_select="rerun",
        selection_mode="single-cell",
        key=key,
        column_config={
            c: st.column_config.NumberColumn(c, format="%d", help=f"Users {c} now.")
            for c in counts.columns[1:]
        },
    )
    cells = list(event.selection.get("cells", [])) if event else []
    if not cells:
        return
    row, column = cells[0]
    if column == "Segment" or row >= len(counts):
        return
    segment = int(counts.index[row])
    stage = next(s for s in STAGE_ORDER if stage_word(s) == column)
    name = segment_name(names, segment)
    _selection_users(info, Selection(segment=segment, stage=stage), period, churn_after,
                     seg_run.id, names, title=f"{name}: users {stage_word(stage)} now",
                     file_parts=(name, stage), key=list_key)  # fmt: skip


# ----------------------------------------------------------------------------- Policy page


@st.cache_data(max_entries=8, show_spinner="Finding each user's stage now…")
def _stage_counts(
    folder: str, dataset_id: str, period: str, churn_after: int, run_id: str, names: Names
) -> pd.DataFrame:
    """Users now per segment and stage: ``segment, label, stage, users``."""
    ws = workspace()
    users = user_stage_table(ws, dataset_id, period, churn_after)
    assignments = ws.load_run(run_id).artifacts["assignments"][["user_id", "segment"]]
    counts = stage_counts(users, assignments.assign(user_id=assignments["user_id"].astype(str)))
    labels = dict(names)
    return counts.assign(label=[segment_name(labels, int(s)) for s in counts["segment"]])


def policy_stage_users(
    info: DatasetInfo,
    *,
    seg_run: Run,
    names: Mapping[int, str],
    period: str,
    churn_after: int,
) -> None:
    """Under the policy: users per segment and stage now (the states the policy acts on), a
    click on a count listing them, as on the Strategies page (``period``, ``churn_after``: the
    policy's)."""
    folder = str(workspace().folder)
    try:
        period = _resolved_period(folder, info.id, period) or period
        counts = _stage_counts(folder, info.id, period, churn_after, seg_run.id,
                               tuple(sorted(names.items())))  # fmt: skip
    except InputError as exc:
        st.info(exc.in_app)
        return
    stage_users(
        info, counts, seg_run=seg_run, names=names, period=period, churn_after=churn_after,
        key=POLICY_STAGES_KEY, list_key="drill.policy_stage",
        caption="Users per segment and stage at the end of the data: the states the policy "
        "picks an action for.",
    )  # fmt: skip
