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


@dataclass(frozen=True)
class Timing:
    """Seconds of one forward pass over repeated runs after warm-up: the median and the range."""

    median: float
    lo: float
    hi: float
    runs: int

    @property
    def ms(self) -> str:
        """'12.3 (11.9-13)': milliseconds, median (fastest-slowest), for a table column in ms."""
        return f"{self.median * 1e3:.3g} ({self.lo * 1e3:.3g}-{self.hi * 1e3:.3g})"


def time_module(module: nn.Module, x: torch.Tensor, repeats: int = 7, warmup: int = 2) -> Timing:
    """Seconds of one forward pass, no gradients, over `repeats` runs after `warmup` untimed ones
    (the first runs pay for memory allocation and kernel selection)."""
    times = []
    with torch.no_grad():
        for i in range(warmup + repeats):
            _sync(x.device)
            t = time.perf_counter()
            module(x)
            _sync(x.device)
            if i >= warmup:
                times.append(time.perf_counter() - t)
    return Timing(statistics.median(times), min(times), max(times), len(times))


@dataclass(frozen=True)
class SeparableTiming:
    """One channel count: measured seconds of both layers and the two ratios."""

    channels: int
    standard: Timing
    separable: Timing
    mac_ratio: float          # separable / standard MACs = 1/N + 1/D_K^2

    @property
    def time_ratio(self) -> float:
        """separable / standard, medians."""
        return self.separable.median / self.standard.median

    @property
    def ratio_range(self) -> tuple[float, float]:
        """The smallest and largest ratio the runs allow (fastest vs slowest run of each)."""
        return self.separable.lo / self.standard.hi, self.separable.hi / self.standard.lo

    @property
    def clear(self) -> bool:
        """True when the two layers' ranges do not overlap: the difference is larger than the spread."""
        return self.separable.hi < self.standard.lo or self.separable.lo > self.standard.hi


def separable_timing(channels: list[int], dk: int = 3, df: int = 14, batch: int = 8,
                     device: str = "cpu", repeats: int = 7, progress: Progress | None = None
                     ) -> list[SeparableTiming]:
    """Times a standard D_K x D_K convolution (M = N = channels) against depthwise + pointwise at a
    D_F x D_F map. Depthwise convolutions do few MACs per byte moved, so they run far below the
    speed their MAC count promises: the measured ratio stays above the MAC ratio."""
    dev = torch.device(device)
    # The first convolution of a process pays for library set-up; keep that out of the figures.
    time_module(nn.Conv2d(8, 8, dk, padding=dk // 2).to(dev), torch.randn(1, 8, df, df, device=dev), 1, 1)
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
    """Inference time of one torchvision model at two batch sizes (median and range)."""

    name: str
    batch1: Timing
    batch32: Timing


def model_latency(names: list[str], size: int = 224, device: str = "cpu", repeats: int = 5,
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
        if progress:
            progress((i + 0.3) / len(names), f"{name}, batch {big_batch}")
        many = time_module(model, torch.randn(big_batch, 3, size, size, device=dev), repeats)
        out.append(Latency(name, one, many))
        del model
    if progress:
        progress(1.0, "done")
    return out
