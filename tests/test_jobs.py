"""The local job runner's own behaviour: events and torch-free workers, pipe hygiene, the backend
factory, workers ending with the server, one real training job end to end, pruning and the spawn
of workers under `streamlit run`. The rules both backends share (queue, one active job per owner,
cancel, crash, a second client, a restart) are in tests/test_runners.py, run against each."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from core.train.events import ACTIVE_STATES, Note, Step
from core.train.jobs import JobError, JobSpec, make_runner, run_job, wait
from core.train.local_runner import LocalRunner
from jobfakes import HANDLERS


@pytest.fixture()
def runner(tmp_path):
    r = LocalRunner(max_concurrent=1, root=str(tmp_path), handlers=HANDLERS)
    yield r
    r.shutdown()


def _until(pred, timeout=30.0):
    end = time.time() + timeout
    while not pred() and time.time() < end:
        time.sleep(0.02)
    return pred()


def test_events_arrive_in_order_and_since_returns_only_new_ones(runner):
    jid = runner.submit("alice", JobSpec("count", 5))
    st = wait(runner, jid, 60)
    assert st.state == "done" and st.message == "counted to 5"
    ev = runner.events(jid)
    assert [e.step for e in ev if isinstance(e, Step)] == [1, 2, 3, 4, 5]
    assert runner.events(jid, since=3) == ev[3:] and runner.events(jid, since=len(ev)) == []
    assert (runner.root / jid / "out.txt").read_text() == "5 steps"


def test_workers_are_forked_from_one_process_that_imported_torch_once(runner):
    """Every worker starts with torch already imported (a spawned one imported it again, 3 to 4
    CPU-seconds a job), and scikit-learn, which the default jobs import on first use (about 1 s each),
    forked from one fork server that holds libtorch: not the runner's process."""
    parents = set()
    for owner in ("ann", "ben"):
        jid = runner.submit(owner, JobSpec("count", 1))
        assert wait(runner, jid, 60).state == "done"
        ev = runner.events(jid)
        assert Note("torch imported: True") in ev and Note("sklearn imported: True") in ev
        parents |= {int(e.message.split()[1]) for e in ev if isinstance(e, Note) and e.message.startswith("parent:")}
    assert len(parents) == 1 and os.getpid() not in parents
    server = parents.pop()
    assert "libtorch" in Path(f"/proc/{server}/maps").read_text()


def test_finished_jobs_release_their_pipes(runner):
    assert wait(runner, runner.submit("f", JobSpec("count", 1)), 30).state == "done"
    time.sleep(0.2)
    fds = len(os.listdir("/proc/self/fd"))
    for _ in range(4):
        assert wait(runner, runner.submit("f", JobSpec("count", 1)), 30).state == "done"
    time.sleep(0.2)
    assert len(os.listdir("/proc/self/fd")) <= fds + 1      # no pipes left behind per job


def test_pages_do_not_wait_while_a_spare_worker_starts(tmp_path):
    """The runner keeps a spare worker; the first one's start waits for the fork server's imports
    (seconds after a server starts). Meanwhile a page lists and submits jobs without waiting for it;
    the job then runs."""
    import threading

    starting, go_on = threading.Event(), threading.Event()

    class SlowStart(LocalRunner):
        def _spawn(self):
            starting.set()
            assert go_on.wait(30)
            return super()._spawn()

    r = SlowStart(max_concurrent=1, root=str(tmp_path), handlers=HANDLERS)
    try:
        assert starting.wait(10)                 # the spare is being started, its start held up
        answers: list = []
        page = threading.Thread(target=lambda: answers.append((r.jobs_of("ann"), r.submit("ann", JobSpec("count", 1)))))
        page.start()
        page.join(10)
        assert len(answers) == 1 and answers[0][0] == []   # answered while the spare was still starting
        go_on.set()
        assert wait(r, answers[0][1], 60).state == "done"
    finally:
        go_on.set()
        r.shutdown()


def test_run_job_maps_outcomes_without_a_process(tmp_path):
    from core.train.context import JobContext

    seen = []
    ctx = JobContext(seen.append, lambda: False, tmp_path, "cpu")
    assert run_job(JobSpec("count", 2), ctx, HANDLERS) == ("done", "counted to 2")
    assert len([e for e in seen if isinstance(e, Step)]) == 2
    assert run_job(JobSpec("diverge", None), ctx, HANDLERS)[0] == "diverged"
    stop = JobContext(seen.append, lambda: True, tmp_path, "cpu")
    assert run_job(JobSpec("sleep", 5), stop, HANDLERS) == ("cancelled", "cancelled")


def test_the_factory_picks_the_backend_from_configuration(monkeypatch, tmp_path):
    monkeypatch.setenv("CONVNETLAB_RUNNER", "carrier-pigeon")
    with pytest.raises(JobError, match="unknown runner backend 'carrier-pigeon'"):
        make_runner()
    monkeypatch.setenv("CONVNETLAB_RUNNER", "local")
    r = make_runner(device="cpu", root=str(tmp_path))
    try:
        assert isinstance(r, LocalRunner) and r.limits().max_concurrent == 1 and r.limits().device == "cpu"
    finally:
        r.shutdown()


