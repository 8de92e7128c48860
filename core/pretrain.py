"""Starter weights: a ResNet-18 pre-trained by this project on formula-driven images.

Hubs are unreachable here and lecture halls are often offline, so the dashboard ships its own
small pretrained encoder. Following Kataoka et al. (ACCV 2020, "Pre-training without Natural
Images"), the images are fractals drawn by iterated function systems (IFS): each class is one
random IFS, each image a slightly perturbed, randomly coloured rendering of it. Classifying them
teaches early filters edges, blobs and textures without a single photograph.

    python -m core pretrain [--classes 256 --per-class 40 --epochs 10 --size 32]

writes `assets/starter_resnet18.safetensors` (fp16, the encoder without its FC layer) and
`assets/starter_resnet18.json` (the recipe and the metrics).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn
from torchvision.models import resnet18

from core.data import ImageSet
from core.images import IMAGENET_MEAN, IMAGENET_STD

ASSETS = Path(__file__).resolve().parents[1] / "assets"
STARTER = ASSETS / "starter_resnet18.safetensors"
STARTER_CARD = ASSETS / "starter_resnet18.json"


@dataclass(frozen=True)
class PretrainConfig:
    classes: int = 256           # IFS systems, one per class
    per_class: int = 40          # renderings per class
    size: int = 32               # pixels per side
    points: int = 3000           # chaos-game points per image
    epochs: int = 10             # passes over the fractal set
    batch_size: int = 128        # images per step
    lr: float = 2e-3             # peak LR of the one-cycle schedule
    seed: int = 0


def _random_ifs(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """2-4 contractive affine maps (A, b) with selection probabilities proportional to |det A|."""
    n = int(rng.integers(2, 5))
    maps = []
    while len(maps) < n:
        a = rng.uniform(-1, 1, (2, 2))
        if abs(np.linalg.det(a)) < 0.05 or np.linalg.norm(a, 2) > 0.85:
            continue
        maps.append(np.concatenate([a.flatten(), rng.uniform(-1, 1, 2)]))
    return np.array(maps)


def _render(maps: np.ndarray, rng: np.random.Generator, size: int, points: int) -> np.ndarray:
    """Chaos game: iterate random maps from a point, plot the orbit, colour it, centre it."""
    m = maps * (1 + rng.normal(0, 0.03, maps.shape))  # a slightly different instance each time
    det = np.abs(m[:, 0] * m[:, 3] - m[:, 1] * m[:, 2]) + 1e-3
    choice = rng.choice(len(m), size=points, p=det / det.sum())
    pts = np.zeros((points, 2))
    p = np.zeros(2)
    for i, k in enumerate(choice):
        a = m[k]
        p = np.array([a[0] * p[0] + a[1] * p[1] + a[4], a[2] * p[0] + a[3] * p[1] + a[5]])
        pts[i] = p
    pts = pts[20:]
    lo, hi = pts.min(0), pts.max(0)
    pts = (pts - lo) / np.maximum(hi - lo, 1e-6) * (size - 3) + 1
    if rng.random() < 0.5:
        pts[:, 0] = size - 1 - pts[:, 0]
    img = np.zeros((size, size, 3))
    colour = rng.uniform(0.3, 1.0, 3)
    ij = pts.astype(int).clip(0, size - 1)
    img[ij[:, 1], ij[:, 0]] = colour
    return img


def fractals(classes: int = 64, per_class: int = 80, size: int = 32, points: int = 3000, seed: int = 0,
             progress: Callable[[float], None] | None = None) -> ImageSet:
    """The formula-driven data set: `classes` random IFS, `per_class` renderings each."""
    rng = np.random.default_rng(seed)
    systems = [_random_ifs(rng) for _ in range(classes)]
    imgs, labels = [], []
    for c, maps in enumerate(systems):
        for _ in range(per_class):
            imgs.append(_render(maps, rng, size, points))
            labels.append(c)
        if progress:
            progress((c + 1) / classes)
    x = torch.from_numpy((np.stack(imgs) * 255).round().astype(np.uint8)).permute(0, 3, 1, 2).contiguous()
    return ImageSet(x, torch.tensor(labels), [f"ifs{c}" for c in range(classes)], "fractals")


def pretrain(cfg: PretrainConfig, on_epoch: Callable[[dict], None] | None = None) -> tuple[nn.Module, dict]:
    """Trains a ResNet-18 from scratch to tell the fractal classes apart; returns it and metrics."""
    from core.data import stratified_split

    t0 = time.perf_counter()
    torch.manual_seed(cfg.seed)
    data = fractals(cfg.classes, cfg.per_class, cfg.size, cfg.points, cfg.seed)
    tr, va = stratified_split(data.labels, 0.1, cfg.seed)
    model = resnet18(num_classes=cfg.classes)
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)

    def prep(x: torch.Tensor) -> torch.Tensor:
        return (x.float() / 255 - mean) / std

    steps = (len(tr) + cfg.batch_size - 1) // cfg.batch_size
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=5e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=steps * cfg.epochs)
    g = torch.Generator().manual_seed(cfg.seed)
    history = []
    for epoch in range(1, cfg.epochs + 1):
        model.train()
        perm = tr[torch.randperm(len(tr), generator=g)]
        total = 0.0
        for b in range(steps):
            idx = perm[b * cfg.batch_size:(b + 1) * cfg.batch_size]
            x = prep(data.images[idx])
            if torch.rand(1, generator=g) < 0.5:
                x = x.flip(-1)
            loss = F.cross_entropy(model(x), data.labels[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach()) * len(idx)
        model.eval()
        with torch.no_grad():
            acc = float((model(prep(data.images[va])).argmax(1) == data.labels[va]).float().mean())
        row = {"epoch": epoch, "train_loss": total / len(tr), "val_acc": acc, "seconds": time.perf_counter() - t0}
        history.append(row)
        if on_epoch:
            on_epoch(row)
    return model, {"history": history, "fractal_val_acc": history[-1]["val_acc"],
                   "seconds": time.perf_counter() - t0}


def save_starter(model: nn.Module, cfg: PretrainConfig, metrics: dict, path: Path = STARTER,
                 card: Path = STARTER_CARD) -> None:
    """The encoder without its FC layer, in fp16 (about 22 MB), and a JSON card with the recipe."""
    state = {k: v.detach().half().contiguous() for k, v in model.state_dict().items() if not k.startswith("fc.")}
    save_file(state, str(path))
    card.write_text(json.dumps({"what": "ResNet-18 encoder pre-trained by ConvNet Lab on formula-driven "
                                        "(IFS fractal) images; no natural images were used",
                                "recipe": asdict(cfg), "metrics": metrics,
                                "reproduce": "python -m core pretrain", "dtype": "float16"}, indent=1))


def load_starter(model: nn.Module, path: Path = STARTER) -> str:
    """Loads the starter encoder into a torchvision ResNet-18 (its FC layer stays as it is).

    Raises FileNotFoundError when the file is missing.
    """
    state = {k: v.float() for k, v in load_file(str(path)).items()}
    missing, unexpected = model.load_state_dict(state, strict=False)
    if unexpected or any(not k.startswith("fc.") for k in missing):
        raise ValueError(f"starter weights do not fit: missing {missing[:3]}, unexpected {unexpected[:3]}")
    return "ConvNet Lab starter weights (ResNet-18 pre-trained on IFS fractals, no natural images)"
