"""A bounded load run on loopback: N browser sessions open on one real server at once, each
browsing (explorer steps and a chart tab, the Design Lab and a tab, the Zoo), and the server's
memory before, after the first session, at its peak and after everyone has left.

One driver issues the interactions round-robin over the open sessions (Playwright's sync API is
single-threaded), so the server holds N live sessions while each interaction runs, but two
interactions never start at the same instant. Each figure is the time from the action to the
page's script having finished (the app idle again). Bounded: N sessions, 6 interactions each.
With --train K, K more fresh sessions first open the Studio (the learning rate each shows is
recorded: it must be the default), click Train, and stay open; their waits from the click to
leaving the queue are looked for after every interaction (to about a second; a run that started
and ended between two looks counts at the second).

    .venv/bin/python bench/bench_load.py [--sessions 10,25] [--train 2] [--json-out FILE]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterable

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.browser import CHROMIUM, CHROMIUM_ARGS, IDLE, load, streamlit_server  # noqa: E402

ARCHS = ("alexnet", "vgg16", "resnet50", "googlenet", "mobilenet_v2")


def server_rss_mb(port: str) -> float:
    """Resident memory of the Streamlit server listening on `port` (its own process, not workers)."""
    pid = subprocess.run(["pgrep", "-f", f"server.port {port}"], capture_output=True, text=True).stdout.split()[0]
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def act(page, what) -> float:
    t = time.perf_counter()
    what()
    time.sleep(0.05)
    page.wait_for_selector(IDLE, timeout=120_000)
    return time.perf_counter() - t


LR_BOX = 'input[aria-label="Peak learning rate (one-cycle)"]'


def start_training(b, base: str) -> tuple:
    """A fresh session opens the Studio, reads the learning rate it shows, and clicks Train."""
    ctx = b.new_context(viewport={"width": 1280, "height": 900})
    pg = ctx.new_page()
    load(pg, f"{base}/transfer")
    lr = pg.input_value(LR_BOX)
    pg.get_by_role("button", name="Train").click()
    return ctx, pg, lr, time.perf_counter()


def started(pg) -> bool:
    """The run has left the queue: its page shows a progress bar (a phase or a step) or its outcome,
    and no queue place. (A run that started and ended between two looks counts at the second.)"""
    body = pg.inner_text("body")
    return "Queued: position" not in body and (bool(pg.query_selector('[data-testid="stProgress"]'))
                                               or "Done:" in body or "The run failed" in body)


def run(n: int, train: int = 0, base: str | None = None, ports: list[str] | None = None) -> dict:
    """One load run against a server started here, or against `base` (a balancer) whose replicas
    listen on `ports` (their memory is added up)."""
    from playwright.sync_api import sync_playwright

    times, errors = [], 0
    with (contextlib.nullcontext(base) if base else streamlit_server()) as base, sync_playwright() as pw:
        ports = ports or [base.rsplit(":", 1)[1]]

        def server_mb() -> float:
            return sum(server_rss_mb(p) for p in ports)

        b = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        before = server_mb()
        trainers = [start_training(b, base) for _ in range(train)]
        waits: dict[int, float] = {}

        def look() -> None:
            for i, (_, tpg, _, clicked) in enumerate(trainers):
                if i not in waits and started(tpg):
                    waits[i] = time.perf_counter() - clicked

        look()
        pages = []
        for i in range(n):
            ctx = b.new_context(viewport={"width": 1280, "height": 900})
            pg = ctx.new_page()
            load(pg, f"{base}/explorer?arch={ARCHS[i % len(ARCHS)]}")
            pages.append((ctx, pg))
            look()
            if i == 0:
                warm = server_mb()    # torch, the registry and the first caches: paid once per server
        peak = server_mb()
        steps = [lambda pg: pg.get_by_role("button", name="Next").click(),
                 lambda pg: pg.get_by_role("button", name="Next").click(),
                 lambda pg: pg.get_by_role("tab", name="Per-layer chart").click(),
                 lambda pg: pg.goto(f"{base}/design"),
                 lambda pg: pg.get_by_role("tab", name="Depthwise-separable").click(),
                 lambda pg: pg.goto(f"{base}/zoo")]
        for step in steps:
            for _, pg in pages:
                try:
                    times.append(act(pg, lambda: step(pg)))
                    errors += len(pg.query_selector_all('[data-testid="stException"]'))
                except Exception:  # noqa: BLE001 - counted, the run goes on
                    errors += 1
                look()                            # after every interaction: queue waits to ~1 s
            peak = max(peak, server_mb())
        for ctx, _ in pages:
            ctx.close()
        end = time.perf_counter() + 600           # the queued runs: until each has started (bounded)
        while len(waits) < train and time.perf_counter() < end:
            look()
            time.sleep(1)
        for ctx, *_ in trainers:
            ctx.close()
        time.sleep(5)                         # Streamlit drops a session a few seconds after its socket closes
        after = server_mb()
        b.close()
    times.sort()
    return {"sessions": n, "interactions": len(times), "errors": errors,
            "p50_s": round(statistics.median(times), 2), "p95_s": round(times[int(0.95 * (len(times) - 1))], 2),
            "max_s": round(times[-1], 2), "server_mb_before": round(before), "server_mb_peak": round(peak),
            "server_mb_after_first_session": round(warm), "server_mb_after": round(after),
            "mb_per_extra_session": round((peak - warm) / max(1, n - 1), 1),
            "training_runs": train, "learning_rates_shown": sorted({lr for _, _, lr, _ in trainers}),
            "queue_waits_s": [round(waits[i], 1) if i in waits else None for i in range(train)]}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sessions", default="10,25")
    ap.add_argument("--train", type=int, default=0, help="training runs started (Studio defaults) before browsing")
    ap.add_argument("--json-out")
    a = ap.parse_args()
    report((run(int(n), a.train) for n in a.sessions.split(",")), a.json_out)
    return 0


def report(rows: Iterable[dict], json_out: str | None) -> None:
    """Prints each row as it comes (a JSON line) and writes them all to `json_out` at the end."""
    done = []
    for row in rows:
        done.append(row)
        print(json.dumps(row), flush=True)
    if json_out:
        Path(json_out).write_text(json.dumps(done, indent=1))


if __name__ == "__main__":
    sys.exit(main())
