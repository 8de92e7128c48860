"""Generated scenes for the lecture's "transfer learning is the norm" tasks: several shapes at
random places, sizes, angles and colours on a textured background, with what a detector learns
from them (a box and a class per object) and what a captioner learns (a sentence).

The shapes are the Studio's solid ones (`core.train.data.SHAPE_CLASSES`: circle, square,
triangle, ring, cross), drawn with the same geometry: in coordinates (u, v) turned by the
object's angle around its centre, a circle is u^2 + v^2 < r^2, a square |u|, |v| < 0.85 r, a
triangle -r + 1.7 |u| < v < 0.6 r, a ring 0.6 r < sqrt(u^2 + v^2) < r, a cross two bars 0.5 r
wide and 2 r long. A pixel belongs to a shape when its centre (x + 0.5, y + 0.5) does.

Objects are drawn one after another, a later one over an earlier one. A detection box is the
tight box of the pixels an object still shows (COCO's convention: pixel edges, so a box of one
pixel is [x, y, x + 1, y + 1]); an object is placed again (up to 50 tries) when less than
`MIN_VISIBLE` of it would stay visible or it would hide more of an earlier one than that.

A caption names two objects that do not touch: "a large red circle above a small blue square".
The first-named is the upper one ("above") or the left one ("to the left of"), whichever axis
separates them more; placements where the two axes are close (less than 1.5 times apart) are
drawn again, so every sentence follows from the picture. The same seed gives the same scenes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from core.train.data import SHAPE_CLASSES

SHAPES = ("circle", "square", "triangle", "ring", "cross")
assert set(SHAPES) <= set(SHAPE_CLASSES)   # the Studio's shapes, not new ones
MIN_VISIBLE = 0.6                          # the least fraction of an object's pixels that stays visible
# Caption colours: well apart in RGB, each drawn with a little jitter (+-0.06 per channel).
COLOURS: dict[str, tuple[float, float, float]] = {
    "red": (0.90, 0.12, 0.10), "green": (0.15, 0.75, 0.20), "blue": (0.15, 0.30, 0.95),
    "yellow": (0.95, 0.90, 0.15), "white": (0.95, 0.95, 0.95), "purple": (0.60, 0.20, 0.80),
    "orange": (1.00, 0.55, 0.05), "cyan": (0.10, 0.85, 0.90)}
SIZES = {"small": (0.08, 0.11), "large": (0.15, 0.20)}      # caption radii, fractions of the side
DETECT_RADIUS = (0.10, 0.22)                                # detection radii, fractions of the side
RELATIONS = ("above", "to the left of")
SPECIALS = ("<pad>", "<bos>", "<eos>")
PAD, BOS, EOS = 0, 1, 2


@dataclass(frozen=True)
class Thing:
    """One drawn object: its shape, centre and radius (pixels), angle (radians) and colour (RGB 0..1)."""

    shape: str
    cx: float
    cy: float
    r: float
    angle: float
    rgb: tuple[float, float, float]
    colour: str = ""          # the colour's name (captions)
    size: str = ""            # "small" or "large" (captions)


def shape_mask(t: Thing, side: int) -> np.ndarray:
    """(side, side) bool: the pixels whose centres lie inside the object."""
    y, x = np.mgrid[0:side, 0:side].astype(np.float64) + 0.5
    c, s = math.cos(t.angle), math.sin(t.angle)
    u = (x - t.cx) * c + (y - t.cy) * s
    v = -(x - t.cx) * s + (y - t.cy) * c
    r = t.r
    if t.shape == "circle":
        return u ** 2 + v ** 2 < r ** 2
    if t.shape == "square":
        return (abs(u) < r * 0.85) & (abs(v) < r * 0.85)
    if t.shape == "triangle":
        return (v < r * 0.6) & (v > -r + 1.7 * abs(u))
    if t.shape == "ring":
        d = np.sqrt(u ** 2 + v ** 2)
        return (d < r) & (d > 0.6 * r)
    if t.shape == "cross":
        return ((abs(u) < r * 0.25) & (abs(v) < r)) | ((abs(v) < r * 0.25) & (abs(u) < r))
    raise ValueError(f"unknown shape {t.shape!r}")


def background(rng: np.random.Generator, side: int) -> np.ndarray:
    """(side, side, 3) floats 0..0.4: a dark colour, two faint gratings and pixel noise, so that
    an object is told apart by its shape and colour, not by being the only thing there."""
    y, x = np.mgrid[0:side, 0:side].astype(np.float64)
    img = np.broadcast_to(rng.uniform(0.02, 0.22, 3), (side, side, 3)).copy()
    for _ in range(2):
        f, a = rng.uniform(0.03, 0.15), rng.uniform(0, math.pi)
        wave = np.sin(2 * math.pi * f * (x * math.cos(a) + y * math.sin(a)) + rng.uniform(0, 6))
        img += rng.uniform(0.02, 0.06) * wave[..., None] * rng.uniform(0.5, 1.0, 3)
    return (img + rng.normal(0, 0.02, img.shape)).clip(0, 0.4)


def tight_box(mask: np.ndarray) -> np.ndarray:
    """[x0, y0, x1, y1] of a non-empty mask's pixels, pixel edges (float32)."""
    ys, xs = np.nonzero(mask)
    return np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], np.float32)


