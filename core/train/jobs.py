"""Training jobs behind one interface, whatever runs them.

`Runner` is what a page uses: submit a `JobSpec`, read a job's status (with its queue position)
and its events since the last read, cancel it, fetch its results, know the runner's limits.
`make_runner()` picks the backend from configuration (`CONVNETLAB_RUNNER`, default "local"), so
a cluster backend can be added here without touching `pages/`.

`run_job` is the backend-neutral part: it calls the handler a job's kind names (a dotted
"module:function", e.g. `core.train.run:train`) and turns how it ended into a job state. The
local backend runs it in a spawned process per job, so a crash or a hang cannot take the
dashboard down: at most `max_concurrent` jobs run at once, the rest wait in a queue, one owner (a
browser session) may have one active job, and events flow back through a multiprocessing queue
and are kept in memory, so a reloaded page finds its job and replays its curves. One spare
worker waits with the handlers (and torch) already imported, so a job's first progress shows
within a second instead of after the imports; a worker ends when the server does.

This module imports neither torch nor the handlers: the runner's own tests use torch-free
handlers, and a worker imports only what its handler needs.
"""

from __future__ import annotations

import contextlib
import importlib
import multiprocessing as mp
import os
import queue
import shutil
import sys
import tempfile
import threading
import time
import types
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping, Protocol

from core.train.events import ACTIVE_STATES, Cancelled, Diverged, Event, JobFailed, JobState
from core.train.store import JobStore, StoredJob, results_dir

HANDLERS: dict[str, str] = {"train": "core.train.run:train", "lr_find": "core.train.run:lr_find",
                            "lab": "core.lab.common:run", "compute": "core.train.compute:run"}
# How a finished job's folder is read back, per kind (kinds without an entry leave no results).
RESULT_LOADERS: dict[str, str] = {"train": "core.train.results:load_results", "lab": "core.lab.common:load_results",
                                  "compute": "core.train.compute:load_result"}


# Kinds whose half-done work is worth nothing (a timing, a computation): a cancelled worker of
# one is stopped after this many seconds, not after the grace a training run gets to stop at a
# step boundary; one forward pass of a big model can take longer than a user should wait.
QUICK_CANCEL_S: dict[str, float] = {"compute": 0.5}


class JobError(RuntimeError):
    """A request the runner refuses (e.g. a second active job for one owner), said for the user."""


@dataclass(frozen=True)
class JobSpec:
    """What to run: a kind (a key of the runner's handlers), its frozen config, and bytes that
    travel with it (a zip dataset)."""

    kind: str
    config: Any
    payload: bytes | None = None


@dataclass(frozen=True)
class JobContext:
    """What a handler gets besides its spec."""

    emit: Callable[[Event], None]
    should_stop: Callable[[], bool]
    out_dir: Path              # where the handler leaves its results
    device: str                # "cpu" or "cuda"


@dataclass(frozen=True)
class JobStatus:
    id: str
    kind: str
    state: JobState
    message: str
    position: int              # place in the queue (0 = running or finished)
    config: Any
    submitted: float           # time.time() at submission


@dataclass(frozen=True)
class RunnerLimits:
    max_concurrent: int        # jobs that run at once
    device: str                # where they run


class Runner(Protocol):
    """The interface every backend fills; see the module doc."""

    def limits(self) -> RunnerLimits: ...
    def submit(self, owner: str, spec: JobSpec) -> str: ...
    def status(self, job_id: str) -> JobStatus: ...
    def jobs_of(self, owner: str) -> list[JobStatus]: ...
    def events(self, job_id: str, since: int = 0) -> list[Event]: ...
    def cancel(self, job_id: str) -> None: ...
    def results(self, job_id: str) -> Any | None: ...
    def shutdown(self) -> None: ...


def _resolve(target: str) -> Callable[[JobSpec, JobContext], str]:
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)


