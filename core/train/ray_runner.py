"""Training jobs on a Ray cluster, behind the same `Runner` interface as the local backend.

One detached, named actor, the job board (`BOARD` in the namespace `NAMESPACE`), holds every job's
state, the queue and the events. Every client of the cluster (each web replica) that asks for it
by name sees the same runs, so a reload that lands on another replica finds its run, watches it
and can cancel it. The board keeps its jobs in a `JobStore` in the shared results directory, so a
restarted cluster lists the earlier runs again (unfinished ones "interrupted", as the local
backend does), and each run's folder is `<root>/<id>`, where `results()` reads it back.

The board hands queued jobs to long-lived worker actors that have already imported the handlers
(and torch), so a job's first progress shows within a fraction of a second when a worker is free.
Each worker declares the CPUs and the share of a GPU a job needs, so Ray places it; a job waits in
the queue until a worker is up. A worker runs `run_job` (so a job ends exactly as it does in the
local backend: done, cancelled, diverged, failed with a sentence), buffers its events, and the
board collects them every few tens of milliseconds. Cancelling sets a flag the handler sees
through `ctx.should_stop`; a worker that has not stopped after the grace period is killed (and a
fresh one started), and a worker process that dies is reported as a crash.

Configs and events cross the board pickled (as bytes): the board never imports torch or the
handlers; only the client that made a config and the worker that runs it do. `ray` is imported
inside functions only, so `core` stays importable without it.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import pickle
import shutil
import sys
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

from core.train.events import ACTIVE_STATES, Event, JobState
from core.train.context import JobContext
from core.train.jobs import (CRASHED, HANDLERS, QUICK_CANCEL_S, RESULT_LOADERS, JobError, JobSpec, JobStatus, JobTable,
                             RunnerLimits, check_submit, folder_bytes, queue_order, queue_position, recent_runs, resolve,
                             run_job, to_prune)
from core.train.store import JobStore, StoreError, results_dir

NAMESPACE = "convnetlab"
BOARD = "convnetlab-jobs"
REPO = str(Path(__file__).resolve().parents[2])   # on the workers' PYTHONPATH, so they import `core`
CRASHED_HERE = f"{CRASHED} (its Ray worker exited unexpectedly)"


# --- the worker: a Ray actor that runs one job at a time -----------------------------------------

class JobWorker:
    """Imports every handler's module once, then runs the jobs the board gives it, one at a time.
    Threaded (the board calls `take` and `stop` while `run` runs)."""

    def __init__(self, handlers: Mapping[str, str], threads: int) -> None:
        # Before anything imports torch, which reads these once for its thread pools.
        os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = str(max(1, threads))
        self._handlers = dict(handlers)
        for module in sorted({target.partition(":")[0] for target in handlers.values()}):
            try:
                importlib.import_module(module)
            except Exception:  # noqa: BLE001 - the job that needs it reports the error
                pass
        self._lock = threading.Lock()
        self._job = ""                 # the job running now ("" when idle)
        self._events: list[bytes] = []  # emitted, not yet taken by the board
        self._stop = threading.Event()

    def ready(self) -> int:
        return os.getpid()

    def run(self, job_id: str, spec_blob: bytes, out_dir: str, device: str) -> tuple[JobState, str, list[bytes]]:
        """Runs one job; returns how it ended and the events the board has not taken yet."""
        with self._lock:
            self._job, self._events = job_id, []
            self._stop.clear()
        try:
            spec: JobSpec = pickle.loads(spec_blob)
        except Exception as e:  # noqa: BLE001 - e.g. a config class this worker's code lacks
            state, message = "failed", f"{type(e).__name__}: {e}"
        else:
            Path(out_dir).mkdir(parents=True, exist_ok=True)
            state, message = run_job(spec, JobContext(self._emit, self._stop.is_set, Path(out_dir), device),
                                     self._handlers)
        with self._lock:
            tail, self._events, self._job = self._events, [], ""
        return state, message, tail

    def _emit(self, e: Event) -> None:
        blob = pickle.dumps(e)
        with self._lock:
            self._events.append(blob)

    def take(self, job_id: str) -> list[bytes]:
        """The events of `job_id` emitted since the last call ([] once the job has returned)."""
        with self._lock:
            if job_id != self._job:
                return []
            out, self._events = self._events, []
        return out

    def stop(self, job_id: str) -> None:
        """Asks the running job to stop (a late call meant for an earlier job does nothing)."""
        with self._lock:
            if job_id == self._job:
                self._stop.set()


# --- the board: a detached, named Ray actor --------------------------------------------------------

@dataclass
class _Slot:
    """A worker actor the board started."""

    actor: Any
    ready: Any                      # the ObjectRef of its `ready()` until it has answered, then None
    busy: bool = False
    jobs: int = 0                   # jobs it has run


@dataclass
class _BoardJob:
    id: str
    owner: str
    kind: str
    config: bytes | None            # pickled; None for a stored run whose config no longer loads
    out_dir: str
    state: JobState = "queued"
    message: str = ""
    submitted: float = field(default_factory=time.time)
    spec: bytes | None = None       # pickled JobSpec, dropped once the job has started
    events: list[bytes] = field(default_factory=list)   # each one pickled
    saved: int = 0                  # events already in the store
    loaded: bool = True             # False for a stored job whose events are read on first use
    slot: _Slot | None = None
    run: Any = None                 # the ObjectRef of the worker's `run`
    cancel_at: float = 0.0
    bytes: int | None = None        # size of the result folder once finished
    started: float = 0.0            # time.time() when a worker took it
    state_saved: bool = True        # the store has the state (see JobTable._set)
    store_error: str = ""           # why the store refused the last write ("" when it did not)
    store_failing_since: float = 0.0
    stopped_because: str = ""       # why the server stopped it (time cap, storage), if it did


class JobBoard(JobTable):
    """The cluster's jobs: the queue, one active job per owner, the warm workers, the events.
    Runs as a threaded actor; one thread collects events and dispatches jobs."""

    TICK_S = 0.03           # how often events are collected and the queue looked at
    JOBS_PER_WORKER = 20    # a worker is replaced after this many jobs (a fresh process, fresh caches)
    RETRY_WORKER_S = 5.0    # after a worker that could not start, wait this long before another
    PRUNE_EVERY_S = 30.0    # how often finished jobs are pruned (core.train.jobs.to_prune)

    def __init__(self, max_concurrent: int, device: str, root: str, handlers: Mapping[str, str],
                 num_cpus: float, num_gpus: float, cancel_grace_s: float, store_path: str) -> None:
        self._limits = RunnerLimits(max_concurrent, device)
        self._handlers = dict(handlers)
        self._resources = {"num_cpus": num_cpus, "num_gpus": num_gpus}
        self._grace = cancel_grace_s
        self.root = Path(root)
        try:
            self._store: JobStore | None = JobStore(Path(store_path))
        except StoreError as e:     # the board still runs jobs; they are not kept past its restart
            print(f"job board: {e}; runs are not kept", flush=True)
            self._store = None
        self._jobs: dict[str, _BoardJob] = {}
        self._load()
        self._slots: list[_Slot] = []
        self._worker_error = ""
        self._next_worker = 0.0
        self._next_prune = 0.0
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="job-board", daemon=True)
        self._thread.start()

    # --- what clients call ---------------------------------------------------------------------------
    def limits(self) -> RunnerLimits:
        return self._limits

    def submit(self, owner: str, kind: str, config: bytes, spec: bytes) -> str:
        with self._lock:
            check_submit(self._jobs.values(), owner, kind, self._handlers)
            j = self._create(owner, kind, lambda jid, out: _BoardJob(jid, owner, kind, config, str(out), spec=spec),
                             config)
            self._dispatch()        # a free warm worker starts it now, not at the next tick
        return j.id

    def _ask_to_stop(self, j: _BoardJob) -> bool:
        if j.slot is None:
            return False
        j.slot.actor.stop.remote(j.id)
        return True

    def finished(self, job_id: str) -> tuple[JobState, str, str]:
        """A job's state, kind and folder (the client reads its results from the shared folder)."""
        with self._lock:
            j = self._get(job_id)
            return j.state, j.kind, j.out_dir

    def close(self) -> None:
        """Stops the board's thread and kills its workers (the jobs they run end with them)."""
        import ray

        self._closed.set()
        self._thread.join(timeout=5)
        with self._lock:
            for s in self._slots:
                ray.kill(s.actor, no_restart=True)
            self._slots = []
        if self._store is not None:
            self._store.close()

    # --- inside ----------------------------------------------------------------------------------------
    def _load(self) -> None:
        if self._store is None:
            return
        self._restore(self._store, lambda sj: _BoardJob(sj.id, sj.owner, sj.kind, sj.config, sj.out_dir, sj.state,
                                                        sj.message, sj.submitted, loaded=False))

    def _status(self, j: _BoardJob) -> JobStatus:
        pos = queue_position(self._jobs.values(), j, recent_runs(self._jobs.values())) if j.state == "queued" else 0
        message = j.message
        if j.state == "queued" and not any(s.ready is None for s in self._slots):
            # e.g. a GPU share asked of a cluster without a GPU: Ray holds the worker back, say so
            cpus, gpus = self._resources["num_cpus"], self._resources["num_gpus"]
            need = f"{cpus:g} CPU{'s' if cpus != 1 else ''}" + (f" and {gpus:g} GPU" if gpus else "")
            message = f"waiting for a Ray worker with {need}" + (f" ({self._worker_error})" if self._worker_error else "")
        return JobStatus(j.id, j.kind, j.state, message, pos, j.config, j.submitted)

    def _loop(self) -> None:
        while not self._closed.is_set():
            try:
                self._tick()
            except Exception as e:  # noqa: BLE001 - the board must outlive one bad tick
                print(f"job board: {type(e).__name__}: {e}", flush=True)
            self._closed.wait(self.TICK_S)

    def _tick(self) -> None:
        import ray

        self._keep_workers()
        with self._lock:
            running = [j for j in self._jobs.values() if j.state == "running" and j.run is not None]
        # Events first, then the jobs that ended (whose last events come with their end), in order.
        takes = [(j, j.slot.actor.take.remote(j.id)) for j in running]
        for j, ref in takes:
            try:
                got = ray.get(ref, timeout=10)
            except Exception:  # noqa: BLE001 - a dead worker: its `run` says so below
                got = []
            with self._lock:
                j.events.extend(got)
        ended, _ = ray.wait([j.run for j in running], num_returns=len(running), timeout=0) if running else ([], [])
        ended_ids = {r.hex() for r in ended}
        for j in running:
            if j.run.hex() in ended_ids:
                self._end(j)
            elif j.cancel_at and time.time() - j.cancel_at > QUICK_CANCEL_S.get(j.kind, self._grace):
                self._kill(j)
        with self._lock:
            self._keep_records()         # events to the store; a store that fails is said, not fatal
            self._dispatch()
            if time.time() >= self._next_prune:
                self._prune()

    def _prune(self) -> None:
        """Deletes the finished jobs `to_prune` names (the local backend's limits), events and folders."""
        done = [j for j in self._jobs.values() if j.state not in ACTIVE_STATES]
        for j in done:
            if j.bytes is None:
                j.bytes = folder_bytes(j.out_dir)
        for jid in to_prune([(j.id, j.submitted, j.bytes) for j in done]):
            if self._save(self._jobs[jid], "delete", jid):          # else kept, and tried again later
                shutil.rmtree(self._jobs.pop(jid).out_dir, ignore_errors=True)
        self._next_prune = time.time() + self.PRUNE_EVERY_S

    def _end(self, j: _BoardJob) -> None:
        import ray

        healthy = True
        try:
            state, message, tail = ray.get(j.run)
        except ray.exceptions.RayActorError:
            state, message, tail, healthy = "failed", CRASHED_HERE, [], False
        except Exception as e:  # noqa: BLE001 - the worker's own code failed; reported, the worker replaced
            state, message, tail, healthy = "failed", f"the Ray worker failed: {type(e).__name__}: {e}", [], False
        with self._lock:
            j.events.extend(tail)
            self._ended(j, state, message)
            slot, j.slot, j.run = j.slot, None, None
            if healthy and slot.jobs < self.JOBS_PER_WORKER:
                slot.busy = False
            else:
                self._drop(slot)

    def _kill(self, j: _BoardJob) -> None:
        """A job that did not reach a cancellation point within the grace period: its worker goes."""
        with self._lock:
            self._ended(j, "cancelled", "cancelled (the worker was stopped)")
            slot, j.slot, j.run = j.slot, None, None
            self._drop(slot)

    def _drop(self, slot: _Slot) -> None:
        import ray

        ray.kill(slot.actor, no_restart=True)
        self._slots.remove(slot)

    def _keep_workers(self) -> None:
        """Keeps `max_concurrent` workers, started ahead of the jobs; notes the ones that came up."""
        import ray

        with self._lock:
            starting = [s for s in self._slots if s.ready is not None]
        if starting:
            up, _ = ray.wait([s.ready for s in starting], num_returns=len(starting), timeout=0)
            up_ids = {r.hex() for r in up}
            for s in starting:
                if s.ready.hex() not in up_ids:
                    continue
                try:
                    ray.get(s.ready)
                    s.ready, self._worker_error = None, ""
                except Exception as e:  # noqa: BLE001 - e.g. its process could not start
                    self._worker_error = f"{type(e).__name__}: {(str(e).strip().splitlines() or [''])[0][:200]}"
                    self._next_worker = time.time() + self.RETRY_WORKER_S
                    with self._lock:
                        self._drop(s)
        with self._lock:
            while len(self._slots) < self._limits.max_concurrent and time.time() >= self._next_worker:
                cpus = self._resources["num_cpus"]
                actor = ray.remote(JobWorker).options(max_concurrency=4, **self._resources).remote(
                    self._handlers, int(max(1, cpus)))
                self._slots.append(_Slot(actor, actor.ready.remote()))

    def _dispatch(self) -> None:
        """Gives queued jobs, in `queue_order`, to free workers that are up (called with the lock held)."""
        for j in queue_order(self._jobs.values(), recent_runs(self._jobs.values())):
            slot = next((s for s in self._slots if s.ready is None and not s.busy), None)
            if slot is None:
                return
            slot.busy, slot.jobs = True, slot.jobs + 1
            j.slot, j.run = slot, slot.actor.run.remote(j.id, j.spec, j.out_dir, self._limits.device)
            j.spec, j.started = None, time.time()
            self._set(j, "running", "")


