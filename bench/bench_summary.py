"""summarize() vs torchinfo.summary on the same architectures, in one run.

Three ways to get a layer table at 1x3x224x224:
- ours: `core.analysis.summarize` (builds on the meta device, one hooked forward pass);
- torchinfo: the usual call, real weights and a real forward pass;
- torchinfo on meta: the same model built on the meta device and `torchinfo.summary(...,
  device="meta")`, the fair comparison for ours.

Each measurement runs in a fresh subprocess with the imports done (and their garbage collected)
before the clock starts, so the first call pays for what a page's first analysis pays (the
model build included) and peak memory (ru_maxrss) belongs to one tool. "first" is the median over `--processes` processes of
the first call; "best" the best repeated call.

    .venv/bin/python bench/bench_summary.py [--repeat 3] [--processes 5] [--archs resnet152] [--tools ours]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ARCHS = ["resnet152", "vgg19", "mobilenet_v2"]
TOOLS = ["ours", "torchinfo", "torchinfo-meta"]

CHILD = r"""
import gc, json, resource, sys, time
sys.path.insert(0, {root!r})
import torch, torchvision, torchinfo
from core.analysis import forget_summaries, summarize
name, tool, repeat = {name!r}, {tool!r}, {repeat}
gc.collect()  # the imports' garbage: its collection (about 0.17 s) would land in whichever call comes first
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
times = []
for _ in range(repeat):
    t = time.perf_counter()
    if tool == "ours":
        forget_summaries()          # each call analyses: summarize keeps its last results, a copy is no analysis
        t = time.perf_counter()
        macs = summarize(name).totals.macs
    elif tool == "torchinfo":
        model = getattr(torchvision.models, name)(weights=None)
        macs = torchinfo.summary(model, input_size=(1, 3, 224, 224), verbose=0).total_mult_adds
        del model
    else:
        with torch.device("meta"):
            model = getattr(torchvision.models, name)(weights=None)
        macs = torchinfo.summary(model, input_size=(1, 3, 224, 224), device="meta", verbose=0).total_mult_adds
        del model
    times.append(time.perf_counter() - t)
peak = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) * 1024
print(json.dumps({{"first_s": times[0], "best_s": min(times), "peak_bytes": peak, "macs": macs}}))
"""


def run(name: str, tool: str, repeat: int) -> dict:
    code = CHILD.format(root=str(ROOT), name=name, tool=tool, repeat=repeat)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def measure(name: str, tool: str, repeat: int, processes: int) -> dict:
    """First-call median over fresh processes, best repeated call, largest peak memory."""
    runs = [run(name, tool, repeat) for _ in range(processes)]
    return {"first_s": statistics.median(r["first_s"] for r in runs), "best_s": min(r["best_s"] for r in runs),
            "peak_bytes": max(r["peak_bytes"] for r in runs)}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=3, help="calls per process")
    ap.add_argument("--processes", type=int, default=5, help="fresh processes per tool and architecture")
    ap.add_argument("--archs", nargs="+", default=ARCHS, metavar="NAME")
    ap.add_argument("--tools", nargs="+", default=TOOLS, choices=TOOLS)
    a = ap.parse_args()
    import torch
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"{torch.get_num_threads()} threads, torch {torch.__version__}, load average "
          f"{os.getloadavg()[0]:.1f}")
    print(f"{'arch':13} {'tool':15} {'first (s)':>10} {'best (s)':>9} {'peak MB':>8}")
    for name in a.archs:
        for tool in a.tools:
            m = measure(name, tool, a.repeat, a.processes)
            print(f"{name:13} {tool:15} {m['first_s']:10.3f} {m['best_s']:9.3f} {m['peak_bytes'] / 1e6:8.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