def test_workers_end_with_the_server(tmp_path):
    """kill -9 of the process that owns the runner leaves no worker training as an orphan, and no
    fork server behind."""
    import signal
    import subprocess
    import sys

    script = tmp_path / "server.py"
    script.write_text(
        "import sys, time\n"
        "from core.train.jobs import JobSpec\nfrom core.train.local_runner import LocalRunner\n"
        "from jobfakes import HANDLERS\n"
        "if __name__ == '__main__':\n"
        f"    r = LocalRunner(root={str(tmp_path)!r}, handlers=HANDLERS)\n"
        "    jid = r.submit('a', JobSpec('sleep', 120))\n"
        "    while r.status(jid).state != 'running' or not r.events(jid) or r._spare is None: time.sleep(0.05)\n"
        "    print(r._jobs[jid].process.pid, r._spare.process.pid, flush=True)\n"
        "    time.sleep(120)\n")
    tests = os.path.dirname(__file__)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([os.path.dirname(tests), tests])}
    server = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True, env=env)
    try:
        pids = [int(x) for x in server.stdout.readline().split()]
        assert len(pids) == 2 and all(_alive(p) for p in pids)      # the job's worker and the spare
        pids += {_parent(p) for p in pids} - {server.pid}           # and the fork server they came from
        assert len(pids) == 3 and all(_alive(p) for p in pids)
        server.send_signal(signal.SIGKILL)
        server.wait(10)
        assert _until(lambda: not any(_alive(p) for p in pids), 10)
    finally:
        server.kill()


def _parent(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as f:
        return int(f.read().split(")")[-1].split()[1])


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"     # a zombie has ended
    except FileNotFoundError:
        return False


def test_a_real_training_job_end_to_end(tmp_path):
    """The one test that pays for torch in a worker: the spare worker has imported the handlers
    (torch among them) before its job arrives; then a real run, its typed events and its results."""
    runner = LocalRunner(root=str(tmp_path), handlers={**HANDLERS, "train": "core.train.run:train"})
    try:
        _real_job(runner)
    finally:
        runner.shutdown()


def _real_job(runner: LocalRunner) -> None:
    from core.train.events import Done, Epoch, Phase, RunInfo
    from core.train.transfer import TrainConfig

    counted = runner.submit("gina", JobSpec("count", 1))
    assert wait(runner, counted, 60).state == "done"
    assert Note("torch imported: True") in runner.events(counted)   # the train handler's imports, done ahead
    cfg = TrainConfig(dataset="shapes", shapes_classes=3, shapes_per_class=12, weights="random", scenario="1",
                      epochs=2, batch_size=8)
    jid = runner.submit("gina", JobSpec("train", cfg))
    assert runner.status(jid).state in ACTIVE_STATES and runner.results(jid) is None   # nothing yet
    st = wait(runner, jid, 180)
    assert st.state == "done", st.message
    ev = runner.events(jid)
    assert [e.phase for e in ev if isinstance(e, Phase)][:2] == ["loading data", "building the model"]
    info = next(e for e in ev if isinstance(e, RunInfo))
    assert (info.n_train, info.n_val) == (30, 6)  # round(20% of 12) = 2 per class held out
    assert info.weights.kind == "random"
    assert [e.epoch for e in ev if isinstance(e, Epoch)] == [1, 2]
    done = next(e for e in ev if isinstance(e, Done))
    res = runner.results(jid)
    assert res is not None and res.summary["val_acc"] == pytest.approx(done.metrics["acc"])
    assert st.message == f"validation accuracy {done.metrics['acc']:.1%}"
    assert len(res.val_images) == len(res.summary["val_pred"]) == 6
    # the reported accuracy is the saved model's on the saved validation images, recomputed here
    import torch
    import torch.nn.functional as F

    x = F.interpolate(res.val_images.float() / 255, size=(cfg.image_size, cfg.image_size), mode="bilinear",
                      align_corners=False, antialias=True)
    x = (x - torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)) / torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    with torch.no_grad():
        pred = res.trained_model()(x).argmax(1)
    assert pred.tolist() == res.summary["val_pred"]
    assert done.metrics["acc"] == pytest.approx(float((pred == res.val_labels).float().mean()))
    assert res.file_bytes("head.safetensors")[:8] and b"val_acc" in res.file_bytes("metrics.csv")  # scenario 1
    assert ACTIVE_STATES.isdisjoint({st.state})


def test_old_finished_runs_are_pruned_with_their_folders(tmp_path, monkeypatch):
    from core.train.store import JobStore

    store = JobStore(tmp_path / "jobs.sqlite")
    r = LocalRunner(root=str(tmp_path), handlers=HANDLERS, store=store)
    try:
        old = r.submit("a", JobSpec("count", 1))
        assert wait(r, old, 60).state == "done"
        monkeypatch.setattr(LocalRunner, "KEEP_DAYS", -1)                     # everything finished is "old"
        assert _until(lambda: old not in {s.id for s in r.jobs_of("a")}, 10)
        assert not (tmp_path / old).exists() and old not in {j.id for j in store.jobs()}
    finally:
        r.shutdown()


