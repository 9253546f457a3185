"""UI helpers every page uses: the workspace, the current dataset and segmentation, errors.

Pages stay short: they read the session, call the library, render, and turn an
:class:`~retention.errors.InputError` into ``st.error`` + ``st.stop`` via :func:`stop_with_error`.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd
import streamlit as st

from pages.ui.people import people_folder, people_sidebar, sign_in_on
from pages.ui.upload_fix import keep_upload_answers
from retention.auth import workspace_limit_bytes
from retention.errors import InputError
from retention.private import restrict_umask
from retention.results import display_names
from retention.samples import ensure_samples as load_samples
from retention.samples import samples_loaded
from retention.serve import ALLOW_OPEN_ENV, exposure_problem
from retention.workspace import DatasetInfo, Run, Workspace

# A file chosen just as a page reruns must not be lost (issue 22): see pages/ui/upload_fix.py.
keep_upload_answers()

ROOT = Path(__file__).resolve().parents[2]
#: The app's pages in menu order: short name -> (file, title, icon). The first is the default.
PAGES: dict[str, tuple[str, str, str]] = {
    "data": ("pages/1_data.py", "Data", ":material/upload_file:"),
    "segments": ("pages/2_segments.py", "Segments", ":material/bubble_chart:"),
    "retention": ("pages/3_retention.py", "Retention", ":material/monitoring:"),
    "policy": ("pages/4_policy.py", "Policy", ":material/model_training:"),
    "strategies": ("pages/5_strategies.py", "Strategies", ":material/task_alt:"),
    "test": ("pages/6_test.py", "Test", ":material/science:"),
}
_LAST_DATASET = "ui.last_dataset"
_SETTING = "ui.setting."  # workspace meta key prefix of a remembered widget value
_CURRENCY = "dataset.currency."  # workspace meta key prefix of a dataset's currency


_routed = False  # True once app.py has routed a run in this process (see _use_the_router)
#: This tab's dataset (kept in the session and in the URL's ``?dataset=``).
_TAB_DATASET = "dataset_id"
#: The settings :func:`remember` keeps for the end of this thread's page run, inside
#: :func:`settings_saved_together` (None outside it): {id(workspace): (workspace, {key: value})}.
_pending = threading.local()


FAVICON = ROOT / "pages" / "ui" / "favicon.png"


def set_tab_icon() -> None:
    """The browser tab's title and icon: a file of ours. Until a run has set it, the browser
    takes the current page's menu icon, and a ":material/..." icon is fetched from a font CDN;
    the app promises to run offline, so every ``st.navigation`` call is preceded by this (see
    :func:`app_pages`)."""
    st.set_page_config(page_title="Retention Studio", page_icon=str(FAVICON), layout="wide")


def app_pages() -> list[st.Page]:
    """The app's pages, in menu order (a page whose file is absent is left out). Sets the tab
    icon first: every ``st.navigation`` call is given these pages."""
    set_tab_icon()
    return [
        st.Page(file, title=title, icon=icon, default=name == "data")
        for name, (file, title, icon) in PAGES.items()
        if (ROOT / file).exists()
    ]


def route() -> st.Page:
    """The page this run shows, from ``st.navigation`` over :func:`app_pages` (the router in
    ``app.py`` calls this before it draws the shared sidebar)."""
    page = st.navigation(app_pages())
    mark_routed()
    return page


def mark_routed() -> None:
    """Record that ``st.navigation`` has been called in this process (see _use_the_router)."""
    global _routed
    _routed = True


def _use_the_router() -> None:
    """Send a page opened directly by URL on a fresh server through ``app.py``.

    Streamlit treats a ``pages/`` folder beside the entry point as a legacy multipage app until
    ``st.navigation`` has been called once in the process (documented: calling it makes
    Streamlit ignore ``pages/``). Until then a first visit to, say, ``/strategies`` runs that
    page alone, without the router and the shared sidebar. Such a page calls ``st.navigation``
    itself, with the same pages (so the URL keeps its page), and reruns: the rerun goes
    through ``app.py``. Once ``app.py`` has routed a run this never happens again.
    """
    if _routed:
        return
    st.navigation(app_pages(), position="hidden")
    st.rerun()


def refuse_an_open_server() -> None:
    """Stop here when the server listens on a network address without sign-in (and nobody
    passed ``--allow-open``): the same rule as ``python -m retention.serve``, for a server
    started some other way. Files this process writes from now on are private (600/700)."""
    problem = exposure_problem(
        st.get_option("server.address"), allow_open=bool(os.environ.get(ALLOW_OPEN_ENV))
    )
    if problem:
        st.error(problem, icon=":material/lock:")
        st.stop()
    restrict_umask()


def workspace_root() -> Path:
    """The server's workspace folder: ``$RETENTION_WORKSPACE`` or ``workspace`` beside the app.
    Without sign-in it is the workspace; with sign-in it holds one folder per person."""
    return Path(os.environ.get("RETENTION_WORKSPACE") or ROOT / "workspace").resolve()


def workspace_folder() -> str:
    """The folder of the workspace this session works in: the root without sign-in, else the
    signed-in person's own (or the team's, when they chose to look at it). Every cache of the
    app is keyed by it, so nobody gets a result computed on someone else's data."""
    chosen = people_folder(workspace_root())
    return str(workspace_root() if chosen is None else chosen[0])


