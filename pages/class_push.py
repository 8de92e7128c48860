"""The server tells a follower's page that the class moved, instead of the page asking every second.

Each dashboard process keeps one watcher thread while it serves followers. At the end of each full
run of a follower's lecture page, `mark` records what that page drew (its stop, the question state,
whether it follows). Ten times a second the watcher reads each class it has followers of (one small
SQLite read per class: the class lives in the shared store, so a move made on another replica shows
here too) and, for every page `classroom.behind` says is behind, asks Streamlit to run that
session's page again, the way Streamlit reruns a page whose source file was saved
(`AppSession.request_rerun` with the session's last client state, on the server's event loop).

Streamlit has no public call for "rerun that other session", so this uses its runtime's session
manager (Streamlit 1.67). Where that is missing (an AppTest, another Streamlit), `available()` is
False and the page's own poll (`class_views.follow`) does the work alone, once a second as before;
with the push on, the poll stays as a slower safety net (`poll_every`).
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

from core import classroom as cr

_LOG = logging.getLogger(__name__)
WATCH_EVERY_S = 0.1      # how often the watcher reads each class it has followers of
RETRY_S = 3.0            # a page asked to redraw that has not drawn since is asked again after this
PAGE_SETTLES_S = 2.0     # a marked session whose last page is another one this long after: it left
POLL_S = 1.0             # a follower's poll without the push
POLL_WITH_PUSH_S = 3.0   # with it: the poll only reports presence, checks the board and backs the push up


@dataclass(frozen=True)
class Mark:
    """What one session's lecture page last drew to its end."""

    code: str
    store: cr.ClassStore
    page: str                                   # the page's script hash: a session on another page is dropped
    following: bool
    stop: str
    question: tuple[int | None, bool] | None
    at: float                                   # when it was drawn (time.monotonic)


def enabled() -> bool:
    """$CONVNETLAB_CLASS_PUSH=0 turns the push off (the benchmark compares both in one run)."""
    return os.environ.get("CONVNETLAB_CLASS_PUSH", "1") != "0"


def _session_manager() -> Any | None:
    try:
        from streamlit.runtime import Runtime

        return Runtime.instance()._session_mgr if Runtime.exists() else None
    except Exception:  # noqa: BLE001 - another Streamlit: the poll does the work
        return None


def available() -> bool:
    """Whether this process can push: a real Streamlit server (not AppTest) with the push enabled,
    whose watcher has not failed (a Streamlit whose internals moved: the pages poll every second)."""
    return enabled() and not WATCHER.failed and _session_manager() is not None


def poll_every() -> float:
    """Seconds between a follower page's own polls."""
    override = os.environ.get("CONVNETLAB_CLASS_POLL_S")
    if override:
        return max(0.5, float(override))
    return POLL_WITH_PUSH_S if available() else POLL_S


def due(marks: dict[str, Mark], states: dict[str, cr.ClassState | None], asked: dict[str, float],
        running: Callable[[str], bool], now: float) -> list[str]:
    """The sessions to ask for a redraw now: behind their class (`classroom.behind`), not in the
    middle of a run (a request would cut it short), and not already asked since they last drew,
    unless that was RETRY_S ago (the run it started was cut short or lost)."""
    out = []
    for sid, m in marks.items():
        stt = states.get(m.code)
        if stt is None or not cr.behind(stt, m.following, True, m.stop, m.question):
            continue
        last = asked.get(sid)
        if last is not None and last > m.at and now - last < RETRY_S:
            continue
        if not running(sid):
            out.append(sid)
    return out


class Watcher:
    """One per process: the marks of the followers it serves and the thread that pushes to them."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._marks: dict[str, Mark] = {}
        self._asked: dict[str, float] = {}
        self._thread: threading.Thread | None = None
        self.failed = False

    def mark(self, sid: str, m: Mark) -> None:
        with self._lock:
            self._marks[sid] = m
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="class-push", daemon=True)
                self._thread.start()

    def forget(self, sid: str) -> None:
        with self._lock:
            self._marks.pop(sid, None)
            self._asked.pop(sid, None)

    def _run(self) -> None:
        while True:
            time.sleep(WATCH_EVERY_S)
            mgr = _session_manager()
            with self._lock:
                marks = dict(self._marks)
            if mgr is None or not marks:
                if not marks:
                    with self._lock:
                        if not self._marks:
                            self._thread = None
                            return
                continue
            try:
                self._tick(mgr, marks)
            except Exception:  # noqa: BLE001 - Streamlit's internals moved: stop, the pages poll each second
                _LOG.warning("The class push stopped; followers' pages poll once a second instead.", exc_info=True)
                self.failed = True
                with self._lock:
                    self._marks.clear()
                    self._thread = None
                return

    def _tick(self, mgr: Any, marks: dict[str, Mark]) -> None:
        sessions = {}
        now = time.monotonic()
        for sid, m in marks.items():
            info = mgr.get_active_session_info(sid)
            if info is None:
                self.forget(sid)                                  # the tab closed
            elif info.session._client_state.page_script_hash == m.page:
                sessions[sid] = info.session
            elif now - m.at > PAGE_SETTLES_S:
                self.forget(sid)                                  # it went to another page
            # else: the run that marked has ended, its client state is not yet saved: next tick
        states: dict[str, cr.ClassState | None] = {}
        for m in {m.code: m for sid, m in marks.items() if sid in sessions}.values():
            try:
                states[m.code] = m.store.state(m.code)
            except (cr.ClassError, sqlite3.Error):      # gone, or the store busy: read it the next tick
                states[m.code] = None
        live = {sid: marks[sid] for sid in sessions}
        for sid in due(live, states, self._asked, lambda s: _running(sessions[s]), now):
            self._asked[sid] = now
            _rerun(sessions[sid])


def _running(session: Any) -> bool:
    from streamlit.runtime.app_session import AppSessionState

    return session._state == AppSessionState.APP_IS_RUNNING


def _rerun(session: Any) -> None:
    """Runs the session's page again with its last client state (its page and query), as Streamlit
    does when a page's source is saved, on the server's event loop."""
    session._event_loop.call_soon_threadsafe(lambda: session.request_rerun(session._client_state))


WATCHER = Watcher()


def mark(code: str, store: cr.ClassStore, following: bool, stop: str,
         question: tuple[int | None, bool] | None) -> None:
    """At the end of a follower's full run: what it drew (see `Mark`)."""
    if not available():
        return
    from streamlit.runtime.scriptrunner import get_script_run_ctx

    ctx = get_script_run_ctx()
    if ctx is None:
        return
    WATCHER.mark(ctx.session_id, Mark(code, store, ctx.page_script_hash, following, stop, question,
                                      time.monotonic()))


def forget() -> None:
    """This session follows no class any more."""
    from streamlit.runtime.scriptrunner import get_script_run_ctx

    ctx = get_script_run_ctx()
    if ctx is not None:
        WATCHER.forget(ctx.session_id)
