"""One job-runner suite, run against every backend: the local processes and a real local Ray
cluster (started once for this module, on loopback, small). Submit and events, the queue and one
active job per owner, cancel (queued, running, a worker that does not listen), crash, divergence
and exceptions, a second client finding a job (a reload on another web replica), a restart over
the same store, results of a real training job, and the CLI through the runner."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import pytest

from core.train.events import Note, Step
from core.train.jobs import JobError, JobSpec, wait
from core.train.local_runner import LocalRunner
from core.train.store import JobStore
from jobfakes import HANDLERS

TESTS = str(Path(__file__).resolve().parent)
REPO = str(Path(TESTS).parent)


@pytest.fixture(scope="module")
def ray_cluster():
    """A private Ray cluster (not one `ray start` may have left on this machine), limited to 4
    logical CPUs, no GPU and a 200 MB object store; its GCS address for clients in other processes."""
    ray = pytest.importorskip("ray")
    ctx = ray.init(address="local", num_cpus=4, num_gpus=0, object_store_memory=200 * 1024 ** 2, include_dashboard=False,
                   log_to_driver=False, _node_ip_address="127.0.0.2")
    try:
        yield ctx.address_info["gcs_address"]
    finally:
        ray.shutdown()


class Backend:
    """Makes runners of one backend over one folder and store, and ends them after the test."""

    def __init__(self, name: str, root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.name, self.root, self._mp = name, root, monkeypatch
        self.board = f"test-{uuid.uuid4().hex[:8]}"
        self._made: list = []

    def make(self, handlers: dict = HANDLERS, grace: float | None = None):
        if self.name == "local":
            if grace is not None:
                self._mp.setattr(LocalRunner, "CANCEL_GRACE_S", grace)
            r = LocalRunner(max_concurrent=1, root=str(self.root), handlers=handlers,
                            store=JobStore(self.root / "jobs.sqlite"))
        else:
            from core.train.ray_runner import RayRunner

            r = RayRunner(max_concurrent=1, root=str(self.root), handlers=handlers, name=self.board, num_cpus=1,
                          cancel_grace_s=grace, pythonpath=[TESTS])
        self._made.append(r)
        return r

    def another_client(self, r):
        """What a reload on another web replica talks to: the same instance for the local backend
        (one server process), a new client of the same board for Ray."""
        return r if self.name == "local" else self.make()

    def restart(self, r):
        """The server (local) or the cluster's board (Ray) goes away; a new one opens the store."""
        if self.name == "local":
            r.shutdown()
        else:
            r.stop_board()
        return self.make()

    def close(self) -> None:
        for r in self._made:
            r.shutdown()
        if self.name == "ray" and self._made:
            self._made[-1].stop_board()


@pytest.fixture(params=["local", "ray"])
def backend(request, tmp_path, monkeypatch):
    if request.param == "ray":
        request.getfixturevalue("ray_cluster")
    b = Backend(request.param, tmp_path, monkeypatch)
    yield b
    b.close()


@pytest.fixture()
def runner(backend):
    return backend.make()


def _until(pred, timeout=60.0):
    end = time.time() + timeout
    while not pred() and time.time() < end:
        time.sleep(0.02)
    return pred()


def _steps(events) -> list[int]:
    return [e.step for e in events if isinstance(e, Step)]


def test_events_arrive_in_order_and_since_returns_only_new_ones(runner, backend):
    jid = runner.submit("alice", JobSpec("count", 5))
    st = wait(runner, jid, 120)
    assert st.state == "done" and st.message == "counted to 5" and st.config == 5
    ev = runner.events(jid)
    assert _steps(ev) == [1, 2, 3, 4, 5]
    assert runner.events(jid, since=3) == ev[3:] and runner.events(jid, since=len(ev)) == []
    # a Ray worker imports only its handlers; a local one is forked from the fork server, which imported torch
    assert Note(f"torch imported: {backend.name == 'local'}") in ev
    assert (backend.root / jid / "out.txt").read_text() == "5 steps"   # in the shared results folder


def test_one_active_job_per_owner_queue_position_and_cancel(runner):
    a = runner.submit("alice", JobSpec("sleep", 60))
    with pytest.raises(JobError, match="^You already have a run in progress"):
        runner.submit("alice", JobSpec("count", 1))
    b = runner.submit("bob", JobSpec("count", 2))
    c = runner.submit("carol", JobSpec("count", 2))
    assert _until(lambda: _steps(runner.events(a)))
    assert (runner.status(a).state, runner.status(a).position) == ("running", 0)
    assert (runner.status(b).state, runner.status(b).position) == ("queued", 1)
    assert runner.status(c).position == 2
    runner.cancel(c)                                          # a queued job cancels at once
    assert runner.status(c).state == "cancelled" and runner.status(b).position == 1
    t = time.time()
    runner.cancel(a)
    assert wait(runner, a, 10).state == "cancelled"
    assert time.time() - t < 2.5                              # within a second or two
    assert runner.status(a).message == "cancelled"           # the handler stopped itself
    assert wait(runner, b, 60).state == "done"                # the queue moves on
    assert wait(runner, runner.submit("alice", JobSpec("count", 1)), 60).state == "done"   # alice may run again
    assert [s.id for s in runner.jobs_of("alice")][0] == a and runner.jobs_of("nobody") == []


