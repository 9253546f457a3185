"""Retention Studio: the app's entry point, a router with the shared sidebar.

``st.navigation`` over the pages in ``pages/`` picks the page from the URL; the sidebar (the
workspace and the dataset picker) is drawn once here for every page; then the page runs. On a
server with sign-in (an ``[auth]`` section in the secrets) nothing of this runs for a visitor
who is not signed in: they get the sign-in page (``pages/ui/people.py``).
"""

from __future__ import annotations

import streamlit as st

from pages.ui.common import (
    current_dataset_id,
    dataset_sidebar,
    ensure_samples,
    refuse_an_open_server,
    route,
    set_tab_icon,
    settings_saved_together,
)
from pages.ui.people import sign_in_gate
from pages.ui.segments_ahead import embed_ahead

# The tab icon is a file of ours: a ":material/..." icon would make every browser fetch it from
# a font CDN, and the app promises to run offline (set again before every st.navigation).
set_tab_icon()
refuse_an_open_server()
sign_in_gate()  # with sign-in configured: the sign-in page only, until someone signs in

page = route()
with st.sidebar:
    st.markdown("### :material/insights: Retention Studio")
ensure_samples()
with settings_saved_together():  # the run's kept settings: one workspace write at its end
    dataset_sidebar()
    embed_ahead(current_dataset_id())  # issue 19: the Segments page's embedding, ahead
    page.run()
