"""Cached access to core for every page (Streamlit caches are shared by all users: read-only)."""

from __future__ import annotations

import streamlit as st

from core.analysis import Summary, summarize
from core.device import DeviceInfo, describe_device
from core.weights import WeightsStatus, weights_status


def require_router() -> None:
    """Runs this page through app.py's router even on a fresh server.

    When a server's very first request is a page URL (a lecturer's link such as
    /explorer?arch=alexnet), Streamlit still treats pages/ as a legacy multipage folder and runs
    the page file on its own: no shared layout, every file listed in the sidebar. app.py's
    st.navigation switches that legacy mode off for good; we do the same and rerun, which keeps
    the URL path and query and so lands on the same page through the router. For that the
    legacy mode must find the page too: each page's url_path in app.py is its file name.
    """
    from streamlit.runtime.pages_manager import PagesManager

    if PagesManager.uses_pages_directory:
        PagesManager.uses_pages_directory = False
        st.rerun()


@st.cache_data(max_entries=64, show_spinner="Analysing the architecture...")
def cached_summary(name: str, size: tuple[int, int, int], options: tuple[tuple[str, object], ...]) -> Summary:
    """summarize(), keyed by plain arguments."""
    return summarize(name, size, dict(options))


@st.cache_resource
def device() -> DeviceInfo:
    return describe_device()


@st.cache_data(ttl=60)
def weights() -> list[WeightsStatus]:
    return weights_status()