def test_how_jobs_end(runner):
    assert wait(runner, runner.submit("d", JobSpec("diverge", None)), 60).state == "diverged"
    assert runner.status(runner.jobs_of("d")[0].id).message == "the loss became nan at step 3"
    st = wait(runner, runner.submit("d", JobSpec("boom", None)), 60)
    assert (st.state, st.message) == ("failed", "KeyError: 'no such thing'")
    st = wait(runner, runner.submit("d", JobSpec("crash", None)), 60)
    assert st.state == "failed" and st.message.startswith("the training process crashed")
    assert wait(runner, runner.submit("d", JobSpec("count", 1)), 60).state == "done"   # the runner lives on
    with pytest.raises(JobError, match="unknown job kind 'nope'"):
        runner.submit("d", JobSpec("nope", None))
    with pytest.raises(JobError, match="unknown job '0000'"):
        runner.status("0000")


def test_a_worker_that_ignores_cancel_is_stopped(backend):
    r = backend.make(grace=0.5)
    jid = r.submit("e", JobSpec("deaf", 60))
    assert _until(lambda: r.events(jid))
    t = time.time()
    r.cancel(jid)
    st = wait(r, jid, 10)
    assert (st.state, st.message) == ("cancelled", "cancelled (the worker was stopped)")
    assert time.time() - t < 2.5
    assert wait(r, r.submit("e", JobSpec("count", 1)), 60).state == "done"    # a new worker takes over


def test_a_cancelled_computation_stops_at_once(backend):
    """A computation's half-done work is worth nothing: it is stopped within a second even though a
    training run would get a 10 s grace (core.train.jobs.QUICK_CANCEL_S)."""
    r = backend.make(handlers={**HANDLERS, "compute": "jobfakes:deaf"}, grace=10.0)
    jid = r.submit("h", JobSpec("compute", 60))
    assert _until(lambda: r.events(jid))
    t = time.time()
    r.cancel(jid)
    st = wait(r, jid, 15)
    assert st.state == "cancelled" and time.time() - t < 2.5


def test_another_client_finds_watches_and_cancels_a_job(runner, backend):
    """A reload that lands on another web replica: the job, its events so far, the owner's limit
    and cancelling all work through the other client."""
    jid = runner.submit("fay", JobSpec("sleep", 60))
    assert _until(lambda: len(_steps(runner.events(jid))) >= 3)
    other = backend.another_client(runner)
    assert [s.id for s in other.jobs_of("fay")] == [jid] and other.status(jid).state == "running"
    seen = other.events(jid)
    assert _steps(seen)[:3] == [1, 2, 3] and runner.events(jid)[:len(seen)] == seen
    assert _until(lambda: len(other.events(jid)) > len(seen))               # live, through the other client
    with pytest.raises(JobError, match="already have a run"):
        other.submit("fay", JobSpec("count", 1))
    other.cancel(jid)
    assert wait(runner, jid, 10).state == "cancelled"


def test_a_restart_finds_earlier_runs_and_marks_unfinished_ones(backend):
    first = backend.make()
    done = first.submit("alice", JobSpec("count", 3))
    assert wait(first, done, 60).state == "done"
    going = first.submit("bob", JobSpec("sleep", 60))
    assert _until(lambda: _steps(first.events(going)))
    before = first.events(done)
    second = backend.restart(first)
    assert [s.id for s in second.jobs_of("alice")] == [done]
    st = second.status(done)
    assert (st.state, st.message, st.config) == ("done", "counted to 3", 3)
    assert second.events(done) == before and _steps(before) == [1, 2, 3]
    assert (backend.root / done / "out.txt").read_text() == "3 steps"       # its folder is kept
    st = second.status(going)
    assert st.state == "interrupted" and "server stopped" in st.message
    assert _steps(second.events(going))                                       # its curve so far
    assert wait(second, second.submit("bob", JobSpec("count", 1)), 60).state == "done"   # bob may run again


