"""Wall-clock measurements on this device: theory (MACs) against practice (seconds).

Used by the Design Lab (depthwise-separable vs standard convolution) and the Model Zoo
(inference latency). Every function takes a `progress` callback (fraction done, message) so a
page can show a progress bar without this module knowing about the UI.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

Progress = Callable[[float, str], None]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_module(module: nn.Module, x: torch.Tensor, repeats: int = 5, warmup: int = 1) -> float:
    """Median seconds of one forward pass, no gradients, after `warmup` untimed passes."""
    times = []
    with torch.no_grad():
        for i in range(warmup + repeats):
            _sync(x.device)
            t = time.perf_counter()
            module(x)
            _sync(x.device)
            if i >= warmup:
                times.append(time.perf_counter() - t)
    return statistics.median(times)


@dataclass(frozen=True)
class SeparableTiming:
    """One channel count: measured seconds of both layers and the two ratios."""

    channels: int
    standard_s: float
    separable_s: float
    mac_ratio: float          # separable / standard MACs = 1/N + 1/D_K^2

    @property
    def time_ratio(self) -> float:
        return self.separable_s / self.standard_s


def separable_timing(channels: list[int], dk: int = 3, df: int = 14, batch: int = 8,
                     device: str = "cpu", repeats: int = 5, progress: Progress | None = None
                     ) -> list[SeparableTiming]:
    """Times a standard D_K x D_K convolution (M = N = channels) against depthwise + pointwise at a
    D_F x D_F map. Depthwise convolutions do few MACs per byte moved, so they run far below the
    speed their MAC count promises: the measured ratio stays above the MAC ratio."""
    dev = torch.device(device)
    # The first convolution of a process pays for library set-up; keep that out of the figures.
    time_module(nn.Conv2d(8, 8, dk, padding=dk // 2).to(dev), torch.randn(1, 8, df, df, device=dev), 1)
    out = []
    for i, c in enumerate(channels):
        if progress:
            progress(i / len(channels), f"{c} channels")
        x = torch.randn(batch, c, df, df, device=dev)  # (N, C, D_F, D_F)
        std = nn.Conv2d(c, c, dk, padding=dk // 2, bias=False).to(dev).eval()
        sep = nn.Sequential(nn.Conv2d(c, c, dk, padding=dk // 2, groups=c, bias=False),
                            nn.Conv2d(c, c, 1, bias=False)).to(dev).eval()
        out.append(SeparableTiming(c, time_module(std, x, repeats), time_module(sep, x, repeats),
                                   1 / c + 1 / dk ** 2))
    if progress:
        progress(1.0, "done")
    return out


@dataclass(frozen=True)
class Latency:
    """Median inference seconds of one torchvision model at two batch sizes."""

    name: str
    batch1_s: float
    batch32_s: float


def model_latency(names: list[str], size: int = 224, device: str = "cpu", repeats: int = 3,
                  big_batch: int = 32, progress: Progress | None = None) -> list[Latency]:
    """Times torchvision classifiers (random weights: speed does not depend on the values) at
    batch 1 and `big_batch`."""
    from torchvision.models import get_model

    dev = torch.device(device)
    out = []
    for i, name in enumerate(names):
        if progress:
            progress(i / len(names), f"{name}")
        kwargs = {"init_weights": False} if name in ("googlenet", "inception_v3") else {}
        model = get_model(name, weights=None, **kwargs).to(dev).eval()
        one = time_module(model, torch.randn(1, 3, size, size, device=dev), repeats)
        many = time_module(model, torch.randn(big_batch, 3, size, size, device=dev), repeats)
        out.append(Latency(name, one, many))
        del model
    if progress:
        progress(1.0, "done")
    return out
