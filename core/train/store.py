"""Where the dashboard keeps what must outlive one server process.

`results_dir()` is $CONVNETLAB_RESULTS, else `convnetlab` under the user's cache directory
($XDG_CACHE_HOME, default ~/.cache). It holds the server secret that signs session ids
(`core.links`), the job store `jobs.sqlite` and one folder per run under `runs/`.

`JobStore` is the runner's memory on disk (SQLite, one file, stdlib): each job's owner, kind,
config, state, message and events. A server that restarts lists the earlier runs again and
marks those that were queued or running as interrupted. Configs and events are pickled: the
file is the server's own, written and read by this code only.

Every failure to read or write the file (a full disk, a folder made read-only, a file made
immutable) is a `StoreError` naming the file and the reason; the runners catch it at their edge
(`core.train.jobs.JobTable`), keep serving and say what failed. The store keeps a rollback journal,
not a write-ahead log: WAL maps a shared-memory file, and a process whose mapped file can no longer
be written dies of a bus error instead of getting an error it can report.
"""

from __future__ import annotations

import functools
import os
import pickle
import sqlite3
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator


def results_dir() -> Path:
    """The configured results directory (created on first use, and again if it was removed)."""
    base = _results_path(os.environ.get("CONVNETLAB_RESULTS"), os.environ.get("XDG_CACHE_HOME"),
                         os.environ.get("HOME"))
    if not os.path.isdir(base):
        base.mkdir(parents=True, exist_ok=True)
    return base


@functools.lru_cache(maxsize=16)
def _results_path(env: str | None, cache_home: str | None, home: str | None) -> Path:
    """The path alone, per setting: a page run asks for it often (every class follower's page on
    every move), and building the Path each time was a measurable part of such a run."""
    if env:
        return Path(env)
    return Path(cache_home or Path(home or Path.home()) / ".cache") / "convnetlab"


class StoreError(RuntimeError):
    """The job store could not be read or written; the message names the file and the reason."""


@dataclass(frozen=True)
class StoredJob:
    id: str
    owner: str
    kind: str
    config: Any
    state: str
    message: str
    submitted: float
    out_dir: str


class JobStore:
    """The jobs of one runner, durable. Thread-safe (one connection, one lock). Every method raises
    `StoreError` when the file cannot be used."""

    def __init__(self, path: Path) -> None:
        self.path = path
        with self._guard("open"):
            path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None, timeout=5)
        self._lock = threading.Lock()
        with self._lock, self._guard("open"):
            self._db.execute("PRAGMA journal_mode=PERSIST")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute("CREATE TABLE IF NOT EXISTS jobs (id TEXT PRIMARY KEY, owner TEXT, kind TEXT, "
                             "config BLOB, state TEXT, message TEXT, submitted REAL, out_dir TEXT)")
            self._db.execute("CREATE TABLE IF NOT EXISTS events (job TEXT, seq INTEGER, event BLOB, "
                             "PRIMARY KEY (job, seq))")

    @contextmanager
    def _guard(self, what: str) -> Iterator[None]:
        try:
            yield
        except (sqlite3.Error, OSError) as e:
            raise StoreError(f"the job store {self.path} could not {what}: {e}") from e

    def add(self, job: StoredJob) -> None:
        with self._lock, self._guard("save a new run"):
            self._db.execute("INSERT INTO jobs VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                             (job.id, job.owner, job.kind, pickle.dumps(job.config), job.state, job.message,
                              job.submitted, job.out_dir))

    def set_state(self, job_id: str, state: str, message: str) -> None:
        with self._lock, self._guard("save a run's state"):
            self._db.execute("UPDATE jobs SET state = ?, message = ? WHERE id = ?", (state, message, job_id))

    def add_events(self, job_id: str, first_seq: int, events: Iterable[Any]) -> None:
        rows = [(job_id, first_seq + i, pickle.dumps(e)) for i, e in enumerate(events)]
        if rows:
            with self._lock, self._guard("save a run's progress"):
                self._db.executemany("INSERT OR REPLACE INTO events VALUES (?, ?, ?)", rows)

    def events(self, job_id: str) -> list[Any]:
        with self._lock, self._guard("read a run's progress"):
            rows = self._db.execute("SELECT event FROM events WHERE job = ? ORDER BY seq", (job_id,)).fetchall()
        return [pickle.loads(r[0]) for r in rows]

    def jobs(self) -> list[StoredJob]:
        with self._lock, self._guard("read the runs"):
            rows = self._db.execute("SELECT id, owner, kind, config, state, message, submitted, out_dir FROM jobs "
                                    "ORDER BY submitted").fetchall()
        out = []
        for r in rows:
            try:
                config = pickle.loads(r[3])
            except Exception:  # noqa: BLE001 - a config class that changed since: keep the run, not its config
                config = None
            out.append(StoredJob(r[0], r[1], r[2], config, r[4], r[5], r[6], r[7]))
        return out

    def delete(self, job_id: str) -> None:
        with self._lock, self._guard("delete an old run"):
            self._db.execute("DELETE FROM events WHERE job = ?", (job_id,))
            self._db.execute("DELETE FROM jobs WHERE id = ?", (job_id,))

    def close(self) -> None:
        with self._lock:
            self._db.close()