# --- the client: what a web replica or the CLI holds ------------------------------------------------

def _connect(address: str | None) -> Any:
    """The `ray` module, connected to the cluster at `address` (default $RAY_ADDRESS, else "auto":
    the cluster started on this machine by `ray start --head`; "local" starts one in this process)."""
    try:
        import ray
    except ImportError as e:
        raise JobError("the Ray backend needs the ray package (pip install -r requirements.txt)") from e
    if ray.is_initialized():
        return ray
    target = address or os.environ.get("RAY_ADDRESS") or "auto"
    try:
        _reachable(target)
    except OSError as e:
        raise JobError(f"no Ray cluster could be reached at {target!r} ({e}). Start one with `ray start --head` and "
                       "set RAY_ADDRESS, or use the local runner (CONVNETLAB_RUNNER=local).") from e
    _authorised(target)
    try:
        ray.init(address=target, namespace=NAMESPACE, include_dashboard=False, ignore_reinit_error=True,
                 log_to_driver=False)
    except (OSError, RuntimeError, ValueError) as e:
        raise JobError(f"no Ray cluster could be reached at {target!r} ({e}). Start one with "
                       "`ray start --head` and set RAY_ADDRESS, or use the local runner (CONVNETLAB_RUNNER=local).") from e
    return ray


