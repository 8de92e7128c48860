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
from core.train.jobs import JobSpec, wait  # noqa: E402
from core.train.local_runner import LocalRunner  # noqa: E402
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


def probe_reserved_gb(cfg: TrainConfig) -> float:
    """GPU memory (GB, as CONVNETLAB_GPU_MEMORY_GB counts) the caching allocator reserves for full fine-tuning at cfg's batch and image
    size: two real steps of the Studio's stepper in this process, then everything is released."""
    import torch

    from core.train.data import shapes
    from core.train.transfer import build_transfer_model, make_split, model_stepper

    dev = torch.device("cuda")
    data = shapes(classes=cfg.shapes_classes, per_class=max(2, cfg.batch_size // cfg.shapes_classes + 2),
                  size=cfg.image_size)
    probe = TrainConfig(**{**cfg.to_dict(), "val_fraction": 0.05})
    tm = build_transfer_model(probe, len(data.classes))
    tm.model.to(dev).to(memory_format=torch.channels_last)
    torch.backends.cudnn.benchmark = True  # as fit() does on CUDA
    sp = make_split(data, probe, dev)
    st = model_stepper(tm, sp, probe, dev)
    opt = torch.optim.AdamW(tm.model.parameters(), fused=True)
    st.train_mode()
    torch.cuda.reset_peak_memory_stats()
    for _ in range(2):
        loss = st.loss(torch.arange(min(cfg.batch_size, st.n_train), device=dev))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    torch.cuda.synchronize()
    peak = torch.cuda.max_memory_reserved() / 1e9
    del tm, sp, st, opt, loss
    torch.cuda.empty_cache()
    return peak


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--quick", action="store_true", help="tiny runs: checks the script, not a measurement")
    ap.add_argument("--json-out")
    a = ap.parse_args()
    size, per_class, epochs, batch = (32, 20, 1, 16) if a.quick else (224, 150, 3, 256)
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
            # A memory cap 1.5x what batch B needs: batch 2B does not fit and B does, so the retry
            # must halve the batch. B is measured here, not guessed.
            need = probe_reserved_gb(base)
            cap = round(1.5 * need, 1)
            report["forced_oom_cap"] = {"batch": base.batch_size, "reserved_gb": round(need, 2), "cap_gb": cap}
            os.environ["CONVNETLAB_GPU_MEMORY_GB"] = str(cap)
            r = LocalRunner(max_concurrent=1, device=a.device, root=tmp)
            try:
                big = TrainConfig(**{**base.to_dict(), "batch_size": 2 * base.batch_size, "epochs": 1})
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
