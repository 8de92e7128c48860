"""The Studio's own path through the job runner on one device: two jobs at once, the memory each
leaves behind, and (on CUDA, with a memory cap) the out-of-memory retry at half the batch.

    python bench/bench_gpu_jobs.py [--device cuda] [--quick] [--json-out FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.train.events import Epoch, Note  # noqa: E402
from core.train.jobs import JobSpec, LocalRunner, wait  # noqa: E402
from core.train.transfer import TrainConfig  # noqa: E402


def run_jobs(runner: LocalRunner, cfgs: list[TrainConfig], timeout: float) -> list[dict]:
    t0 = time.perf_counter()
    ids = [runner.submit(f"student{i}", JobSpec("train", c)) for i, c in enumerate(cfgs)]
    out = []
    for jid, cfg in zip(ids, cfgs):
        st = wait(runner, jid, timeout)
        ev = runner.events(jid)
        out.append({"state": st.state, "message": st.message, "batch_size": cfg.batch_size,
                    "notes": [e.message for e in ev if isinstance(e, Note)],
                    "epochs": [{"epoch": e.epoch, "val_acc": e.metrics["acc"], "img_s": e.images_per_s}
                               for e in ev if isinstance(e, Epoch)],
                    "wall_s": round(time.perf_counter() - t0, 1)})
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--quick", action="store_true", help="tiny runs: checks the script, not a measurement")
    ap.add_argument("--json-out")
    a = ap.parse_args()
    size, per_class, epochs, batch = (32, 20, 1, 16) if a.quick else (224, 400, 3, 256)
    base = TrainConfig(dataset="shapes", arch="resnet18", weights="random", scenario="finetune", augment=True,
                       shapes_classes=8, shapes_per_class=per_class, image_size=size, epochs=epochs,
                       batch_size=batch, log_every=50)
    report = {"device": a.device}
    with tempfile.TemporaryDirectory() as tmp:
        r = LocalRunner(max_concurrent=2, device=a.device, root=tmp)
        try:
            report["two_at_once"] = run_jobs(r, [base, TrainConfig(**{**base.to_dict(), "scenario": "1"})], 1800)
        finally:
            r.shutdown()
        if a.device == "cuda":
            # A memory cap small enough that batch 512 does not fit and 256 does: the retry must halve it.
            os.environ["CONVNETLAB_GPU_MEMORY_GB"] = "12"
            r = LocalRunner(max_concurrent=1, device=a.device, root=tmp)
            try:
                big = TrainConfig(**{**base.to_dict(), "batch_size": 1024, "epochs": 1})
                report["forced_oom"] = run_jobs(r, [big], 1800)
            finally:
                r.shutdown()
                del os.environ["CONVNETLAB_GPU_MEMORY_GB"]
    print(json.dumps(report, indent=1))
    if a.json_out:
        Path(a.json_out).write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
