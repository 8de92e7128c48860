"""Training throughput, like for like (issue 27, "Every claim like for like"): every row in one run,
on one device, with the same model, batch, optimiser and augmentation.

Every row that reads images reads the same JPEG files from disk, every epoch (written once before
the first row, so they sit in the OS page cache for every row alike), and augments each image with
RandomResizedCrop (scale 0.08-1, aspect 3/4-4/3, to --input) and a horizontal flip. The model is
torchvision's ResNet-18, random weights (seed 0), 8 classes, built for every row by the engine's
own `build_transfer_model`; AdamW (weight decay 1e-4) on a one-cycle schedule; batch --batch.
The rows (ROWS below says the same, and goes into the JSON):

- tutorial: the PyTorch tutorial's loop. ImageFolder (PIL decode) + DataLoader with 4 workers,
  RandomResizedCrop + flip + ToTensor + Normalize in the workers, fp32, non-fused AdamW, plain
  loop, cuDNN autotuner off.
- tuned: what an experienced PyTorch user writes. DataLoader with a worker per core, pinned
  memory, persistent workers, prefetch 4; workers decode with torchvision.io.decode_jpeg
  (libjpeg-turbo) and crop and flip uint8 tensors; normalised on the GPU; channels_last, bf16
  autocast, fused AdamW, cuDNN autotuner.
- ours_fp32, ours_bf16: ConvNet Lab's engine (`core.train.transfer.fit` on `JpegFiles`): each
  batch's file bytes read from disk every epoch, decoded with nvJPEG on the GPU (libjpeg-turbo on
  a CPU), crop and flip per image on the device (`data.crop_flip`), the next batch prefetched on
  its own stream; channels_last, fused AdamW, cuDNN autotuner; fp32 or bf16 autocast.
- ours_cached: the same engine on the same images decoded once (on the CPU) and held on the
  device as uint8; crop and flip per image on the device. Does less work: no file reads, no decode.
- ceiling_fp32, ceiling_bf16: the model step alone (forward, backward, fused AdamW) on random
  tensors already on the device, channels_last, cuDNN autotuner; no data at all.
- frozen: the frozen-encoder scenario (scenario 1, augmented, so the encoder runs forward on every
  step and only the new head trains), from the same JPEG files, bf16. Does less work than the rest.

Per row: images per second over the epochs after the first (the first warms up workers, cuDNN's
autotuner and the allocator); CPU core-seconds per 1,000 images over the same epochs (this
process, all its threads, and its DataLoader workers, live or finished); peak GPU memory
(torch.cuda.max_memory_allocated, reset per row); and the training seconds until validation
accuracy first reaches --target, with one split and one recipe for every row that trains.
Evaluation is excluded from every time.

    .venv/bin/python bench/bench_train.py --images 64 --size 32 --input 32 --batch 16 --epochs 2 --device cpu
    bash bench/gpu_check.sh     # the GPU setting: --images 4000 --size 256 --input 224 --batch 256 ...

Writes the rows as JSON to --json-out, else to bench/figures/train-<card>-<date>.json on CUDA and
bench/results/train-<card>-<date>.json elsewhere (a CPU run is a smoke test, not a figure).
"""

from __future__ import annotations

import argparse
import datetime
import gc
import json
import math
import os
import resource
import sys
import tempfile
import time
import traceback
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.images import IMAGENET_MEAN, IMAGENET_STD, normalise  # noqa: E402
from core.train.data import ImageSet, JpegFiles, decode_all, shapes  # noqa: E402
from core.train.events import Epoch, RunInfo, Step  # noqa: E402
from core.train.loop import predict  # noqa: E402
from core.train.transfer import TrainConfig, build_transfer_model, fit, param_groups, split_indices  # noqa: E402

