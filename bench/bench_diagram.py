"""The explorer's diagram, drawn from a model built with its weights vs from its structure alone, in one run.

The diagram (core.diagram) traces on the meta device either way, so the weights a model is built
with are never used; until 2026-12-03 the page built them anyway (`spec.build()`: VGG-19's 548 MB
allocated and drawn at random), and a first visit to VGG-19's explorer waited for that. Now the
page builds with `spec.build_meta()`. Both ways draw the same DOT text (checked here).

Each measurement runs in a fresh subprocess with the imports done before the clock starts, so the
figure is what a page's first diagram of that architecture costs; "first" is the median over
`--processes` processes.

    .venv/bin/python bench/bench_diagram.py [--processes 3] [--archs vgg19 resnet152] [--json-out FILE]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ARCHS = ["alexnet", "vgg19", "resnet152", "mobilenet_v2"]
WAYS = ["weights", "structure"]

CHILD = r"""
import gc, hashlib, json, sys, time
sys.path.insert(0, {root!r})
import torch, torchview
from core import registry
from core.diagram import diagram
name, way = {name!r}, {way!r}
spec = registry.get(name)
gc.collect()
t = time.perf_counter()
model = spec.build() if way == "weights" else spec.build_meta()
d = diagram(model, spec.input_size, 2, spec.num_inputs)
print(json.dumps({{"first_s": time.perf_counter() - t, "dot": hashlib.sha256(d.dot.encode()).hexdigest()}}))
"""


def run(name: str, way: str) -> dict:
    out = subprocess.run([sys.executable, "-c", CHILD.format(root=str(ROOT), name=name, way=way)],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--processes", type=int, default=3)
    ap.add_argument("--archs", nargs="+", default=ARCHS)
    ap.add_argument("--json-out")
    args = ap.parse_args()
    rows = []
    print(f"{'arch':14} {'built with':12} {'first (s)':>10} {'ratio':>7}")
    for name in args.archs:
        firsts: dict[str, float] = {}
        dots: set[str] = set()
        for way in WAYS:
            runs = [run(name, way) for _ in range(args.processes)]
            firsts[way] = statistics.median(r["first_s"] for r in runs)
            dots |= {r["dot"] for r in runs}
        if len(dots) != 1:
            raise SystemExit(f"{name}: the two ways drew different diagrams")
        for way in WAYS:
            ratio = firsts[way] / firsts["weights"]
            rows.append({"arch": name, "built_with": way, "first_s": round(firsts[way], 3), "ratio": round(ratio, 3)})
            print(f"{name:14} {way:12} {firsts[way]:10.3f} {ratio:7.2f}")
    if args.json_out:
        Path(args.json_out).write_text(json.dumps({"machine": platform.platform(), "processor": platform.machine(),
                                                   "processes": args.processes, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