def run_job(spec: JobSpec, ctx: JobContext, handlers: Mapping[str, str] = HANDLERS) -> tuple[JobState, str]:
    """Runs a job's handler; returns how it ended and a sentence for the user."""
    try:
        return "done", _resolve(handlers[spec.kind])(spec, ctx)
    except Cancelled:
        return "cancelled", "cancelled"
    except Diverged as e:
        return "diverged", str(e)
    except JobFailed as e:
        return "failed", str(e)
    except Exception as e:  # noqa: BLE001 - reported to the user, not swallowed
        return "failed", f"{type(e).__name__}: {e}"


def wait(runner: Runner, job_id: str, timeout: float = 120.0) -> JobStatus:
    """Blocks until the job ends (tests and scripts)."""
    end = time.time() + timeout
    while time.time() < end:
        st = runner.status(job_id)
        if st.state not in ACTIVE_STATES:
            return st
        time.sleep(0.05)
    raise TimeoutError(f"job {job_id} still {runner.status(job_id).state} after {timeout} s")


# --- rules every backend shares ---------------------------------------------------------------------

KEEP_FINISHED = 200     # finished jobs kept (events and result folders); older ones are deleted,
KEEP_DAYS = 30          # and so are finished jobs older than this, and the oldest beyond keep_bytes()
CRASHED = "the training process crashed"


class Tracked(Protocol):
    """What the shared rules read of a backend's job record."""

    id: str
    owner: str
    state: JobState
    submitted: float


def check_submit(jobs: Iterable[Tracked], owner: str, kind: str, handlers: Mapping[str, str]) -> None:
    """Refuses an unknown kind and a second active job for one owner (a browser session)."""
    if kind not in handlers:
        raise JobError(f"unknown job kind {kind!r}")
    if any(j.owner == owner and j.state in ACTIVE_STATES for j in jobs):
        raise JobError("You already have a run in progress: wait for it or cancel it first.")


def queue_position(jobs: Iterable[Tracked], job: Tracked) -> int:
    """1 for the oldest queued job, 2 for the next...; 0 for a job that is not queued."""
    queued = sorted((x for x in jobs if x.state == "queued"), key=lambda x: x.submitted)
    return next((i + 1 for i, x in enumerate(queued) if x.id == job.id), 0)


def restored(state: str, has_config: bool) -> tuple[JobState, str] | None:
    """How a stored job reads after its server or board restarted: None when as it was; else
    interrupted, with the reason."""
    if state in ACTIVE_STATES:
        return "interrupted", "the server stopped while this run was in progress"
    if not has_config:
        return "interrupted", "this run was made by an older version of the dashboard"
    return None


def keep_bytes() -> int:
    """How much the finished runs' folders may take together: $CONVNETLAB_KEEP_GB (default 5 GB)."""
    try:
        return int(float(os.environ.get("CONVNETLAB_KEEP_GB", "5")) * 1e9)
    except ValueError:
        return int(5e9)


def folder_bytes(folder: str | Path) -> int:
    """The size of the files under a folder (0 when it is gone)."""
    return sum(f.stat().st_size for f in Path(folder).rglob("*") if f.is_file())


def to_prune(finished: list[tuple[str, float, int]], keep: int = KEEP_FINISHED, days: float = KEEP_DAYS) -> list[str]:
    """Which finished jobs go, given (id, submitted, folder bytes) of each: oldest first, those
    beyond the newest `keep`, older than `days`, and while all together exceed keep_bytes() (the
    newest always stays)."""
    done = sorted(finished, key=lambda x: x[1])
    too_old = time.time() - days * 86400
    total, cap, out = sum(b for _, _, b in done), keep_bytes(), []
    for i, (jid, submitted, size) in enumerate(done):
        if i < len(done) - keep or submitted < too_old or (total > cap and i < len(done) - 1):
            total -= size
            out.append(jid)
    return out


