"""From the click on Train to the first progress the page can show, through the job runner.

The page submits a job and then shows the job's events; this measures, for the Studio's default
run (digits, ResNet-18, scenario 1) and the Training Lab's autoencoder, the seconds from
`submit` to the first event (the "loading data" phase) and to the first training step, with a
warm spare worker (the default: handlers and torch imported ahead) and without one (a cold
worker per job, as before). Each figure: median and range over `--repeat` runs, one at a time,
with an idle gap so the spare is ready, as it is when the queue is free.

    .venv/bin/python bench/bench_first_progress.py [--repeat 3] [--json-out FILE] [--browser] [--runner ray]

`--runner ray` measures the same through the Ray backend instead (core.train.ray_runner): a job
board and one long-lived worker that has imported the handlers, on the cluster at $RAY_ADDRESS, or
on a Ray started in this process when it is not set; the worker is warm for every run (it outlives
its jobs), so there is no cold case.

`--browser` also measures it as a user sees it: a real server, the Studio in headless Chromium,
from the click on Train to a progress bar that names a phase or a step (the page polls its job
once a second); with `--base URL`, on a running dashboard instead (a class from serve-class.sh,
its jobs on Ray).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.train.events import Epoch, Phase, Step  # noqa: E402
from core.train.jobs import JobSpec, Runner, wait  # noqa: E402
from core.train.local_runner import LocalRunner  # noqa: E402


def jobs() -> dict[str, JobSpec]:
    from core.lab.autoencoder import Config as AutoencoderConfig
    from core.train.transfer import TrainConfig

    return {"studio default (scenario 1, digits)": JobSpec("train", TrainConfig(weights="random")),
            "lab autoencoder (default)": JobSpec("lab", AutoencoderConfig(epochs=1))}


def one(runner: Runner, spec: JobSpec, owner: str) -> tuple[float, float | None]:
    t0 = time.perf_counter()
    jid = runner.submit(owner, spec)
    first = step = None
    while step is None:
        ev = runner.events(jid)
        now = time.perf_counter() - t0
        if first is None and ev:
            first = now
        if any(isinstance(e, (Step, Epoch)) for e in ev):
            step = now
        if runner.status(jid).state not in ("queued", "running"):
            break
        time.sleep(0.01)
    runner.cancel(jid)
    wait(runner, jid, 60)
    assert first is not None and isinstance(runner.events(jid)[0], Phase), runner.events(jid)[:1]
    return first, step


def spread(xs: list[float]) -> dict:
    return {"median": round(statistics.median(xs), 2), "min": round(min(xs), 2), "max": round(max(xs), 2)}


PHASE_SHOWN = """() => [...document.querySelectorAll('[data-testid="stProgress"]')].some(
  e => /loading data|building the model|computing features|step \\d/.test(e.innerText))"""


def browser(repeat: int, idle: float, base: str | None = None) -> dict:
    """Click-to-visible-progress in the Studio, on a fresh server (spare warm after `idle` s), or on
    the dashboard at `base` (e.g. a class behind scripts/serve-class.sh, its jobs on Ray)."""
    import contextlib

    from playwright.sync_api import sync_playwright

    from bench.browser import CHROMIUM, CHROMIUM_ARGS, load, streamlit_server

    times = []
    with (contextlib.nullcontext(base) if base else streamlit_server()) as base, sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        for _ in range(repeat):
            pg = b.new_page(viewport={"width": 1280, "height": 900})
            load(pg, base + "/transfer")
            time.sleep(idle)
            t = time.perf_counter()
            pg.get_by_role("button", name="Train", exact=True).click()
            pg.wait_for_function(PHASE_SHOWN, timeout=60_000, polling=20)
            times.append(time.perf_counter() - t)
            pg.get_by_role("button", name="Cancel").click()
            pg.get_by_role("button", name="Cancel").wait_for(state="detached", timeout=60_000)
            pg.close()
        b.close()
    return spread(times)


def make(backend: str, root: str, warm: bool) -> Runner:
    """The local runner (with or without its spare), or a client of a fresh Ray job board (its
    worker comes up during the idle gap before the first run, as the local spare does)."""
    if backend == "local":
        return LocalRunner(root=root, spare=warm)
    from core.train.ray_runner import RayRunner

    return RayRunner(root=root, name="bench-first-progress", address=os.environ.get("RAY_ADDRESS") or "local")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--idle", type=float, default=8.0, help="seconds between runs (the spare gets ready)")
    ap.add_argument("--json-out")
    ap.add_argument("--browser", action="store_true", help="also click Train in a real browser")
    ap.add_argument("--runner", choices=["local", "ray"], default="local")
    ap.add_argument("--base", help="with --browser: a running dashboard's URL instead of a fresh server")
    a = ap.parse_args()
    report = {}
    if a.browser:
        report["browser: click Train to a visible phase, Studio default"] = row = browser(a.repeat, a.idle, a.base)
        print(f"{'browser: click Train -> visible progress':52} {row['median']:5.2f} s ({row['min']}-{row['max']})",
              flush=True)
    for warm in (True,) if a.runner == "ray" else (True, False):
        with tempfile.TemporaryDirectory() as tmp:
            runner = make(a.runner, tmp, warm)
            label = "warm Ray worker" if a.runner == "ray" else "warm spare " if warm else "cold worker"
            try:
                for name, spec in jobs().items():
                    firsts, steps = [], []
                    for i in range(a.repeat):
                        time.sleep(a.idle)
                        f, s = one(runner, spec, f"student{i}")
                        firsts.append(f)
                        if s is not None:
                            steps.append(s)
                    row = {"first_event_s": spread(firsts), "first_step_s": spread(steps) if steps else None}
                    report[f"{name}, {label.strip()}"] = row
                    print(f"{name:40} {label}  first progress "
                          f"{row['first_event_s']['median']:5.2f} s ({row['first_event_s']['min']}-"
                          f"{row['first_event_s']['max']})  first step "
                          + (f"{row['first_step_s']['median']:5.2f} s" if steps else "-"), flush=True)
            finally:
                runner.shutdown()
                if a.runner == "ray":
                    runner.stop_board()
    if a.json_out:
        Path(a.json_out).write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
