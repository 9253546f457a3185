"""Retention Studio: the app's entry point, a router with the shared sidebar.

``st.navigation`` over the pages in ``pages/`` picks the page from the URL; the sidebar (the
workspace and the dataset picker) is drawn once here for every page; then the page runs.
"""

from __future__ import annotations

import streamlit as st

from pages.ui.common import dataset_sidebar, ensure_samples, refuse_an_open_server, route

st.set_page_config(page_title="Retention Studio", page_icon=":material/insights:", layout="wide")
refuse_an_open_server()

page = route()
with st.sidebar:
    st.markdown("### :material/insights: Retention Studio")
ensure_samples()
dataset_sidebar()
page.run()
