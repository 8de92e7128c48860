"""Waiting for a page's jobs in AppTest. AppTest never ticks `run_every` fragments, so a test reruns the
page itself; rerunning it every half second while a run trains cost as much CPU as the training
(a Lab page run is 0.2-0.5 s), and under two test workers it slowed every other test. These helpers
wait on the runner instead (a status read) and rerun the page when one of the session's jobs ended."""

from __future__ import annotations

import time
from typing import Callable

from streamlit.testing.v1 import AppTest


def _active(sid: str) -> bool:
    from core.train.events import ACTIVE_STATES
    from pages.common import runner

    jr = runner()
    return any(j.state in ACTIVE_STATES for owner in (sid, f"{sid}/compute") for j in jr.jobs_of(owner))


def rerun_until(at: AppTest, done: Callable[[AppTest], bool], timeout: float = 240) -> AppTest:
    """Reruns `at` until `done(at)`: while the session's training or computation jobs are queued or
    running it only reads their state; then one rerun lets the page collect what ended (a run's
    results, the next queued job). Fails on a page exception."""
    sid = at.session_state["sid"]
    end = time.time() + timeout
    while not done(at) and time.time() < end:
        while _active(sid) and time.time() < end:
            time.sleep(0.2)
        at.run()
        if not done(at) and not _active(sid):
            time.sleep(0.2)          # what ended may still be on its way to the store
    assert not at.exception, [e.value for e in at.exception]
    return at
