"""What a job's worker process costs before its job runs: forked from the fork server (the default)
against spawned afresh (`CONVNETLAB_WORKER_START=spawn`, how every worker started before).

Each side runs in a process of its own (the fork server belongs to the process that starts it) and
does the same work: `--jobs` jobs, one at a time, through a LocalRunner with no spare worker, so
each job waits for its worker to start; the job itself only reports. Per side:
- the CPU-seconds each worker had used when its job began (a spawned worker has imported the
  handlers' modules, torch, torchvision and captum among them; a forked one inherited them);
- the seconds from `submit` to the job's first event;
- once per process, the CPU-seconds the fork server spent importing those modules.

    .venv/bin/python bench/bench_worker_start.py [--jobs 5] [--json-out FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def report(spec, ctx) -> str:
    """The job: says the CPU its process has used so far and its parent, and ends."""
    from core.train.events import Note

    ctx.emit(Note(f"{time.process_time()} {os.getppid()}"))
    return "reported"


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def side(jobs: int) -> dict:
    """This process's side: `jobs` jobs, one at a time, each on a new worker."""
    from core.train.jobs import HANDLERS, JobSpec, wait
    from core.train.local_runner import LocalRunner

    handlers = {**HANDLERS, "report": "bench_worker_start:report"}
    cpu, first, parents = [], [], set()
    with tempfile.TemporaryDirectory() as root:
        runner = LocalRunner(root=root, handlers=handlers, spare=False)
        try:
            for i in range(jobs):
                t = time.perf_counter()
                jid = runner.submit(f"user{i}", JobSpec("report", None))
                while not runner.events(jid):
                    time.sleep(0.005)
                first.append(time.perf_counter() - t)
                assert wait(runner, jid, 120).state == "done", runner.status(jid)
                used, parent = runner.events(jid)[0].message.split()
                cpu.append(float(used))
                parents.add(int(parent))
            forkserver = [p for p in parents if p != os.getpid()]
            return {"worker_cpu_s": cpu, "first_event_s": first,
                    "fork_server_cpu_s": round(_cpu_s(forkserver[0]), 2) if forkserver else None}
        finally:
            runner.shutdown()


def spread(xs: list[float]) -> dict:
    return {"median": round(statistics.median(xs), 3), "min": round(min(xs), 3), "max": round(max(xs), 3)}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--jobs", type=int, default=5)
    ap.add_argument("--json-out")
    ap.add_argument("--side", choices=["forkserver", "spawn"], help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.side:
        print(json.dumps(side(a.jobs)))
        return 0
    out = {"jobs": a.jobs, "cores": len(os.sched_getaffinity(0))}
    for start in ("spawn", "forkserver"):
        env = {**os.environ, "CONVNETLAB_WORKER_START": start}
        done = subprocess.run([sys.executable, __file__, "--side", start, "--jobs", str(a.jobs)], env=env,
                              capture_output=True, text=True, check=True)
        r = json.loads(done.stdout.strip().splitlines()[-1])
        out[start] = {"worker_cpu_s": spread(r["worker_cpu_s"]), "first_event_s": spread(r["first_event_s"]),
                      "fork_server_cpu_s": r["fork_server_cpu_s"]}
        print(f"{start:10}  worker CPU before its job {out[start]['worker_cpu_s']['median']:6.3f} s  "
              f"submit -> first event {out[start]['first_event_s']['median']:6.3f} s  "
              f"fork server (once) {r['fork_server_cpu_s'] or '-'} CPU-s", flush=True)
    out["ratio_worker_cpu"] = round(out["spawn"]["worker_cpu_s"]["median"]
                                    / max(out["forkserver"]["worker_cpu_s"]["median"], 1e-3), 1)
    out["ratio_first_event"] = round(out["spawn"]["first_event_s"]["median"]
                                     / out["forkserver"]["first_event_s"]["median"], 1)
    print(f"spawn / fork server: worker CPU x{out['ratio_worker_cpu']}, first event x{out['ratio_first_event']}")
    if a.json_out:
        Path(a.json_out).write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
