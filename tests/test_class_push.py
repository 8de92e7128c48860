"""The server pushes a class's moves to its followers' pages (pages/class_push.py): the rule that picks
the pages to redraw, where a page still polls, and a real server whose follower page's own poll is
set to two minutes, so that only the push can bring the student to the lecturer's stop, their
question and the end of the class within the test's seconds, and report them present. The student speaks Streamlit's protocol (bench/st_protocol.py):
what arrives on their connection is what a browser would draw, and it sends what a browser's timer
can send while the push is under way: the stop list's old value."""

from __future__ import annotations

import asyncio
import dataclasses
import sqlite3
import time

import pytest

from bench.browser import streamlit_process
from bench.st_protocol import ProtocolSession
from core import classroom as cr
from core.lecture.stops import STOPS
from pages import class_push as push

SECRET = b"push-test-secret"


def _state(stop: str, question: int | None = None, revealed: bool = False, ended: bool = False) -> cr.ClassState:
    return cr.ClassState("K7P2QX", "t", stop, 0.0, time.time() + 3600, ended, question, revealed, 1, 1)


def _mark(stop: str, following: bool = True, question=(None, False), at: float = 10.0) -> push.Mark:
    return push.Mark("K7P2QX", None, "student", "lecture-hash", following, stop, question, at)


def test_the_push_picks_the_pages_behind_their_class_and_never_cuts_a_run_short():
    marks = {"up-to-date": _mark("a"), "behind": _mark("b"), "detached": _mark("b", following=False),
             "running": _mark("b"), "asked-just-now": _mark("b", at=10.0), "asked-before-it-drew": _mark("b", at=12.0),
             "asked-long-ago": _mark("b", at=5.0)}
    asked = {"asked-just-now": 11.0, "asked-before-it-drew": 11.0, "asked-long-ago": 12.0 - push.RETRY_S}
    due = push.due(marks, {"K7P2QX": _state("a")}, asked, lambda sid: sid == "running", now=12.5)
    assert sorted(due) == ["asked-before-it-drew", "asked-long-ago", "behind"]
    # a question reaches a detached page too; the end of the class reaches everyone
    assert "detached" in push.due(marks, {"K7P2QX": _state("a", question=1)}, {}, lambda s: False, now=12.5)
    assert "up-to-date" in push.due(marks, {"K7P2QX": _state("a", ended=True)}, {}, lambda s: False, now=12.5)
    assert push.due(marks, {"K7P2QX": None}, {}, lambda s: False, now=12.5) == []      # an unreadable class: wait


def test_beside_the_push_a_page_ticks_rarely_and_a_tick_right_after_a_run_redraws_it(monkeypatch):
    """A page's timer reaching Streamlit as a pushed run ends can cost that run its end (see
    `push.poll_every`): beside the push the timer is slow, and a tick within LOST_END_S of the
    page's last full run redraws it; without the push the page polls each second and never
    redraws for that (it would after every move)."""
    monkeypatch.delenv("CONVNETLAB_CLASS_POLL_S", raising=False)
    monkeypatch.delenv("CONVNETLAB_CLASS_PUSH", raising=False)
    monkeypatch.setattr(push, "_session_manager", lambda: object())       # as on a real server
    assert push.available() and push.poll_every() == push.POLL_WITH_PUSH_S > 10 * push.POLL_S
    assert push.lost_end(100.0, 100.0 + push.LOST_END_S / 2)
    assert not push.lost_end(100.0, 100.0 + push.LOST_END_S * 2) and not push.lost_end(None, 100.0)
    monkeypatch.setenv("CONVNETLAB_CLASS_PUSH", "0")
    assert push.poll_every() == push.POLL_S and not push.lost_end(100.0, 100.0 + push.LOST_END_S / 2)


