"""Generated glyphs: many characters, each drawn in several handwritings, offline.

An offline stand-in for Omniglot (Lake et al. 2015), the data set of the Siamese paper the lecture
cites (Koch et al. 2015): one-shot learning needs many classes (20-way one-shot needs at least 20
classes never seen in training), and a class needs several drawings that differ the way
handwriting does.

A character is one to three pen strokes, each a smooth curve through two to four random points
(a quadratic Bézier per pair of segments). A handwriting (a "drawer") is a style kept across
characters: slant, pen width, width and height of the letters, and how shaky the hand is. One
drawing of a character by a drawer moves every control point by the drawer's shakiness, applies
the drawer's slant and size with a small random rotation and shift, and draws the strokes with
the drawer's pen. The same seed gives the same images; bright ink on black, like the digits.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

SIDE = 28


@dataclass
class GlyphSet:
    """Images (N, 1, S, S) uint8, the character of each (N,), and the drawer (handwriting) of each (N,)."""

    images: torch.Tensor
    labels: torch.Tensor
    drawers: torch.Tensor


@dataclass(frozen=True)
class Hand:
    """A handwriting: the style one drawer keeps for every character."""

    slant: float        # horizontal shear (x += slant * y)
    pen: float          # stroke half-width, fraction of the side
    sx: float           # letter width scale
    sy: float           # letter height scale
    shake: float        # std of the control points' displacement, fraction of the side


def character(rng: np.random.Generator) -> list[np.ndarray]:
    """A character: 1 to 3 strokes, each (K, 2) control points in the unit square (x, y)."""
    strokes = []
    for _ in range(rng.choice([1, 2, 3], p=[0.25, 0.45, 0.30])):
        k = int(rng.choice([2, 3, 4], p=[0.3, 0.4, 0.3]))
        pts = [rng.uniform(0.15, 0.85, 2)]
        for _ in range(k - 1):
            # the next point at a useful distance from the last, so no stroke collapses to a dot
            for _ in range(20):
                p = rng.uniform(0.15, 0.85, 2)
                if np.linalg.norm(p - pts[-1]) > 0.25:
                    break
            pts.append(p)
        strokes.append(np.array(pts))
    return strokes


def hand(rng: np.random.Generator) -> Hand:
    return Hand(slant=rng.uniform(-0.35, 0.35), pen=rng.uniform(0.03, 0.07), sx=rng.uniform(0.7, 1.1),
                sy=rng.uniform(0.75, 1.1), shake=rng.uniform(0.03, 0.06))


def _curve(pts: np.ndarray, samples: int = 12) -> np.ndarray:
    """A smooth path through the control points (..., K, 2) -> (..., M, 2): straight for two, one
    quadratic Bézier pulled by the middle point for three, two joined quadratics for four."""
    t = np.linspace(0, 1, samples)[:, None]                                     # (M, 1)

    def quad(p0: np.ndarray, p1: np.ndarray, p2: np.ndarray) -> np.ndarray:
        return ((1 - t) ** 2 * p0[..., None, :] + 2 * (1 - t) * t * p1[..., None, :]
                + t ** 2 * p2[..., None, :])

    k = pts.shape[-2]
    if k == 2:
        return pts[..., :1, :] * (1 - t) + pts[..., 1:2, :] * t
    if k == 3:
        return quad(pts[..., 0, :], pts[..., 1, :], pts[..., 2, :])
    mid = (pts[..., 1, :] + pts[..., 2, :]) / 2
    first = quad(pts[..., 0, :], pts[..., 1, :], mid)
    return np.concatenate([first, quad(mid, pts[..., 2, :], pts[..., 3, :])[..., 1:, :]], -2)


def render(paths: list[np.ndarray], pen: np.ndarray, side: int = SIDE) -> np.ndarray:
    """Draws B drawings at once (in torch: float32, on both cores): `paths` are strokes (B, M, 2) in the unit square, `pen` the
    half-widths (B,) as fractions of the side. (B, side, side) float 0..1, antialiased over one
    pixel by the distance of each pixel centre to the nearest segment."""
    yy, xx = torch.meshgrid(torch.arange(side), torch.arange(side), indexing="ij")
    pix = torch.stack([xx.flatten(), yy.flatten()], 1).float().add(0.5).div(side)   # (P, 2)
    pts = [torch.from_numpy(p).float() for p in paths]
    a = torch.cat([p[:, :-1] for p in pts], 1)                                  # (B, L, 2) segment starts
    ab = torch.cat([p[:, 1:] for p in pts], 1) - a                              # (B, L, 2) segment vectors
    rel = pix[None, :, None] - a[:, None]                                       # (B, P, L, 2)
    t = ((rel * ab[:, None]).sum(-1) / (ab ** 2).sum(-1).clamp_min(1e-12)[:, None]).clamp(0, 1)
    d = (rel - t[..., None] * ab[:, None]).norm(dim=-1).amin(-1) * side         # (B, P) in pixels
    ink = (torch.from_numpy(pen).float()[:, None] * side - d + 0.5).clamp(0, 1)
    return ink.reshape(-1, side, side).numpy()


def drawings(char: list[np.ndarray], hands: list[Hand], rng: np.random.Generator, side: int = SIDE) -> np.ndarray:
    """One drawing of a character by each hand: (len(hands), side, side) float 0..1."""
    n = len(hands)
    slant = np.array([h.slant for h in hands])[:, None]
    scale = np.array([[h.sx, h.sy] for h in hands])[:, None]                    # (B, 1, 2)
    shake = np.array([h.shake for h in hands])[:, None, None]
    angle = rng.normal(0, math.radians(12), n)
    c, s = np.cos(angle)[:, None, None], np.sin(angle)[:, None, None]
    shift = rng.normal(0, 0.06, (n, 1, 2))
    size = rng.uniform(0.85, 1.15, (n, 1, 1))
    paths = []
    for pts in char:
        p = pts[None] + rng.normal(0, 1, (n, *pts.shape)) * shake - 0.5         # shaky hands, centred
        p = p + rng.normal(0, 0.04, (n, 1, 2))                                  # each stroke a little off its place
        p = p * scale * size
        p[..., 0] -= slant * p[..., 1]                                          # y grows downwards: the top leans right
        x, y = p[..., 0:1], p[..., 1:2]
        p = np.concatenate([x * c - y * s, x * s + y * c], -1) + 0.5 + shift    # a small rotation, a shift
        paths.append(_curve(p))
    pen = np.array([h.pen for h in hands]) * rng.uniform(0.85, 1.15, n)
    return render(paths, pen, side)


def glyphs(characters: int = 100, drawers: int = 10, seed: int = 0, side: int = SIDE) -> GlyphSet:
    """`characters` x `drawers` images, ordered by character then drawer."""
    if not 2 <= characters <= 2000:
        raise ValueError(f"characters must be from 2 to 2000 (got {characters})")
    if not 2 <= drawers <= 100:
        raise ValueError(f"drawers must be from 2 to 100 (got {drawers})")
    hands = [hand(np.random.default_rng([seed, 1, d])) for d in range(drawers)]
    imgs = np.concatenate([drawings(character(np.random.default_rng([seed, 0, c])), hands,
                                    np.random.default_rng([seed, 2, c]), side) for c in range(characters)])
    x = torch.from_numpy((imgs * 255).round().astype(np.uint8)).unsqueeze(1)         # (N, 1, S, S)
    labels = torch.arange(characters).repeat_interleave(drawers)
    return GlyphSet(x, labels, torch.arange(drawers).repeat(characters))
