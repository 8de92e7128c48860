"""First page loads as a user sees them: a fresh server, each page opened in headless Chromium,
from navigation to the page's script having finished. "cold" is the first visit of a page on
the server (its imports and caches are built); "warm" the median of the next `--repeat` visits
in new tabs (new sessions).

    .venv/bin/python bench/bench_page_load.py [--repeat 3] [--json-out FILE]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.browser import CHROMIUM, CHROMIUM_ARGS, load, streamlit_server  # noqa: E402

PAGES = ("/", "/explorer", "/inside", "/transfer", "/lab", "/design", "/zoo")


def main() -> int:
    from playwright.sync_api import sync_playwright

    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--json-out")
    a = ap.parse_args()
    rows = {}
    with streamlit_server() as base, sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        for path in PAGES:
            times = []
            for _ in range(1 + a.repeat):
                pg = b.new_page(viewport={"width": 1280, "height": 900})
                times.append(load(pg, base + path))
                pg.close()
            rows[path] = {"cold_s": round(times[0], 2), "warm_median_s": round(statistics.median(times[1:]), 2),
                          "warm_max_s": round(max(times[1:]), 2)}
            print(f"{path:12} cold {times[0]:5.2f} s   warm {rows[path]['warm_median_s']:5.2f} s "
                  f"(max {rows[path]['warm_max_s']:.2f})", flush=True)
        b.close()
    if a.json_out:
        Path(a.json_out).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