CLASSES = 8
VAL_FRACTION = 0.2   # of the files: --images train, --images / 4 validate
ROWS = {  # name: (source, what the row includes)
    "tutorial": ("jpeg", "ImageFolder (PIL decode) + DataLoader, 4 workers (fewer if fewer cores); RandomResizedCrop + "
                         "flip + ToTensor + Normalize in the workers; fp32; AdamW (not fused); cuDNN autotuner off"),
    "tuned": ("jpeg", "DataLoader, one worker per core, pin_memory, persistent workers, prefetch_factor 4; "
                      "decode_jpeg (libjpeg-turbo) + RandomResizedCrop + flip on uint8 tensors in the workers; "
                      "normalised on the device; channels_last, bf16 autocast, fused AdamW, cuDNN autotuner"),
    "ours_fp32": ("jpeg", "core.train.transfer.fit on JpegFiles: file bytes read every epoch, nvJPEG decode on the "
                          "GPU (libjpeg-turbo on a CPU), RandomResizedCrop + flip per image on the device "
                          "(roi_align), next batch prefetched on its own stream; channels_last, fp32, fused AdamW, "
                          "cuDNN autotuner"),
    "ours_bf16": ("jpeg", "as ours_fp32, with bf16 autocast"),
    "ours_cached": ("cached", "as ours_bf16, but the images are decoded once (CPU) and held on the device as uint8: "
                              "no file reads, no decode (less work than the jpeg rows)"),
    "ceiling_fp32": ("synthetic", "the model step alone (forward, backward, fused AdamW) on random tensors already "
                                  "on the device; channels_last, fp32, cuDNN autotuner"),
    "ceiling_bf16": ("synthetic", "as ceiling_fp32, with bf16 autocast"),
    "frozen": ("jpeg", "scenario 1 with augmentation from the same JPEG files as ours_bf16: the frozen encoder runs "
                       "forward only, the new head trains (less work than full fine-tuning)"),
}
PRECISION = {"tutorial": "fp32", "tuned": "bf16", "ours_fp32": "fp32", "ours_bf16": "bf16", "ours_cached": "bf16",
             "ceiling_fp32": "fp32", "ceiling_bf16": "bf16", "frozen": "bf16"}


# --- measuring --------------------------------------------------------------------------------------

def cpu_seconds() -> float:
    """CPU time (user + system) of this process, all its threads, and its children: the finished
    ones through getrusage, the live ones (persistent DataLoader workers) through /proc."""
    me, gone = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    total = me.ru_utime + me.ru_stime + gone.ru_utime + gone.ru_stime
    tick, pid = os.sysconf("SC_CLK_TCK"), os.getpid()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue   # ended meanwhile: counted by RUSAGE_CHILDREN once reaped
        if int(fields[1]) == pid:                      # ppid; then utime, stime at fields[11], [12]
            total += (int(fields[11]) + int(fields[12])) / tick
    return total


def sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


@dataclass
class EpochFigures:
    seconds: float      # training time of the epoch (evaluation excluded)
    cpu_s: float        # CPU core-seconds in that time
    images: int
    val_acc: float


@dataclass
class Settings:
    images: int         # training files
    size: int           # stored JPEG side, px
    input: int          # network input side, px
    batch: int
    epochs: int         # per training row; the first is the warm-up of the throughput figures
    lr: float           # one-cycle peak LR (every parameter group)
    target: float       # validation accuracy of the time-to-target figure
    device: str

    def config(self, precision: str, scenario: str = "finetune") -> TrainConfig:
        return TrainConfig(dataset="shapes", arch="resnet18", weights="random", scenario=scenario,
                           epochs=self.epochs, batch_size=self.batch, lr=self.lr, lr_body=self.lr,
                           val_fraction=VAL_FRACTION, image_size=self.input, augment=True,
                           augmentation="crop_flip", precision=precision, weight_decay=1e-4, seed=0,
                           log_every=10**6)


def recipe(s: Settings, name: str) -> str:
    what = ("frozen encoder (scenario 1), only the new head trains" if name == "frozen"
            else "full fine-tuning")
    return (f"ResNet-18 (torchvision), random init (seed 0), {CLASSES} classes, {what}; AdamW weight decay 1e-4, "
            f"one-cycle peak LR {s.lr:g} over {s.epochs} epochs of ceil(train/{s.batch}) steps; batch {s.batch}; "
            f"RandomResizedCrop({s.input}, scale 0.08-1, ratio 3/4-4/3) + horizontal flip per image; "
            f"{PRECISION[name]}; validated after every epoch on the validation files decoded once "
            f"(libjpeg-turbo), resized to {s.input}x{s.input}, fp32")


def split_text(s: Settings) -> str:
    return (f"{s.images:,} training / {s.images // 4:,} validation JPEGs of {s.size}px, a stratified split "
            f"(seed 0, {VAL_FRACTION:.0%} per class) of one folder: the same files for every row")


