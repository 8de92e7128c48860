"""U-Net vs autoencoder: what the skip connections keep.

Two networks identical in every layer and parameter, trained one after the other on the same
generated segmentation task with the same recipe: the lecture's U-Net, and the same network
whose four concatenations receive zeros instead of the encoder's maps (an autoencoder: everything
the decoder knows has passed the bottleneck, size/16 pixels a side with 16 x n_filters channels:
2x2x128 at the defaults). The task has coarse and fine structure: blobs (4-8 pixels in radius at
32 px) and curves one pixel wide, brighter than a textured background, with their masks. Both
networks find the blobs; only U-Net's skips, which hand the decoder the full-resolution maps, let
it draw the thin curves where they are: the lecture's point that an autoencoder loses fine detail
at its bottleneck.

Metrics on the validation images, predictions thresholded at 0.5: IoU and Dice of the whole mask,
IoU on the blobs alone (the curves' pixels left out of prediction and truth) and on the thin
curves alone (the blobs' pixels left out).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F

from core.lab.common import Knob, check_knobs, save_arrays
from core.models.encdec import UNet
from core.train.events import Done, Phase, RunInfo, Snapshot
from core.train.context import JobContext
from core.train.loop import LoopConfig, Stepper, restart_batchnorm, run_loop
from core.weights import WeightsUsed

SERIES = ("autoencoder", "unet")


@dataclass(frozen=True)
class Config:
    """One comparison run. Units in the comments."""

    images: int = 800           # generated images (80% train, 20% validation)
    size: int = 32              # pixels per side (a multiple of 16: four 2x2 poolings)
    n_filters: int = 8          # channels of the first level (the lecture's n_filters; 16 on the slide)
    epochs: int = 10            # passes over the training images, per network
    batch_size: int = 16        # images per step
    lr: float = 3e-3            # peak LR of the one-cycle schedule
    seed: int = 0               # images, split, initialisation
    task: ClassVar[str] = "unet"
    KNOBS: ClassVar[dict[str, Knob]] = {
        "images": Knob("Generated images", 20, 20_000, step=100),
        "size": Knob("Image size (pixels)", 16, 256, step=16, help="A multiple of 16: U-Net halves it four times."),
        "n_filters": Knob("Filters in the first level", 1, 64, help="The slide uses 16."),
        "epochs": Knob("Epochs (each network)", 1, 200),
        "batch_size": Knob("Batch size", 2, 1024, more=True),
        "lr": Knob("Peak learning rate", 1e-6, 1, whole=False, rate=True),
        "seed": Knob("Seed (images, split, initialisation)", 0, 2**31, more=True),
    }

    def __post_init__(self) -> None:
        problems: list[str] = []
        check_knobs(problems, self)
        if isinstance(self.size, int) and self.size % 16:
            problems.append(f"size must be a multiple of 16: U-Net halves it four times (got {self.size}; "
                            f"try {max(16, round(self.size / 16) * 16)})")
        if problems:
            raise ValueError("; ".join(problems))


class SegNet(UNet):
    """The lecture's U-Net; with `skips=False` each concatenation receives zeros in place of the
    encoder's map, so the layers and parameters stay identical and only the skip is gone."""

    def __init__(self, n_filters: int, skips: bool) -> None:
        super().__init__(n_filters, batchnorm=True, in_channels=1)
        self.skips = skips

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        maps = []
        for i in range(1, 5):
            x = getattr(self, f"c{i}")(x)
            maps.append(x)
            x = getattr(self, f"p{i}")(x)
        x = self.c5(x)                                               # (N, 16f, H/16, W/16)
        for i, skip in zip(range(6, 10), reversed(maps)):
            up = getattr(self, f"u{i}")(x)
            x = getattr(self, f"c{i}")(getattr(self, f"cat{i}")(up, skip if self.skips else torch.zeros_like(skip)))
        return self.out(x)                                           # (N, 1, H, W)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.logits(x))


# --- the data ------------------------------------------------------------------------------------------

def _curve(rng: np.random.Generator, size: int) -> np.ndarray:
    """Points of a random quadratic Bezier curve, dense enough to draw it without gaps."""
    p = rng.uniform(0.05, 0.95, (3, 2)) * size
    t = np.linspace(0, 1, 6 * size)[:, None]
    return (1 - t) ** 2 * p[0] + 2 * (1 - t) * t * p[1] + t ** 2 * p[2]


def bottleneck(cfg: Config) -> tuple[int, int, int]:
    """(channels, height, width) of the map every pixel of the autoencoder's output passes through."""
    return 16 * cfg.n_filters, cfg.size // 16, cfg.size // 16


