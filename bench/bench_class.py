"""A hosted class under load: scripts/serve-class.sh (a local Ray head, R dashboard replicas, HAProxy
with sticky cookies) on loopback, driven by bench_load's browsing sessions through the balancer,
with K training runs going; then everything is stopped. Bounded like bench_load: N sessions of 6
interactions each, one figure set per N.

    .venv/bin/python bench/bench_class.py [--replicas 2] [--sessions 10,25,50] [--train 2] [--json-out FILE]
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.bench_load import report, run  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def free_port(span: int) -> int:
    """A loopback port p with p..p+span free (and p+100 for the Ray head below 65536)."""
    for _ in range(100):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            p = s.getsockname()[1]
        if p + 100 > 65535:
            continue
        try:
            for q in range(p, p + span + 1):
                with socket.socket() as t:
                    t.bind(("127.0.0.1", q))
            return p
        except OSError:
            continue
    raise RuntimeError("no free block of loopback ports")


def run_folder(port: int) -> Path:
    """The run folder of the class on `port` (scripts/class_supervisor.py)."""
    return Path(tempfile.gettempdir()) / f"convnetlab-class-{port}"


def start_class(port: int, replicas: int, env: dict, log: Path, timeout: float = 300) -> subprocess.Popen:
    """scripts/serve-class.sh in a session of its own, once it has said "== ready" (its output in `log`)."""
    with open(log, "w") as out:
        proc = subprocess.Popen(["bash", "scripts/serve-class.sh", "--replicas", str(replicas), "--port", str(port)],
                                cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    end = time.time() + timeout
    while "== ready" not in log.read_text():
        if proc.poll() is not None or time.time() > end:
            stop_class(proc)
            raise RuntimeError(f"serve-class.sh did not get ready:\n{log.read_text()[-2000:]}")
        time.sleep(0.2)
    return proc


def stop_class(proc: subprocess.Popen, timeout: float = 60) -> None:
    """Ctrl-C's equivalent (SIGTERM to the script), waiting for the class to have stopped."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)   # the supervisor still stops the class
            proc.wait(10)


def hosted_run(replicas: int, n: int, train: int) -> dict:
    """One class (fresh processes and results folder), one load run through its balancer."""
    port = free_port(replicas)
    results = Path(tempfile.mkdtemp(prefix="convnetlab-class-results-"))
    env = {**os.environ, "CONVNETLAB_RESULTS": str(results)}
    env.pop("RAY_ADDRESS", None)
    proc = start_class(port, replicas, env, results / "serve-class.log")
    try:
        row = run(n, train, base=f"http://127.0.0.1:{port}", ports=[str(port + i) for i in range(1, replicas + 1)])
        return {"replicas": replicas, **row}
    finally:
        stop_class(proc, 120)
        shutil.rmtree(results, ignore_errors=True)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--replicas", type=int, default=2)
    ap.add_argument("--sessions", default="10,25,50")
    ap.add_argument("--train", type=int, default=2)
    ap.add_argument("--json-out")
    a = ap.parse_args()
    report((hosted_run(a.replicas, int(n), a.train) for n in a.sessions.split(",")), a.json_out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