# --- the files --------------------------------------------------------------------------------------

def write_jpegs(total: int, size: int, root: Path, seed: int = 0) -> None:
    """`total` shape images of side `size` as JPEGs (quality 90) in class folders. They are drawn
    at up to 64 px and scaled up (drawing 5,000 at 256 px takes a minute); every row reads these
    same files."""
    from PIL import Image

    data = shapes(classes=CLASSES, per_class=max(2, total // CLASSES), seed=seed, size=min(size, 64))
    for start in range(0, len(data.labels), 500):
        imgs = data.images[start:start + 500]
        if size > 64:
            imgs = F.interpolate(imgs.float(), size=(size, size), mode="bilinear", align_corners=False)
            imgs = imgs.round().clamp(0, 255).to(torch.uint8)
        for i, (img, y) in enumerate(zip(imgs, data.labels[start:start + 500]), start):
            d = root / data.classes[int(y)]
            d.mkdir(parents=True, exist_ok=True)
            Image.fromarray(img.permute(1, 2, 0).numpy()).save(d / f"{i:05d}.jpg", quality=90)


# --- the rows -----------------------------------------------------------------------------------------

def run_fit(name: str, s: Settings, data: JpegFiles | ImageSet) -> list[EpochFigures]:
    """A row through the engine: fit, with the epoch boundaries taken from its events."""
    cfg = s.config(PRECISION[name], scenario="1" if name == "frozen" else "finetune")
    out: list[EpochFigures] = []
    state: dict = {"prev": 0.0, "cpu": cpu_seconds(), "step": None, "n": 0}

    def on_event(e: object) -> None:
        if isinstance(e, RunInfo):
            state["n"], state["cpu"] = e.n_train, cpu_seconds()
        elif isinstance(e, Step):              # log_every is huge: the last step of each epoch only
            state["step"] = (e.elapsed, cpu_seconds())
        elif isinstance(e, Epoch):
            t_end, c_end = state["step"]
            out.append(EpochFigures(t_end - state["prev"], c_end - state["cpu"], images_per_epoch(state["n"], s.batch),
                                    e.metrics["acc"]))
            state["prev"], state["cpu"] = e.elapsed, cpu_seconds()

    fit(cfg, data, s.device, on_event=on_event)
    return out


def images_per_epoch(n: int, batch: int) -> int:
    """Images the loop trains on per epoch: all, and one more when a last batch of one becomes two."""
    return n + (1 if n % batch == 1 and n > 1 else 0)


def _decode_file(path: str) -> torch.Tensor:
    from torchvision.io import ImageReadMode, decode_jpeg

    return decode_jpeg(torch.from_numpy(np.fromfile(path, dtype=np.uint8)), mode=ImageReadMode.RGB)


def run_loader(name: str, s: Settings, root: Path, train_idx: torch.Tensor, x_val: torch.Tensor,
               y_val: torch.Tensor) -> list[EpochFigures]:
    """The tutorial and tuned rows: a DataLoader over the training files and a plain loop."""
    from torchvision import datasets, transforms
    from torchvision.transforms import v2

    dev = torch.device(s.device)
    cores = len(os.sched_getaffinity(0))
    tuned = name == "tuned"
    if tuned:
        tf = v2.Compose([v2.RandomResizedCrop(s.input, antialias=True), v2.RandomHorizontalFlip()])
        ds = datasets.ImageFolder(str(root), transform=tf, loader=_decode_file)
        opts = {"num_workers": cores, "pin_memory": dev.type == "cuda", "persistent_workers": True, "prefetch_factor": 4}
    else:
        tf = transforms.Compose([transforms.RandomResizedCrop(s.input), transforms.RandomHorizontalFlip(),
                                 transforms.ToTensor(), transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD)])
        ds = datasets.ImageFolder(str(root), transform=tf)
        workers = min(4, cores)
        opts = {"num_workers": workers, "persistent_workers": workers > 0}
    n = len(train_idx)
    dl = torch.utils.data.DataLoader(torch.utils.data.Subset(ds, train_idx.tolist()), batch_size=s.batch,
                                     shuffle=True, drop_last=n % s.batch == 1,  # BatchNorm needs two per batch
                                     generator=torch.Generator().manual_seed(0), **opts)
    cfg = s.config(PRECISION[name])
    tm = build_transfer_model(cfg, CLASSES)
    model = tm.model.to(dev)
    if tuned and dev.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    torch.backends.cudnn.benchmark = tuned
    opt = torch.optim.AdamW(param_groups(tm, cfg), weight_decay=cfg.weight_decay, fused=tuned and dev.type == "cuda")
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=[g["lr"] for g in opt.param_groups],
                                                total_steps=len(dl) * s.epochs)
    bf16 = PRECISION[name] == "bf16"
    out = []
    for _ in range(s.epochs):
        model.train()
        t, c, seen = time.perf_counter(), cpu_seconds(), 0
        for x, y in dl:
            x, y = x.to(dev, non_blocking=tuned), y.to(dev, non_blocking=tuned)
            if tuned:
                x = normalise(x, s.input)
                if dev.type == "cuda":
                    x = x.contiguous(memory_format=torch.channels_last)
            with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=bf16):
                loss = F.cross_entropy(model(x).float(), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            seen += len(y)
        float(loss.detach())                   # the host has the epoch's last loss, as the engine's loop
        t, c = time.perf_counter() - t, cpu_seconds() - c
        acc = float((predict(model, x_val, s.input).argmax(1) == y_val).float().mean())
        out.append(EpochFigures(t, c, seen, acc))
    del dl                                     # ends the workers
    gc.collect()
    return out


def run_ceiling(name: str, s: Settings, steps: int) -> tuple[float, float]:
    """(images per second, CPU core-seconds per 1,000 images) of the model step alone on random
    tensors already on the device."""
    dev = torch.device(s.device)
    cfg = s.config(PRECISION[name])
    tm = build_transfer_model(cfg, CLASSES)
    model = tm.model.to(dev)
    x = torch.randn(s.batch, 3, s.input, s.input, device=dev)
    y = torch.randint(0, CLASSES, (s.batch,), device=dev)
    if dev.type == "cuda":
        model, x = model.to(memory_format=torch.channels_last), x.contiguous(memory_format=torch.channels_last)
    torch.backends.cudnn.benchmark = True
    opt = torch.optim.AdamW(param_groups(tm, cfg), weight_decay=cfg.weight_decay, fused=dev.type == "cuda")
    model.train()
    t = c = 0.0
    for i in range(steps + 3):                 # three warm-up steps
        if i == 3:
            sync(dev)
            t, c = time.perf_counter(), cpu_seconds()
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=PRECISION[name] == "bf16"):
            loss = F.cross_entropy(model(x).float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    float(loss.detach())
    t, c = time.perf_counter() - t, cpu_seconds() - c
    return steps * s.batch / t, c / (steps * s.batch) * 1000


# --- the report -----------------------------------------------------------------------------------------

def row_figures(name: str, s: Settings, peak: float | None, epochs: list[EpochFigures] | None = None,
                ceiling: tuple[float, float] | None = None) -> dict:
    """One row of the JSON: a training row from its epochs, a ceiling from its step timing."""
    source, includes = ROWS[name]
    row = {"name": name, "source": source, "includes": includes, "precision": PRECISION[name], "peak_gpu_gb": peak}
    if epochs is None:
        assert ceiling is not None
        return {**row, "img_s": ceiling[0], "cpu_core_s_per_1k": ceiling[1], "epochs": None,
                "time_to_target": {"split": None, "recipe": None, "seconds": None, "target": s.target,
                                   "why": "not trained on data: the ceiling steps on random tensors"}}
    timed = epochs[1:] or epochs               # the first epoch warms up
    secs, imgs, cpu = (sum(getattr(e, k) for e in timed) for k in ("seconds", "images", "cpu_s"))
    reached, spent = None, 0.0
    for i, e in enumerate(epochs, 1):
        spent += e.seconds
        if e.val_acc >= s.target:
            reached = i
            break
    return {**row, "img_s": imgs / secs, "cpu_core_s_per_1k": cpu / imgs * 1000, "epochs": [asdict(e) for e in epochs],
            "time_to_target": {"split": split_text(s), "recipe": recipe(s, name), "target": s.target,
                               "seconds": spent if reached else None, "epoch": reached,
                               "best_val_acc": max(e.val_acc for e in epochs)}}


def goals(rows: dict[str, dict], on_gpu: bool) -> list[dict]:
    """The issue's goals, each with its measured value; `met` is None off a GPU (not a claim there)."""
    r = {k: v["img_s"] for k, v in rows.items()}
    cpu = {k: v["cpu_core_s_per_1k"] for k, v in rows.items()}
    checks = [
        ("ours_fp32 >= 90% of ceiling_fp32 (same precision)", r["ours_fp32"] / r["ceiling_fp32"], 0.9, "{:.1%}"),
        ("ours_bf16 >= 90% of ceiling_bf16 (same precision)", r["ours_bf16"] / r["ceiling_bf16"], 0.9, "{:.1%}"),
        ("ours_bf16 >= 1.0x tuned (both bf16)", r["ours_bf16"] / r["tuned"], 1.0, "{:.2f}x"),
        ("ours_bf16 CPU core-s per 1k images <= 25% of tuned's", cpu["ours_bf16"] / cpu["tuned"], None, "{:.1%}"),
        ("ours_bf16 >= 10x tutorial (bf16 vs the tutorial's fp32)", r["ours_bf16"] / r["tutorial"], 10.0, "{:.2f}x"),
    ]
    out = []
    for goal, value, at_least, fmt in checks:
        met = value <= 0.25 if at_least is None else value >= at_least
        out.append({"goal": goal, "value": value, "shown": fmt.format(value), "met": met if on_gpu else None})
    return out


def _fmt(v: float | None, fmt: str) -> str:
    return "-" if v is None else fmt.format(v)


def print_table(rows: list[dict]) -> None:
    by = {r["name"]: r for r in rows if r["img_s"] is not None}
    base = by["tutorial"]["img_s"] if "tutorial" in by else None
    print(f"{'row':13} {'source':9} {'prec':5} {'img/s':>9} {'vs tutorial':>11} {'of ceiling':>10} "
          f"{'CPU s/1k img':>12} {'peak GB':>8}  time to target")
    for r in rows:
        if r["img_s"] is None:
            print(f"{r['name']:13} {r['source']:9} {r['precision']:5} FAILED: {r['error'][:100]}")
            continue
        ceil = by.get(f"ceiling_{r['precision']}")
        of_ceiling = (None if r["name"] == "frozen" or r["source"] == "synthetic" or ceil is None
                      else r["img_s"] / ceil["img_s"])
        tt = r["time_to_target"]
        when = ("-" if tt["split"] is None else f"{tt['seconds']:.1f} s (epoch {tt['epoch']})" if tt["seconds"]
                is not None else f"not reached (best {tt['best_val_acc']:.1%})")
        print(f"{r['name']:13} {r['source']:9} {r['precision']:5} {r['img_s']:9.0f} "
              f"{_fmt(base and r['img_s'] / base, '{:.2f}x'):>11} {_fmt(of_ceiling, '{:.1%}'):>10} "
              f"{_fmt(r['cpu_core_s_per_1k'], '{:.2f}'):>12} {_fmt(r['peak_gpu_gb'], '{:.2f}'):>8}  {when}")


def card_name(dev: torch.device) -> str:
    return torch.cuda.get_device_name(dev) if dev.type == "cuda" else f"CPU, {os.cpu_count()} cores"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", type=int, default=512, help="training JPEGs (a quarter as many more validate)")
    ap.add_argument("--size", type=int, default=64, help="stored JPEG side, px")
    ap.add_argument("--input", type=int, default=64, help="network input side, px")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--epochs", type=int, default=3, help="epochs per training row (the first warms up)")
    ap.add_argument("--lr", type=float, default=2e-3, help="one-cycle peak LR, every row")
    ap.add_argument("--target", type=float, default=0.9, help="validation accuracy of the time-to-target figure")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--rows", default=",".join(ROWS), help="comma-separated subset of: " + ", ".join(ROWS))
    ap.add_argument("--json-out", help="where the JSON goes (default: see the module doc)")
    a = ap.parse_args()
    s = Settings(a.images, a.size, a.input, a.batch, a.epochs, a.lr, a.target, a.device)
    dev = torch.device(s.device)
    names = [n for n in ROWS if n in a.rows.split(",")]
    card = card_name(dev)
    print(f"device: {card}; {len(os.sched_getaffinity(0))} cores usable; torch {torch.__version__}; ResNet-18 at "
          f"{s.input}x{s.input}, batch {s.batch}, {s.epochs} epochs per row; {s.images} training + "
          f"{s.images // 4} validation JPEGs of {s.size}px")
    rows: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "jpegs"
        t = time.perf_counter()
        write_jpegs(s.images + s.images // 4, s.size, root)
        files = JpegFiles.from_folder(root)
        tr, va = split_indices(files.labels, s.config("fp32"))
        assert len(tr) == s.images, (len(tr), s.images)
        val = decode_all(files.subset(va), s.input)                     # what fit validates on, decoded alike
        x_val, y_val = val.images.to(dev), val.labels.to(dev)
        print(f"wrote and listed {len(files)} JPEGs in {time.perf_counter() - t:.1f} s")
        for name in names:
            gc.collect()
            if dev.type == "cuda":
                torch.cuda.empty_cache()
                torch.cuda.reset_peak_memory_stats(dev)
            t = time.perf_counter()
            try:
                if name.startswith("ceiling"):
                    steps = max(10, 2 * math.ceil(s.images / s.batch))
                    figs = {"ceiling": run_ceiling(name, s, steps)}
                elif name in ("tutorial", "tuned"):
                    figs = {"epochs": run_loader(name, s, root, tr, x_val, y_val)}
                elif name == "ours_cached":
                    figs = {"epochs": run_fit(name, s, decode_all(files, s.input))}
                else:
                    figs = {"epochs": run_fit(name, s, files)}
            except Exception as e:  # noqa: BLE001 - one failing row must not take the others' figures with it
                traceback.print_exc()
                rows.append({"name": name, "source": ROWS[name][0], "includes": ROWS[name][1],
                             "precision": PRECISION[name], "error": f"{type(e).__name__}: {e}", "img_s": None,
                             "cpu_core_s_per_1k": None, "peak_gpu_gb": None, "time_to_target": None})
                print(f"  {name}: FAILED ({rows[-1]['error'][:200]})", flush=True)
                continue
            peak = torch.cuda.max_memory_allocated(dev) / 1e9 if dev.type == "cuda" else None
            rows.append(row_figures(name, s, peak, **figs))
            accs = " ".join(f"{e['val_acc']:.0%}" for e in rows[-1]["epochs"] or [])
            print(f"  {name}: {rows[-1]['img_s']:.0f} img/s ({time.perf_counter() - t:.1f} s for the row)"
                  + (f"; validation accuracy by epoch: {accs}" if accs else ""), flush=True)
    print()
    print_table(rows)
    by = {r["name"]: r for r in rows if r["img_s"] is not None}
    gl = goals(by, dev.type == "cuda") if all(n in by for n in ("tutorial", "tuned", "ours_fp32", "ours_bf16",
                                                                "ceiling_fp32", "ceiling_bf16")) else []
    if "ours_fp32" in by and "tutorial" in by:
        print(f"ours_fp32 vs tutorial, both fp32: {by['ours_fp32']['img_s'] / by['tutorial']['img_s']:.2f}x")
    for g in gl:
        verdict = {True: "MET", False: "NOT MET", None: "not checked (goals are checked on a GPU only)"}[g["met"]]
        print(f"goal: {g['goal']}: {g['shown']} -> {verdict}")
    if dev.type != "cuda":
        print("(a CPU run is a smoke test of the script at whatever sizes it was given, not a figure)")
    out = {"device": card, "cpu_cores": len(os.sched_getaffinity(0)), "torch": torch.__version__,
           "torchvision": __import__("torchvision").__version__, "date": datetime.date.today().isoformat(),
           "settings": asdict(s), "split": split_text(s),
           "cudnn_allow_tf32": torch.backends.cudnn.allow_tf32,
           "float32_matmul_precision": torch.get_float32_matmul_precision(),
           "rows": rows, "goals": gl}
    dest = Path(a.json_out) if a.json_out else (
        Path(__file__).parent / ("figures" if dev.type == "cuda" else "results")
        / f"train-{card.replace(' ', '-').replace(',', '')}-{datetime.date.today()}.json")
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(json.dumps(out, indent=1))
    print("wrote", dest)
    return 0


if __name__ == "__main__":
    sys.exit(main())
