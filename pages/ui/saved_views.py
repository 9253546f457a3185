"""Saved views on a page: save the page's settings by name, reopen them by a link
(``?view=<name>``), list and delete them. The views are kept in the workspace
(:mod:`retention.saved_views`).

A page's settings are the widgets it keeps with :func:`pages.ui.common.remember` under its own
key prefix (``retention.`` for the Retention page), so a setting the page adds later is saved
with the views too, with nothing to list here. Call :func:`saved_views` near the top of the
page, before its widgets: a view opened by a link must set the widgets before they are drawn.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

import pandas as pd
import streamlit as st

from pages.ui.common import set_current_dataset, workspace
from retention.errors import InputError
from retention.periods import PERIODS
from retention.saved_views import (
    MAX_NAME,
    SavedView,
    delete_view,
    list_views,
    load_view,
    save_view,
)
from retention.words import counted

QUERY = "view"  # the link's query parameter
KEEP_OPEN = "saved_views.keep_open"  # the box stays open once the user has used it
REMEMBERED = "ui.setting."  # workspace meta prefix of the values remember() keeps (common.py)
#: How a setting is named in a view's summary, in the page's order (others: the key's last
#: part, in words, after these).
SETTING_WORDS = {
    "retention.period": "period",
    "retention.churn_after": "churn window",
    "retention.breakdown": "broken down by",
    "retention.top_n": "values shown",
    "retention.mode": "counted as back",
    "retention.brackets": "ranges of days",
    "retention.measure": "show",
    "retention.start_event": "starts with the first",
    "retention.return_event": "back with any",
    "retention.cohort_dates": "cohorts that started",
    "retention.cohort_group": "cohorts of",
}
#: Settings kept per dataset: ``<key>.<dataset id>`` (a view keeps its own dataset's).
PER_DATASET = ("retention.cohort_dates",)
#: How a value reads in a summary (values not listed are shown as they are).
VALUE_WORDS = {
    "auto": "automatic",
    "none": "nothing (all users)",
    "segments": "segments",
    "classic": "in that period",
    "unbounded": "in that period or later",
    "brackets": "within ranges of days",
    "percent": "% of cohort",
    "count": "number of users",
    "(any)": "any event",
}
#: Settings kept only to carry another one over (not worth a word in a summary).
QUIET = {"retention.churn_unit", "retention.churn_days", "retention.churn_in"}


def _simple(value: Any) -> bool:
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError):
        return False
    return not isinstance(value, dict)


def _per_dataset(key: str) -> str | None:
    """The dataset id of a per-dataset setting's key (None for other settings)."""
    for base in PER_DATASET:
        if key.startswith(base + "."):
            return key.removeprefix(base + ".")
    return None


def page_settings(prefix: str, dataset_id: str | None = None) -> dict[str, Any]:
    """The current values of the page's kept settings (keys starting with ``prefix``); of the
    settings kept per dataset, only ``dataset_id``'s."""
    ws = workspace()
    keys = [k.removeprefix(REMEMBERED) for k in ws.meta_items(REMEMBERED + prefix)]
    keys = [k for k in keys if _per_dataset(k) in (None, dataset_id)]
    out = {}
    for key in keys:
        if key in st.session_state and _simple(st.session_state[key]):
            value = st.session_state[key]
            out[key] = list(value) if isinstance(value, tuple) else value
    return out


def summary(view: SavedView) -> str:
    """A view's settings in one line, in words: "period: automatic · churn window: 4 weeks · …"."""
    settings = view.settings
    order = list(SETTING_WORDS)

    def rank(key: str) -> tuple[int, str]:
        of = _per_dataset(key)
        base = key.removesuffix(f".{of}") if of is not None else key
        return (order.index(base) if base in order else len(order), key)

    keys = sorted(settings, key=rank)
    parts = []
    for key in keys:
        value = settings[key]
        if key in QUIET:
            continue
        if key == "retention.top_n" and settings.get("retention.breakdown") in ("none", "segments"):
            continue  # only a column's breakdown shows its top values
        if key == "retention.brackets" and settings.get("retention.mode") != "brackets":
            continue  # the ranges of days count only in that mode
        of = _per_dataset(key)
        if of is not None and of != view.dataset_id:
            continue
        base = key.removesuffix(f".{of}") if of is not None else key
        word = SETTING_WORDS.get(base, base.rsplit(".", 1)[-1].replace("_", " "))
        if base == "retention.cohort_dates" and isinstance(value, list) and len(value) == 2:
            shown = f"{value[0]} to {value[1]}"
        elif isinstance(value, list):
            shown = ", ".join(map(str, value))
        elif key == "retention.churn_after" and settings.get("retention.churn_unit") in PERIODS:
            shown = counted(int(value), settings["retention.churn_unit"])
        elif key == "retention.breakdown" and value not in VALUE_WORDS:
            shown = f"column {value}"
        else:
            shown = VALUE_WORDS.get(str(value), str(value))
        parts.append(f"{word}: {shown}")
    return " · ".join(parts) or "no settings"


