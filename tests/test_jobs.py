"""The job runner: submit, events, cancel, the queue and one active job per owner, crash isolation."""

from __future__ import annotations

import time

import pytest

from core.jobs import JobError, JobRunner
from core.results import load_results
from core.training import TrainConfig

FAST = TrainConfig(dataset="shapes", shapes_classes=3, shapes_per_class=12, weights="random", scenario="3")
SLOW = TrainConfig(dataset="shapes", shapes_classes=3, shapes_per_class=40, weights="random", scenario="finetune",
                   epochs=30, batch_size=4)


@pytest.fixture()
def runner(tmp_path):
    r = JobRunner(max_concurrent=1, root=str(tmp_path))
    yield r
    r.shutdown()


def test_submit_progress_and_results(runner):
    jid = runner.submit("alice", FAST)
    st = runner.wait(jid, 120)
    assert st.state == "done", st.message
    kinds = {e["type"] for e in runner.events(jid)}
    assert {"info", "step", "epoch", "done"} <= kinds
    res = load_results(st.out_dir)
    assert res is not None and 0 <= res.summary["val_acc"] <= 1 and len(res.val_images) == len(res.summary["val_pred"])
    assert runner.events(jid, since=len(runner.events(jid))) == []


def test_one_active_job_per_owner_queue_and_cancel(runner):
    a = runner.submit("alice", SLOW)
    with pytest.raises(JobError, match="already have a run"):
        runner.submit("alice", FAST)
    b = runner.submit("bob", FAST)
    deadline = time.time() + 60
    while runner.status(a).state != "running" and time.time() < deadline:
        time.sleep(0.1)
    assert runner.status(a).state == "running"
    assert runner.status(b).state == "queued" and runner.status(b).position == 1
    while not any(e["type"] == "step" for e in runner.events(a)) and time.time() < deadline:
        time.sleep(0.1)
    runner.cancel(a)
    assert runner.wait(a, 60).state == "cancelled"
    assert runner.wait(b, 120).state == "done"          # the queue moves on
    c = runner.submit("alice", FAST)                     # and alice may run again
    assert runner.wait(c, 120).state == "done"


def test_a_crashed_worker_is_reported_and_isolated(runner, monkeypatch):
    monkeypatch.setenv("CONVNETLAB_TEST_CRASH", "shapes")
    jid = runner.submit("carol", FAST)
    st = runner.wait(jid, 120)
    assert st.state == "failed" and "crashed (exit code 3)" in st.message
    monkeypatch.delenv("CONVNETLAB_TEST_CRASH")
    ok = runner.submit("carol", TrainConfig(dataset="digits", weights="random", scenario="3"))
    assert runner.wait(ok, 120).state == "done"


def test_diverged_and_lr_find_jobs(runner):
    d = runner.submit("dave", TrainConfig(dataset="shapes", shapes_classes=3, shapes_per_class=12, weights="random",
                                          scenario="finetune", lr=1e12, epochs=2, batch_size=8))
    st = runner.wait(d, 120)
    assert st.state == "diverged" and "learning rate" in st.message
    f = runner.submit("dave", TrainConfig(dataset="shapes", shapes_classes=3, shapes_per_class=12, weights="random",
                                          scenario="finetune", batch_size=8), kind="lr_find")
    assert runner.wait(f, 120).state == "done"
    found = [e for e in runner.events(f) if e["type"] == "lr_find"]
    assert found and found[0]["suggestion"] > 0


def test_lr_finder_can_be_cancelled_and_finished_jobs_release_their_pipes(runner):
    import os

    slow = TrainConfig(dataset="shapes", shapes_classes=3, shapes_per_class=40, weights="random",
                       scenario="finetune", batch_size=64, image_size=64)
    f = runner.submit("erin", slow, kind="lr_find")
    deadline = time.time() + 60
    while not runner.events(f) and time.time() < deadline:
        time.sleep(0.1)
    runner.cancel(f)
    assert runner.wait(f, 60).state == "cancelled"
    fds = len(os.listdir("/proc/self/fd"))
    for _ in range(3):
        assert runner.wait(runner.submit("erin", FAST), 120).state == "done"
    time.sleep(0.3)
    assert len(os.listdir("/proc/self/fd")) <= fds + 2   # no pipes left behind per job