def render(things: list[Thing], side: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """The scene as (side, side, 3) uint8 and its instance map (side, side) uint8: 0 for the
    background, k + 1 where object k shows. Each object is shaded a little (+-4%) and noised."""
    img = background(rng, side)
    inst = np.zeros((side, side), np.uint8)
    for k, t in enumerate(things):
        m = shape_mask(t, side)
        shade = 1 + rng.uniform(-0.04, 0.04)
        img[m] = np.clip(np.array(t.rgb) * shade + rng.normal(0, 0.02, (int(m.sum()), 3)), 0, 1)
        inst[m] = k + 1
    return (img * 255).round().astype(np.uint8), inst


# --- detection ---------------------------------------------------------------------------------------

@dataclass
class DetectionScenes:
    """Images (N, 3, S, S) uint8; per scene its boxes (K, 4) float32 [x0, y0, x1, y1] and labels
    (K,) int64 (1 = SHAPES[0]; 0 is the detector's background); the instance maps (N, S, S) uint8
    and the objects as drawn."""

    images: torch.Tensor
    boxes: list[torch.Tensor]
    labels: list[torch.Tensor]
    instances: np.ndarray
    things: list[list[Thing]]
    classes: tuple[str, ...]


def _visible_enough(masks: list[np.ndarray]) -> bool:
    """Every object keeps at least MIN_VISIBLE of its pixels once the later ones are drawn over it."""
    covered = np.zeros_like(masks[0])
    for m in reversed(masks):
        area = m.sum()
        if area == 0 or (m & ~covered).sum() < MIN_VISIBLE * area:
            return False
        covered |= m
    return True


def detection_scenes(n: int, side: int = 64, classes: int = 5, max_objects: int = 4,
                     seed: int = 0) -> DetectionScenes:
    """`n` scenes of 1 to `max_objects` objects of the first `classes` shapes, each any bright
    colour, at random places (wholly inside the image), sizes (radius 10-22% of the side), angles
    and overlaps."""
    if not 1 <= classes <= len(SHAPES):
        raise ValueError(f"classes must be from 1 to {len(SHAPES)}")
    rng = np.random.default_rng(seed)
    images, boxes, labels, insts, all_things = [], [], [], [], []
    for _ in range(n):
        things: list[Thing] = []
        masks: list[np.ndarray] = []
        for _ in range(int(rng.integers(1, max_objects + 1))):
            for _ in range(50):
                r = rng.uniform(*DETECT_RADIUS) * side
                t = Thing(SHAPES[int(rng.integers(classes))], rng.uniform(r, side - r), rng.uniform(r, side - r), r,
                          rng.uniform(0, math.pi), tuple(rng.uniform(0.45, 1.0, 3)))
                m = shape_mask(t, side)
                if m.any() and _visible_enough(masks + [m]):
                    things.append(t)
                    masks.append(m)
                    break
        img, inst = render(things, side, rng)
        images.append(img)
        insts.append(inst)
        all_things.append(things)
        boxes.append(torch.from_numpy(np.stack([tight_box(inst == k + 1) for k in range(len(things))])))
        labels.append(torch.tensor([SHAPES.index(t.shape) + 1 for t in things], dtype=torch.int64))
    x = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).contiguous()
    return DetectionScenes(x, boxes, labels, np.stack(insts), all_things, SHAPES[:classes])