@st.cache_resource(show_spinner=False)
def _open_workspace(folder: str) -> Workspace:
    return Workspace(folder)


def open_workspace_at(folder: str | Path, read_only: str | None) -> Workspace:
    """The (process-wide, cached) workspace in ``folder``; a person's has their size limit."""
    ws = _open_workspace(str(folder))
    ws.read_only = read_only
    if sign_in_on() and read_only is None and ws.size_limit is None:
        ws.size_limit = workspace_limit_bytes()
    return ws


def workspace() -> Workspace:
    """The (process-wide, cached) workspace this session works in. Every page calls this first."""
    _use_the_router()  # not at import time: a rerun raised mid-import breaks other sessions
    try:
        chosen = people_folder(workspace_root())
        if chosen is None:
            return _open_workspace(str(workspace_root()))
        return open_workspace_at(*chosen)
    except InputError as exc:
        stop_with_error(exc)
        raise  # unreachable: st.stop() raises


def stop_with_error(exc: Exception, hint: str | None = None) -> None:
    """Show a user-facing error and stop the page (never a traceback). An
    :class:`~retention.errors.InputError` speaks in the browser's words (which box to pick a
    column in, not a command-line option)."""
    text = exc.in_app if isinstance(exc, InputError) else str(exc)
    st.error(text + (f"\n\n{hint}" if hint else ""), icon=":material/error:")
    st.stop()


def page_link(name: str, label: str, icon: str | None = None) -> None:
    """A link to another page of the app, by short name (nothing when that page is absent)."""
    file = PAGES[name][0]
    if (ROOT / file).exists():
        st.page_link(file, label=label, icon=icon, query_params=_tab_query())


def _tab_query() -> dict[str, str]:
    """The URL parameters that keep this tab's dataset when it moves to another page."""
    dataset_id = st.session_state.get(_TAB_DATASET)
    return {"dataset": dataset_id} if dataset_id else {}


def _pin_to_tab(dataset_id: str) -> None:
    """Keep ``dataset_id`` as this tab's dataset: in its session (page moves) and in its URL
    (refreshes, a copied link). Moving between pages drops the URL's parameters, so every run
    puts it back; another tab's choice never changes this one's."""
    st.session_state[_TAB_DATASET] = dataset_id
    if st.query_params.get("dataset") != dataset_id:
        st.query_params["dataset"] = dataset_id


def set_current_dataset(dataset_id: str) -> None:
    """Make ``dataset_id`` this tab's dataset and the person's last one (a new session of
    theirs opens on it)."""
    _pin_to_tab(dataset_id)
    ws = workspace()
    if ws.get_meta(_LAST_DATASET) != dataset_id:
        ws.set_meta(_LAST_DATASET, dataset_id)


def current_dataset_id() -> str | None:
    """This tab's dataset: the one it shows (session), the URL's (a refresh, a link), the
    person's last choice (a new session), or the newest. Once found it stays this tab's."""
    ws = workspace()
    ids = list(ws.datasets()["id"])
    if not ids:
        return None
    chosen = next(
        (
            candidate
            for candidate in (
                st.session_state.get(_TAB_DATASET),
                st.query_params.get("dataset"),
                ws.get_meta(_LAST_DATASET),
            )
            if candidate in ids
        ),
        ids[0],
    )
    _pin_to_tab(chosen)
    return chosen


def current_dataset() -> DatasetInfo | None:
    dataset_id = current_dataset_id()
    return workspace().dataset(dataset_id) if dataset_id else None


def require_dataset(*, needs_events: bool = False) -> DatasetInfo:
    """The current dataset, or a pointer to the Data page and a stop. A dataset whose events
    live in Spark (``retention run --engine spark``) gets a note; a page that ``needs_events``
    stops there (issue 15)."""
    info = current_dataset()
    if info is None:
        st.info("There is no dataset yet. Add one on the Data page first.")
        page_link("data", "Go to the Data page", ":material/upload_file:")
        st.stop()
    from retention.engine.routing import spark_events_note

    note = spark_events_note(info.report, needs_events=needs_events)
    if note:
        st.info(note)
        if needs_events:
            st.stop()
    return info


