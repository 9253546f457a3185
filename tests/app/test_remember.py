"""A remembered widget keeps its value across a refresh (a new session) and a restart."""

from __future__ import annotations


def _script():
    import streamlit as st

    from pages.ui.common import remember

    st.slider("Discount", 0.0, 1.0, key=remember("test.gamma", 0.9))
    st.selectbox("Period", ["auto", "week", "month"], key=remember("test.period", "auto"))
    st.write(f"gamma={st.session_state['test.gamma']}")


def _app():
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_function(_script, default_timeout=60)
    at.run()
    return at


def test_a_new_session_gets_the_last_values(app_workspace):
    first = _app()
    assert first.slider(key="test.gamma").value == 0.9
    assert first.selectbox(key="test.period").value == "auto"
    assert not first.exception
    first.slider(key="test.gamma").set_value(0.5).run()
    first.selectbox(key="test.period").set_value("week").run()
    assert "gamma=0.5" in first.markdown[0].value

    refreshed = _app()  # a refresh is a new session on the same workspace
    assert refreshed.slider(key="test.gamma").value == 0.5
    assert refreshed.selectbox(key="test.period").value == "week"
    assert not refreshed.exception
    assert not refreshed.warning  # no "default value set via the Session State API" warning


def test_values_live_in_the_workspace(app_workspace):
    at = _app()
    at.slider(key="test.gamma").set_value(0.25).run()
    assert app_workspace.get_meta("ui.setting.test.gamma") == "0.25"


def _table_script():
    import pandas as pd
    import streamlit as st

    from pages.ui.common import keep_table, remembered_table

    actions = st.session_state.get("actions", ["discount", "engagement"])
    default = pd.DataFrame({"action": actions, "cost": [0.2] * len(actions)})
    start = remembered_table("test.actions", default, fixed="action")
    st.write(f"costs={list(start['cost'])} dtype={start['cost'].dtype}")
    if st.button("edit"):  # stands in for the user's edit in the data editor
        keep_table("test.actions", start.assign(cost=[0.5] * len(start)))


def _table_app(actions=None):
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_function(_table_script, default_timeout=60)
    if actions is not None:
        at.session_state["actions"] = actions
    at.run()
    return at


def test_an_edited_table_comes_back_after_a_refresh(app_workspace):
    first = _table_app()
    assert "costs=[0.2, 0.2]" in first.markdown[0].value
    first.button[0].click().run()
    refreshed = _table_app()  # a new session
    assert "costs=[0.5, 0.5] dtype=float64" in refreshed.markdown[0].value
    # A table saved for other actions (another campaign log) is not forced on this one.
    other = _table_app(actions=["discount", "coupon"])
    assert "costs=[0.2, 0.2]" in other.markdown[0].value
