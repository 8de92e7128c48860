"""A class in the store: join, follow, questions and answers, the lecturer's proof, abuse, two
processes on one file, a restart, the QR code."""

from __future__ import annotations

import csv
import io
import time

import pytest
import torch
from torch import nn

from core.classroom import (CLASS_HOURS, ClassError, ClassStore, choice_question, clean_nickname, layer_question,
                            lecturer_token, more_parameters_question, qr_svg, read_code, scenario_question)

SECRET = b"s" * 32


@pytest.fixture()
def store(tmp_path):
    s = ClassStore(tmp_path / "classes.sqlite")
    yield s
    s.close()


def test_a_class_is_led_by_its_lecturer_link_only(store):
    code, token = store.start(SECRET, stop="alexnet-conv1")
    assert read_code(code.lower()[:3] + "-" + code[3:]) == code          # typed in any case, with a dash
    assert token == lecturer_token(code, SECRET) and token != lecturer_token(code, b"t" * 32)
    store.move(code, token, SECRET, "vgg-stacks")
    st = store.state(code)
    assert st.stop == "vgg-stacks" and st.live and st.ends_at == pytest.approx(time.time() + CLASS_HOURS * 3600, abs=5)
    for forged in ("0" * 32, token[:-1] + ("0" if token[-1] != "0" else "1"), "", lecturer_token("ABCDEF", SECRET)):
        with pytest.raises(ClassError, match="Only the lecturer's link"):
            store.move(code, forged, SECRET, "resnet")
        with pytest.raises(ClassError, match="Only the lecturer's link"):
            store.end(code, forged, SECRET)
    assert store.state(code).stop == "vgg-stacks"
    store.end(code, token, SECRET)
    assert not store.state(code).live
    with pytest.raises(ClassError, match="ended"):
        store.join(code, "sid-x")
    with pytest.raises(ClassError, match="no class with the code"):
        store.state("ZZZZZZ")


def test_followers_are_counted_while_they_poll(store):
    code, _ = store.start(SECRET)
    store.join(code, "a", "Ada")
    store.join(code, "b", "Bo")
    assert (store.state(code).following, store.state(code).joined) == (2, 2)
    store.seen(code, "b", following=False)                   # "explore on my own"
    assert store.state(code).following == 1
    store.seen(code, "b", following=True)                    # back to the lecturer
    assert store.state(code).following == 2


def test_a_choice_question_one_answer_each_then_the_reveal(store):
    code, token = store.start(SECRET)
    for sid in "abc":
        store.join(code, sid, f"<b>{sid}</b>")
    q = scenario_question(similar=True, lots_of_data=False)
    assert q.answer == "replace and train the last FC layer" and q.answer in q.choices
    n = store.ask(code, token, SECRET, q)
    assert store.state(code).question == n
    assert store.answer(code, "a", n, q.answer) is True
    assert store.answer(code, "b", n, q.choices[1]) is False
    with pytest.raises(ClassError, match="one answer each"):
        store.answer(code, "a", n, q.choices[1])
    with pytest.raises(ClassError, match="Join the class first"):
        store.answer(code, "intruder", n, q.answer)
    t = store.tally(code, n)
    assert t.total == 2 and t.counts[q.answer] == 1 and t.counts[q.choices[1]] == 1 and not t.revealed
    assert all(not k.startswith("<b>") for k in t.counts)   # no nicknames in the tally
    store.reveal(code, token, SECRET, n)
    with pytest.raises(ClassError, match="revealed"):
        store.answer(code, "c", n, q.answer)
    rows = list(csv.DictReader(io.StringIO(store.answers_csv(code, token, SECRET))))
    assert [(r["nickname"], r["right"]) for r in rows] == [("<b>a</b>", "True"), ("<b>b</b>", "False")]
    with pytest.raises(ClassError):
        store.answers_csv(code, "0" * 32, SECRET)


def test_a_layer_question_is_graded_like_the_quiz_and_shows_the_arithmetic(store):
    code, token = store.start(SECRET)
    store.join(code, "a")
    store.join(code, "b")
    q = layer_question("alexnet", 0, "parameters")
    exact = sum(p.numel() for p in nn.Conv2d(3, 96, 11).parameters())    # 34,944, independently
    assert q.answer == f"{exact:,}" and "96 filters 11x11" in q.prompt and str(exact) not in q.prompt
    assert f"{exact:,}" in q.worked
    n = store.ask(code, token, SECRET, q)
    assert store.answer(code, "a", n, "35K") is True and store.answer(code, "b", n, "30K") is False
    shape = layer_question("alexnet", 0, "output size")
    out = nn.Conv2d(3, 96, 11, stride=4)(torch.zeros(1, 3, 227, 227)).shape
    assert shape.answer == f"{out[2]}x{out[3]}x{out[1]}"
    with pytest.raises(ClassError):
        layer_question("alexnet", 10_000)


def test_which_design_has_more_parameters_is_counted_by_the_engine():
    q = more_parameters_question(("vgg16", {}), ("resnet50", {}))
    from torchvision.models import vgg16

    with torch.device("meta"):                                  # counted without allocating 138M weights
        vgg = sum(p.numel() for p in vgg16().parameters())
    assert q.answer.startswith("VGG-16") and f"{vgg:,}" in q.worked


def test_nicknames_are_short_plain_text_and_choices_are_checked():
    assert clean_nickname("  Ada\x00\u202e Lovelace " + "x" * 100) == ("Ada Lovelace " + "x" * 100)[:24]
    with pytest.raises(ClassError):
        choice_question("Which?", ["only one"], 0)
    with pytest.raises(ClassError):
        choice_question("Which?", ["a", "a"], 0)
    q = choice_question("Which?", ["a", "b"], 1, "because")
    assert q.grade("b") and not q.grade("a")


ANSWER = """
import sys
from pathlib import Path
from core.classroom import ClassStore
path, code, sid, n, text = sys.argv[1:]
s = ClassStore(Path(path))
s.join(code, sid, sid)
print(s.answer(code, sid, int(n), text))
"""


def test_two_processes_share_one_class_and_it_survives_a_restart(tmp_path):
    """Web replicas are processes on one file; four answer at once; a restart opens the file again."""
    import subprocess
    import sys

    from tests.conftest import ROOT

    path = tmp_path / "classes.sqlite"
    first = ClassStore(path)
    code, token = first.start(SECRET)
    q = scenario_question(False, True)
    n = first.ask(code, token, SECRET, q)
    procs = [subprocess.Popen([sys.executable, "-c", ANSWER, str(path), code, f"s{i}", str(n), q.answer],
                              cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(4)]
    outs = [p.communicate(timeout=60) for p in procs]
    assert [o.strip() for o, _ in outs] == ["True"] * 4, [e for _, e in outs]
    first.close()
    again = ClassStore(path)                                   # the server restarted
    assert again.tally(code, n).total == 4 and again.state(code).joined == 4
    again.move(code, token, SECRET, "resnet-blocks")
    assert again.state(code).stop == "resnet-blocks"
    again.close()


def test_the_join_link_as_a_qr_code():
    svg = qr_svg("http://127.0.0.1:8501/lecture?class=ABCDEF")
    assert svg.lstrip().startswith("<?xml") and "<svg" in svg and "path" in svg
