"""The lecture page's server-wide caches: a stop's prepared panel read from disk once per file
version, a panel computed when a stop was not prepared, and the server's one preparation thread.

They live in a module, not in pages/lecture.py: Streamlit runs a page's file afresh on every run,
and a cache decorator run again reads its function's source again to key it (a measurable part of
each class follower's page run, and every follower's page runs on every move)."""

from __future__ import annotations

import streamlit as st

from core.lecture import prepare as prep
from core.lecture.panels import Panel, stop_panel
from core.lecture.stops import Stop, get


@st.cache_resource(max_entries=64, show_spinner=False)
def _prepared(slug: str, mtime_ns: int) -> Panel | None:
    """A prepared panel read from disk once per file version (read-only: shared by every session)."""
    return prep.load_panel(get(slug))


@st.cache_resource(max_entries=16, show_spinner="Computing this stop (not prepared yet)...")
def computed_panel(slug: str, signature: str) -> Panel:
    """A stop's panel computed now (it was not prepared), once per stop and signature."""
    return stop_panel(get(slug), prep.load_runs(get(slug)) if get(slug).training else None)


def prepared_panel(s: Stop) -> Panel | None:
    """The stop's prepared panel, or None when it was not prepared."""
    path = prep.panel_file(s.slug)
    try:
        return _prepared(s.slug, path.stat().st_mtime_ns)
    except FileNotFoundError:
        return None


@st.cache_resource
def preparation() -> prep.Background:
    """The server's one preparation (a thread, outside every session: a closed tab does not stop it)."""
    return prep.Background()
