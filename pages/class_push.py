"""The server tells a follower's page that the class moved, instead of the page asking every second.

Each dashboard process keeps one watcher thread while it serves followers. At the end of each full
run of a follower's lecture page, `mark` records what that page drew (its stop, the question state,
whether it follows). Ten times a second the watcher reads each class it has followers of (one small
SQLite read per class: the class lives in the shared store, so a move made on another replica shows
here too) and, for every page `classroom.behind` says is behind, asks Streamlit to run that
session's page again, the way Streamlit reruns a page whose source file was saved
(`AppSession.request_rerun` with the session's last client state, on the server's event loop).
Every few seconds it also reports those followers present to the class (the lecturer's count).

Streamlit has no public call for "rerun that other session", so this uses its runtime's session
manager (Streamlit 1.67). Where that is missing (an AppTest, another Streamlit), `available()` is
False and the page's own poll (`class_views.follow`) does the work alone, once a second as before.
With the push, a follower's page keeps only a slow timer of its own (`poll_every`).
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
SEEN_EVERY_S = 4.0       # how often the watcher reports its followers present (FOLLOWING_S counts them)
BOARD_EVERY_S = 2.0      # how often it looks at the class boards its followers' pages show
POLL_S = 1.0             # a follower's poll where the server cannot push
POLL_WITH_PUSH_S = 30.0  # beside the push: a slow timer, for a reconnect and as a safety net (poll_every)
LOST_END_S = 1.0         # a tick this soon after a full run ended may have cost it its end (lost_end)


@dataclass(frozen=True)
class Mark:
    """What one session's lecture page last drew to its end."""

    code: str
    store: cr.ClassStore
    student: str                                # the student's id in the class (the app's session id)
    page: str                                   # the page's script hash: a session on another page is dropped
    following: bool
    stop: str
    question: tuple[int | None, bool] | None
    at: float                                   # when it was drawn (time.monotonic)
    board: tuple[str, tuple] | None = None      # the class board it drew: (its stop, its signature)
    board_now: Callable[[str, str], tuple] | None = None    # a board's signature now, from (code, stop)


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
    """Seconds between a follower page's own polls: once a second where the server cannot push;
    beside the push, whose watcher does the work (moves, questions, the end, the class board,
    presence), every POLL_WITH_PUSH_S. That slow timer stays for two reasons: Streamlit's frontend
    reruns a page that reconnects (its replica died, the balancer sent it to another) only if the
    page has a timer, and it backs up a watcher that stopped. Each tick costs a risk too: a tick
    that reaches Streamlit just as a full run has ended starts a new script runner, the server's
    loop then drops the old one's last messages (its last elements and its "finished") while the
    page counts as drawn; `lost_end` notices it. $CONVNETLAB_CLASS_POLL_S sets it (the tests)."""
    override = os.environ.get("CONVNETLAB_CLASS_POLL_S")
    if override:
        return max(0.5, float(override))
    return POLL_WITH_PUSH_S if available() else POLL_S


def lost_end(drawn_at: float | None, now: float) -> bool:
    """Whether a tick of a follower's poll, run at `now` (time.monotonic), came so soon after the
    page's last full run ended (`drawn_at`) that the run's end may never have reached the browser
    (see `poll_every`): the page is then drawn again. Only beside the push, whose ticks are rare;
    the one-second poll would redraw every page after every move."""
    return available() and drawn_at is not None and now - drawn_at < LOST_END_S


def due(marks: dict[str, Mark], states: dict[str, cr.ClassState | None], asked: dict[str, float],
        running: Callable[[str], bool], now: float, boards: frozenset[str] = frozenset()) -> list[str]:
    """The sessions to ask for a redraw now: behind their class (`classroom.behind`) or showing a class
    board that changed (`boards`), not in the middle of a run (a request would cut it short), and not
    already asked since they last drew, unless that was RETRY_S ago (the run it started was cut
    short or lost)."""
    out = []
    for sid, m in marks.items():
        stt = states.get(m.code)
        if stt is None or not (cr.behind(stt, m.following, True, m.stop, m.question) or sid in boards):
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
        self._seen_at = 0.0
        self._boards_at = 0.0
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
        if now - self._seen_at > SEEN_EVERY_S:
            self._seen_at = now
            _report_present(live)
        boards: frozenset[str] = frozenset()
        if now - self._boards_at > BOARD_EVERY_S:
            self._boards_at = now
            boards = _boards_changed(live)
        for sid in due(live, states, self._asked, lambda s: _running(sessions[s]), now, boards):
            self._asked[sid] = now
            _rerun(sessions[sid], lambda sid=sid, now=now: self._not_asked(sid, now))

    def _not_asked(self, sid: str, at: float) -> None:
        """The ask made at `at` found the session busy: the next tick asks again."""
        with self._lock:
            if self._asked.get(sid) == at:
                del self._asked[sid]


def _report_present(live: dict[str, Mark]) -> None:
    """The followers whose pages this process serves are present (one write per class)."""
    by_class: dict[str, tuple[cr.ClassStore, dict[str, bool]]] = {}
    for m in live.values():
        by_class.setdefault(m.code, (m.store, {}))[1][m.student] = m.following
    for code, (store, following) in by_class.items():
        try:
            store.seen_many(code, following)
        except sqlite3.Error:                    # the store busy: the next report, in SEEN_EVERY_S
            pass


def _boards_changed(live: dict[str, Mark]) -> frozenset[str]:
    """The pages whose class board changed since they drew it (a run joined it or ended); each board
    is read once, however many pages show it."""
    now: dict[tuple[str, str], tuple | None] = {}
    out = set()
    for sid, m in live.items():
        if m.board is None or m.board_now is None:
            continue
        key = (m.code, m.board[0])
        if key not in now:
            try:
                now[key] = m.board_now(*key)
            except Exception:  # noqa: BLE001 - a store or a runner that cannot answer now: the next look
                now[key] = None
        if now[key] is not None and now[key] != m.board[1]:
            out.add(sid)
    return frozenset(out)


def _running(session: Any) -> bool:
    from streamlit.runtime.app_session import AppSessionState

    return session._state == AppSessionState.APP_IS_RUNNING


def _rerun(session: Any, busy: Callable[[], None]) -> None:
    """Runs the session's page again with its last client state (its page and query), as Streamlit
    does when a page's source is saved; on the server's event loop.

    Only a session with no script runner: one that exists is running or about to run (a tick of the
    page's poll, a click, whose start the loop has not heard of yet), and Streamlit would stop it and
    start another beside it (fast reruns); `busy` is told instead, and the next tick asks again."""
    def ask() -> None:
        if session._scriptrunner is not None:
            busy()
            return
        session.request_rerun(session._client_state)

    session._event_loop.call_soon_threadsafe(ask)


WATCHER = Watcher()


def mark(code: str, store: cr.ClassStore, student: str, following: bool, stop: str,
         question: tuple[int | None, bool] | None, board: tuple[str, tuple] | None = None,
         board_now: Callable[[str, str], tuple] | None = None) -> None:
    """At the end of a follower's full run: what it drew (see `Mark`)."""
    if not available():
        return
    from streamlit.runtime.scriptrunner import get_script_run_ctx

    ctx = get_script_run_ctx()
    if ctx is None:
        return
    WATCHER.mark(ctx.session_id, Mark(code, store, student, ctx.page_script_hash, following, stop, question,
                                      time.monotonic(), board, board_now))


def forget() -> None:
    """This session follows no class any more."""
    from streamlit.runtime.scriptrunner import get_script_run_ctx

    ctx = get_script_run_ctx()
    if ctx is not None:
        WATCHER.forget(ctx.session_id)