def current_segmentation(dataset_id: str) -> Run | None:
    """The segmentation the user picked for this dataset, or its latest finished one."""
    ws = workspace()
    chosen = st.session_state.get("segmentation_run")
    if chosen:
        try:
            run = ws.load_run(chosen)
        except InputError:
            run = None
        if run is not None and run.dataset_id == dataset_id and run.status == "done":
            return run
    return ws.latest_run("segmentation", dataset_id)


def segment_names(run: Run) -> dict[int, str]:
    """Display names of a segmentation's segments: the user's renames over the computed labels."""
    return display_names(run.artifacts.get("labels"), workspace().segment_names(run.id))


#: The remembered "hide the first-steps overview" choice (see :func:`remember`).
OVERVIEW_HIDDEN = "data.overview_hidden"
#: How many characters of a dataset's name the sidebar's picker shows.
SIDEBAR_NAME_CHARS = 29
#: After the name of a dataset whose events live in Spark, in the dataset pickers.
SPARK_MARK = " (Spark)"


def short_name(name: str, limit: int = SIDEBAR_NAME_CHARS) -> str:
    """``name`` in at most ``limit`` characters, cut at a word boundary with "…" (a single word
    longer than that is cut inside it). Show the full name beside it on hover."""
    name = " ".join(str(name).split())
    if len(name) <= limit:
        return name
    cut = name[: limit - 1]
    space = cut.rfind(" ")
    if name[limit - 1] != " " and space >= limit // 3:  # not already at a word's end
        cut = cut[:space]
    return cut.rstrip(" ,;:-–—·(") + "…"


def dataset_sidebar() -> None:
    """The shared sidebar: the dataset picker, and "About / settings" at the bottom."""
    ws = workspace()
    with st.sidebar:
        datasets = ws.datasets()
        if datasets.empty:
            st.caption("No datasets yet. Add one on the Data page.")
        else:
            ids = list(datasets["id"])
            names = dict(zip(datasets["id"], datasets["name"], strict=True))
            rows = dict(zip(datasets["id"], datasets["rows"], strict=True))
            # The box shows about 30 characters: the name alone, cut at a word boundary; a
            # dataset whose events live in Spark says so (most pages cannot read its events).
            in_spark = set(datasets["id"][datasets["engine"] == "spark"])
            labels = {
                i: short_name(name, SIDEBAR_NAME_CHARS - len(SPARK_MARK)) + SPARK_MARK
                if i in in_spark
                else short_name(name, SIDEBAR_NAME_CHARS)
                for i, name in names.items()
            }
            current = current_dataset_id()
            if st.session_state.get("sidebar.dataset") != current:
                st.session_state["sidebar.dataset"] = current
            st.selectbox(
                "Dataset",
                ids,
                key="sidebar.dataset",
                format_func=labels.__getitem__,
                on_change=lambda: set_current_dataset(st.session_state["sidebar.dataset"]),
                help=f"Now: **{names[current]}** ({rows[current]:,} rows). Everything on every "
                "page is about this dataset. Add datasets on the Data page.",
            )
        people_sidebar()
        about_box(ws)


def about_box(ws: Workspace) -> None:
    """ "About / settings": the version, where the data is kept, the overview back."""
    from retention import __version__

    with st.expander("About / settings", icon=":material/settings:"):
        st.markdown(f"**Retention Studio** {__version__}")
        if sign_in_on():
            st.caption(
                "Everything you add or compute is kept on this server, in your own workspace "
                f"folder `{ws.folder}`: nobody else signed in here sees it."
            )
        else:
            st.caption(
                "Everything you add or compute is kept on this computer, in the workspace folder "
                f"`{ws.folder}`. Another folder: start the app with RETENTION_WORKSPACE set."
            )
        if st.button(
            "Show the first-steps overview",
            key="about.overview",
            on_click=lambda: st.session_state.__setitem__(OVERVIEW_HIDDEN, False),
            help="The five steps of Retention Studio, at the top of the Data page.",
        ):
            st.switch_page(PAGES["data"][0], query_params=_tab_query())


def ensure_samples() -> None:
    """Load the bundled sample datasets into a new workspace (once)."""
    ws = workspace()
    if ws.read_only or samples_loaded(ws):
        return
    with st.spinner("Preparing the sample datasets (first start only)…"):
        try:
            load_samples(ws)
        except InputError as exc:  # a broken sample must not block the app
            st.warning(f"The sample data could not be loaded: {exc.in_app}")