class JobTable:
    """What both backends keep the same way: their jobs by id under one lock, found by id or by
    owner, events read from the store on first use, and the restore after a restart. A backend
    sets `_jobs`, `_lock` and `_store`, and says how one job reads (`_status`)."""

    _jobs: dict[str, Any]
    _lock: threading.Lock
    _store: JobStore | None

    def status(self, job_id: str) -> JobStatus:
        with self._lock:
            return self._status(self._get(job_id))

    def jobs_of(self, owner: str) -> list[JobStatus]:
        with self._lock:
            return [self._status(j) for j in sorted(self._jobs.values(), key=lambda x: x.submitted)
                    if j.owner == owner]

    def events(self, job_id: str, since: int = 0) -> list[Any]:
        with self._lock:
            j = self._get(job_id)
            if not j.loaded:
                j.events, j.loaded = self._store.events(j.id), True
                j.saved = len(j.events)
            return list(j.events[since:])

    def cancel(self, job_id: str) -> None:
        """A queued job is cancelled at once; a running one is asked to stop (`_ask_to_stop`) and
        is stopped by force after its grace period if it does not."""
        with self._lock:
            j = self._get(job_id)
            if j.state == "queued":
                self._set(j, "cancelled", "cancelled before it started")
                j.spec = None
            elif j.state == "running" and not j.cancel_at and self._ask_to_stop(j):
                j.cancel_at = time.time()

    def _ask_to_stop(self, j: Any) -> bool:
        """Signals a running job's handler (ctx.should_stop); False when it cannot be reached yet."""
        raise NotImplementedError

    def _set(self, j: Any, state: JobState, message: str) -> None:
        raise NotImplementedError

    def _status(self, j: Any) -> JobStatus:
        raise NotImplementedError

    def _get(self, job_id: str) -> Any:
        if job_id not in self._jobs:
            raise JobError(f"unknown job {job_id!r}")
        return self._jobs[job_id]

    def _restore(self, store: JobStore, make: Callable[[StoredJob], Any]) -> None:
        """The jobs an earlier server or board left (`make` turns each into this backend's record):
        finished ones as they were, unfinished ones interrupted (`restored`)."""
        for sj in store.jobs():
            j = make(sj)
            now = restored(sj.state, sj.config is not None)
            if now:
                j.state, j.message = now
                store.set_state(j.id, j.state, j.message)
            self._jobs[j.id] = j


# --- the local process backend -------------------------------------------------------------------

def _exit_with(parent: int) -> None:
    """Ends this worker when the process that started it is gone (even after a kill -9 of the
    server, which would otherwise leave it training as an orphan)."""
    while True:
        time.sleep(0.5)
        if os.getppid() != parent:
            os._exit(3)


def _worker(handlers: Mapping[str, str], q: Any, cancel: Any, jobs: Any, device: str, threads: int,
            parent: int) -> None:
    """Runs in the child process: imports every handler's module, waits for one job on `jobs`,
    runs it with its events into the queue, then puts ("end", state, message)."""
    # Before anything imports torch, which reads these once for its thread pools.
    os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = str(max(1, threads))
    threading.Thread(target=_exit_with, args=(parent,), daemon=True).start()
    for module in sorted({target.partition(":")[0] for target in handlers.values()}):
        try:
            importlib.import_module(module)
        except Exception:  # noqa: BLE001 - the job that needs it reports the error
            pass
    try:
        spec, out_dir = jobs.recv()
    except EOFError:  # the runner shut down before giving this worker a job
        return
    state, message = run_job(spec, JobContext(q.put, cancel.is_set, Path(out_dir), device), handlers)
    q.put(("end", state, message))


_MAIN_SWAP = threading.Lock()


