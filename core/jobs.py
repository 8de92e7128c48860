"""Training jobs in worker processes, behind a narrow interface: submit, status, events, cancel.

One `JobRunner` per server process (the page keeps it in `st.cache_resource`). Each job runs in
its own spawned process, so a crash or a hang cannot take the dashboard down; at most
`max_concurrent` run at once and the rest wait in a queue whose position is reported. One owner
(a browser session) may have one active job. Events flow back through a multiprocessing queue
and are kept in memory, so a reloaded page finds its job and replays its curves. A cluster
backend would implement the same four methods.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import queue
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.training import TrainConfig

ACTIVE = {"queued", "running"}


class JobError(RuntimeError):
    """A request the runner refuses (e.g. a second active job for one owner)."""


@dataclass
class Job:
    id: str
    owner: str
    kind: str                       # "train" or "lr_find"
    config: TrainConfig
    zip_bytes: bytes | None
    state: str = "queued"           # queued, running, done, failed, cancelled, diverged
    message: str = ""
    events: list[dict[str, Any]] = field(default_factory=list)
    submitted: float = field(default_factory=time.time)
    out_dir: str = ""
    process: Any = None
    cancel: Any = None
    queue: Any = None
    cancel_at: float = 0.0


@dataclass(frozen=True)
class JobStatus:
    id: str
    kind: str
    state: str
    message: str
    position: int                  # place in the queue (0 = running or finished)
    out_dir: str
    config: TrainConfig


def _worker(kind: str, cfg: TrainConfig, zip_bytes: bytes | None, q: Any, cancel: Any, out_dir: str,
            device: str, threads: int) -> None:
    """Runs in the child process: trains, streams events, writes the results to out_dir."""
    import torch

    from core import training

    torch.set_num_threads(max(1, threads))
    if os.environ.get("CONVNETLAB_TEST_CRASH") == cfg.dataset:
        os._exit(3)  # tests: a worker that dies without a word
    try:
        data = training.load_dataset(cfg, zip_bytes)
        if kind == "lr_find":
            lrs, losses, sug = training.lr_find(cfg, data, device, on_event=q.put, should_stop=cancel.is_set)
            q.put({"type": "lr_find", "lrs": lrs, "losses": losses, "suggestion": sug})
            q.put({"type": "end", "state": "done", "message": f"suggested LR {sug:.2g}"})
            return
        res, oom = None, False
        try:
            res = training.fit(cfg, data, device, on_event=q.put, should_stop=cancel.is_set)
        except torch.cuda.OutOfMemoryError:
            oom = True
        if oom:
            # Retry outside the except block: its traceback would keep the first attempt's model
            # and tensors alive, and emptying the cache would free nothing.
            import gc

            gc.collect()
            torch.cuda.empty_cache()
            half = max(1, cfg.batch_size // 2)
            q.put({"type": "info", "message": f"CUDA out of memory: retrying once with batch size {half}"})
            cfg = training.replace_cfg(cfg, batch_size=half)
            res = training.fit(cfg, data, device, on_event=q.put, should_stop=cancel.is_set)
        from core.results import save_results

        save_results(res, data, Path(out_dir))
        q.put({"type": "end", "state": "done", "message": f"validation accuracy {res.val_acc:.1%}"})
    except training.Diverged as e:
        q.put({"type": "end", "state": "diverged", "message": str(e)})
    except training.Cancelled:
        q.put({"type": "end", "state": "cancelled", "message": "cancelled"})
    except torch.cuda.OutOfMemoryError:
        q.put({"type": "end", "state": "failed", "message": "CUDA out of memory even at half the batch size; "
                                                            "use a smaller batch, image size or model"})
    except Exception as e:  # noqa: BLE001 - reported to the user, not swallowed
        q.put({"type": "end", "state": "failed", "message": f"{type(e).__name__}: {e}"})


class JobRunner:
    """See the module doc. Thread-safe; one instance serves every session of a server."""

    CANCEL_GRACE_S = 10.0   # a cancelled worker that has not stopped by then is terminated
    KEEP_FINISHED = 200     # finished jobs kept (events and result folders); older ones are deleted

    def __init__(self, max_concurrent: int = 1, device: str = "cpu", root: str | None = None) -> None:
        self.max_concurrent = max_concurrent
        self.device = device
        self.root = Path(root or tempfile.mkdtemp(prefix="convnetlab-jobs-"))
        self._jobs: dict[str, Job] = {}
        self._lock = threading.Lock()
        self._ctx = mp.get_context("spawn")
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="job-runner", daemon=True)
        self._thread.start()

    # --- the interface --------------------------------------------------------------------------
    def submit(self, owner: str, config: TrainConfig, kind: str = "train", zip_bytes: bytes | None = None) -> str:
        """Queues a job; refuses a second active job for the same owner."""
        with self._lock:
            if any(j.owner == owner and j.state in ACTIVE for j in self._jobs.values()):
                raise JobError("You already have a run in progress: wait for it or cancel it first.")
            jid = uuid.uuid4().hex[:12]
            out = self.root / jid
            out.mkdir(parents=True)
            self._jobs[jid] = Job(jid, owner, kind, config, zip_bytes, out_dir=str(out))
        return jid

    def status(self, job_id: str) -> JobStatus:
        with self._lock:
            j = self._get(job_id)
            queued = sorted((x for x in self._jobs.values() if x.state == "queued"), key=lambda x: x.submitted)
            pos = next((i + 1 for i, x in enumerate(queued) if x.id == job_id), 0)
            return JobStatus(j.id, j.kind, j.state, j.message, pos, j.out_dir, j.config)

    def events(self, job_id: str, since: int = 0) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._get(job_id).events[since:])

    def cancel(self, job_id: str) -> None:
        with self._lock:
            j = self._get(job_id)
            if j.state == "queued":
                j.state, j.message = "cancelled", "cancelled before it started"
                j.zip_bytes = None
            elif j.state == "running" and j.cancel is not None:
                j.cancel.set()
                j.cancel_at = time.time()

    # --- helpers ------------------------------------------------------------------------------------
    def jobs_of(self, owner: str) -> list[JobStatus]:
        with self._lock:
            ids = [j.id for j in sorted(self._jobs.values(), key=lambda x: x.submitted) if j.owner == owner]
        return [self.status(i) for i in ids]

    def wait(self, job_id: str, timeout: float = 120.0) -> JobStatus:
        """Blocks until the job ends (tests and the CLI)."""
        end = time.time() + timeout
        while time.time() < end:
            st = self.status(job_id)
            if st.state not in ACTIVE:
                return st
            time.sleep(0.1)
        raise TimeoutError(f"job {job_id} still {self.status(job_id).state} after {timeout} s")

    def shutdown(self) -> None:
        self._stop.set()
        with self._lock:
            for j in self._jobs.values():
                if j.process is not None and j.process.is_alive():
                    j.process.terminate()

    def _get(self, job_id: str) -> Job:
        if job_id not in self._jobs:
            raise JobError(f"unknown job {job_id!r}")
        return self._jobs[job_id]

    def _loop(self) -> None:
        while not self._stop.is_set():
            with self._lock:
                self._drain_and_reap()
                running = sum(j.state == "running" for j in self._jobs.values())
                for j in sorted(self._jobs.values(), key=lambda x: x.submitted):
                    if running >= self.max_concurrent:
                        break
                    if j.state == "queued":
                        try:
                            self._start(j)
                            running += 1
                        except OSError as e:  # e.g. out of processes or file descriptors
                            j.state, j.message = "failed", f"could not start a worker process: {e}"
                self._forget_old()
            time.sleep(0.05)

    def _start(self, j: Job) -> None:
        j.queue, j.cancel = self._ctx.Queue(), self._ctx.Event()
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        threads = max(1, cores // self.max_concurrent)
        j.process = self._ctx.Process(target=_worker, daemon=True, args=(
            j.kind, j.config, j.zip_bytes, j.queue, j.cancel, j.out_dir, self.device, threads))
        j.process.start()
        j.state = "running"

    def _forget_old(self) -> None:
        """Deletes the oldest finished jobs (events and result folder) beyond KEEP_FINISHED."""
        import shutil

        done = sorted((j for j in self._jobs.values() if j.state not in ACTIVE), key=lambda x: x.submitted)
        for j in done[:max(0, len(done) - self.KEEP_FINISHED)]:
            shutil.rmtree(j.out_dir, ignore_errors=True)
            del self._jobs[j.id]

    @staticmethod
    def _release(j: Job) -> None:
        """Joins the finished worker and closes its pipes (each holds file descriptors)."""
        if j.process is not None:
            j.process.join(timeout=1)
            if j.process.is_alive():
                j.process.kill()
                j.process.join(timeout=1)
            j.process.close()
        if j.queue is not None:
            j.queue.close()
        j.process = j.queue = j.cancel = None
        j.zip_bytes = None

    def _drain_and_reap(self) -> None:
        for j in self._jobs.values():
            if j.state != "running":
                continue
            if j.cancel_at and time.time() - j.cancel_at > self.CANCEL_GRACE_S and j.process.is_alive():
                j.process.terminate()  # it did not reach a cancellation point in time
                j.state, j.message = "cancelled", "cancelled (the worker was stopped)"
            while True:
                try:
                    e = j.queue.get_nowait()
                except (queue.Empty, OSError, EOFError):
                    break
                if e.get("type") == "end":
                    j.state, j.message = e["state"], e["message"]
                else:
                    j.events.append(e)
            if j.state == "running" and not j.process.is_alive():
                # the queue may still hold the last events of a process that just ended
                time.sleep(0.05)
                try:
                    while True:
                        e = j.queue.get_nowait()
                        if e.get("type") == "end":
                            j.state, j.message = e["state"], e["message"]
                        else:
                            j.events.append(e)
                except (queue.Empty, OSError, EOFError):
                    pass
                if j.state == "running":
                    j.state = "failed"
                    j.message = f"the training process crashed (exit code {j.process.exitcode})"
            if j.state != "running":
                self._release(j)