def test_a_board_whose_process_dies_comes_back_from_its_store(ray_cluster, tmp_path, monkeypatch):
    """Ray restarts the board's actor; the clients' next call reaches the new one, which lists the
    runs again (the one that was running, and died with its worker, as interrupted)."""
    import ray

    b = Backend("ray", tmp_path, monkeypatch)
    try:
        r = b.make()
        done = r.submit("hal", JobSpec("count", 2))
        assert wait(r, done, 60).state == "done"
        going = r.submit("ida", JobSpec("sleep", 60))
        assert _until(lambda: _steps(r.events(going)))
        ray.kill(ray.get_actor(b.board, namespace="convnetlab"), no_restart=False)   # as a crash would
        assert _until(lambda: r.status(going).state != "running")   # the kill is asynchronous
        st = r.status(going)
        assert st.state == "interrupted" and "server stopped" in st.message
        assert r.status(done).state == "done" and _steps(r.events(done)) == [1, 2]
        assert wait(r, r.submit("ida", JobSpec("count", 1)), 60).state == "done"
    finally:
        b.close()


def test_ray_places_jobs_by_the_resources_they_declare(ray_cluster, tmp_path):
    """A job's worker asks Ray for its CPUs and GPU share: on this GPU-less cluster a job that needs
    half a GPU waits in the queue, and says what for, instead of running on the CPU."""
    from core.train.ray_runner import RayRunner

    r = RayRunner(max_concurrent=2, device="cuda", root=str(tmp_path), handlers=HANDLERS,
                  name=f"test-gpu-{uuid.uuid4().hex[:8]}", num_cpus=1, pythonpath=[TESTS])
    try:
        jid = r.submit("gil", JobSpec("count", 1))
        time.sleep(3)                                          # long enough for a CPU worker to come up
        st = r.status(jid)
        assert (st.state, st.position) == ("queued", 1)
        assert st.message == "waiting for a Ray worker with 1 CPU and 0.5 GPU"   # 2 jobs share one GPU
        r.cancel(jid)
        assert r.status(jid).state == "cancelled"
    finally:
        r.stop_board()


@pytest.mark.ray
def test_no_ray_cluster_is_said_plainly(tmp_path):
    """No cluster at the address: the CLI says so in one line and exits 2 (no ray_cluster here)."""
    pytest.importorskip("ray")
    env = {**os.environ, "PYTHONPATH": REPO, "RAY_ADDRESS": "127.0.0.1:1", "CONVNETLAB_RESULTS": str(tmp_path)}
    p = subprocess.run([sys.executable, "-m", "core", *TINY, "--runner", "ray"], capture_output=True, text=True,
                       env=env, timeout=120, cwd=REPO)
    assert p.returncode == 2 and p.stdout == ""
    assert "error: no Ray cluster could be reached at '127.0.0.1:1'" in p.stderr


def test_a_real_training_job_through_ray(ray_cluster, tmp_path, monkeypatch):
    """A real run on a warm Ray worker (it imported torch before the job came), its typed events
    and its results read back from the shared folder; the same checks as the local backend's."""
    from test_jobs import _real_job

    b = Backend("ray", tmp_path, monkeypatch)
    try:
        _real_job(b.make(handlers={**HANDLERS, "train": "core.train.run:train"}))
    finally:
        b.close()


TINY = ["train", "--dataset", "shapes", "--shapes-classes", "3", "--shapes-per-class", "12", "--weights", "random",
        "--scenario", "1", "--epochs", "2", "--batch-size", "8", "--json"]


def test_the_cli_through_ray_prints_what_it_prints_in_process(ray_cluster, tmp_path):
    import ray

    env = {**os.environ, "PYTHONPATH": REPO, "RAY_ADDRESS": ray_cluster, "CONVNETLAB_RESULTS": str(tmp_path)}

    def cli(*extra: str) -> list[dict]:
        p = subprocess.run([sys.executable, "-m", "core", *TINY, *extra], capture_output=True, text=True, env=env,
                           timeout=300, cwd=REPO)
        assert p.returncode == 0, p.stderr[-2000:]
        return [json.loads(line) for line in p.stdout.splitlines()]

    try:
        here, there = cli(), cli("--runner", "ray")
    finally:
        try:
            ray.kill(ray.get_actor("convnetlab-jobs", namespace="convnetlab"), no_restart=True)
        except ValueError:
            pass
    assert [d["type"] for d in there] == [d["type"] for d in here] == ["epoch", "epoch", "final"]
    assert [list(d) for d in there] == [list(d) for d in here]
    # the same seeded run gives the same numbers wherever it runs (clocks aside)
    clocks = {"elapsed", "images_per_s", "seconds"}
    for a, b in zip(there, here):
        for k in set(a) - clocks:
            if isinstance(a[k], float):
                assert a[k] == pytest.approx(b[k], rel=1e-4, abs=1e-6), (k, a, b)
            else:
                assert a[k] == pytest.approx(b[k], rel=1e-4) if isinstance(a[k], dict) else a[k] == b[k], (k, a, b)
    assert there[-1]["weights"] == here[-1]["weights"] == "random"
    assert [e["epoch"] for e in there[:2]] == [1, 2]
    assert (tmp_path / "runs" / "ray-jobs.sqlite").is_file()        # the board kept the run in the shared folder