# --- captions ------------------------------------------------------------------------------------------

def vocabulary() -> list[str]:
    """Every word a caption can use, after the three special tokens (padding, start, end)."""
    words = ["a", *SIZES, *COLOURS, *SHAPES, *" ".join(RELATIONS).split()]
    return list(SPECIALS) + list(dict.fromkeys(words))


def describe(t: Thing) -> str:
    return f"a {t.size} {t.colour} {t.shape}"


def sentence(a: Thing, b: Thing) -> str:
    """The caption of two objects: the upper one first ("above") when they are further apart
    vertically than horizontally, else the left one first ("to the left of")."""
    dx, dy = b.cx - a.cx, b.cy - a.cy      # image y grows downwards: the upper one has the smaller y
    if abs(dy) > abs(dx):
        (first, second), rel = ((a, b) if dy > 0 else (b, a)), "above"
    else:
        (first, second), rel = ((a, b) if dx > 0 else (b, a)), "to the left of"
    return f"{describe(first)} {rel} {describe(second)}"


@dataclass
class CaptionScenes:
    """Images (N, 3, S, S) uint8, their captions, and the two objects of each as drawn."""

    images: torch.Tensor
    captions: list[str]
    things: list[list[Thing]]


def caption_scenes(n: int, side: int = 64, seed: int = 0) -> CaptionScenes:
    """`n` scenes of two objects that do not touch, each a named colour and size (see SIZES and
    COLOURS), at random angles, with their captions."""
    rng = np.random.default_rng(seed)
    colours = list(COLOURS)
    images, captions, all_things = [], [], []
    for _ in range(n):
        for _ in range(200):
            things = []
            for _ in range(2):
                size = list(SIZES)[int(rng.integers(2))]
                r = rng.uniform(*SIZES[size]) * side
                colour = colours[int(rng.integers(len(colours)))]
                rgb = tuple(np.clip(np.array(COLOURS[colour]) + rng.uniform(-0.06, 0.06, 3), 0, 1))
                things.append(Thing(SHAPES[int(rng.integers(len(SHAPES)))], rng.uniform(r, side - r),
                                    rng.uniform(r, side - r), r, rng.uniform(0, math.pi), rgb, colour, size))
            a, b = things
            dx, dy = abs(b.cx - a.cx), abs(b.cy - a.cy)
            apart = math.hypot(dx, dy) > a.r + b.r + 2
            if apart and max(dx, dy) >= 1.5 * min(dx, dy):
                break
        img, _ = render(things, side, rng)
        images.append(img)
        captions.append(sentence(*things))
        all_things.append(things)
    x = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).contiguous()
    return CaptionScenes(x, captions, all_things)


def encode(captions: list[str], vocab: list[str]) -> torch.Tensor:
    """(N, T) token ids: <bos>, the words, <eos>, padded with <pad> to the longest."""
    index = {w: i for i, w in enumerate(vocab)}
    ids = [[BOS, *(index[w] for w in c.split()), EOS] for c in captions]
    out = torch.full((len(ids), max(map(len, ids))), PAD, dtype=torch.int64)
    for i, row in enumerate(ids):
        out[i, :len(row)] = torch.tensor(row)
    return out


def decode(ids: torch.Tensor | list[int], vocab: list[str]) -> str:
    """Token ids to words, up to the first <eos>; <bos> and <pad> skipped."""
    words = []
    for i in (ids.tolist() if isinstance(ids, torch.Tensor) else ids):
        if i == EOS:
            break
        if i not in (PAD, BOS):
            words.append(vocab[i])
    return " ".join(words)
