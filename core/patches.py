"""What excites one channel: the image patches where it responds most, as in Zeiler & Fergus'
Figure 2, and their deconvnet projections (contrast-stretched: `stretch`).

For a layer and channel, every position of every image is a unit. The strongest units are kept
(spread over the images, at most ceil(k / N) from one; and one per place: a unit closer than half
a receptive field to a stronger one of the same image is skipped), and each is shown as the input patch its receptive field covers (from the
analysis engine: size `rf`, grid `start` + index x `jump`) and as the deconvnet projection of
that single unit back to the input (captum's Deconvolution), cropped the same way.
"""

from __future__ import annotations

import time
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
    projection: np.ndarray           # (side, side) deconvnet projection of the unit, contrast-stretched to 0..1


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


def stretch(a: np.ndarray, q: float = 0.99, gamma: float = 0.5) -> np.ndarray:
    """A projection made visible, 0..1: divided by the q-quantile of its positive values, clipped at 1,
    then raised to `gamma`. A unit's projection has a few pixels tens of times brighter than the rest
    of its field (the median is 1-10% of the maximum), so divided by its maximum it is almost black;
    clipping the top 1% (as saliency maps are usually shown) and a gamma below 1 show its whole shape.
    Order is kept; zeros stay zero."""
    a = np.asarray(a, dtype=np.float32)
    pos = a[a > 0]
    if pos.size == 0:
        return np.zeros_like(a)
    return np.clip(a / float(np.quantile(pos, q)), 0.0, 1.0) ** gamma


def _grey(a: np.ndarray) -> np.ndarray:
    """(h, w) 0..1 -> (h, w, 3) uint8."""
    g = (np.clip(a, 0, 1) * 255).round().astype(np.uint8)
    return np.repeat(g[..., None], 3, axis=-1)


def sheets(found: list[Patch], cols: int = 3, min_tile: int = 96, gap: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """The patches and their projections as two grids of `cols` columns (the layout of Zeiler &
    Fergus' Figure 2: patches beside projections), (H, W, 3) uint8 on white, each tile enlarged by a
    whole factor to at least `min_tile` pixels. Tile n of one grid is tile n of the other."""
    if not found:
        raise ValueError("no patches")
    side = found[0].box[2]
    scale = -(-min_tile // side)
    t = side * scale
    rows = -(-len(found) // cols)
    out = []
    for tiles in ([p.pixels for p in found], [_grey(p.projection) for p in found]):
        img = np.full((rows * (t + gap) - gap, cols * (t + gap) - gap, 3), 255, dtype=np.uint8)
        for n, tile in enumerate(tiles):
            r, c = divmod(n, cols)
            img[r * (t + gap):r * (t + gap) + t, c * (t + gap):c * (t + gap) + t] = np.kron(
                tile, np.ones((scale, scale, 1), dtype=np.uint8))
        out.append(img)
    return out[0], out[1]


@dataclass(frozen=True)
class UnitView:
    """One unit of one channel on one image: where it is, the picture under its field, and its
    projections back to the input (deconvnet, guided backprop) over that field."""

    row: int
    col: int
    value: float                                       # the activation
    box: tuple[int, int, int]                          # top, left, side of its receptive field (input pixels)
    photo: np.ndarray                                  # (S, S, 3) uint8: the image with the field outlined
    field: np.ndarray                                  # (side, side, 3) uint8 under the field, grey outside
    projections: list[tuple[str, np.ndarray, float]]   # (method, (side, side) stretched 0..1, seconds)


def outline(pixels: np.ndarray, box: tuple[int, int, int], width: int = 3,
            colour: tuple[int, int, int] = (255, 221, 0)) -> np.ndarray:
    """A copy of (H, W, 3) uint8 `pixels` with the box's edges drawn (the part inside the image)."""
    out = pixels.copy()
    h, w = out.shape[:2]
    top, left, side = box
    t0, l0, t1, l1 = max(0, top), max(0, left), min(h, top + side), min(w, left + side)
    if t1 <= t0 or l1 <= l0:
        return out
    for r0, r1, c0, c1 in ((top, top + width, l0, l1), (top + side - width, top + side, l0, l1),
                           (t0, t1, left, left + width), (t0, t1, left + side - width, left + side)):
        r0, r1, c0, c1 = max(0, r0), min(h, r1), max(0, c0), min(w, c1)
        if r1 > r0 and c1 > c0:
            out[r0:r1, c0:c1] = colour
    return out


def unit_view(model: nn.Module, summary: Summary, x: torch.Tensor, pixels: np.ndarray, path: str,
              channel: int) -> UnitView:
    """The strongest unit of `channel` at module `path` on a (1, 3, S, S) image whose uint8 picture is
    `pixels` (S, S, 3), projected back by deconvnet and by guided backprop, each timed."""
    i, j, value = strongest_unit(model, x, path, channel)
    box = box_of(field_of(summary, path), i, j)
    maps = []
    for name, guided in (("deconvnet", False), ("guided backprop", True)):
        t0 = time.perf_counter()
        full = deconv_unit(model, x, path, channel, i, j, guided=guided).numpy()
        maps.append((name, stretch(crop(full, box, 0.0)), time.perf_counter() - t0))
    return UnitView(i, j, value, box, outline(pixels, box), crop(pixels, box, 128), maps)


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
                proj = stretch(crop(full, box, 0.0))
            out.append(Patch(n, i, j, float(a[n, i, j]), box, crop(crops[n], box, 128), proj))
    finally:
        model.train(was_training)
    return out
