"""Retention Studio: the app's entry point, a router with the shared sidebar."""

from __future__ import annotations

import streamlit as st

from pages.common import PAGE_TITLES, PAGES, ROOT, dataset_sidebar, ensure_samples

st.set_page_config(page_title="Retention Studio", page_icon=":material/insights:", layout="wide")

navigation = st.navigation(
    [
        st.Page(PAGES[name], title=title, icon=icon, default=name == "data")
        for name, (title, icon) in PAGE_TITLES.items()
        if (ROOT / PAGES[name]).exists()
    ]
)
with st.sidebar:
    st.markdown("### :material/insights: Retention Studio")
ensure_samples()
dataset_sidebar()
navigation.run()
