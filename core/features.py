"""Looking inside a network: activations of chosen layers, first-layer filters, predictions.

Forward hooks are always removed and the model's train/eval mode restored, even when the
forward pass raises. Nothing here changes a model's parameters, so one cached model can serve
every user (callers serialise access with a lock, since hooks are per model).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from core.analysis import Summary, is_spatial, last_spatial_layer


@dataclass(frozen=True)
class FeatureLayer:
    """A module whose output is a feature map worth showing."""

    path: str          # dotted module path
    stage: str         # top-level module it belongs to
    label: str         # "layer1.0 (BasicBlock) 56x56x64"
    channels: int


def feature_layers(summary: Summary) -> list[FeatureLayer]:
    """Modules with a (C, H, W) output larger than 1x1, in the order they finish: every leaf
    layer that runs once, and every block (module paths of depth 1 and 2) of several layers."""
    from core.formatting import fmt_shape

    calls: dict[str, int] = {}
    last: dict[str, int] = {}
    for r in summary.layers:
        calls[r.module] = calls.get(r.module, 0) + 1
        parts = r.module.split(".")
        for d in range(1, len(parts) + 1):
            last[".".join(parts[:d])] = r.index
    found: dict[str, tuple[str, list[int]]] = {}
    for depth in (1, 2):
        for b in summary.blocks(depth):
            if b.layers > 1 and is_spatial(b.output_shape):
                found.setdefault(b.name, (b.type, b.output_shape))
    for r in summary.layers:
        if calls[r.module] == 1 and is_spatial(r.output_shape):
            found.setdefault(r.module, (r.type, r.output_shape))
    order = sorted(found, key=lambda p: (last[p], -p.count(".")))
    return [FeatureLayer(p, p.split(".")[0], f"{p} ({found[p][0]}) {fmt_shape(found[p][1])}", found[p][1][0])
            for p in order]


def capture(model: nn.Module, x: torch.Tensor, layers: list[str]) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Runs the model in eval mode and returns the outputs of the named modules and the logits.

    Hooks are removed and the train/eval mode restored whatever happens.
    """
    got: dict[str, torch.Tensor] = {}
    handles = []
    was_training = model.training
    try:
        for name in layers:
            handles.append(model.get_submodule(name).register_forward_hook(
                lambda m, a, o, name=name: got.__setitem__(name, o.detach())))
        model.eval()
        with torch.no_grad():
            logits = model(x)
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return got, logits


@dataclass(frozen=True)
class ChannelStats:
    """Per-channel numbers of one feature map (one image)."""

    means: np.ndarray       # (C,)
    zero_fraction: float    # share of exact zeros over the whole map (after a ReLU: the dead units)
    mean: float
    order: np.ndarray       # channel indices by mean activation, largest first


def channel_stats(act: torch.Tensor) -> ChannelStats:
    """Statistics of a (1, C, H, W) activation."""
    a = act[0].float()  # (C, H, W)
    means = a.mean((1, 2)).numpy()
    return ChannelStats(means, float((a == 0).float().mean()), float(a.mean()), np.argsort(-means))


def mosaic(act: torch.Tensor, channels: list[int], cols: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """Tiles chosen channels of a (1, C, H, W) activation into one image with a 1-pixel gap
    (NaN), all on one shared scale. Returns the mosaic and, per pixel, its channel (-1: gap)."""
    a = act[0].float().numpy()
    _, h, w = a.shape
    rows = -(-len(channels) // cols)
    img = np.full((rows * (h + 1) - 1, cols * (w + 1) - 1), np.nan)
    idx = np.full(img.shape, -1)
    for n, c in enumerate(channels):
        r, k = divmod(n, cols)
        img[r * (h + 1):r * (h + 1) + h, k * (w + 1):k * (w + 1) + w] = a[c]
        idx[r * (h + 1):r * (h + 1) + h, k * (w + 1):k * (w + 1) + w] = c
    return img, idx


def first_layer_filters(model: nn.Module) -> np.ndarray | None:
    """The first convolution's filters as RGB tiles (N, k, k, 3), each stretched to 0..1; None
    when the first convolution does not read 3 channels."""
    conv = next((m for m in model.modules() if isinstance(m, nn.Conv2d)), None)
    if conv is None or conv.in_channels != 3:
        return None
    w = conv.weight.detach().float()  # (N, 3, k, k)
    lo = w.amin((1, 2, 3), keepdim=True)
    hi = w.amax((1, 2, 3), keepdim=True)
    return ((w - lo) / (hi - lo).clamp_min(1e-12)).permute(0, 2, 3, 1).numpy()


def filter_mosaic(filters: np.ndarray, cols: int = 12, scale: int = 4) -> np.ndarray:
    """(N, k, k, 3) tiles in a grid on a white background, each tile enlarged `scale` times."""
    n, k, _, _ = filters.shape
    big = np.kron(filters, np.ones((1, scale, scale, 1)))
    s = k * scale
    rows = -(-n // cols)
    img = np.ones((rows * (s + 2), cols * (s + 2), 3))
    for i in range(n):
        r, c = divmod(i, cols)
        img[r * (s + 2) + 1:r * (s + 2) + 1 + s, c * (s + 2) + 1:c * (s + 2) + 1 + s] = big[i]
    return (img * 255).astype(np.uint8)


def top_k(logits: torch.Tensor, categories: list[str] | None, k: int = 5) -> list[tuple[int, str, float]]:
    """(class index, name, probability) of the k most likely classes."""
    p = torch.softmax(logits[0].float(), 0)
    vals, idx = p.topk(min(k, p.numel()))
    return [(int(i), categories[int(i)] if categories else f"class {int(i)}", float(v)) for v, i in zip(vals, idx)]


def gradcam_layer(summary: Summary) -> str:
    """The stage Grad-CAM should look at: the top-level module holding the last feature map
    that is larger than 1x1 (ResNet's layer4, VGG's features, GoogLeNet's inception5b)."""
    return last_spatial_layer(summary.layers).stage