def thin_structures(n: int, size: int = 32, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Images (N, 1, S, S) float 0..1 with curves one pixel wide and blobs (radius 4-8 pixels at
    S = 32, scaled with S) on a textured background; their masks (N, 1, S, S) and the thin curves'
    part of the masks (bool). Deterministic by seed."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    images, masks, thins = [], [], []
    for _ in range(n):
        bg = np.zeros((size, size))
        for _ in range(3):  # a texture of gratings, at the curves' scale and coarser
            f, a = rng.uniform(0.05, 0.35), rng.uniform(0, math.pi)
            bg += rng.uniform(0.04, 0.1) * np.sin(2 * math.pi * f * (xx * math.cos(a) + yy * math.sin(a)) + rng.uniform(0, 6))
        thin = np.zeros((size, size), bool)
        for _ in range(rng.integers(1, 4)):
            pts = np.round(_curve(rng, size)).astype(int).clip(0, size - 1)
            thin[pts[:, 1], pts[:, 0]] = True
        blob = np.zeros((size, size), bool)
        for _ in range(rng.integers(1, 4)):
            r = rng.uniform(4, 8) * size / 32
            cx, cy = rng.uniform(r, size - r), rng.uniform(r, size - r)
            blob |= (xx - cx) ** 2 + (yy - cy) ** 2 <= r ** 2
        mask = thin | blob
        img = 0.35 + bg + np.where(mask, rng.uniform(0.25, 0.45), 0.0) + rng.normal(0, 0.04, (size, size))
        images.append(img.clip(0, 1))
        masks.append(mask)
        thins.append(thin & ~blob)
    as_t = lambda a, dt: torch.from_numpy(np.stack(a)).unsqueeze(1).to(dt)  # noqa: E731
    return as_t(images, torch.float32), as_t(masks, torch.bool), as_t(thins, torch.bool)


def _iou(pred: torch.Tensor, truth: torch.Tensor) -> float:
    inter, union = (pred & truth).sum().item(), (pred | truth).sum().item()
    return inter / union if union else 1.0


def mask_scores(pred: torch.Tensor, truth: torch.Tensor, thin: torch.Tensor) -> dict[str, float]:
    """IoU and Dice of boolean masks over all images; IoU on the blobs alone (thin-curve pixels
    left out of prediction and truth) and on the thin curves alone (blob pixels left out)."""
    inter, total = (pred & truth).sum().item(), pred.sum().item() + truth.sum().item()
    blobs = truth & ~thin
    return {"iou": _iou(pred, truth), "dice": 2 * inter / total if total else 1.0,
            "blob_iou": _iou(pred & ~thin, blobs), "thin_iou": _iou(pred & ~blobs, thin)}


# --- the run -----------------------------------------------------------------------------------------------

def train(cfg: Config, ctx: JobContext) -> dict:
    t0 = time.perf_counter()
    dev = torch.device(ctx.device)
    ctx.emit(Phase("drawing the images"))
    x, m, thin = thin_structures(cfg.images, cfg.size, cfg.seed)
    perm = torch.randperm(cfg.images, generator=torch.Generator().manual_seed(cfg.seed))
    n_val = max(4, cfg.images // 5)
    va, tr = perm[:n_val], perm[n_val:]
    x_tr, m_tr = x[tr].to(dev), m[tr].float().to(dev)
    x_va, m_va, thin_va = x[va].to(dev), m[va].to(dev), thin[va].to(dev)
    show = torch.arange(4)
    final: dict[str, dict[str, float]] = {}
    preds: dict[str, np.ndarray] = {}
    for series in SERIES:
        t_series = time.perf_counter()              # each network's own time, the drawing excluded
        torch.manual_seed(cfg.seed)                 # the same initialisation for both
        net = SegNet(cfg.n_filters, skips=series == "unet").to(dev)
        ctx.emit(RunInfo(weights=WeightsUsed("random", "random"), n_train=len(tr), n_val=len(va),
                         trainable=sum(p.numel() for p in net.parameters()), frozen=0, series=series))
        epoch = [0]

        def loss(idx: torch.Tensor, net: SegNet = net) -> torch.Tensor:
            return F.binary_cross_entropy_with_logits(net.logits(x_tr[idx]), m_tr[idx])

        @torch.no_grad()
        def evaluate(net: SegNet = net, series: str = series, epoch: list = epoch) -> tuple[float, dict[str, float]]:
            net.eval()
            logits = torch.cat([net.logits(x_va[i:i + 64]) for i in range(0, len(x_va), 64)])
            epoch[0] += 1
            prob = torch.sigmoid(logits)
            ctx.emit(Snapshot(epoch[0], {"image": x_va[show, 0].cpu().numpy().astype(np.float16),
                                         "truth": m_va[show, 0].cpu().numpy(),
                                         "prediction": prob[show, 0].cpu().numpy().astype(np.float16)}, series))
            return (float(F.binary_cross_entropy_with_logits(logits, m_va.float())),
                    mask_scores(prob > 0.5, m_va, thin_va))

        def train_mode(net: SegNet = net) -> None:
            restart_batchnorm(net)
            net.train()

        opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=1e-4)
        stepper = Stepper(loss=loss, evaluate=evaluate, train_mode=train_mode, n_train=len(tr), device=dev)
        last = run_loop(stepper, opt, LoopConfig(cfg.epochs, cfg.batch_size, seed=cfg.seed), ctx.emit,
                        ctx.should_stop, series=series)
        final[series] = {k: float(v) for k, v in last.metrics.items()}
        with torch.no_grad():
            preds[series] = (torch.sigmoid(net.eval().logits(x_va[:12])) > 0.5)[:, 0].cpu().numpy()
        ctx.emit(Done(metrics=final[series], seconds=time.perf_counter() - t_series, series=series))
    save_arrays(ctx.out_dir, images=(x_va[:12, 0].cpu().numpy() * 255).round().astype(np.uint8),
                truth=m_va[:12, 0].cpu().numpy(), unet=preds["unet"], autoencoder=preds["autoencoder"])
    return {"unet": final["unet"], "autoencoder": final["autoencoder"], "seconds": round(time.perf_counter() - t0, 2)}


def summary(final: dict) -> str:
    u, a = final["unet"], final["autoencoder"]
    return (f"IoU {u['iou']:.2f} for U-Net vs {a['iou']:.2f} for the autoencoder; on the blobs "
            f"{u['blob_iou']:.2f} vs {a['blob_iou']:.2f}, on the thin curves {u['thin_iou']:.2f} vs {a['thin_iou']:.2f}")
