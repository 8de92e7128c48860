"""The local process backend of the job runner: a process per job, so a crash or a hang cannot
take the dashboard down. At most `max_concurrent` jobs run at once, the rest wait in a queue, one
owner (a browser session) may have one active job, and events flow back through a multiprocessing
queue and are kept in memory (and in the durable store), so a reloaded page finds its job and
replays its curves. A worker ends when the server does.

Workers are forked from multiprocessing's fork server, which imports the handlers' modules (torch,
torchvision, captum: 3 to 4 CPU-seconds) once per server process; a spawned worker paid that for
every job. The fork server is a process of its own that has only imported modules (no threads, no
CUDA), so forking it is safe, unlike forking the server. A worker takes the server's environment of
the moment it starts (the fork server's is that of its own start). One spare worker waits,
so a job's first progress shows within a second. The fork server keeps the code it imported: a
developer who edits core/ restarts the server, as for any imported module.

Like `core.train.jobs`, this module imports neither torch nor the handlers.
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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping

from core.train.context import JobContext
from core.train.events import ACTIVE_STATES, Event, JobState
from core.train.jobs import (CRASHED, HANDLERS, KEEP_DAYS, KEEP_FINISHED, QUICK_CANCEL_S, RESULT_LOADERS, JobSpec,
                             JobStatus, JobTable, RunnerLimits, check_submit, folder_bytes, queue_order, queue_position,
                             recent_runs, resolve, run_job, to_prune)
from core.train.store import JobStore


def _context() -> Any:
    """multiprocessing's fork server, told to import the default handlers' modules and PRELOAD when it starts
    (the first worker of this process starts it; every runner of the process shares it). Spawn
    where there is no fork server (Windows), or when $CONVNETLAB_WORKER_START says "spawn"
    (bench/bench_worker_start.py compares the two)."""
    if os.environ.get("CONVNETLAB_WORKER_START") == "spawn" or "forkserver" not in mp.get_all_start_methods():
        return mp.get_context("spawn")
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(sorted({target.partition(":")[0] for target in HANDLERS.values()} | set(PRELOAD)))
    return ctx


# Imported by the fork server besides the handlers' modules: what the default jobs import on first use.
# scikit-learn (with scipy): the Studio's default run reads its digits, the Lab's autoencoder uses it too;
# imported in each job's worker it took about 1.1 s before the first step (bench_first_progress.py).
# The fork server skips a module it cannot import (the GPU machine's environment, say).
PRELOAD = ("sklearn.datasets",)


# A pipe whose sending end only this process holds, and never writes to: each worker holds its
# receiving end and reads end-of-file when this process is gone. (A worker's parent is the fork
# server, which lives as long as any worker does, so the parent cannot tell.)
_ALIVE: list = []
_ALIVE_LOCK = threading.Lock()


def _server_alive(ctx: Any) -> Any:
    with _ALIVE_LOCK:
        if not _ALIVE:
            _ALIVE.extend(ctx.Pipe(duplex=False))
        return _ALIVE[0]


def _exit_with(server: Any) -> None:
    """Ends this worker when the server is gone (even after a kill -9, which would otherwise leave
    it training as an orphan); the fork server then ends with its last worker."""
    try:
        while True:
            server.recv()
    except (EOFError, OSError):
        os._exit(3)


def _worker(handlers: Mapping[str, str], q: Any, cancel: Any, jobs: Any, device: str, threads: int,
            env: Mapping[str, str], server: Any) -> None:
    """Runs in the child process: imports every handler's module (the fork server has imported the
    default ones), waits for one job on `jobs`, runs it with its events into the queue, then puts
    ("end", state, message)."""
    threading.Thread(target=_exit_with, args=(server,), daemon=True).start()
    os.environ.clear()
    os.environ.update(env)
    os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = str(max(1, threads))
    if "torch" in sys.modules:   # imported by the fork server, its thread pools not yet made: sized here
        sys.modules["torch"].set_num_threads(max(1, threads))
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
    """A new worker (forked from the fork server, or spawned) first re-runs the parent's `__main__`
    script by its path. Under `streamlit run`, `__main__` is whichever page script ran last: every
    worker ran a whole page in bare mode (data loaded, warnings logged) before its job. While a
    worker starts, `__main__` is a module without a path (one whose import name spawn can use, like
    `pytest`, is left alone)."""
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
    """Joins a worker process (killing it if it does not end within a second) and frees it. A
    killed process can take more than a second to be reaped on a machine under heavy load; one that
    is still there is left to the garbage collector rather than closed, which would raise and stop
    the runner's loop with it."""
    process.join(timeout=1)
    if process.is_alive():
        process.kill()
        process.join(timeout=10)
    if not process.is_alive():
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
    started: float = 0.0            # time.time() when a worker took it
    state_saved: bool = True        # the store has the state (see JobTable._set)
    store_error: str = ""           # why the store refused the last write ("" when it did not)
    store_failing_since: float = 0.0
    stopped_because: str = ""       # why the server stopped it (time cap, storage), if it did


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
        self._ctx = _context()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="job-runner", daemon=True)
        self._thread.start()

    # --- the interface --------------------------------------------------------------------------
    def limits(self) -> RunnerLimits:
        return self._limits

    def submit(self, owner: str, spec: JobSpec) -> str:
        """Queues a job; refuses a second active job for the same owner, unknown kinds, and a job
        the server cannot keep (its folder or the store cannot be written)."""
        with self._lock:
            check_submit(self._jobs.values(), owner, spec.kind, self._handlers)
            j = self._create(owner, spec.kind, lambda jid, out: _Job(jid, owner, spec, spec.kind, spec.config, out),
                             spec.config)
        return j.id

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
        return resolve(RESULT_LOADERS[kind])(folder)

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
    def _load(self, store: JobStore) -> None:
        self._restore(store, lambda sj: _Job(sj.id, sj.owner, None, sj.kind, sj.config, Path(sj.out_dir), sj.state,
                                             sj.message, submitted=sj.submitted, loaded=False))

    def _status(self, j: _Job) -> JobStatus:
        pos = queue_position(self._jobs.values(), j, recent_runs(self._jobs.values())) if j.state == "queued" else 0
        return JobStatus(j.id, j.kind, j.state, j.message, pos, j.config, j.submitted)

    def _loop(self) -> None:
        while not self._stop.is_set():
            with self._lock:
                self._drain_and_reap()
                self._keep_records()
                running = sum(j.state == "running" for j in self._jobs.values())
                for j in queue_order(self._jobs.values(), recent_runs(self._jobs.values())):
                    if running >= self._limits.max_concurrent:
                        break
                    try:
                        self._start(j)
                        running += 1
                    except OSError as e:  # e.g. out of processes or file descriptors
                        self._set(j, "failed", f"could not start a worker process: {e}")
                self._forget_old()
                want_spare = self._keep_spare and not self._stop.is_set() and not self._spare_alive()
            if want_spare:
                self._add_spare()
            time.sleep(0.05)

    def _spare_alive(self) -> bool:
        """Whether a live spare waits (a dead one is closed and dropped). Under the lock."""
        if self._spare is not None and not self._spare.process.is_alive():
            self._close(self._spare)
            self._spare = None
        return self._spare is not None

    def _add_spare(self) -> None:
        """Starts a spare worker outside the lock: the first start of the fork server waits for its
        imports (seconds), and the pages that list or submit jobs must not wait with it."""
        try:
            w = self._spawn()
        except OSError:  # no spare then; jobs start cold
            return
        with self._lock:
            if self._spare is None and not self._stop.is_set():
                self._spare, w = w, None
        if w is not None:        # shut down meanwhile
            self._close(w)

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
            self._handlers, q, cancel, receive, self._limits.device, threads, dict(os.environ),
            _server_alive(self._ctx)))
        with _without_main_script():
            process.start()
        receive.close()
        return _Worker(process, q, cancel, send)

    def _start(self, j: _Job) -> None:
        self._spare_alive()                            # a dead spare is dropped: this job starts cold
        w, self._spare = self._spare or self._spawn(), None
        # From another thread: a zip's bytes can outgrow the pipe while the worker still imports.
        threading.Thread(target=_send, args=(w.jobs, (j.spec, str(j.out_dir))), daemon=True).start()
        j.process, j.queue, j.cancel = w.process, w.queue, w.cancel
        j.started = time.time()
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
            if self._save(self._jobs[jid], "delete", jid):        # else kept, and tried again later
                shutil.rmtree(self._jobs.pop(jid).out_dir, ignore_errors=True)

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
            self._save_progress(j)

    def _drain_queue(self, j: _Job) -> None:
        while True:
            try:
                item = j.queue.get_nowait()
            except (queue.Empty, OSError, EOFError):
                return
            if isinstance(item, tuple) and item[0] == "end":
                self._ended(j, item[1], item[2])
            else:
                j.events.append(item)

    def _drain_and_reap(self) -> None:
        for j in self._jobs.values():
            if j.state != "running":
                continue
            grace = QUICK_CANCEL_S.get(j.kind, self.CANCEL_GRACE_S)
            if j.cancel_at and time.time() - j.cancel_at > grace and j.process.is_alive():
                j.process.terminate()  # it did not reach a cancellation point in time
                self._ended(j, "cancelled", "cancelled (the worker was stopped)")
            self._drain(j)
            if j.state == "running" and not j.process.is_alive():
                time.sleep(0.05)  # the queue may still hold the last events of a process that just ended
                self._drain(j)
                if j.state == "running":
                    self._set(j, "failed", f"{CRASHED} (exit code {j.process.exitcode})")
            if j.state != "running":
                self._release(j)
