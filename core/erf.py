"""The effective receptive field (Luo, Li, Urtasun & Zemel, NeurIPS 2016).

The gradient of one output unit with respect to the input image, in absolute value and averaged
over input images, shows which pixels actually influence that unit. It is roughly Gaussian and
fills only part of the theoretical receptive field, and training changes its shape.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Literal

import numpy as np
import torch
from torch import nn

from core.analysis import LayerRecord
from core.images import sample_batch

ErfSource = Literal["noise", "samples"]


class _Stop(Exception):
    """Ends the forward pass once the chosen layer has produced its output."""


def effective_rf(model: nn.Module, layer: str, images: torch.Tensor,
                 unit: tuple[int, int] | None = None, channel: int | None = None) -> tuple[torch.Tensor, tuple[int, int]]:
    """|d unit / d input| summed over channels and averaged over `images`.

    Args:
        model: any network; left in its original train/eval mode, hooks removed, no parameter
            gradients kept.
        layer: dotted module path whose output holds the unit.
        images: (N, C, H, W) inputs.
        unit: (row, column) in the layer's output map; its centre when None.
        channel: output channel; all channels summed when None (Luo et al. use the sum).

    Returns:
        The (H, W) map, normalised to a maximum of 1, and the unit that was used.
    """
    target = model.get_submodule(layer)
    got: dict[str, torch.Tensor] = {}

    def hook(m: nn.Module, a: tuple, o: torch.Tensor) -> None:
        got["out"] = o
        raise _Stop

    was_training = model.training
    model.eval()
    handle = target.register_forward_hook(hook)
    x = images.detach().clone().requires_grad_(True)
    try:
        try:
            model(x)
        except _Stop:
            pass
        out = got["out"]  # (N, C_out, h, w)
        if out.dim() != 4:
            raise ValueError(f"layer {layer} has no spatial output (shape {tuple(out.shape)})")
        h, w = out.shape[-2:]
        i, j = unit if unit is not None else (h // 2, w // 2)
        sel = out[:, :, i, j] if channel is None else out[:, channel, i, j]
        grad, = torch.autograd.grad(sel.sum(), x)
    finally:
        handle.remove()
        model.train(was_training)
    g = grad.abs().sum(1).mean(0)  # (H, W)
    return g / g.max().clamp_min(1e-30), (int(i), int(j))


def radius_containing(erf: torch.Tensor, fraction: float = 0.95) -> float:
    """Radius (pixels) of the centred square holding `fraction` of the map's mass: a size for
    the effective field comparable with the theoretical one."""
    h, w = erf.shape
    total = float(erf.sum())
    ci, cj = int(torch.argmax(erf.sum(1))), int(torch.argmax(erf.sum(0)))
    for r in range(max(h, w)):
        box = erf[max(0, ci - r):ci + r + 1, max(0, cj - r):cj + r + 1]
        if float(box.sum()) >= fraction * total:
            return r + 0.5
    return max(h, w) / 2


@dataclass(frozen=True)
class ErfInput:
    """The images the gradient is averaged over, and the first one as a picture."""

    images: torch.Tensor    # (N, C, H, W) float
    preview: np.ndarray     # (H, W, 3) uint8


def erf_input_batch(size: tuple[int, int, int], source: ErfSource = "noise", n: int = 8,
                    seed: int = 0) -> ErfInput:
    """Inputs for `effective_rf`.

    Args:
        size: (C, H, W) of one image; "samples" needs 3 channels and H == W.
        source: "noise" for standard normal noise, as Luo et al.; "samples" for the bundled
            photos, ImageNet-normalised.
        n: images of noise (the photos are as many as there are).
        seed: seed of the noise, so that a page re-run shows the same map.
    """
    if source == "samples":
        images, crops = sample_batch(size[1])
        return ErfInput(images, crops[0])
    if source != "noise":
        raise ValueError(f"unknown source {source!r}; use 'noise' or 'samples'")
    images = torch.randn(n, *size, generator=torch.Generator().manual_seed(seed))  # (n, C, H, W)
    # N(0, 1) noise shown as a picture: [-2, 2] stretched to 0..255
    preview = ((images[0, :3].permute(1, 2, 0).clamp(-2, 2) + 2) * 63.75).byte().numpy()  # (H, W, 3)
    return ErfInput(images, preview)


@dataclass(frozen=True)
class ErfResult:
    """What the Design Lab shows of one effective receptive field (numpy: it crosses a process)."""

    arch: str
    layer: str
    erf: np.ndarray         # (H, W), maximum 1
    preview: np.ndarray     # (H, W, 3) uint8, the first input image
    unit: tuple[int, int]
    weights: str            # the weights really used, in words
    radius: float           # half the side of the square holding 95% of the gradient


def effective_rf_of(arch: str, weights: str, layer: str, unit: tuple[int, int], source: ErfSource,
                    device: str = "cpu", progress: Callable[[float, str], None] | None = None) -> ErfResult:
    """`effective_rf` of an architecture with the weights asked for, from the inputs `source` names; the
    Design Lab runs this as a job (core.train.compute). A registry entry gets its weights through
    core.weights.build_with; a timm one (`timm:NAME`) has random initialisation only (timm's pretrained
    weights would need a download), and `used` says so when other weights were asked for."""
    from core import archs, timm_archs
    from core.weights import WeightsUsed, build_with

    if progress:
        progress(0.0, f"building {arch}")
    spec = archs.resolve(arch)
    if timm_archs.is_timm(arch):
        torch.manual_seed(0)
        model, used = spec.build().eval(), WeightsUsed(
            "random", "random" if weights == "random" else weights,   # type: ignore[arg-type]
            reason="" if weights == "random" else "timm's pretrained weights need a download, which this dashboard "
                                                  "does not do")
    else:
        model, used = build_with(arch, weights)
    inp = erf_input_batch(tuple(spec.input_size), source)
    if progress:
        progress(0.3, "back-propagating from one unit")
    dev = torch.device(device)
    erf, got = effective_rf(model.to(dev), layer, inp.images.to(dev), unit)
    erf = erf.cpu()
    if progress:
        progress(1.0, "done")
    return ErfResult(arch, layer, erf.numpy(), inp.preview, got, used.sentence(), radius_containing(erf))


@dataclass(frozen=True)
class RFBox:
    """The theoretical receptive field of one unit on the input, unclipped (it may reach past
    the image), in pixel coordinates: the box spans pixel centres x0..x1 and y0..y1."""

    cx: float        # centre column of the field, start + column * jump
    cy: float        # centre row
    rf_h: float      # field height and width, pixels
    rf_w: float

    @property
    def x0(self) -> float:
        return self.cx - (self.rf_w - 1) / 2

    @property
    def x1(self) -> float:
        return self.cx + (self.rf_w - 1) / 2

    @property
    def y0(self) -> float:
        return self.cy - (self.rf_h - 1) / 2

    @property
    def y1(self) -> float:
        return self.cy + (self.rf_h - 1) / 2


def theoretical_box(record: LayerRecord, unit: tuple[int, int]) -> RFBox:
    """Where the analysis engine places the field of `unit` (row, column) of `record`'s output."""
    row, col = unit
    return RFBox(cx=record.start + col * record.jump, cy=record.start + row * record.jump,
                 rf_h=record.rf_hw[0], rf_w=record.rf_hw[1])