@contextlib.contextmanager
def _without_main_script() -> Iterator[None]:
    """A spawned process first re-runs the parent's `__main__` script by its path. Under `streamlit
    run`, `__main__` is whichever page script ran last: every worker ran a whole page in bare mode
    (data loaded, warnings logged) before its job. While a worker starts, `__main__` is a module
    without a path (one whose import name spawn can use, like `pytest`, is left alone)."""
    main = sys.modules.get("__main__")
    if getattr(getattr(main, "__spec__", None), "name", None) or not getattr(main, "__file__", None):
        yield
        return
    with _MAIN_SWAP:
        sys.modules["__main__"] = placeholder = types.ModuleType("__main__")
        try:
            yield
        finally:
            if sys.modules.get("__main__") is placeholder:   # unless a page run put its own there meanwhile
                sys.modules["__main__"] = main


def _end_process(process: Any) -> None:
    """Joins a worker process (killing it if it does not end within a second) and frees it."""
    process.join(timeout=1)
    if process.is_alive():
        process.kill()
        process.join(timeout=1)
    process.close()


@dataclass
class _Worker:
    """A started worker process, waiting for its job on `jobs` (the sending end of a pipe)."""

    process: Any
    queue: Any
    cancel: Any
    jobs: Any


def _send(conn: Any, message: Any) -> None:
    try:
        conn.send(message)  # blocks until the worker reads it once its imports are done
    except (OSError, EOFError):  # the worker died first; the runner reports the crash
        pass
    finally:
        conn.close()


@dataclass
class _Job:
    id: str
    owner: str
    spec: JobSpec | None            # dropped once the job has started (it may hold a zip's bytes)
    kind: str
    config: Any
    out_dir: Path
    state: JobState = "queued"
    message: str = ""
    events: list[Event] = field(default_factory=list)
    submitted: float = field(default_factory=time.time)
    process: Any = None
    cancel: Any = None
    queue: Any = None
    cancel_at: float = 0.0
    saved: int = 0                  # events already in the store
    bytes: int | None = None        # size of the result folder once finished
    loaded: bool = True             # False for a stored job whose events are read on first use


