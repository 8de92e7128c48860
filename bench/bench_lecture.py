"""The lecture path stop by stop, as a lecturer's clicker drives it: a real server over the prepared
results directory, headless Chromium at 1024x768, one press of ArrowRight per stop, timed from the
key press until the next stop is on screen: its header shown, the page's script finished and every
chart of the stop drawn. "first" is each stop's first visit after the server started (the prepared
panel read from disk), "again" a second pass through the path (read once per server, then shared).

    CONVNETLAB_RESULTS=DIR .venv/bin/python bench/bench_lecture.py [--passes 2] [--json-out FILE]

Prepare DIR first (`python -m core lecture prepare`); the script says how many stops were prepared.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.browser import CHROMIUM, CHROMIUM_ARGS, IDLE, streamlit_server  # noqa: E402

# The stop on screen: its address, its header, the script done, and every chart of the stop drawn.
SHOWN_JS = """([slug, title]) => {
  const main = document.querySelector('[data-testid="stMain"]');
  const h = main && main.querySelector('[data-testid="stHeading"] h2');
  if (new URLSearchParams(location.search).get('stop') !== slug || !h || h.innerText !== title) return false;
  if (!document.querySelector('[data-testid="stApp"][data-test-script-state="notRunning"]')) return false;
  const charts = main.querySelectorAll('[data-testid="stPlotlyChart"]');
  return [...charts].every(c => c.querySelector('.main-svg'));
}"""


def walk(pg, stops: list, base: str, first: int = 0) -> list[float]:
    """Seconds from each ArrowRight to the next stop shown, for stops[first + 1:]."""
    s0 = stops[first]
    pg.goto(f"{base}/lecture?stop={s0.slug}")
    pg.wait_for_function(SHOWN_JS, arg=[s0.slug, s0.title], timeout=120_000)
    pg.wait_for_function("window.__lectureKeys === true", timeout=60_000)
    pg.wait_for_selector(IDLE, timeout=120_000)
    out = []
    for s in stops[first + 1:]:
        t = time.perf_counter()
        pg.keyboard.press("ArrowRight")
        pg.wait_for_function(SHOWN_JS, arg=[s.slug, s.title], timeout=120_000, polling=20)
        out.append(time.perf_counter() - t)
        time.sleep(0.3)          # let the previous run's last messages settle before the next press
    return out


def main() -> int:
    from playwright.sync_api import sync_playwright

    from core.lecture import prepare as prep
    from core.lecture.stops import STOPS

    ap = argparse.ArgumentParser()
    ap.add_argument("--passes", type=int, default=2)
    ap.add_argument("--json-out")
    a = ap.parse_args()
    ready = [s.slug for s in STOPS if prep.ready(s)]
    state = prep.state()
    print(f"{len(ready)} of {len(STOPS)} stops prepared in {prep.lecture_dir()} "
          f"({state['profile'] if state else 'no'} run settings)", flush=True)
    rows: dict[str, list[float]] = {s.slug: [] for s in STOPS[1:]}
    with streamlit_server() as base, sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        for p in range(a.passes):
            pg = b.new_page(viewport={"width": 1024, "height": 768})
            for s, t in zip(STOPS[1:], walk(pg, list(STOPS), base)):
                rows[s.slug].append(t)
                print(f"pass {p + 1} {s.slug:24} {t:5.2f} s", flush=True)
            pg.close()
        b.close()
    summary = {}
    for i, name in enumerate(["first", "again"][:a.passes]):
        times = [v[i] for v in rows.values()]
        slow = max(rows, key=lambda k: rows[k][i])
        summary[name] = {"median_s": round(statistics.median(times), 2), "max_s": round(max(times), 2),
                         "slowest": slow, "under_1s": sum(t < 1 for t in times), "stops": len(times)}
        print(f"{name:6} median {summary[name]['median_s']:.2f} s, slowest {summary[name]['max_s']:.2f} s ({slow}), "
              f"{summary[name]['under_1s']} of {len(times)} under 1 s")
    if a.json_out:
        Path(a.json_out).write_text(json.dumps({"prepared": len(ready), "profile": state and state["profile"],
                                                "summary": summary, "stops": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