@contextmanager
def settings_saved_together() -> Iterator[None]:
    """Within the block, :func:`remember` saves the values it keeps at the block's end, in one
    workspace write, instead of one write each (also when the block ends by ``st.stop``, a
    rerun or an error). The router wraps every page run in it: a first visit to the Retention
    page keeps about ten settings, and five sessions opening it at once queued 56 single
    writes for the workspace's one writer, each page waiting its turn, up to 0.8 s a write on
    a loaded machine (``bench/load.py``, issue 22). What is saved, and what a later session
    reads back, is the same."""
    if getattr(_pending, "items", None) is not None:  # already inside one
        yield
        return
    _pending.items = {}
    try:
        yield
    finally:
        batches, _pending.items = _pending.items, None
        for ws, items in batches.values():
            ws.set_metas(items)


def remember(key: str, default: Any) -> str:
    """Keep the widget ``key``'s value across pages, refreshes and restarts; returns ``key``.

    Call it just before creating the widget, and create the widget with ``key=key`` and *no*
    value argument (the value comes from ``st.session_state``). The first run of a session
    takes the value last saved in the workspace (or ``default``); every later run saves the
    value the widget holds when it differs from the saved one (at the end of the page run,
    with the run's other settings, inside :func:`settings_saved_together`). Values must be
    JSON (numbers, strings, booleans, lists; a list comes back as a tuple). Not for range
    sliders: without a value argument Streamlit makes a single-value slider.
    """
    ws = _open_workspace(workspace_folder())  # pages have routed through workspace() already
    meta_key = _SETTING + key
    batches = getattr(_pending, "items", None)
    waiting = {} if batches is None else batches.get(id(ws), (ws, {}))[1]
    saved = waiting[meta_key] if meta_key in waiting else ws.get_meta(meta_key)
    if key not in st.session_state:
        value = _decode(saved) if saved is not None else default
        st.session_state[key] = value
    else:
        # Re-assigning keeps a widget's value when the user visits a page without the widget.
        st.session_state[key] = st.session_state[key]
    encoded = json.dumps(st.session_state[key], default=str)
    if encoded != saved:
        if batches is None:
            ws.set_meta(meta_key, encoded)
        else:
            batches.setdefault(id(ws), (ws, {}))[1][meta_key] = encoded
    return key


def remembered_table(key: str, default: pd.DataFrame, fixed: str | None = None) -> pd.DataFrame:
    """The table the data editor ``key`` starts from in this session: the one last saved with
    :func:`keep_table` (a refresh or a restart gets the user's edits back), else ``default``.

    A saved table is used only when it has ``default``'s columns and, with ``fixed`` (a column
    whose values the user cannot change, e.g. the actions of a campaign log), the same values
    there. The start is fixed for the session: the editor applies the session's edits on top of
    it, so feeding it its own output would apply them twice.
    """
    base_key = f"{key}.base"
    if base_key not in st.session_state:
        saved = _open_workspace(workspace_folder()).get_meta(_SETTING + key)
        table = default
        if saved is not None:
            try:
                candidate = pd.DataFrame(json.loads(saved))
            except (ValueError, TypeError):
                candidate = None
            if (
                candidate is not None
                and list(candidate.columns) == list(default.columns)
                and (fixed is None or list(candidate[fixed]) == list(default[fixed]))
            ):
                table = candidate.astype(default.dtypes.to_dict(), errors="ignore")
        st.session_state[base_key] = table
    return st.session_state[base_key]


def keep_table(key: str, table: pd.DataFrame) -> None:
    """Save the data editor ``key``'s current table in the workspace (when it changed)."""
    ws = _open_workspace(workspace_folder())
    encoded = table.to_json(orient="records")
    if encoded != ws.get_meta(_SETTING + key):
        ws.set_meta(_SETTING + key, encoded)


def _decode(text: str) -> Any:
    value = json.loads(text)
    return tuple(value) if isinstance(value, list) else value


def dataset_currency(dataset_id: str) -> str | None:
    """The currency the user set for a dataset's revenue (an ISO code such as "GBP"), if any."""
    return workspace().get_meta(_CURRENCY + dataset_id) or None


def set_dataset_currency(dataset_id: str, currency: str | None) -> None:
    """Set (or clear, with ``None``/"") the currency of a dataset's revenue."""
    workspace().set_meta(_CURRENCY + dataset_id, (currency or "").strip().upper())