def test_a_page_whose_class_board_changed_is_redrawn_and_each_board_is_read_once():
    reads = []

    def board_now(code: str, stop: str) -> tuple:
        reads.append(stop)
        return {"a": (("job-1", True),), "b": (("job-2", False),)}[stop]

    def showing(stop: str, drawn: tuple, following: bool = True) -> push.Mark:
        return dataclasses.replace(_mark(stop, following), board=(stop, drawn), board_now=board_now)

    # the class is at stop a; one student explores stop b on their own
    live = {"same": showing("a", (("job-1", True),)), "joined": showing("a", ()),
            "ended": showing("b", (("job-2", True),), following=False), "no-board": _mark("a")}
    changed = push._boards_changed(live)
    assert changed == {"joined", "ended"} and sorted(reads) == ["a", "b"]
    assert sorted(push.due(live, {"K7P2QX": _state("a")}, {}, lambda s: False, 12.5, changed)) == ["ended", "joined"]
    assert push.due(live, {"K7P2QX": _state("a")}, {}, lambda s: False, 12.5) == []      # boards as drawn


@pytest.fixture()
def server(tmp_path, monkeypatch):
    monkeypatch.setenv("CONVNETLAB_RESULTS", str(tmp_path))
    monkeypatch.setenv("CONVNETLAB_SECRET", SECRET.decode())
    monkeypatch.setenv("CONVNETLAB_CLASS_POLL_S", "120")      # the page's own poll cannot be what moves it
    monkeypatch.delenv("CONVNETLAB_CLASS_PUSH", raising=False)
    with open(tmp_path / "server.log", "w") as log, streamlit_process(log) as (base, _):
        yield base, cr.ClassStore(tmp_path / "classes.sqlite")
    assert "Traceback" not in (tmp_path / "server.log").read_text()


def test_a_followers_page_is_pushed_to_the_lecturers_stop_question_and_end(server):
    base, store = server
    code, token = store.start(SECRET, stop=STOPS[0].slug)

    async def scenario() -> None:
        s = ProtocolSession(base, "lecture", f"class={code}")
        await s.open()
        try:
            assert await s.wait_until(s.run_done.is_set, 120)
            nick = s.find_widget("text_input", "Nickname (optional, shown on the class board)")
            await s.click(s.find_button("Join the class"), {nick: ("string_value", "Ada")})
            assert await s.wait_until(lambda: s.has_text("following the lecturer"), 60)
            assert s.heading() == STOPS[0].title

            # present: the server reports the followers it serves (the page itself never polls here)
            with sqlite3.connect(store.path) as db:
                db.execute("UPDATE students SET seen = 0 WHERE code = ?", (code,))
            assert store.state(code).following == 0
            t0 = time.monotonic()
            while store.state(code).following == 0 and time.monotonic() - t0 < push.SEEN_EVERY_S + 5:
                await asyncio.sleep(0.2)
            assert store.state(code).following == 1

            old = s.find("radio", "Stop")                     # the sidebar's list of stops, at the first stop
            for stop in STOPS[1:3]:
                store.move(code, token, SECRET, stop.slug)
                assert await s.wait_until(lambda: s.heading() == stop.title and s.run_done.is_set(), 30), \
                    (stop.title, s.heading(), s.log[-6:])
                # a browser's timer that fired before it drew the pushed stop sends the list's old value:
                # not a student's choice, so the next move still takes them along
                await s.send_as_sent_before({old.id: ("string_value", old.options[0])})
                assert await s.wait_until(s.run_done.is_set, 30)
                assert s.has_text("following the lecturer") and s.heading() == stop.title, (s.texts(1)[:4], s.log[-8:])

            store.ask(code, token, SECRET, cr.choice_question("Which is deeper?", ["VGG-16", "AlexNet"], 0))
            assert await s.wait_until(lambda: s.run_done.is_set() and any(
                e.kind == "radio" and e.proto.label == "Your answer" for e in s.elements.values()), 30)

            store.end(code, token, SECRET)
            assert await s.wait_until(lambda: s.run_done.is_set() and not s.has_text("following the lecturer"), 30)
            assert not s.fragment_runs, "the page's own poll ran: it, not the push, may have moved the page"
            assert not s.errors
        finally:
            await s.close()

    asyncio.run(scenario())