def _reachable(address: str) -> None:
    """Raises ConnectionError when nothing listens at a "host:port" address: `ray.init` would
    keep retrying such an address for minutes. ("auto", "local" and "ray://..." are Ray's to resolve.)"""
    import socket

    host, sep, port = address.rpartition(":")
    if not sep or "://" in address or not port.isdigit():
        return
    with socket.create_connection((host, int(port)), timeout=5):
        pass


def _authorised(address: str) -> None:
    """Raises JobError at once when the cluster at a "host:port" address refuses this process for
    want of its token: `ray.init` would retry for half a minute, printing a warning a second."""
    host, sep, port = address.rpartition(":")
    if not sep or "://" in address or not port.isdigit():
        return
    from ray._raylet import GcsClient

    with _quiet_stderr():         # the C++ client logs the refusal too; the JobError says it once
        try:
            GcsClient(address=address)
        except Exception as e:  # noqa: BLE001 - only a refused token is ours to explain; ray.init reports the rest
            if "InvalidAuthToken" in str(e) or type(e).__name__ == "AuthenticationError":
                raise JobError(f"refused: the Ray cluster at {address} needs its token (set RAY_AUTH_MODE=token and "
                               "RAY_AUTH_TOKEN_PATH to the token file the cluster was started with; "
                               "scripts/serve-class.sh prints where it is)") from None


