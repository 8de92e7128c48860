"""The first analysis of every timm architecture, as the explorer does it (`summarize("timm:NAME")`:
built on the meta device at its default input size, one hooked forward pass).

One process walks every name timm lists, after the imports (timm's own is timed apart: a server
pays it once), so each call is that architecture's first analysis; the slowest ones are then timed
again, each in a fresh process (imports done and collected before the clock starts), which is
what the first visitor of a fresh server waits for. Failures are recorded with their message.

    .venv/bin/python bench/bench_timm.py [--names NAME ...] [--fresh 5] [--out FILE]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
GOAL_S = 2.0

FRESH = r"""
import gc, json, sys, time
sys.path.insert(0, {root!r})
import timm
from core.analysis import summarize
gc.collect()
t = time.perf_counter()
summarize({name!r})
print(json.dumps({{"first_s": time.perf_counter() - t}}))
"""


def fresh(name: str) -> float:
    """Seconds of the first analysis of `name` in a new process (imports excluded)."""
    out = subprocess.run([sys.executable, "-c", FRESH.format(root=str(ROOT), name=name)], capture_output=True,
                         text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])["first_s"]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--names", nargs="+", metavar="NAME", help="timm names (default: every one timm lists)")
    ap.add_argument("--fresh", type=int, default=5, help="time the N slowest again, each in a fresh process")
    ap.add_argument("--out", default=None, help="JSON file (default: bench/figures/timm-first-analysis-DATE.json)")
    a = ap.parse_args()
    import gc

    t = time.perf_counter()
    import timm
    import_s = time.perf_counter() - t
    from core import timm_archs
    from core.analysis import summarize

    names = [timm_archs.PREFIX + n for n in a.names] if a.names else timm_archs.names()
    gc.collect()
    rows = []
    for k, name in enumerate(names):
        t = time.perf_counter()
        try:
            s = summarize(name)
            rows.append({"name": name, "s": time.perf_counter() - t, "input": s.input_size, "params": s.totals.params,
                         "macs": s.totals.macs, "layers": len(s.layers), "error": None})
        except Exception as e:  # noqa: BLE001 - a benchmark records what failed and goes on
            rows.append({"name": name, "s": time.perf_counter() - t, "error": f"{type(e).__name__}: {str(e)[:300]}"})
        if k % 100 == 0:
            print(f"{k}/{len(names)} {name} {rows[-1]['s']:.2f} s", file=sys.stderr, flush=True)
    ok = sorted((r for r in rows if r["error"] is None), key=lambda r: -r["s"])
    for r in ok[:a.fresh]:
        r["fresh_s"] = fresh(r["name"])
    times = [r["s"] for r in ok]
    report = {
        "date": datetime.date.today().isoformat(), "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "load_avg": os.getloadavg(), "timm": timm.__version__, "import_timm_s": import_s, "names": len(rows),
        "analysed": len(ok), "failed": [r for r in rows if r["error"]],
        "median_s": statistics.median(times) if times else None, "over_goal": [r["name"] for r in ok if r["s"] > GOAL_S],
        "slowest": ok[:20], "rows": rows}
    out = Path(a.out) if a.out else ROOT / "bench" / "figures" / f"timm-first-analysis-{report['date']}.json"
    out.write_text(json.dumps(report, indent=1))
    print(f"timm {timm.__version__}: import {import_s:.1f} s; {len(ok)} of {len(rows)} analysed, median "
          f"{report['median_s']:.3f} s, {len(report['over_goal'])} over {GOAL_S} s; wrote {out}")
    for r in ok[:10]:
        extra = f", fresh process {r['fresh_s']:.2f} s" if "fresh_s" in r else ""
        print(f"  {r['name']:48} {r['s']:6.2f} s  {'x'.join(map(str, r['input']))}  {r['params']:,} params{extra}")
    for r in report["failed"]:
        print(f"  FAILED {r['name']}: {r['error'][:160]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
