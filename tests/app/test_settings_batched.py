"""A page run saves its kept settings in one workspace write (issue 22).

Every setting :func:`pages.ui.common.remember` keeps was one write transaction of its own, and a
first visit to the Retention page keeps about ten: five sessions opening it at once queued 56
writes for the workspace's one writer (``bench/load.py``'s write log), each page waiting its
turn. The router (``app.py``) now runs the page inside :func:`settings_saved_together`, which
saves a run's settings together at the run's end: the same keys and values, one write.
"""

from __future__ import annotations

import json

import pytest

from tests.app.conftest import make_app


@pytest.fixture
def meta_writes(monkeypatch):
    """Every write of kept settings, as (how, keys): one entry per write transaction."""
    from retention.workspace import Workspace

    seen: list[tuple[str, list[str]]] = []
    set_meta, set_metas = Workspace.set_meta, Workspace.set_metas

    def one(self, key, value):
        if key.startswith("ui.setting."):
            seen.append(("set_meta", [key]))
        return set_meta(self, key, value)

    def many(self, items):
        if any(k.startswith("ui.setting.") for k in items):
            seen.append(("set_metas", sorted(items)))
        return set_metas(self, items)

    monkeypatch.setattr(Workspace, "set_meta", one)
    monkeypatch.setattr(Workspace, "set_metas", many)
    return seen


def _script():
    import streamlit as st

    from pages.ui.common import remember, settings_saved_together

    with settings_saved_together():
        st.slider("Discount", 0.0, 1.0, key=remember("test.gamma", 0.9))
        st.selectbox("Period", ["auto", "week", "month"], key=remember("test.period", "auto"))
        weeks = remember("test.weeks", 4)
        remember("test.weeks", 4)  # asked twice in one run: the value kept for the run's end
        st.number_input("Weeks", 1, 52, key=weeks)
        if st.session_state["test.period"] == "month":
            st.stop()  # the run ends early: what it kept is saved all the same
    st.write(f"gamma={st.session_state['test.gamma']}")


def _app():
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_function(_script, default_timeout=60)
    at.run()
    return at


def _kept(ws) -> dict[str, object]:
    return {k.removeprefix("ui.setting."): json.loads(v) for k, v in ws.meta_items("ui.setting.").items()}  # fmt: skip


def test_a_run_saves_what_it_keeps_in_one_write(app_workspace, meta_writes):
    first = _app()
    assert not first.exception
    # hand-computed: the defaults, all three, in one write
    assert meta_writes == [("set_metas", ["ui.setting.test.gamma", "ui.setting.test.period",
                                          "ui.setting.test.weeks"])]  # fmt: skip
    assert _kept(app_workspace) == {"test.gamma": 0.9, "test.period": "auto", "test.weeks": 4}

    meta_writes.clear()
    first.slider(key="test.gamma").set_value(0.5).run()
    assert meta_writes == [("set_metas", ["ui.setting.test.gamma"])]  # only what changed
    first.number_input(key="test.weeks").set_value(6).run()
    first.selectbox(key="test.period").set_value("month").run()  # this run stops early
    assert not first.exception
    assert _kept(app_workspace) == {"test.gamma": 0.5, "test.period": "month", "test.weeks": 6}

    meta_writes.clear()
    refreshed = _app()  # a new session reads them back and writes nothing
    assert refreshed.slider(key="test.gamma").value == 0.5
    assert refreshed.selectbox(key="test.period").value == "month"
    assert refreshed.number_input(key="test.weeks").value == 6
    assert meta_writes == []


def test_the_router_saves_a_page_runs_settings_together(app_workspace, meta_writes):
    at = make_app()  # app.py's run: the shared sidebar and the Data page
    assert not at.exception
    assert meta_writes, "the Data page keeps a setting on its first run"
    assert all(how == "set_metas" for how, _ in meta_writes), meta_writes
