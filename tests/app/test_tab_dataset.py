"""The dataset a tab shows stays that tab's (issue 16): across page moves, refreshes, and whatever
another tab picks; a new session opens on the person's last choice."""

from __future__ import annotations

import pytest

from tests.app.conftest import ROOT


@pytest.fixture
def two_datasets(app_workspace, planted_dataset):
    from retention.samples import SAMPLES, load_sample

    newest = load_sample(app_workspace, SAMPLES[0])
    return newest, planted_dataset  # a new session without a last pick opens the newest


def _tab(dataset: str | None = None):
    """A browser tab: a new session, opened on ``?dataset=`` when given (a link, a refresh)."""
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    if dataset:
        at.query_params["dataset"] = dataset
    return at.run()


def _shown(at) -> str:
    """The tab's dataset (AppTest draws app.py's sidebar on a session's first run only)."""
    return at.session_state["dataset_id"]


def _pick(at, dataset: str) -> None:
    """The user picks ``dataset`` in the sidebar."""
    at.selectbox(key="sidebar.dataset").set_value(dataset).run()


def _url_dataset(at) -> str | None:
    value = at.query_params.get("dataset")
    return value[0] if isinstance(value, list) else value


def _move(at, page: str):
    """Move to another page as the browser's menu does: the URL loses its parameters."""
    at.switch_page(page)
    at.query_params.clear()
    return at.run()


def test_a_tab_keeps_its_dataset_when_another_tab_picks_one(two_datasets):
    first, second = two_datasets
    tab1 = _tab(first)  # opened from a link (or refreshed) on the first dataset
    assert _shown(tab1) == first
    assert tab1.selectbox(key="sidebar.dataset").value == first

    tab2 = _tab()
    _pick(tab2, second)
    assert _shown(tab2) == second
    assert app_workspace_last(tab2) == second  # the person's last pick is now the second one

    for page in ("pages/2_segments.py", "pages/3_retention.py", "pages/1_data.py"):
        _move(tab1, page)  # (AppTest runs the page alone: no sidebar to read here)
        assert not tab1.exception, page
        assert tab1.session_state["dataset_id"] == first, page
        assert _url_dataset(tab1) == first, page  # a refresh here stays on it too

    refreshed = _tab(_url_dataset(tab1))
    assert refreshed.selectbox(key="sidebar.dataset").value == first


def app_workspace_last(at) -> str | None:
    import os

    from retention.workspace import Workspace

    return Workspace(os.environ["RETENTION_WORKSPACE"]).get_meta("ui.last_dataset")


def test_a_new_session_opens_on_the_last_dataset_picked(two_datasets):
    first, second = two_datasets
    tab = _tab()
    _pick(tab, second)
    assert _url_dataset(tab) == second
    _pick(_tab(), first)  # another tab
    assert _shown(tab) == second
    assert _shown(_tab()) == first
    # Opening a link to another dataset shows it in that tab, without changing the last pick.
    assert _shown(_tab(second)) == second
    assert _shown(_tab()) == first