def view_link(page: str, name: str) -> str:
    """The link that reopens a view (absolute when the browser's address is known)."""
    base = st.context.url or page
    return f"{base}?{QUERY}={quote(name, safe='')}"


def _apply(view: SavedView) -> None:
    """Set the page's widgets to the view's settings and show the view's dataset."""
    for key, value in view.settings.items():
        st.session_state[key] = tuple(value) if isinstance(value, list) else value
    ws = workspace()
    if view.dataset_id and view.dataset_id in set(ws.datasets()["id"]):
        set_current_dataset(view.dataset_id)
    st.session_state["saved_views.opened"] = view.name


def _open_from_link(page: str) -> None:
    """Open the view the link names (once: the parameter is then taken off the address)."""
    name = st.query_params.get(QUERY)
    if not name:
        return
    del st.query_params[QUERY]
    view = load_view(workspace(), page, name)
    if view is None:
        st.session_state["saved_views.missing"] = name
        return
    _apply(view)
    st.rerun()  # draw everything (the sidebar's dataset too) with the view's settings


def _save(page: str, prefix: str, dataset_id: str) -> None:
    """Button callback: save the current settings under the typed name."""
    name_key = f"saved_views.{page}.name"
    try:
        view = save_view(
            workspace(),
            page,
            st.session_state.get(name_key, ""),
            page_settings(prefix, dataset_id),
            dataset_id,
        )
    except InputError as exc:
        st.session_state["saved_views.problem"] = exc.in_app
        st.session_state[KEEP_OPEN] = True
        return
    st.session_state["saved_views.saved"] = view.name
    st.session_state[KEEP_OPEN] = True
    st.session_state[name_key] = ""


def _delete(page: str, name: str) -> None:
    delete_view(workspace(), page, name)
    st.session_state["saved_views.deleted"] = name
    st.session_state[KEEP_OPEN] = True


def saved_views(page: str, dataset_id: str, prefix: str | None = None) -> None:
    """The "Saved views" box of ``page`` (short name, also its URL path), and the view a
    ``?view=<name>`` link opens. ``prefix``: the page's settings keys (default ``page + '.'``)."""
    prefix = prefix or f"{page}."
    _open_from_link(page)
    opened = st.session_state.pop("saved_views.opened", None)
    if opened:
        st.success(f"Opened the saved view **{opened}**.", icon=":material/bookmark:")
    missing = st.session_state.pop("saved_views.missing", None)
    if missing:
        st.warning(
            f"There is no saved view called '{missing}' (it may have been deleted). The page "
            "shows your last settings.",
            icon=":material/bookmark_remove:",
        )
    views = list_views(workspace(), page)
    # One label and, once used, open: a rerun (Save, Open, Delete) must not fold the box away
    # with its message and the new link inside.
    with st.expander(
        "Saved views", icon=":material/bookmarks:", expanded=bool(st.session_state.get(KEEP_OPEN))
    ):
        st.caption(
            "Keep these settings under a name, and come back to them later — or send the link "
            "to a colleague who uses this workspace. "
            + (f"{len(views)} saved so far." if views else "None saved yet.")
        )
        left, right = st.columns([3, 1], vertical_alignment="bottom")
        left.text_input(
            "Save the settings below as",
            key=f"saved_views.{page}.name",
            max_chars=MAX_NAME,
            placeholder="e.g. Weekly, 6-week churn",
            help="A name you will recognise. Saving under an existing name replaces that view.",
        )
        right.button(
            "Save view",
            icon=":material/bookmark_add:",
            on_click=_save,
            args=(page, prefix, dataset_id),
            key=f"saved_views.{page}.save",
        )
        problem = st.session_state.pop("saved_views.problem", None)
        if problem:
            st.error(problem, icon=":material/error:")
        saved = st.session_state.pop("saved_views.saved", None)
        if saved:
            st.success(f"Saved the view **{saved}**. Its link is below.", icon=":material/check:")
        deleted = st.session_state.pop("saved_views.deleted", None)
        if deleted:
            st.info(f"Deleted the view **{deleted}**.", icon=":material/delete:")
        names = dict(zip(workspace().datasets()["id"], workspace().datasets()["name"], strict=True))
        for i, view in enumerate(views):
            with st.container(border=True):
                a, b, c = st.columns([5, 1, 1], vertical_alignment="center")
                when = pd.Timestamp(view.saved).strftime("%Y-%m-%d %H:%M") if view.saved else ""
                data = names.get(view.dataset_id or "", "a dataset no longer here")
                a.markdown(f"**{view.name}** · {data}")
                a.caption(f"{summary(view)}" + (f" · saved {when} UTC" if when else ""))
                b.button(
                    "Open",
                    key=f"saved_views.{page}.open.{i}",
                    on_click=_apply,
                    args=(view,),
                    help="Show the page with this view's settings.",
                )
                c.button(
                    "Delete",
                    key=f"saved_views.{page}.delete.{i}",
                    on_click=_delete,
                    args=(page, view.name),
                    icon=":material/delete:",
                    help="Forget this view (its link stops working).",
                )
                a.code(view_link(page, view.name), language=None)
