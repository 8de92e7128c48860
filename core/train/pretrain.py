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
from safetensors.torch import save_file
from torch import nn
from torchvision.models import resnet18

from core.images import normalise
from core.train.data import ImageSet, stratified_split
from core.train.events import Epoch, Event
from core.train.loop import LoopConfig, Stepper, predict, run_loop
from core.weights import STARTER, STARTER_CARD



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


def pretrain(cfg: PretrainConfig, on_epoch: Callable[[Epoch], None] | None = None) -> tuple[nn.Module, dict]:
    """Trains a ResNet-18 from scratch to tell the fractal classes apart, on the shared loop;
    returns it and metrics."""
    t0 = time.perf_counter()
    torch.manual_seed(cfg.seed)
    data = fractals(cfg.classes, cfg.per_class, cfg.size, cfg.points, cfg.seed)
    tr, va = stratified_split(data.labels, 0.1, cfg.seed)
    x_tr, y_tr, x_va, y_va = data.images[tr], data.labels[tr], data.images[va], data.labels[va]
    model = resnet18(num_classes=cfg.classes)
    g_flip = torch.Generator().manual_seed(cfg.seed + 1)

    def loss(idx: torch.Tensor) -> torch.Tensor:
        x = normalise(x_tr[idx], cfg.size)  # (B, 3, S, S)
        if torch.rand(1, generator=g_flip) < 0.5:
            x = x.flip(-1)
        return F.cross_entropy(model(x), y_tr[idx])

    def evaluate() -> tuple[float, dict[str, float]]:
        logits = predict(model, x_va, cfg.size)
        return float(F.cross_entropy(logits, y_va)), {"acc": float((logits.argmax(1) == y_va).float().mean())}

    history: list[dict] = []

    def emit(e: Event) -> None:
        if isinstance(e, Epoch):
            history.append({"epoch": e.epoch, "train_loss": e.train_loss, "val_acc": e.metrics["acc"],
                            "seconds": e.elapsed})
            if on_epoch:
                on_epoch(e)

    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=5e-4)
    stepper = Stepper(loss=loss, evaluate=evaluate, train_mode=model.train, n_train=len(tr), device=torch.device("cpu"))
    run_loop(stepper, opt, LoopConfig(cfg.epochs, cfg.batch_size, seed=cfg.seed), emit)
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
