"""Small parameter-free modules that make functional steps visible as layers of their own.

torchvision's models concatenate and flatten with plain function calls, which a per-layer table
never sees. Our own models use these modules instead, so the table shows the step the slides
talk about (e.g. "output size after filter concatenation").
"""

from __future__ import annotations

import torch
from torch import nn


class Concat(nn.Module):
    """Concatenates its inputs along the channel axis (the Inception "filter concatenation",
    U-Net's skip connection)."""

    def forward(self, *xs: torch.Tensor) -> torch.Tensor:
        return torch.cat(xs, dim=1)  # (N, sum C_i, H, W)


class L1Distance(nn.Module):
    """Element-wise |a - b| of two embeddings, the Siamese network's distance layer."""

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return torch.abs(a - b)  # (N, D)
