"""What watching a Training Lab run costs the server: CPU-seconds of the Streamlit process per
minute, with the page open in Chromium and with it closed, on a real server.

For each case a fresh browser context opens the Lab at 1024x768, presses Train and waits for the
first training step; "closed" then closes the tab. After a few seconds to settle, the server
process's own CPU time (user + system, /proc/<pid>/stat; the training worker is another process and
not counted) is read over `--seconds`. Then the run is checked to be still training (the tab, or
the session's link reopened) and cancelled. "idle" is the server with no tab and no run.

    .venv/bin/python bench/bench_watch.py [--seconds 60] [--task unet] [--json-out FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.browser import CHROMIUM, CHROMIUM_ARGS, IDLE, streamlit_process  # noqa: E402

# Long runs (they are cancelled once measured), small enough to start training within seconds.
RUNS = {"unet": "task=unet&images=4000&size=32&epochs=100",
        "autoencoder": "task=autoencoder&epochs=200",
        "siamese": "task=siamese&epochs=200",
        "depth": "task=depth&epochs=200"}
STEP_JS = r"/step \d+ of \d+/.test(document.body.innerText)"


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of one process (its threads included, its children not)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _wait(pg) -> None:
    pg.wait_for_selector('[data-testid="stApp"]', timeout=120_000)
    time.sleep(0.3)
    pg.wait_for_selector(IDLE, timeout=120_000)


def measure(pid: int, seconds: float) -> tuple[float, float]:
    """(CPU-seconds, wall seconds) of the process over `seconds`."""
    c0, t0 = cpu_seconds(pid), time.monotonic()
    time.sleep(seconds)
    return cpu_seconds(pid) - c0, time.monotonic() - t0


def watched(browser, base: str, pid: int, query: str, seconds: float, keep_open: bool) -> dict:
    ctx = browser.new_context(viewport={"width": 1024, "height": 768})
    pg = ctx.new_page()
    pg.goto(f"{base}/lab?{query}")
    _wait(pg)
    pg.get_by_role("button", name="Train").click()
    pg.wait_for_function(STEP_JS, timeout=300_000)
    link = pg.url
    if not keep_open:
        ctx.close()
    time.sleep(3)
    cpu, wall = measure(pid, seconds)
    if keep_open:
        ctx.close()
    ctx = browser.new_context(viewport={"width": 1024, "height": 768})     # the owner's link: check, cancel
    pg = ctx.new_page()
    pg.goto(link)
    _wait(pg)
    pg.wait_for_function("""() => [...document.querySelectorAll('button')].some(b => b.innerText.trim() === 'Cancel')
                            || /Done:|The run failed|Cancelled|Interrupted/.test(document.body.innerText)""",
                         timeout=120_000)
    still = pg.get_by_role("button", name="Cancel").count() > 0 and "Done:" not in pg.inner_text("body")
    if still:
        pg.get_by_role("button", name="Cancel").click()
        pg.wait_for_function("document.body.innerText.includes('Cancelled')", timeout=120_000)
    ctx.close()
    return {"cpu_s": round(cpu, 2), "wall_s": round(wall, 1), "still_training_at_the_end": still}


def main() -> int:
    from playwright.sync_api import sync_playwright

    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=60, help="measuring window per case")
    ap.add_argument("--task", choices=list(RUNS), default="unet")
    ap.add_argument("--json-out")
    a = ap.parse_args()
    # a results folder of its own: no queue shared with another server's runs, nothing left behind
    os.environ["CONVNETLAB_RESULTS"] = tempfile.mkdtemp(prefix="bench-watch-")
    rows = {}
    log = open(os.devnull, "w")
    with streamlit_process(log) as (base, server), sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        warm = browser.new_page()                   # the server's first page pays for its imports, not measured
        warm.goto(f"{base}/lab?task={a.task}")
        _wait(warm)
        warm.close()
        time.sleep(3)
        cpu, wall = measure(server.pid, a.seconds)
        rows["idle"] = {"cpu_s": round(cpu, 2), "wall_s": round(wall, 1)}
        rows["run, page closed"] = watched(browser, base, server.pid, RUNS[a.task], a.seconds, keep_open=False)
        rows["run, page open"] = watched(browser, base, server.pid, RUNS[a.task], a.seconds, keep_open=True)
        browser.close()
    shutil.rmtree(os.environ["CONVNETLAB_RESULTS"], ignore_errors=True)
    for name, r in rows.items():
        r["cpu_s_per_minute"] = round(r["cpu_s"] / r["wall_s"] * 60, 2)
        r["share_of_a_core"] = round(r["cpu_s"] / r["wall_s"], 3)
        note = "" if r.get("still_training_at_the_end", True) else "  (the run ended inside the window)"
        print(f"{name:18} {r['cpu_s']:6.2f} CPU-s in {r['wall_s']:5.1f} s = {r['cpu_s_per_minute']:5.2f} CPU-s "
              f"per minute ({r['share_of_a_core']:.1%} of a core){note}", flush=True)
    if a.json_out:
        Path(a.json_out).write_text(json.dumps({"task": a.task, "query": RUNS[a.task], "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