@contextlib.contextmanager
def _quiet_stderr() -> Iterator[None]:
    """File descriptor 2 to /dev/null for a moment (native libraries write there directly)."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _loads(blob: bytes | None) -> Any:
    try:
        return pickle.loads(blob) if blob is not None else None
    except Exception:  # noqa: BLE001 - a config class that changed since: keep the run, not its config
        return None


class RayRunner:
    """A client of the cluster's job board (started here if no client has started it yet). Many
    clients, in many processes, share one board; `shutdown` leaves it and its jobs running."""

    CANCEL_GRACE_S = 10.0   # a cancelled worker that has not stopped by then is killed
    CALL_TIMEOUT_S = 30.0   # a board that does not answer a call within this is reported
    RESTART_WAIT_S = 20.0   # a board that died and is not back (restarted or started again) within this is reported

    def __init__(self, max_concurrent: int = 1, device: str = "cpu", root: str | None = None,
                 handlers: Mapping[str, str] = HANDLERS, address: str | None = None, name: str = BOARD,
                 num_cpus: float | None = None, num_gpus: float | None = None,
                 cancel_grace_s: float | None = None, store_path: str | None = None,
                 pythonpath: Sequence[str] = ()) -> None:
        """`root`: the shared folder of the runs (default `results_dir()/runs`); `num_cpus`,
        `num_gpus`: what one job's worker asks Ray for (default: this machine's cores shared by
        `max_concurrent` jobs; on CUDA an equal share of one GPU, e.g. 0.5 for two jobs);
        `pythonpath`: folders the workers need besides the repository (e.g. test handlers).
        These configure the board when this client starts it; a board already running keeps its own."""
        self._ray = _connect(address)
        root_path = Path(root or results_dir() / "runs")
        root_path.mkdir(parents=True, exist_ok=True)
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        self._name = name
        self._board_args = dict(
            max_concurrent=max_concurrent, device=device, root=str(root_path), handlers=dict(handlers),
            num_cpus=num_cpus if num_cpus is not None else max(1, cores // max_concurrent),
            num_gpus=num_gpus if num_gpus is not None else (1 / max_concurrent if device == "cuda" else 0),
            cancel_grace_s=self.CANCEL_GRACE_S if cancel_grace_s is None else cancel_grace_s,
            store_path=store_path or str(root_path / "ray-jobs.sqlite"))
        # The board's process reads the server's limits (time cap, kept bytes) from its environment.
        self._env = {"PYTHONPATH": os.pathsep.join([REPO, *pythonpath]),
                     **{k: os.environ[k] for k in ("CONVNETLAB_MAX_RUN_MIN", "CONVNETLAB_KEEP_GB") if k in os.environ}}
        self._board = self._attach()
        self._limits: RunnerLimits = self._call("limits")

    # --- the interface --------------------------------------------------------------------------
    def limits(self) -> RunnerLimits:
        return self._limits

    def submit(self, owner: str, spec: JobSpec) -> str:
        """Queues a job; refuses a second active job for the same owner and unknown kinds."""
        return self._call("submit", owner, spec.kind, pickle.dumps(spec.config), pickle.dumps(spec))

    def status(self, job_id: str) -> JobStatus:
        st = self._call("status", job_id)
        return replace(st, config=_loads(st.config))

    def jobs_of(self, owner: str) -> list[JobStatus]:
        return [replace(st, config=_loads(st.config)) for st in self._call("jobs_of", owner)]

    def events(self, job_id: str, since: int = 0) -> list[Event]:
        return [pickle.loads(b) for b in self._call("events", job_id, since)]

    def cancel(self, job_id: str) -> None:
        self._call("cancel", job_id)

    def results(self, job_id: str) -> Any | None:
        """A finished job's results, read from its folder in the shared results directory (see
        `LocalRunner.results`)."""
        state, kind, folder = self._call("finished", job_id)
        if state != "done" or kind not in RESULT_LOADERS:
            return None
        return resolve(RESULT_LOADERS[kind])(folder)

    def shutdown(self) -> None:
        """Nothing to stop: the board and its jobs belong to the cluster (see `stop_board`)."""

    # --- beyond the interface ----------------------------------------------------------------------
    def stop_board(self) -> None:
        """Ends the board and its workers (their jobs with them); the next client starts a new one
        from the store. For tests and for an administrator."""
        ray = self._ray
        try:
            ray.get(self._board.close.remote(), timeout=self.CALL_TIMEOUT_S)
        except ray.exceptions.RayError:
            pass
        ray.kill(self._board, no_restart=True)
        end = time.time() + 30
        while time.time() < end:
            try:
                ray.get_actor(self._name, namespace=NAMESPACE)
            except ValueError:
                return
            time.sleep(0.1)

    # --- inside ----------------------------------------------------------------------------------------
    def _attach(self) -> Any:
        """The board by name, started (detached) if no client has started it yet."""
        board_cls = self._ray.remote(JobBoard)
        # On the head node, next to its store (as Ray Train keeps its state actor); a board whose
        # process died is restarted by Ray and reloads the store.
        return board_cls.options(name=self._name, namespace=NAMESPACE, lifetime="detached", get_if_exists=True,
                                 max_concurrency=32, num_cpus=0, resources={"node:__internal_head__": 0.001},
                                 max_restarts=-1, runtime_env={"env_vars": self._env}).remote(**self._board_args)

    def _call(self, method: str, *args: Any) -> Any:
        """One call to the board; a board that died (a restarted cluster, a killed actor) is found or
        started again from the store, and the call retried with a growing pause for up to
        RESTART_WAIT_S (Ray restarts a killed actor on its own, later on a loaded machine)."""
        ray = self._ray
        end, pause = time.monotonic() + self.RESTART_WAIT_S, 0.1
        while True:
            try:
                return ray.get(getattr(self._board, method).remote(*args), timeout=self.CALL_TIMEOUT_S)
            except ray.exceptions.RayTaskError as e:
                if isinstance(e.cause, JobError):
                    raise JobError(str(e.cause)) from None
                raise
            except ray.exceptions.RayActorError:
                if time.monotonic() > end:
                    raise JobError(f"the Ray job board is gone and did not come back within "
                                   f"{self.RESTART_WAIT_S:.0f} s") from None
                time.sleep(pause)
                pause = min(2 * pause, 2.0)
                self._board = self._attach()
            except ray.exceptions.GetTimeoutError:
                raise JobError(f"the Ray job board did not answer within {self.CALL_TIMEOUT_S:.0f} s") from None
        raise AssertionError("unreachable")
