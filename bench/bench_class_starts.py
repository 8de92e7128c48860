"""Consecutive starts and stops of a hosted class (scripts/serve-class.sh): does every start get
ready, how long does it take, and does every stop leave nothing behind?

Each cycle starts the class on the same port (a Ray head, R replicas, HAProxy; its own results
folder), times the script's launch to its "== ready", then checks independently of the script that
the balancer answers its health check and HAProxy's stats socket reports every replica UP; then
SIGTERM (Ctrl-C's twin), timed to the script's exit, and checks that no process of the class's
session is left, no port of the class listens and the run folder is gone.

    .venv/bin/python bench/bench_class_starts.py [--cycles 20] [--replicas 2] [--port 8520] [--json-out FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.bench_class import run_folder, start_class, stop_class  # noqa: E402

HTTP = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _session(sid: int) -> list[int]:
    out = subprocess.run(["ps", "-eo", "pid=,sid=,stat="], capture_output=True, text=True, check=True).stdout
    return [int(p) for p, s, st in (line.split() for line in out.splitlines()) if int(s) == sid and "Z" not in st]


def _listens(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def _replicas_up(port: int) -> dict[str, str]:
    with socket.socket(socket.AF_UNIX) as s:
        s.connect(str(run_folder(port) / "haproxy.sock"))
        s.sendall(b"show stat\n")
        raw = b"".join(iter(lambda: s.recv(65536), b"")).decode().splitlines()
    head = raw[0].lstrip("# ").split(",")
    rows = [dict(zip(head, line.split(","))) for line in raw[1:] if line]
    return {r["svname"]: r["status"] for r in rows if r["pxname"] == "dashboards" and r["svname"].startswith("r")}


def cycle(port: int, replicas: int, env: dict, log: Path) -> dict:
    """One start and stop; a row with the times and what was wrong ("" when nothing)."""
    t = time.perf_counter()
    try:
        proc = start_class(port, replicas, env, log)
    except RuntimeError as e:
        return {"ok": False, "start_s": None, "stop_s": None, "problem": str(e).splitlines()[-1][:200]}
    start_s = time.perf_counter() - t
    problems = []
    with HTTP.open(f"http://127.0.0.1:{port}/_stcore/health", timeout=5) as r:
        if r.read() != b"ok":
            problems.append("the balancer's health check did not answer ok")
    states = _replicas_up(port)
    if states != {f"r{i}": "UP" for i in range(1, replicas + 1)}:
        problems.append(f"HAProxy: {states}")
    sid = json.loads((run_folder(port) / "state.json").read_text())["sid"]
    t = time.perf_counter()
    stop_class(proc)
    stop_s = time.perf_counter() - t
    end = time.time() + 10
    while _session(sid) and time.time() < end:
        time.sleep(0.1)
    if _session(sid):
        problems.append(f"{len(_session(sid))} processes left")
    if any(_listens(q) for q in [port + 100] + [port + i for i in range(replicas + 1)]):
        problems.append("a port still listens")
    if run_folder(port).exists():
        problems.append("the run folder is still there")
    if proc.returncode != 0:
        problems.append(f"the script exited with {proc.returncode}")
    return {"ok": not problems, "start_s": round(start_s, 2), "stop_s": round(stop_s, 2), "problem": "; ".join(problems)}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cycles", type=int, default=20)
    ap.add_argument("--replicas", type=int, default=2)
    ap.add_argument("--port", type=int, default=8520)
    ap.add_argument("--json-out")
    a = ap.parse_args()
    results = Path(tempfile.mkdtemp(prefix="convnetlab-class-results-"))
    env = {**os.environ, "CONVNETLAB_RESULTS": str(results)}
    env.pop("RAY_ADDRESS", None)
    log = results / "serve-class.log"
    rows = []
    try:
        for i in range(1, a.cycles + 1):
            row = cycle(a.port, a.replicas, env, log)
            rows.append(row)
            print(f"{i:2d} {'ok  ' if row['ok'] else 'FAIL'} start {row['start_s']} s, stop {row['stop_s']} s"
                  + (f"  {row['problem']}" if row["problem"] else ""), flush=True)
    finally:
        shutil.rmtree(results, ignore_errors=True)
    starts = sorted(r["start_s"] for r in rows if r["start_s"] is not None)
    stops = sorted(r["stop_s"] for r in rows if r["stop_s"] is not None)
    summary = {"cycles": a.cycles, "replicas": a.replicas, "ok": sum(r["ok"] for r in rows),
               "start_s": {"min": starts[0], "median": round(statistics.median(starts), 2), "max": starts[-1]} if starts else None,
               "stop_s": {"min": stops[0], "median": round(statistics.median(stops), 2), "max": stops[-1]} if stops else None}
    print(json.dumps(summary))
    if a.json_out:
        Path(a.json_out).write_text(json.dumps({"summary": summary, "rows": rows}, indent=1))
    return 0 if summary["ok"] == a.cycles else 1


if __name__ == "__main__":
    sys.exit(main())