def cross_section(erf: np.ndarray, row: float) -> np.ndarray:
    """The effective field along the image row through the unit's centre; the maximum over
    rows when that centre lies outside the image."""
    i = int(round(row))
    return erf[i] if 0 <= i < erf.shape[0] else erf.max(0)


@dataclass(frozen=True)
class GaussianFit:
    """A Gaussian matched to a 1-D profile: its peak height, mean and standard deviation (pixels)."""

    peak: float
    mu: float
    sigma: float

    def curve(self, xs: np.ndarray) -> np.ndarray:
        """The Gaussian at positions `xs`."""
        return self.peak * np.exp(-((np.asarray(xs, dtype=float) - self.mu) ** 2) / (2 * self.sigma ** 2))


def fit_gaussian(profile: np.ndarray) -> GaussianFit:
    """Method of moments: the profile read as a distribution over its positions 0..n-1 (negative
    values count as 0), its mean and standard deviation; the peak is the profile's maximum."""
    p = np.clip(np.asarray(profile, dtype=float), 0, None)
    xs = np.arange(len(p))
    mass = float(p.sum()) or 1.0
    mu = float((xs * p).sum() / mass)
    sigma = max(1e-6, math.sqrt(float(((xs - mu) ** 2 * p).sum() / mass)))
    return GaussianFit(peak=float(p.max(initial=0.0)), mu=mu, sigma=sigma)
