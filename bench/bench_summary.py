"""summarize() vs torchinfo.summary on the same architectures, in one run.

Each measurement runs in a fresh subprocess so that peak memory (ru_maxrss) belongs to one call
and imports are warm in neither. Prints a table and the ratio torchinfo time / our time.

    .venv/bin/python bench/bench_summary.py [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ARCHS = ["resnet152", "vgg19", "mobilenet_v2"]

CHILD = r"""
import json, resource, sys, time
sys.path.insert(0, {root!r})
import torch, torchvision, torchinfo
from core.analysis import summarize
name, tool, repeat = {name!r}, {tool!r}, {repeat}
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
times = []
for _ in range(repeat):
    t = time.perf_counter()
    if tool == "ours":
        s = summarize(name)
        macs = s.totals.macs
    else:
        model = getattr(torchvision.models, name)(weights=None)
        st = torchinfo.summary(model, input_size=(1, 3, 224, 224), verbose=0)
        macs = st.total_mult_adds
        del model
    times.append(time.perf_counter() - t)
peak = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) * 1024
print(json.dumps({{"best_s": min(times), "peak_bytes": peak, "macs": macs}}))
"""


def run(name: str, tool: str, repeat: int) -> dict:
    code = CHILD.format(root=str(ROOT), name=name, tool=tool, repeat=repeat)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()
    import torch
    print(f"machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, "
          f"torch {torch.__version__}")
    print(f"{'arch':14} {'ours (s)':>9} {'torchinfo (s)':>14} {'speed-up':>9} {'ours peak MB':>13} "
          f"{'torchinfo peak MB':>18}")
    for name in ARCHS:
        ours, ti = run(name, "ours", a.repeat), run(name, "torchinfo", a.repeat)
        print(f"{name:14} {ours['best_s']:9.3f} {ti['best_s']:14.3f} {ti['best_s'] / ours['best_s']:8.1f}x "
              f"{ours['peak_bytes'] / 1e6:13.0f} {ti['peak_bytes'] / 1e6:18.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
