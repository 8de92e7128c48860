"""Training jobs behind one interface, whatever runs them.

`Runner` is what a page uses: submit a `JobSpec`, read a job's status (with its queue position)
and its events since the last read, cancel it, fetch its results, know the runner's limits.
`make_runner()` picks the backend from configuration (`CONVNETLAB_RUNNER`, default "local"), so
a cluster backend can be added here without touching `pages/`.

`run_job` is the backend-neutral part: it calls the handler a job's kind names (a dotted
"module:function", e.g. `core.train.run:train`) and turns how it ended into a job state. The
rules both backends share (one active job per owner, queue positions, restore after a restart,
pruning) and their common bookkeeping (`JobTable`) live here too; the backends themselves are
`core.train.local_runner` (a spawned process per job) and `core.train.ray_runner` (a job board
on a Ray cluster).

This module imports neither torch nor the handlers: the runner's own tests use torch-free
handlers, and a worker imports only what its handler needs.
"""

from __future__ import annotations

import importlib
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Protocol

from core.train.context import JobContext
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


def resolve(target: str) -> Callable[[JobSpec, JobContext], str]:
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)


def run_job(spec: JobSpec, ctx: JobContext, handlers: Mapping[str, str] = HANDLERS) -> tuple[JobState, str]:
    """Runs a job's handler; returns how it ended and a sentence for the user."""
    try:
        return "done", resolve(handlers[spec.kind])(spec, ctx)
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


# --- choosing a backend --------------------------------------------------------------------------

# "ray": a job board on a Ray cluster ($RAY_ADDRESS), shared by every web replica (core.train.ray_runner).
BACKENDS: dict[str, str] = {"local": "core.train.local_runner:LocalRunner", "ray": "core.train.ray_runner:RayRunner"}


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
    cls = resolve(BACKENDS[name])
    return cls(device=device, **options)
