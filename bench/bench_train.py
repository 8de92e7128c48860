"""Training throughput: a tutorial-style loop vs ConvNet Lab's engine vs the synthetic ceiling,
on the same device, model, images and batch size, in one run.

- tutorial: JPEG files on disk, torchvision ImageFolder, DataLoader (4 workers, or fewer cores),
  CPU-side RandomResizedCrop + flip + ToTensor + Normalize, fp32 (the PyTorch transfer-learning
  tutorial, at a sensible batch size).
- ours: images decoded once into a uint8 tensor on the device, augmentation there, channels_last
  and bf16 autocast on CUDA (core.train.transfer.fit, full fine-tuning).
- frozen: the same path with the encoder frozen (scenario 1 with augmentation, so the encoder
  still runs on every step, forward only).
- ceiling: random tensors already on the device, no data pipeline, same precision as ours.

    .venv/bin/python bench/bench_train.py [--images 512 --size 64 --input 64 --batch 64 --device cpu]
    (the issue's GPU setting: --images 4000 --size 256 --input 224 --batch 256 --device cuda)
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.train.data import ImageSet, shapes  # noqa: E402
from core.train.events import Epoch, Step  # noqa: E402
from core.train.transfer import TrainConfig, fit  # noqa: E402


def write_jpegs(n: int, size: int, root: Path, seed: int = 0) -> ImageSet:
    """n shape images of side `size`, saved as JPEGs in class folders and returned decoded.
    They are drawn at up to 64 px and scaled up (drawing 4,000 at 256 px takes a minute), which
    changes nothing the benchmark measures: both loops read the same files."""
    from PIL import Image

    data = shapes(classes=8, per_class=max(2, n // 8), seed=seed, size=min(size, 64))
    if size > 64:
        big = F.interpolate(data.images.float(), size=(size, size), mode="bilinear", align_corners=False)
        data = ImageSet(big.round().clamp(0, 255).to(torch.uint8), data.labels, data.classes, data.name)
    for i, (img, y) in enumerate(zip(data.images, data.labels)):
        d = root / data.classes[int(y)]
        d.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img.permute(1, 2, 0).numpy()).save(d / f"{i}.jpg", quality=90)
    return data


def tutorial_to_target(root: Path, val_root: Path, input_size: int, batch: int, device: str, workers: int,
                       target: float, max_epochs: int) -> tuple[float | None, float]:
    """Seconds of training (evaluation excluded) until validation accuracy >= target, tutorial-style."""
    from torchvision import datasets, models, transforms

    norm = transforms.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
    tf = transforms.Compose([transforms.RandomResizedCrop(input_size, scale=(0.6, 1.0)), transforms.ToTensor(), norm])
    vtf = transforms.Compose([transforms.Resize(input_size), transforms.ToTensor(), norm])
    dl = torch.utils.data.DataLoader(datasets.ImageFolder(str(root), tf), batch_size=batch, shuffle=True,
                                     num_workers=workers, persistent_workers=workers > 0)
    vl = torch.utils.data.DataLoader(datasets.ImageFolder(str(val_root), vtf), batch_size=256)
    torch.manual_seed(0)
    model = models.resnet18(num_classes=8).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    spent, acc = 0.0, 0.0
    for _ in range(max_epochs):
        model.train()
        t = time.perf_counter()
        for x, y in dl:
            loss = F.cross_entropy(model(x.to(device)), y.to(device))
            opt.zero_grad()
            loss.backward()
            opt.step()
        _sync(device)
        spent += time.perf_counter() - t
        model.eval()
        with torch.no_grad():
            hits = sum(int((model(x.to(device)).argmax(1).cpu() == y).sum()) for x, y in vl)
        acc = hits / len(vl.dataset)
        if acc >= target:
            return spent, acc
    return None, acc


def ours_to_target(data: ImageSet, input_size: int, batch: int, device: str, target: float,
                   max_epochs: int) -> tuple[float | None, float]:
    """The same for our engine: training time of the epochs up to the first that reaches target."""
    cfg = TrainConfig(dataset="shapes", arch="resnet18", weights="random", scenario="finetune", epochs=max_epochs,
                      batch_size=batch, image_size=input_size, augment=True, lr=1e-3, lr_body=1e-3, log_every=10_000)
    hist = []
    fit(cfg, data, device, on_event=hist.append)
    spent_epoch, acc = 0.0, 0.0
    for e in hist:
        if isinstance(e, Step):
            spent_epoch = e.elapsed
        if isinstance(e, Epoch):
            acc = e.metrics["acc"]
            if acc >= target:
                return spent_epoch, acc
    return None, acc


def tutorial(root: Path, input_size: int, batch: int, device: str, workers: int, epochs: int) -> float:
    from torchvision import datasets, models, transforms

    tf = transforms.Compose([transforms.RandomResizedCrop(input_size), transforms.RandomHorizontalFlip(),
                             transforms.ToTensor(), transforms.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])])
    dl = torch.utils.data.DataLoader(datasets.ImageFolder(str(root), tf), batch_size=batch, shuffle=True,
                                     num_workers=workers, persistent_workers=workers > 0)
    model = models.resnet18(num_classes=8).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    seen, t = 0, None
    for epoch in range(epochs + 1):  # the first epoch warms up (workers, allocator) and is not timed
        if epoch == 1:
            _sync(device)
            t, seen = time.perf_counter(), 0
        for x, y in dl:
            x, y = x.to(device), y.to(device)
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            seen += len(y)
    _sync(device)
    return seen / (time.perf_counter() - t)


def ours(data: ImageSet, input_size: int, batch: int, device: str, epochs: int, scenario: str = "finetune") -> float:
    """Training images per second of our loop, mean over the epochs after a warm-up epoch."""
    cfg = TrainConfig(dataset="shapes", arch="resnet18", weights="random", scenario=scenario, epochs=epochs + 1,
                      batch_size=batch, image_size=input_size, augment=True, val_fraction=0.05,
                      log_every=10_000)
    epochs_seen: list[Epoch] = []
    fit(cfg, data, device, on_event=lambda e: epochs_seen.append(e) if isinstance(e, Epoch) else None)
    rates = [e.images_per_s for e in epochs_seen[1:]]  # training time only; skip the warm-up epoch
    return sum(rates) / max(1, len(rates))


def ceiling(input_size: int, batch: int, device: str, steps: int) -> float:
    from torchvision import models

    dev = torch.device(device)
    model = models.resnet18(num_classes=8).to(dev)
    x = torch.randn(batch, 3, input_size, input_size, device=dev)
    y = torch.randint(0, 8, (batch,), device=dev)
    if dev.type == "cuda":
        model, x = model.to(memory_format=torch.channels_last), x.contiguous(memory_format=torch.channels_last)
        torch.backends.cudnn.benchmark = True
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, fused=dev.type == "cuda")
    for i in range(steps + 2):
        if i == 2:
            _sync(device)
            t = time.perf_counter()
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=dev.type == "cuda"):
            loss = F.cross_entropy(model(x).float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    _sync(device)
    return steps * batch / (time.perf_counter() - t)


def profile_ours(data: ImageSet, input_size: int, batch: int, device: str, steps: int = 12) -> dict:
    """Where a step of our loop spends its time: the real stepper, profiled for `steps` steps after
    warm-up. GPU-busy share near 1 means the GPU is the limit; far below, the host is."""
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile

    from core.train.transfer import build_transfer_model, make_split, model_stepper, param_groups

    cfg = TrainConfig(dataset="shapes", arch="resnet18", weights="random", scenario="finetune", epochs=1,
                      batch_size=batch, image_size=input_size, augment=True)
    dev = torch.device(device)
    sp = make_split(data, cfg, dev)
    tm = build_transfer_model(cfg, len(data.classes))
    tm.model.to(dev)
    if dev.type == "cuda":
        tm.model.to(memory_format=torch.channels_last)
        torch.backends.cudnn.benchmark = True
    st = model_stepper(tm, sp, cfg, dev)
    opt = torch.optim.AdamW(param_groups(tm, cfg), fused=dev.type == "cuda")
    st.train_mode()
    idx = torch.arange(batch, device=dev) % st.n_train

    def step() -> None:
        loss = st.loss(idx)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(3):
        step()
    _sync(device)
    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if dev.type == "cuda" else [])
    t = time.perf_counter()
    with profile(activities=acts) as prof:
        for _ in range(steps):
            step()
        _sync(device)
    wall = time.perf_counter() - t
    ev = prof.key_averages()
    # Kernels only: an aten op's device time is its kernels' time again.
    gpu_us = sum(e.self_device_time_total for e in ev if e.device_type == DeviceType.CUDA)
    top = sorted(ev, key=lambda e: e.self_device_time_total if dev.type == "cuda" else e.self_cpu_time_total,
                 reverse=True)[:12]
    return {"steps": steps, "img_s_profiled": steps * batch / wall, "gpu_busy_share": gpu_us / 1e6 / wall,
            "top": [{"name": e.key[:60], "count": e.count, "self_device_ms": round(e.self_device_time_total / 1e3, 2),
                     "self_cpu_ms": round(e.self_cpu_time_total / 1e3, 2)} for e in top]}


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=512)
    ap.add_argument("--size", type=int, default=64, help="stored JPEG side")
    ap.add_argument("--input", type=int, default=64, help="network input side")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--epochs", type=int, default=1, help="timed epochs (after one warm-up epoch)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--target", type=float, default=0.8, help="validation accuracy for the time-to-target race")
    ap.add_argument("--max-epochs", type=int, default=15)
    ap.add_argument("--json-out", help="also write the figures as JSON to this file")
    a = ap.parse_args()
    workers = min(4, os.cpu_count() or 1)
    name = torch.cuda.get_device_name(0) if a.device.startswith("cuda") else f"CPU, {torch.get_num_threads()} threads"
    print(f"device: {name}; resnet18 at {a.input}x{a.input}, batch {a.batch}, {a.images} JPEGs of {a.size}px")
    with tempfile.TemporaryDirectory() as tmp:
        data = write_jpegs(a.images, a.size, Path(tmp))
        rows = [("tutorial (ImageFolder + DataLoader, fp32)", tutorial(Path(tmp), a.input, a.batch, a.device,
                                                                       workers, a.epochs)),
                ("ours (decoded once, on-device augmentation)", ours(data, a.input, a.batch, a.device, a.epochs)),
                ("synthetic ceiling (random tensors on device)", ceiling(a.input, a.batch, a.device,
                                                                         max(5, a.images // a.batch))),
                ("ours, frozen encoder (scenario 1, augmented)", ours(data, a.input, a.batch, a.device, a.epochs,
                                                                      scenario="1"))]
    prof = profile_ours(data, a.input, a.batch, a.device)
    print(f"profile of our step: {prof['img_s_profiled']:.0f} img/s under the profiler, "
          f"GPU busy {prof['gpu_busy_share']:.0%} of the time")
    for r in prof["top"]:
        print(f"  {r['name']:60} x{r['count']:<5} device {r['self_device_ms']:8.2f} ms  cpu {r['self_cpu_ms']:8.2f} ms")
    base = rows[0][1]
    for label, rate in rows:
        print(f"{label:48} {rate:9.0f} img/s  {rate / base:5.2f}x tutorial  {rate / rows[2][1]:6.1%} of ceiling")
    print(f"frozen encoder vs full fine-tune: {rows[3][1] / rows[1][1]:.2f}x")
    with tempfile.TemporaryDirectory() as tmp:
        train = write_jpegs(a.images, a.size, Path(tmp) / "train", seed=0)
        write_jpegs(max(64, a.images // 4), a.size, Path(tmp) / "val", seed=1)
        t_tut, acc_tut = tutorial_to_target(Path(tmp) / "train", Path(tmp) / "val", a.input, a.batch, a.device,
                                            workers, a.target, a.max_epochs)
        t_our, acc_our = ours_to_target(train, a.input, a.batch, a.device, a.target, a.max_epochs)
    for label, t, acc in (("tutorial", t_tut, acc_tut), ("ours", t_our, acc_our)):
        print(f"time to {a.target:.0%} validation accuracy, {label:8}: "
              + (f"{t:6.1f} s of training" if t is not None else f"not reached in {a.max_epochs} epochs "
                                                                  f"(best {acc:.1%})"))
    if a.json_out:
        import json

        Path(a.json_out).write_text(json.dumps({
            "device": name, "torch": torch.__version__, "images": a.images, "size": a.size, "input": a.input,
            "batch": a.batch, "tutorial_img_s": rows[0][1], "ours_img_s": rows[1][1], "ceiling_img_s": rows[2][1],
            "frozen_img_s": rows[3][1], "target": a.target, "tutorial_s_to_target": t_tut,
            "ours_s_to_target": t_our, "profile": prof}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
