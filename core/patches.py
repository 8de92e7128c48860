"""What excites one channel: the image patches where it responds most, as in Zeiler & Fergus'
Figure 2, and their deconvnet projections.

For a layer and channel, every position of every image is a unit. The strongest units are kept
(spread over the images, at most ceil(k / N) from one; and one per place: a unit closer than half
a receptive field to a stronger one of the same image is skipped), and each is shown as the input patch its receptive field covers (from the
analysis engine: size `rf`, grid `start` + index x `jump`) and as the deconvnet projection of
that single unit back to the input (captum's Deconvolution), cropped the same way.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from core.analysis import LayerRecord, Summary


@dataclass(frozen=True)
class Patch:
    image: int                       # index into the images searched
    row: int                         # unit position in the layer's map
    col: int
    value: float                     # the channel's activation there
    box: tuple[int, int, int]        # top, left, side of the receptive field in input pixels (may leave the image)
    pixels: np.ndarray               # (side, side, 3) uint8 crop; grey where the field leaves the image
    projection: np.ndarray           # (side, side) deconvnet projection of the unit, 0..1


def field_of(summary: Summary, path: str) -> LayerRecord:
    """The record whose receptive field a module's output has: its last layer call."""
    inside = [r for r in summary.layers if r.module == path or r.module.startswith(path + ".")]
    if not inside:
        raise ValueError(f"no layer {path!r} in {summary.arch}")
    return max(inside, key=lambda r: r.index)


def box_of(rec: LayerRecord, row: int, col: int) -> tuple[int, int, int]:
    """Top, left and side of unit (row, col)'s receptive field in input pixels."""
    side = int(rec.rf)
    half = (side - 1) / 2
    return (int(round(rec.start + row * rec.jump - half)), int(round(rec.start + col * rec.jump - half)), side)


def crop(a: np.ndarray, box: tuple[int, int, int], fill: float) -> np.ndarray:
    """a[top:top+side, left:left+side], padded with `fill` where the box leaves the array."""
    top, left, side = box
    out = np.full((side, side) + a.shape[2:], fill, dtype=a.dtype)
    h, w = a.shape[:2]
    t0, l0, t1, l1 = max(0, top), max(0, left), min(h, top + side), min(w, left + side)
    if t1 > t0 and l1 > l0:
        out[t0 - top:t1 - top, l0 - left:l1 - left] = a[t0:t1, l0:l1]
    return out


class _Unit(nn.Module):
    """The model cut to one unit of one layer: its output is that activation, shape (N, 1)."""

    def __init__(self, model: nn.Module, path: str, channel: int, row: int, col: int) -> None:
        super().__init__()
        self.model, self.path, self.where = model, path, (channel, row, col)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        got = {}
        h = self.model.get_submodule(self.path).register_forward_hook(lambda m, a, o: got.setdefault("o", o))
        try:
            self.model(x)
        finally:
            h.remove()
        c, i, j = self.where
        return got["o"][:, c, i, j].unsqueeze(1)


def deconv_unit(model: nn.Module, x: torch.Tensor, path: str, channel: int, row: int, col: int,
                guided: bool = False) -> torch.Tensor:
    """(H, W) deconvnet (or, `guided`, guided-backprop) projection of one unit for a (1, 3, H, W)
    input: |attribution|, max over colour."""
    from captum.attr import Deconvolution, GuidedBackprop

    from core.attribution import _relus_not_inplace

    was_training = model.training
    model.eval()
    try:
        with _relus_not_inplace(model), warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Setting backward hooks on ReLU")
            method = (GuidedBackprop if guided else Deconvolution)(_Unit(model, path, channel, row, col))
            a = method.attribute(x.detach().clone().requires_grad_(True), target=0)
    finally:
        model.train(was_training)
    return a[0].abs().amax(0).detach()


def strongest_unit(model: nn.Module, x: torch.Tensor, path: str, channel: int) -> tuple[int, int, float]:
    """Where `channel` of module `path` responds most to the (1, 3, H, W) image: row, col, value."""
    from core.features import capture

    a = capture(model, x, [path])[0][path][0, channel]
    i, j = divmod(int(a.argmax()), a.shape[1])
    return i, j, float(a[i, j])


def top_patches(model: nn.Module, summary: Summary, path: str, channel: int, x: torch.Tensor, crops: np.ndarray,
                k: int = 9, project: bool = True) -> list[Patch]:
    """The k strongest places of `channel` at module `path` over images `x` (N, 3, S, S), whose
    uint8 pictures are `crops` (N, S, S, 3)."""
    from core.features import capture

    rec = field_of(summary, path)
    acts, _ = capture(model, x, [path])
    a = acts[path][:, channel]                                   # (N, h, w)
    order = torch.argsort(a.flatten(), descending=True)
    h, w = a.shape[1:]
    per_image = -(-k // len(a))                                  # spread over the images: ceil(k / N) each
    chosen: list[tuple[int, int, int]] = []
    for idx in order.tolist():
        n, rest = divmod(idx, h * w)
        i, j = divmod(rest, w)
        near = any(m == n and max(abs(i - p), abs(j - q)) * rec.jump < rec.rf / 2 for m, p, q in chosen)
        if not near and sum(m == n for m, _, _ in chosen) < per_image:
            chosen.append((n, i, j))
        if len(chosen) == k:
            break
    out = []
    was_training = model.training
    model.eval()
    try:
        for n, i, j in chosen:
            box = box_of(rec, i, j)
            proj = np.zeros((box[2], box[2]), dtype=np.float32)
            if project:
                full = deconv_unit(model, x[n:n + 1], path, channel, i, j).numpy()
                proj = crop(full, box, 0.0)
                proj = proj / max(float(proj.max()), 1e-12)
            out.append(Patch(n, i, j, float(a[n, i, j]), box, crop(crops[n], box, 128), proj))
    finally:
        model.train(was_training)
    return out