# --- a store or a folder that cannot be written ------------------------------------------------------

@contextlib.contextmanager
def _immutable(*paths: Path):
    """Makes files or folders immutable (chattr +i: even root cannot write them), and undoes it."""
    done = []
    try:
        for p in paths:
            subprocess.run(["chattr", "+i", str(p)], check=True, capture_output=True)
            done.append(p)
        yield
    finally:
        for p in done:
            subprocess.run(["chattr", "-i", str(p)], capture_output=True)


def _store_file(backend) -> Path:
    return backend.root / ("jobs.sqlite" if backend.name == "local" else "ray-jobs.sqlite")


def test_a_store_that_fails_mid_run_ends_the_run_with_the_reason_and_the_runner_goes_on(runner, backend):
    jid = runner.submit("alice", JobSpec("sleep", 60))
    assert _until(lambda: _steps(runner.events(jid)))
    store = _store_file(backend)
    with _immutable(store, store.parent / (store.name + "-journal")):
        assert _until(lambda: runner.status(jid).state == "failed", timeout=30), runner.status(jid)
        st = runner.status(jid)
        assert "its progress could not be saved" in st.message and str(store) in st.message
        with pytest.raises(JobError, match="^This run cannot start: the server cannot save runs"):
            runner.submit("bob", JobSpec("count", 1))
        assert runner.status(jid).state == "failed"             # the runner still answers
    # once the file can be written again, the run's end reaches it, with the reason
    assert _until(lambda: {j.id: j.state for j in JobStore(store).jobs()}.get(jid) == "failed", timeout=30)
    assert "could not be saved" in {j.id: j.message for j in JobStore(store).jobs()}[jid]
    b = runner.submit("bob", JobSpec("count", 2))               # and new runs start again
    assert wait(runner, b, 60).state == "done"


def test_a_results_folder_that_cannot_be_written_refuses_a_run_in_one_sentence(runner, backend):
    with _immutable(backend.root):
        with pytest.raises(JobError) as e:
            runner.submit("alice", JobSpec("count", 1))
    assert str(e.value).startswith("This run cannot start: the server cannot save runs (")
    assert str(backend.root.parent) in str(e.value) and "\n" not in str(e.value)
    assert wait(runner, runner.submit("alice", JobSpec("count", 1)), 60).state == "done"


@pytest.mark.ray
def test_a_cluster_that_needs_a_token_refuses_the_cli_at_once_in_one_line(tmp_path):
    """A Ray head with token authentication (as a hosted class starts it); the CLI without the
    token is told so in one line within seconds, instead of half a minute of retries."""
    import secrets
    import socket

    token = tmp_path / "token"
    token.write_text(secrets.token_hex(32))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    temp = Path(tempfile.mkdtemp(prefix="ray-", dir="/tmp"))   # Ray's socket paths must stay short
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token)}
    env.pop("RAY_ADDRESS", None)
    ray_bin = str(Path(sys.executable).parent / "ray")
    try:
        subprocess.run([ray_bin, "start", "--head", "--node-ip-address=127.0.0.4", f"--port={port}",
                        "--include-dashboard=false", "--disable-usage-stats", "--num-cpus=1",
                        f"--temp-dir={temp}"], env=env, check=True, capture_output=True, timeout=120)
        cli = {k: v for k, v in os.environ.items() if not k.startswith("RAY_AUTH")}
        cli.update(PYTHONPATH=REPO, RAY_ADDRESS=f"127.0.0.4:{port}", CONVNETLAB_RESULTS=str(tmp_path))
        t0 = time.time()
        p = subprocess.run([sys.executable, "-m", "core", *TINY, "--runner", "ray"], capture_output=True, text=True,
                           env=cli, timeout=120, cwd=REPO)
        assert p.returncode == 2 and time.time() - t0 < 20
        assert p.stderr.strip().startswith("error: refused: the Ray cluster at 127.0.0.4") and "token" in p.stderr
        assert len(p.stderr.strip().splitlines()) == 1, p.stderr
    finally:
        subprocess.run(["pkill", "-9", "-f", str(temp)], capture_output=True)
        shutil.rmtree(temp, ignore_errors=True)
