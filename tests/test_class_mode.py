"""Class mode on the lecture path, as three sessions of one server use it: the lecturer starts a
class, two students join from the join link, follow the lecturer's stop, detach and re-attach,
answer a question (one answer each) and see the reveal; the lecturer sees the tally and the CSV; a
student's live run joins the class board. The polling fragments never tick in AppTest, so each
session's page is rerun by hand, as the fragment's `st.rerun(scope="app")` would."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from core.classroom import ClassStore, lecturer_token

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture()
def results(tmp_path, monkeypatch):
    monkeypatch.setenv("CONVNETLAB_RESULTS", str(tmp_path))
    return tmp_path


def _lecture(**params) -> AppTest:
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=90)
    for k, v in params.items():
        at.query_params[k] = v
    at.switch_page("pages/lecture.py")
    return at.run()


def _ok(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


def _student(code: str, nick: str) -> AppTest:
    at = _lecture(**{"class": code})
    _ok(at)
    at.text_input(key="class_nick").input(nick)
    at.button(key="class_nick_join").click().run()
    _ok(at)
    return at


def test_a_class_follows_its_lecturer_answers_and_sees_the_reveal(results):
    lecturer = _lecture(stop="alexnet-conv1")
    _ok(lecturer)
    lecturer.button(key="class_start").click().run()
    _ok(lecturer)
    code = lecturer.query_params["class"]
    from core.links import server_secret

    assert lecturer.query_params["lt"] == lecturer_token(code, server_secret())       # only the lecturer's address
    assert any(f"Join code: {code}" in m.value for m in lecturer.sidebar.markdown)

    ada, bo = _student(code, "Ada"), _student(code, "Bo")
    for s in (ada, bo):
        assert s.header[0].value == lecturer.header[0].value                     # on the lecturer's stop
        assert "lt" not in s.query_params and s.query_params["class"] == code
        assert any("following the lecturer" in m.value for m in s.sidebar.markdown)
        assert not [e for e in s.expander if e.label == "Presenter notes"]           # the answers are in them
        assert not {"lecture_prepare", "lecture_handout"} & {b.key for b in s.button}  # the server's work
    assert [e for e in lecturer.expander if e.label == "Presenter notes"]
    assert {"lecture_prepare", "lecture_handout"} <= {b.key for b in lecturer.button}

    # the lecturer moves on: a follower's next poll (a rerun here) brings it along
    lecturer.button(key="lecture_next").click().run()
    ada.run()
    assert ada.header[0].value == lecturer.header[0].value != "AlexNet"
    # Bo goes his own way: detached, and stays put when the lecturer moves again
    bo.button(key="lecture_prev").click().run()
    assert any("exploring on your own" in m.value for m in bo.sidebar.markdown)
    where = bo.header[0].value
    lecturer.button(key="lecture_next").click().run()
    ada.run()
    bo.run()
    assert ada.header[0].value == lecturer.header[0].value and bo.header[0].value == where != ada.header[0].value
    bo.button(key="class_attach").click().run()
    assert bo.header[0].value == lecturer.header[0].value

    # a question from the lecturer: the scenario question (small data, similar to ImageNet)
    lecturer.radio(key="class_q_kind").set_value("scenario").run()
    lecturer.button(key="class_ask").click().run()
    _ok(lecturer)
    store = ClassStore(results / "classes.sqlite")
    number = store.state(code).question
    question, _ = store.question(code, number)
    ada.run()
    bo.run()
    assert question.kind == "choice" and len(question.choices) >= 3
    wrong = next(c for c in question.choices if c != question.answer)
    ada.radio(key=f"class_a_{number}").set_value(question.answer)
    ada.button(key=f"class_send_{number}").click().run()
    bo.radio(key=f"class_a_{number}").set_value(wrong)
    bo.button(key=f"class_send_{number}").click().run()
    _ok(ada)
    assert any("Your answer is in" in i.value for i in ada.info)
    assert not any(w.key == f"class_a_{number}" for w in ada.radio)                 # one answer each
    t = store.tally(code, number)
    assert (t.counts[question.answer], t.counts[wrong], t.total) == (1, 1, 2)
    lecturer.run()
    chart = lecturer.get("plotly_chart")
    assert any("Answers so far: 2" in c.proto.spec for c in chart)
    lecturer.button(key="class_reveal").click().run()
    ada.run()
    bo.run()
    assert any("You were right" in s.value for s in ada.success)
    assert any(f"You answered {wrong}" in s.value for s in bo.success)
    assert not any("Ada" in s.value or "Ada" in m.value for s in bo.success for m in bo.markdown)   # no names

    rows = list(csv.DictReader(io.StringIO(store.answers_csv(code, lecturer_token(code, server_secret()),
                                                             server_secret()))))
    assert sorted((r["nickname"], r["answer"], r["right"]) for r in rows) == [
        ("Ada", question.answer, "True"), ("Bo", wrong, "False")]
    store.close()


def test_a_forged_lecturer_link_joins_as_a_student_and_a_bad_code_says_so(results):
    lecturer = _lecture(stop="alexnet-conv1")
    lecturer.button(key="class_start").click().run()
    code = lecturer.query_params["class"]
    forged = _lecture(**{"class": code, "lt": "0" * 32})
    _ok(forged)
    assert any("not valid" in w.value for w in forged.warning)
    assert not forged.session_state["class_lecturer"] and "class_ask" not in [b.key for b in forged.button]
    nobody = _lecture(**{"class": "ZZZZZZ"})
    assert not nobody.exception and any("no class with the code ZZZZZZ" in w.value for w in nobody.warning)
    typo = _lecture()
    typo.text_input(key="class_join_code").input("!!")
    typo.button(key="class_join").click().run()
    assert not typo.exception and any("six letters and digits" in e.value for e in typo.error)


def test_a_students_live_run_joins_the_board_with_their_settings(results, monkeypatch):
    from core.train.jobs import wait
    from pages.common import runner

    monkeypatch.setenv("CONVNETLAB_LECTURE_RUNS", "tiny")
    lecturer = _lecture(stop="degradation")
    lecturer.button(key="class_start").click().run()
    code = lecturer.query_params["class"]
    ada = _student(code, "Ada")
    assert ada.header[0].value == lecturer.header[0].value
    bo = _student(code, "Bo")                      # a student's board is drawn with the page, no timer of its own
    assert bo.session_state["class_board_at"] == ("degradation", ())
    ada.number_input(key="class_run_lr").set_value(0.02).run()
    ada.button(key="lecture_train").click().run()
    _ok(ada)
    job = ada.session_state["lecture_live"]["degradation"]["jobs"]["depth"]
    assert runner().status(job).config.lr == pytest.approx(0.02)                    # her settings, not the stop's
    assert wait(runner(), job, timeout=300).state == "done"
    lecturer.run()
    board = next(t.value for t in lecturer.table if "nickname" in t.value.columns)
    assert list(board["nickname"]) == ["Ada"] and "lr 2e-02" in board["settings"][0]
    assert board["state"][0] == "done" and board["epoch"][0] == 1
    shown = [b for b in lecturer.get("link_button") if "Show this run" in b.proto.label]
    assert shown and f"job={job}&view=" in shown[0].proto.url and "/lab?task=depth" in shown[0].proto.url
    # Bo's poll compares what his board showed with the class's runs now: a run joined and ended, so it
    # reruns his page, which then lists Ada's run (without the lecturer's projector controls)
    from pages.class_views import _board_signature

    assert _board_signature(code, "degradation") == ((job, False),) != bo.session_state["class_board_at"][1]
    bo.run()
    board = next(t.value for t in bo.table if "nickname" in t.value.columns)
    assert list(board["nickname"]) == ["Ada"] and bo.session_state["class_board_at"][1] == ((job, False),)
    assert not [b for b in bo.get("link_button") if "Show this run" in b.proto.label]


def test_a_followers_poll_redraws_exactly_when_its_page_is_behind(results):
    """The poll's decision (core.classroom.behind) against what the page last drew to its end:
    a run cut short, a new question, a reveal, the end of the class, and a move, which only a
    follower takes."""
    from core.links import server_secret
    from core.classroom import behind

    store = ClassStore(results / "classes.sqlite")
    code, token = store.start(server_secret(), stop="alexnet-conv1")
    now = store.state(code)
    drawn = ("alexnet-conv1", (now.question, now.revealed))
    assert not behind(now, True, True, *drawn)                              # up to date
    assert behind(now, True, False, *drawn)                                 # the last run was cut short
    store.move(code, token, server_secret(), "alexnet-pool1")
    moved = store.state(code)
    assert behind(moved, True, True, *drawn) and not behind(moved, False, True, *drawn)   # followers only
    assert not behind(moved, True, True, "alexnet-pool1", drawn[1])
    from core.classroom import scenario_question

    store.ask(code, token, server_secret(), scenario_question(False, False))
    asked = store.state(code)
    assert behind(asked, False, True, "alexnet-pool1", drawn[1])             # a question reaches everyone
    assert not behind(asked, False, True, "alexnet-pool1", (asked.question, False))
    store.reveal(code, token, server_secret(), asked.question)
    assert behind(store.state(code), False, True, "alexnet-pool1", (asked.question, False))
    store.end(code, token, server_secret())
    assert behind(store.state(code), False, True, "alexnet-pool1", (asked.question, True))
    store.close()