class LocalRunner(JobTable):
    """Worker processes on this machine. Thread-safe; one instance serves every session of a server."""

    CANCEL_GRACE_S = 10.0   # a cancelled worker that has not stopped by then is terminated
    KEEP_FINISHED = KEEP_FINISHED   # see to_prune (class attributes: the tests lower them)
    KEEP_DAYS = KEEP_DAYS

    def __init__(self, max_concurrent: int = 1, device: str = "cpu", root: str | None = None,
                 handlers: Mapping[str, str] = HANDLERS, spare: bool = True, store: JobStore | None = None) -> None:
        self._limits = RunnerLimits(max_concurrent, device)
        self._handlers = dict(handlers)
        self._keep_spare = spare
        self._spare: _Worker | None = None
        self.root = Path(root or tempfile.mkdtemp(prefix="convnetlab-jobs-"))
        self._jobs: dict[str, _Job] = {}
        self._store = store
        if store is not None:
            self._load(store)
        self._lock = threading.Lock()
        self._ctx = mp.get_context("spawn")
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="job-runner", daemon=True)
        self._thread.start()

    # --- the interface --------------------------------------------------------------------------
    def limits(self) -> RunnerLimits:
        return self._limits

    def submit(self, owner: str, spec: JobSpec) -> str:
        """Queues a job; refuses a second active job for the same owner and unknown kinds."""
        with self._lock:
            check_submit(self._jobs.values(), owner, spec.kind, self._handlers)
            jid = uuid.uuid4().hex[:12]
            out = self.root / jid
            out.mkdir(parents=True)
            j = self._jobs[jid] = _Job(jid, owner, spec, spec.kind, spec.config, out)
            if self._store is not None:
                self._store.add(StoredJob(jid, owner, j.kind, j.config, j.state, j.message, j.submitted, str(out)))
        return jid

    def _ask_to_stop(self, j: _Job) -> bool:
        if j.cancel is None:
            return False
        j.cancel.set()
        return True

    def results(self, job_id: str) -> Any | None:
        """A finished job's results (`core.train.results.Results` for "train", `core.lab.common.LabResults`
        for "lab"); None while it runs or when it left none (failed, LR finder)."""
        with self._lock:
            j = self._get(job_id)
            if j.state != "done" or j.kind not in RESULT_LOADERS:
                return None
            folder, kind = j.out_dir, j.kind
        return _resolve(RESULT_LOADERS[kind])(folder)

    def shutdown(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        with self._lock:
            for j in self._jobs.values():
                if j.process is not None and j.process.is_alive():
                    j.process.terminate()
                if j.process is not None:
                    self._release(j)
            if self._spare is not None:
                self._spare.process.terminate()
                self._close(self._spare)
                self._spare = None

    # --- inside -------------------------------------------------------------------------------------
    def _set(self, j: _Job, state: JobState, message: str) -> None:
        """A job's new state, in memory and in the store."""
        j.state, j.message = state, message
        if self._store is not None:
            self._store.set_state(j.id, state, message)

    def _load(self, store: JobStore) -> None:
        self._restore(store, lambda sj: _Job(sj.id, sj.owner, None, sj.kind, sj.config, Path(sj.out_dir), sj.state,
                                             sj.message, submitted=sj.submitted, loaded=False))

    def _status(self, j: _Job) -> JobStatus:
        return JobStatus(j.id, j.kind, j.state, j.message, queue_position(self._jobs.values(), j), j.config,
                         j.submitted)

    def _loop(self) -> None:
        while not self._stop.is_set():
            with self._lock:
                self._drain_and_reap()
                running = sum(j.state == "running" for j in self._jobs.values())
                for j in sorted(self._jobs.values(), key=lambda x: x.submitted):
                    if running >= self._limits.max_concurrent:
                        break
                    if j.state == "queued":
                        try:
                            self._start(j)
                            running += 1
                        except OSError as e:  # e.g. out of processes or file descriptors
                            self._set(j, "failed", f"could not start a worker process: {e}")
                if self._keep_spare and not self._stop.is_set():
                    self._refresh_spare()
                self._forget_old()
            time.sleep(0.05)

    def _spawn(self) -> _Worker:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        # $CONVNETLAB_JOB_THREADS: a hosted server sets fewer than its cores, so that its pages stay
        # quick while a run trains (the run takes longer).
        threads = max(1, cores // self._limits.max_concurrent)
        if os.environ.get("CONVNETLAB_JOB_THREADS", "").isdigit():
            threads = max(1, int(os.environ["CONVNETLAB_JOB_THREADS"]))
        q, cancel = self._ctx.Queue(), self._ctx.Event()
        receive, send = self._ctx.Pipe(duplex=False)
        process = self._ctx.Process(target=_worker, daemon=True, args=(
            self._handlers, q, cancel, receive, self._limits.device, threads, os.getpid()))
        with _without_main_script():
            process.start()
        receive.close()
        return _Worker(process, q, cancel, send)

    def _refresh_spare(self) -> None:
        """Keeps one live worker waiting (a spare that died is replaced)."""
        if self._spare is not None and not self._spare.process.is_alive():
            self._close(self._spare)
            self._spare = None
        if self._spare is None:
            try:
                self._spare = self._spawn()
            except OSError:  # no spare then; jobs start cold
                self._spare = None

    def _start(self, j: _Job) -> None:
        self._refresh_spare()                          # a live worker, a new one if the spare died
        w, self._spare = self._spare or self._spawn(), None
        # From another thread: a zip's bytes can outgrow the pipe while the worker still imports.
        threading.Thread(target=_send, args=(w.jobs, (j.spec, str(j.out_dir))), daemon=True).start()
        j.process, j.queue, j.cancel = w.process, w.queue, w.cancel
        self._set(j, "running", "")
        j.spec = None

    @staticmethod
    def _close(w: _Worker) -> None:
        """Ends an unused spare and closes its pipes."""
        _end_process(w.process)
        w.queue.close()
        w.jobs.close()

    def _forget_old(self) -> None:
        """Deletes the finished jobs `to_prune` names, events and result folders."""
        done = [j for j in self._jobs.values() if j.state not in ACTIVE_STATES]
        for j in done:
            if j.bytes is None:                  # measured once, when a finished job is first seen
                j.bytes = folder_bytes(j.out_dir)
        for jid in to_prune([(j.id, j.submitted, j.bytes) for j in done], self.KEEP_FINISHED, self.KEEP_DAYS):
            shutil.rmtree(self._jobs[jid].out_dir, ignore_errors=True)
            del self._jobs[jid]
            if self._store is not None:
                self._store.delete(jid)

    @staticmethod
    def _release(j: _Job) -> None:
        """Joins the finished worker and closes its pipes (each holds file descriptors)."""
        if j.process is not None:
            _end_process(j.process)
        if j.queue is not None:
            j.queue.close()
        j.process = j.queue = j.cancel = None

    def _drain(self, j: _Job) -> None:
        try:
            self._drain_queue(j)
        finally:
            if self._store is not None and len(j.events) > j.saved:
                self._store.add_events(j.id, j.saved, j.events[j.saved:])
                j.saved = len(j.events)

    def _drain_queue(self, j: _Job) -> None:
        while True:
            try:
                item = j.queue.get_nowait()
            except (queue.Empty, OSError, EOFError):
                return
            if isinstance(item, tuple) and item[0] == "end":
                self._set(j, item[1], item[2])
            else:
                j.events.append(item)

    def _drain_and_reap(self) -> None:
        for j in self._jobs.values():
            if j.state != "running":
                continue
            grace = QUICK_CANCEL_S.get(j.kind, self.CANCEL_GRACE_S)
            if j.cancel_at and time.time() - j.cancel_at > grace and j.process.is_alive():
                j.process.terminate()  # it did not reach a cancellation point in time
                self._set(j, "cancelled", "cancelled (the worker was stopped)")
            self._drain(j)
            if j.state == "running" and not j.process.is_alive():
                time.sleep(0.05)  # the queue may still hold the last events of a process that just ended
                self._drain(j)
                if j.state == "running":
                    self._set(j, "failed", f"{CRASHED} (exit code {j.process.exitcode})")
            if j.state != "running":
                self._release(j)


# --- choosing a backend --------------------------------------------------------------------------

# "ray": a job board on a Ray cluster ($RAY_ADDRESS), shared by every web replica (core.train.ray_runner).
BACKENDS: dict[str, str] = {"local": "core.train.jobs:LocalRunner", "ray": "core.train.ray_runner:RayRunner"}


def make_runner(backend: str | None = None, device: str | None = None, **options: Any) -> Runner:
    """The runner configuration asks for: `backend` or $CONVNETLAB_RUNNER (default "local"), on
    `device` (default: CUDA when there is a GPU). One job at a time on a CPU (it uses every core),
    two on a GPU."""
    name = backend or os.environ.get("CONVNETLAB_RUNNER", "local")
    if name not in BACKENDS:
        raise JobError(f"unknown runner backend {name!r} (CONVNETLAB_RUNNER); available: {', '.join(BACKENDS)}")
    if device is None:
        from core.device import describe_device

        device = "cuda" if describe_device().kind == "cuda" else "cpu"
    options.setdefault("max_concurrent", 2 if device == "cuda" else 1)
    if name == "local":
        # Durable by default: runs and their folders outlive the server (core.train.store).
        root = Path(options.get("root") or results_dir() / "runs")
        options["root"] = str(root)
        options.setdefault("store", JobStore(root / "jobs.sqlite"))
    if name == "ray":
        # The runs' folders and the board's store in the results directory every replica shares.
        options.setdefault("root", str(results_dir() / "runs"))
    cls = _resolve(BACKENDS[name])
    return cls(device=device, **options)
