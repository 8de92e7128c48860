"""Single modules from the GoogLeNet slides: the Inception module and the 1x1 bottleneck example."""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from core.models.blocks import Concat


def _conv_relu(c_in: int, c_out: int, k: int) -> nn.Sequential:
    """A k x k "same" convolution followed by ReLU."""
    return nn.Sequential(OrderedDict([
        ("conv", nn.Conv2d(c_in, c_out, k, padding=k // 2)),
        ("relu", nn.ReLU(inplace=True)),
    ]))


class InceptionModule(nn.Module):
    """The lecture's Inception module on a 28x28x256 input (Szegedy et al. 2014, Figure 2).

    Naive: 1x1 (128), 3x3 (192), 5x5 (96) and 3x3 max pooling side by side, concatenated to
    128 + 192 + 96 + 256 = 672 channels. With reductions: 1x1 convolutions (64) before the 3x3
    and 5x5 and after the pooling, concatenated to 128 + 192 + 96 + 64 = 480 channels.
    """

    def __init__(self, reductions: bool = False, in_channels: int = 256) -> None:
        super().__init__()
        c = in_channels
        self.branch1x1 = _conv_relu(c, 128, 1)
        if reductions:
            self.branch3x3 = nn.Sequential(OrderedDict([
                ("reduce", _conv_relu(c, 64, 1)), ("conv3x3", _conv_relu(64, 192, 3))]))
            self.branch5x5 = nn.Sequential(OrderedDict([
                ("reduce", _conv_relu(c, 64, 1)), ("conv5x5", _conv_relu(64, 96, 5))]))
            self.branch_pool = nn.Sequential(OrderedDict([
                ("pool", nn.MaxPool2d(3, stride=1, padding=1)), ("proj", _conv_relu(c, 64, 1))]))
        else:
            self.branch3x3 = _conv_relu(c, 192, 3)
            self.branch5x5 = _conv_relu(c, 96, 5)
            self.branch_pool = nn.MaxPool2d(3, stride=1, padding=1)
        self.concat = Concat()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.concat(self.branch1x1(x), self.branch3x3(x), self.branch5x5(x),
                           self.branch_pool(x))  # (N, 672 or 480, 28, 28)


def inception_module(reductions: bool = False) -> InceptionModule:
    """Builds the lecture's Inception module; see `InceptionModule`."""
    return InceptionModule(reductions)


def bottleneck_1x1(reduce: bool = False) -> nn.Sequential:
    """The 1x1 convolution slide: a 5x5 convolution from 480 to 48 channels on 14x14, directly
    (112.9M multiply-accumulates) or after a 1x1 reduction to 16 channels (1.5M + 3.8M)."""
    if not reduce:
        return nn.Sequential(OrderedDict([("conv5x5", nn.Conv2d(480, 48, 5, padding=2))]))
    return nn.Sequential(OrderedDict([
        ("reduce1x1", nn.Conv2d(480, 16, 1)),
        ("conv5x5", nn.Conv2d(16, 48, 5, padding=2)),
    ]))
