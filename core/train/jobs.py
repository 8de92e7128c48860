"""Training jobs behind one interface, whatever runs them.

`Runner` is what a page uses: submit a `JobSpec`, read a job's status (with its queue position)
and its events since the last read, cancel it, fetch its results, know the runner's limits.
`make_runner()` picks the backend from configuration (`CONVNETLAB_RUNNER`, default "local"), so
a cluster backend can be added here without touching `pages/`.

`run_job` is the backend-neutral part: it calls the handler a job's kind names (a dotted
"module:function", e.g. `core.train.run:train`) and turns how it ended into a job state. The
rules both backends share (one active job per owner, queue positions, restore after a restart,
pruning) and their common bookkeeping (`JobTable`) live here too; the backends themselves are
`core.train.local_runner` (a process per job, forked from a fork server) and `core.train.ray_runner` (a job board
on a Ray cluster).

This module imports neither torch nor the handlers: the runner's own tests use torch-free
handlers, and a worker imports only what its handler needs.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import shutil
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Protocol

from core.train.context import JobContext
from core.train.events import ACTIVE_STATES, Cancelled, Diverged, Event, JobFailed, JobState
from core.train.store import JobStore, StoredJob, StoreError, results_dir

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


def queue_position(jobs: Iterable[Tracked], job: Tracked, recent: Mapping[str, int] | None = None) -> int:
    """1 for the job that starts next, 2 for the one after...; 0 for a job that is not queued
    (`queue_order` says the order)."""
    return next((i + 1 for i, x in enumerate(queue_order(jobs, recent or {})) if x.id == job.id), 0)


def recent_runs(jobs: Iterable[Any], hours: float = 1.0) -> dict[str, int]:
    """Per owner, the runs that ended (or started) in the last `hours`: the queue's share rule."""
    since, out = time.time() - hours * 3600, {}
    for j in jobs:
        if j.state not in ("queued",) and getattr(j, "started", 0.0) >= since:
            out[j.owner] = out.get(j.owner, 0) + 1
    return out


STORE_GRACE_S = 5.0     # a running job whose record cannot be saved for this long is stopped
STATE_FILE = "state.json"   # in a run's folder: its last state, when the store refused to take it


def restored(state: str, has_config: bool, out_dir: str | Path | None = None) -> tuple[JobState, str] | None:
    """How a stored job reads after its server or board restarted: None when as it was; else
    interrupted, with the reason. A run whose store refused its last state left that state in its
    folder (`STATE_FILE`): it reads as it really ended."""
    if state in ACTIVE_STATES:
        left = _state_file(out_dir)
        if left is not None:
            return left
        return "interrupted", ("the server stopped while this run was in progress (or its progress could not be "
                               "saved after this point)")
    if not has_config:
        return "interrupted", "this run was made by an older version of the dashboard"
    return None


def _state_file(out_dir: str | Path | None) -> tuple[JobState, str] | None:
    try:
        d = json.loads((Path(out_dir) / STATE_FILE).read_text()) if out_dir else None
    except (OSError, ValueError):
        return None
    if not isinstance(d, dict) or d.get("state") not in ("done", "failed", "cancelled", "diverged"):
        return None
    return d["state"], str(d.get("message", ""))


def time_cap_s() -> float | None:
    """How long one run may take on this server: $CONVNETLAB_MAX_RUN_MIN minutes (default 15; 0 for
    no cap). A run that reaches it is stopped and reads as failed, with the cap named."""
    raw = os.environ.get("CONVNETLAB_MAX_RUN_MIN", "")
    try:
        minutes = float(raw) if raw else DEFAULT_CAP_MIN
    except ValueError:
        minutes = DEFAULT_CAP_MIN
    return minutes * 60 if minutes > 0 else None


DEFAULT_CAP_MIN = 15.0


