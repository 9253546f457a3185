"""Retention Studio: the app's entry point, a router with the shared sidebar.

``st.navigation`` over the pages in ``pages/`` picks the page from the URL; the sidebar (the
workspace and the dataset picker) is drawn once here for every page; then the page runs. On a
server with sign-in (an ``[auth]`` section in the secrets) nothing of this runs for a visitor
who is not signed in: they get the sign-in page (``pages/ui/people.py``).
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from pages.ui.common import dataset_sidebar, ensure_samples, refuse_an_open_server, route
from pages.ui.people import sign_in_gate

FAVICON = Path(__file__).parent / "pages" / "ui" / "favicon.png"

# The tab icon is a file of ours: a ":material/..." icon would make every browser fetch it from
# a font CDN, and the app promises to run offline.
st.set_page_config(page_title="Retention Studio", page_icon=str(FAVICON), layout="wide")
refuse_an_open_server()
sign_in_gate()  # with sign-in configured: the sign-in page only, until someone signs in

page = route()
# Again after routing: the router's page icon (":material/...") would otherwise become the tab's
# icon on the first page, fetched from a font CDN.
st.set_page_config(page_title="Retention Studio", page_icon=str(FAVICON), layout="wide")
with st.sidebar:
    st.markdown("### :material/insights: Retention Studio")
ensure_samples()
dataset_sidebar()
page.run()