def test_finished_runs_beyond_the_size_cap_are_pruned_oldest_first(tmp_path, monkeypatch):
    """$CONVNETLAB_KEEP_GB bounds the finished runs' folders together: the oldest go first, the newest stays."""
    from core.train.jobs import folder_bytes

    monkeypatch.setenv("CONVNETLAB_KEEP_GB", str(2.5e6 / 1e9))       # 2.5 MB
    r = LocalRunner(root=str(tmp_path), handlers=HANDLERS, spare=False)
    try:
        ids = []
        for _ in range(3):                                              # 1 MB each, one after another
            ids.append(r.submit("a", JobSpec("fill", 1_000_000)))
            assert wait(r, ids[-1], 60).state == "done"
        assert _until(lambda: [s.id for s in r.jobs_of("a")] == ids[1:], 10)
        assert not (tmp_path / ids[0]).exists() and (tmp_path / ids[2]).exists()
        assert sum(folder_bytes(tmp_path / i) for i in ids[1:]) <= 2.5e6
        monkeypatch.setenv("CONVNETLAB_KEEP_GB", "0")                  # nothing fits: the newest run stays
        assert _until(lambda: [s.id for s in r.jobs_of("a")] == ids[2:], 10)
    finally:
        r.shutdown()


def test_a_worker_does_not_rerun_the_servers_page_script(tmp_path, monkeypatch):
    """Under `streamlit run`, __main__ is the page script that ran last (a module with a path and no
    import name): a spawned worker would run that whole page before its job. It must not."""
    import sys
    import types

    marker = tmp_path / "page-ran.txt"
    script = tmp_path / "page.py"
    script.write_text(f"open({str(marker)!r}, 'w').write('ran')\n")
    fake = types.ModuleType("__main__")
    fake.__file__ = str(script)
    monkeypatch.setitem(sys.modules, "__main__", fake)
    r = LocalRunner(root=str(tmp_path / "runs"), handlers=HANDLERS, spare=False)
    try:
        assert wait(r, r.submit("a", JobSpec("count", 2)), 60).state == "done"
    finally:
        r.shutdown()
    assert not marker.exists()
    assert sys.modules["__main__"] is fake                     # put back after the start


def test_to_prune_keeps_the_newest_within_count_age_and_size(monkeypatch):
    """The pruning rule both backends use, on (id, submitted, bytes) rows."""
    from core.train.jobs import to_prune

    now = time.time()
    rows = [("a", now - 40 * 86400, 10), ("b", now - 3, 10), ("c", now - 2, 10), ("d", now - 1, 10)]
    monkeypatch.setenv("CONVNETLAB_KEEP_GB", "1")
    assert to_prune(rows) == ["a"]                                   # older than 30 days
    assert to_prune(rows, keep=2) == ["a", "b"]                      # beyond the newest 2
    monkeypatch.setenv("CONVNETLAB_KEEP_GB", str(25 / 1e9))          # 25 bytes: the oldest go until it fits
    assert to_prune(rows) == ["a", "b"]
    monkeypatch.setenv("CONVNETLAB_KEEP_GB", "0")                    # nothing fits: the newest stays
    assert to_prune(rows) == ["a", "b", "c"]
    assert to_prune(list(reversed(rows))) == ["a", "b", "c"]         # order of the rows does not matter


def test_a_run_past_the_time_cap_is_stopped_and_says_so(runner, monkeypatch):
    from core.train.jobs import time_cap_s

    monkeypatch.setenv("CONVNETLAB_MAX_RUN_MIN", "0.03")          # 1.8 s
    assert time_cap_s() == pytest.approx(1.8)
    jid = runner.submit("alice", JobSpec("sleep", 60))
    t0 = time.time()
    st = wait(runner, jid, 30)
    assert st.state == "failed" and "time cap of 0.03 minutes per run" in st.message, st
    assert 1.8 <= time.time() - t0 < 15
    monkeypatch.setenv("CONVNETLAB_MAX_RUN_MIN", "0")              # no cap
    assert time_cap_s() is None
    monkeypatch.setenv("CONVNETLAB_MAX_RUN_MIN", "soon")           # a value that is not a number: the default
    assert time_cap_s() == 15 * 60


def test_the_queue_gives_each_session_its_share(runner):
    """A session that just ran waits behind sessions that have not run yet, whenever it clicked."""
    first = runner.submit("alice", JobSpec("count", 1))
    assert wait(runner, first, 60).state == "done"
    blocker = runner.submit("zoe", JobSpec("sleep", 60))
    assert _until(lambda: runner.status(blocker).state == "running")
    again = runner.submit("alice", JobSpec("count", 1))              # alice again, first in line by time
    bob = runner.submit("bob", JobSpec("count", 1))
    assert (runner.status(bob).position, runner.status(again).position) == (1, 2)
    runner.cancel(blocker)
    assert wait(runner, bob, 60).state == "done" and wait(runner, again, 60).state == "done"