def queue_order(jobs: Iterable[Tracked], recent: Mapping[str, int]) -> list[Tracked]:
    """The queued jobs in the order they start: a session's share of the machine first, then
    first come first served. `recent` counts each owner's runs that ended in the last hour: a
    student who has not run yet goes before one who just did, however late they clicked."""
    queued = [j for j in jobs if j.state == "queued"]
    return sorted(queued, key=lambda j: (recent.get(j.owner, 0), j.submitted))


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
                try:
                    j.events = self._store.events(j.id)
                except StoreError as e:
                    j.events, j.message = [], f"{j.message} (its progress could not be read: {e})"
                j.loaded, j.saved = True, len(j.events)
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

    # --- the record on disk: every write through `_save`, so a failing store never stops the runner
    def _set(self, j: Any, state: JobState, message: str) -> None:
        """A job's new state, in memory and in the store; what the store refuses is kept in the
        run's folder and tried again every tick (`_keep_records`)."""
        j.state, j.message = state, message
        j.state_saved = self._save(j, "set_state", j.id, state, message)
        if not j.state_saved and state not in ACTIVE_STATES:
            with contextlib.suppress(OSError):
                (Path(j.out_dir) / STATE_FILE).write_text(json.dumps({"state": state, "message": message}))

    def _save(self, j: Any, method: str, *args: Any) -> bool:
        """One write of a job's record; False, with the reason kept on the job, when the store refuses."""
        if self._store is None:
            return True
        try:
            getattr(self._store, method)(*args)
        except StoreError as e:
            if not j.store_error:
                print(f"job store: {e}", file=sys.stderr, flush=True)
            j.store_error = str(e)
            j.store_failing_since = j.store_failing_since or time.time()
            return False
        j.store_error, j.store_failing_since = "", 0.0
        return True

    def _save_progress(self, j: Any) -> None:
        """The job's events that the store does not have yet."""
        if len(j.events) > j.saved and self._save(j, "add_events", j.id, j.saved, j.events[j.saved:]):
            j.saved = len(j.events)

    def _create(self, owner: str, kind: str, make: Callable[[str, Path], Any], config: Any) -> Any:
        """A new job's record and folder; a JobError in one sentence when the server cannot keep them."""
        jid = uuid.uuid4().hex[:12]
        out = Path(self.root) / jid
        try:
            out.mkdir(parents=True)
            j = make(jid, out)
            if self._store is not None:
                self._store.add(StoredJob(jid, owner, kind, config, j.state, j.message, j.submitted, str(out)))
        except (OSError, StoreError) as e:
            shutil.rmtree(out, ignore_errors=True)
            raise JobError(f"This run cannot start: the server cannot save runs ({e}). Whoever runs the server can "
                           f"check the results folder {Path(self.root).parent}.") from None
        self._jobs[jid] = j
        return j

    def _keep_records(self) -> None:
        """Once a tick: what the store refused is tried again; a running job whose progress cannot be
        saved for STORE_GRACE_S, or that reached the time cap, is stopped, and ends failed with why."""
        now, cap = time.time(), time_cap_s()
        for j in list(self._jobs.values()):
            if not j.state_saved:
                j.state_saved = self._save(j, "set_state", j.id, j.state, j.message)
            self._save_progress(j)
            if j.state != "running" or j.stopped_because:
                continue
            if j.store_failing_since and now - j.store_failing_since > STORE_GRACE_S:
                self._stop_for(j, f"its progress could not be saved: {j.store_error}")
            elif cap is not None and j.started and now - j.started > cap:
                self._stop_for(j, f"it reached this server's time cap of {cap / 60:g} minutes per run "
                                  "(CONVNETLAB_MAX_RUN_MIN)")

    def _stop_for(self, j: Any, reason: str) -> None:
        j.stopped_because = reason
        if not j.cancel_at and self._ask_to_stop(j):
            j.cancel_at = time.time()

    def _ended(self, j: Any, state: JobState, message: str) -> None:
        """How a job that ended is recorded: one the server stopped (time cap, storage) is failed, with why."""
        if j.stopped_because and state == "cancelled":
            state, message = "failed", f"stopped by the server: {j.stopped_because}"
        self._set(j, state, message)

    def _status(self, j: Any) -> JobStatus:
        raise NotImplementedError

    def _get(self, job_id: str) -> Any:
        if job_id not in self._jobs:
            raise JobError(f"unknown job {job_id!r}")
        return self._jobs[job_id]

    def _restore(self, store: JobStore, make: Callable[[StoredJob], Any]) -> None:
        """The jobs an earlier server or board left (`make` turns each into this backend's record):
        finished ones as they were, unfinished ones interrupted (`restored`)."""
        try:
            stored = store.jobs()
        except StoreError as e:     # the runner starts empty and says why in its log
            print(f"job store: {e}; earlier runs are not listed", file=sys.stderr, flush=True)
            return
        for sj in stored:
            j = make(sj)
            now = restored(sj.state, sj.config is not None, sj.out_dir)
            if now:
                j.state, j.message = now
                j.state_saved = self._save(j, "set_state", j.id, j.state, j.message)
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
        if "store" not in options:
            try:
                options["store"] = JobStore(root / "jobs.sqlite")
            except StoreError as e:
                raise JobError(f"runs cannot be kept on this server: {e}") from None
    if name == "ray":
        # The runs' folders and the board's store in the results directory every replica shares.
        options.setdefault("root", str(results_dir() / "runs"))
    cls = resolve(BACKENDS[name])
    return cls(device=device, **options)
