"""A job runner that runs each job in the test's own process, at once: the lecture path's tests
prepare tiny runs without paying for a worker process (and its torch import) per run. It runs the
real handlers (`core.train.jobs.run_job`) and reads results back with the real loaders."""

from __future__ import annotations

import itertools
import tempfile
import time
from pathlib import Path
from typing import Any

from core.train.context import JobContext
from core.train.events import Event
from core.train.jobs import RESULT_LOADERS, JobSpec, JobStatus, RunnerLimits, resolve, run_job


class InlineRunner:
    """`core.train.jobs.Runner`, synchronous: `submit` returns once the job has ended."""

    def __init__(self, root: str | Path | None = None) -> None:
        self.root = Path(root or tempfile.mkdtemp(prefix="convnetlab-inline-"))
        self._ids = itertools.count(1)
        self.jobs: dict[str, dict[str, Any]] = {}
        self.submitted: list[JobSpec] = []

    def limits(self) -> RunnerLimits:
        return RunnerLimits(1, "cpu")

    def submit(self, owner: str, spec: JobSpec) -> str:
        jid = f"{next(self._ids):012x}"
        out = self.root / jid
        out.mkdir(parents=True)
        events: list[Event] = []
        self.submitted.append(spec)
        state, message = run_job(spec, JobContext(events.append, lambda: False, out, "cpu"))
        self.jobs[jid] = dict(owner=owner, spec=spec, state=state, message=message, events=events, out=out,
                              submitted=time.time())
        return jid

    def status(self, job_id: str) -> JobStatus:
        j = self.jobs[job_id]
        return JobStatus(job_id, j["spec"].kind, j["state"], j["message"], 0, j["spec"].config, j["submitted"])

    def jobs_of(self, owner: str) -> list[JobStatus]:
        return [self.status(i) for i, j in self.jobs.items() if j["owner"] == owner]

    def events(self, job_id: str, since: int = 0) -> list[Event]:
        return self.jobs[job_id]["events"][since:]

    def cancel(self, job_id: str) -> None:
        pass

    def results(self, job_id: str) -> Any | None:
        j = self.jobs[job_id]
        loader = RESULT_LOADERS.get(j["spec"].kind)
        return resolve(loader)(j["out"]) if loader and j["state"] == "done" else None

    def shutdown(self) -> None:
        pass
