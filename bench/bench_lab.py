"""The Training Lab's default runs: wall time and final metrics of each task, on one device.

    .venv/bin/python bench/bench_lab.py [--tasks autoencoder,unet,siamese,depth,detect,caption] [--device cpu]
        [--ae-widths 2,16,49] [--json-out FILE]

Each task runs with its Config defaults (what the page starts with), in this process, one after
the other; `--ae-widths` adds autoencoder runs at other bottleneck widths (the lecture's point:
smaller codes lose detail). `--quick` shrinks every run (a dry run of the script, not figures).
Each row records the machine's load average (1 minute) before and after the run and the CPU time
of this process (all its threads): on a shared machine a loaded run's wall time says little.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from core.lab.common import TASKS, options, run_headless  # noqa: E402

QUICK = {"autoencoder": dict(epochs=1), "unet": dict(images=40, size=16, epochs=1),
         "siamese": dict(epochs=1), "depth": dict(epochs=1),
         "detect": dict(scenes=16, val_scenes=8, epochs=1), "caption": dict(scenes=32, val_scenes=8, epochs=1)}


def run(task: str, device: str, quick: bool, **changes) -> dict:
    module = importlib.import_module(TASKS[task])
    fields = [f.name for f in options(module.Config)]
    opts = {k: v for k, v in {**(QUICK.get(task, {}) if quick else {}), **changes}.items() if k in fields}
    cfg = module.Config(**opts)
    load_before = os.getloadavg()[0]
    t0, c0 = time.perf_counter(), time.process_time()
    with tempfile.TemporaryDirectory() as tmp:
        final, _ = run_headless(cfg, tmp, device)
    return {"task": task, "config": {k: getattr(cfg, k) for k in fields},
            "seconds": round(time.perf_counter() - t0, 1), "cpu_seconds": round(time.process_time() - c0, 1),
            "load": [round(load_before, 2), round(os.getloadavg()[0], 2)],
            "final": final}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tasks", default=",".join(TASKS))
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--ae-widths", default="", help="extra autoencoder bottlenecks, e.g. 2,49")
    ap.add_argument("--quick", action="store_true", help="tiny runs: checks the script, not a measurement")
    ap.add_argument("--json-out")
    a = ap.parse_args()
    name = torch.cuda.get_device_name(0) if a.device.startswith("cuda") else f"CPU, {torch.get_num_threads()} threads"
    print(f"device: {name}, torch {torch.__version__}", flush=True)
    rows = []
    for task in a.tasks.split(","):
        try:
            importlib.import_module(TASKS[task])
        except ModuleNotFoundError:
            print(f"{task}: not built", flush=True)
            continue
        rows.append(run(task, a.device, a.quick))
        print(json.dumps(rows[-1]), flush=True)
    for w in filter(None, a.ae_widths.split(",")):
        rows.append(run("autoencoder", a.device, a.quick, bottleneck=int(w)))
        print(json.dumps(rows[-1]), flush=True)
    if a.json_out:
        Path(a.json_out).write_text(json.dumps({"device": name, "torch": torch.__version__, "runs": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
