"""LeNet-5, the lecture's AlexNet, ZFNet and the Siamese network of Koch et al. (2015)."""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from core.models.blocks import L1Distance


def lenet5(num_classes: int = 10) -> nn.Sequential:
    """LeNet-5 (LeCun et al. 1998) on a 32x32 grey image: CONV-POOL-CONV-POOL-FC-FC-FC.

    The paper's subsampling layers had a trainable coefficient and bias per map; like most
    re-implementations we use plain 2x2 average pooling, so they have no parameters.
    """
    return nn.Sequential(OrderedDict([
        ("conv1", nn.Conv2d(1, 6, 5)),      # (N, 6, 28, 28)
        ("tanh1", nn.Tanh()),
        ("pool1", nn.AvgPool2d(2, 2)),      # (N, 6, 14, 14)
        ("conv2", nn.Conv2d(6, 16, 5)),     # (N, 16, 10, 10)
        ("tanh2", nn.Tanh()),
        ("pool2", nn.AvgPool2d(2, 2)),      # (N, 16, 5, 5)
        ("flatten", nn.Flatten()),          # (N, 400)
        ("fc3", nn.Linear(16 * 5 * 5, 120)),
        ("tanh3", nn.Tanh()),
        ("fc4", nn.Linear(120, 84)),
        ("tanh4", nn.Tanh()),
        ("fc5", nn.Linear(84, num_classes)),
    ]))


def _alexnet_like(conv1: nn.Conv2d, conv2_stride: int, conv2_pad: int,
                  widths: tuple[int, int, int, int, int], groups: int, pool_ceil: bool,
                  num_classes: int, lrn: bool) -> nn.Sequential:
    """The CONV1-POOL1-NORM1-CONV2-POOL2-NORM2-CONV3-CONV4-CONV5-POOL3-FC6-FC7-FC8 layout."""
    c1, c2, c3, c4, c5 = widths

    def norm(name: str) -> list[tuple[str, nn.Module]]:
        # Krizhevsky et al. 2012, section 3.3: k=2, n=5, alpha=1e-4, beta=0.75. Without LRN the
        # layer is left out, not replaced by an Identity that the layer table would still list.
        return [(name, nn.LocalResponseNorm(size=5, alpha=1e-4, beta=0.75, k=2.0))] if lrn else []

    return nn.Sequential(OrderedDict([
        ("conv1", conv1),
        ("relu1", nn.ReLU(inplace=True)),
        ("pool1", nn.MaxPool2d(3, 2, ceil_mode=pool_ceil)),
        *norm("norm1"),
        ("conv2", nn.Conv2d(c1, c2, 5, stride=conv2_stride, padding=conv2_pad, groups=groups)),
        ("relu2", nn.ReLU(inplace=True)),
        ("pool2", nn.MaxPool2d(3, 2, ceil_mode=pool_ceil)),
        *norm("norm2"),
        ("conv3", nn.Conv2d(c2, c3, 3, padding=1)),
        ("relu3", nn.ReLU(inplace=True)),
        ("conv4", nn.Conv2d(c3, c4, 3, padding=1, groups=groups)),
        ("relu4", nn.ReLU(inplace=True)),
        ("conv5", nn.Conv2d(c4, c5, 3, padding=1, groups=groups)),
        ("relu5", nn.ReLU(inplace=True)),
        ("pool3", nn.MaxPool2d(3, 2)),
        ("flatten", nn.Flatten()),          # 6x6xC5 -> one vector, the slide's "reshape"
        ("fc6", nn.Linear(c5 * 6 * 6, 4096)),
        ("relu6", nn.ReLU(inplace=True)),
        ("drop6", nn.Dropout(0.5)),
        ("fc7", nn.Linear(4096, 4096)),
        ("relu7", nn.ReLU(inplace=True)),
        ("drop7", nn.Dropout(0.5)),
        ("fc8", nn.Linear(4096, num_classes)),
    ]))


def alexnet(two_towers: bool = False, lrn: bool = True, num_classes: int = 1000) -> nn.Sequential:
    """The lecture's AlexNet: one tower, 96-256-384-384-256 filters, 227x227 input, LRN.

    Args:
        two_towers: group CONV2, CONV4 and CONV5 in two halves, as the paper's two-GPU model
            did (60,965,224 parameters instead of the slide's 62,378,344).
        lrn: keep the Local Response Normalisation layers (they have no parameters).
        num_classes: outputs of FC8.
    """
    groups = 2 if two_towers else 1
    conv1 = nn.Conv2d(3, 96, 11, stride=4)  # (227 - 11)/4 + 1 = 55
    return _alexnet_like(conv1, 1, 2, (96, 256, 384, 384, 256), groups, False, num_classes, lrn)


def zfnet(filters: str = "lecture", num_classes: int = 1000) -> nn.Sequential:
    """ZFNet (Zeiler & Fergus 2013): AlexNet with a 7x7 stride-2 CONV1 and a stride-2 CONV2.

    Args:
        filters: "lecture" uses 512-1024-512 filters in CONV3-5 as the slide says; "paper"
            keeps AlexNet's 384-384-256 as in the paper's Figure 3.
        num_classes: outputs of FC8.

    The paper's figure shows 110x110 after CONV1 and 55, 26, 13, 13, 13, 6 after that; we
    reproduce it with padding 1 on CONV1 and ceil-mode pooling in POOL1 and POOL2.
    """
    widths = (96, 256, 512, 1024, 512) if filters == "lecture" else (96, 256, 384, 384, 256)
    conv1 = nn.Conv2d(3, 96, 7, stride=2, padding=1)  # (224 + 2 - 7)/2 + 1 = 110
    return _alexnet_like(conv1, 2, 0, widths, 1, True, num_classes, lrn=True)


class SiameseNet(nn.Module):
    """Twin encoders that share one set of weights, then an L1 distance and a similarity score.

    After Koch, Zemel & Salakhutdinov (2015), "Siamese Neural Networks for One-shot Image
    Recognition": 105x105 grey images, four convolutions, a 4096-unit sigmoid embedding, and
    p = sigmoid(w . |h1 - h2| + b).
    """

    def __init__(self, embedding_dim: int = 4096) -> None:
        super().__init__()
        self.encoder = nn.Sequential(OrderedDict([
            ("conv1", nn.Conv2d(1, 64, 10)),    # (N, 64, 96, 96)
            ("relu1", nn.ReLU(inplace=True)),
            ("pool1", nn.MaxPool2d(2)),         # (N, 64, 48, 48)
            ("conv2", nn.Conv2d(64, 128, 7)),   # (N, 128, 42, 42)
            ("relu2", nn.ReLU(inplace=True)),
            ("pool2", nn.MaxPool2d(2)),         # (N, 128, 21, 21)
            ("conv3", nn.Conv2d(128, 128, 4)),  # (N, 128, 18, 18)
            ("relu3", nn.ReLU(inplace=True)),
            ("pool3", nn.MaxPool2d(2)),         # (N, 128, 9, 9)
            ("conv4", nn.Conv2d(128, 256, 4)),  # (N, 256, 6, 6)
            ("relu4", nn.ReLU(inplace=True)),
            ("flatten", nn.Flatten()),          # (N, 9216)
            ("fc", nn.Linear(256 * 6 * 6, embedding_dim)),  # needs the 105x105 input
            ("sigmoid", nn.Sigmoid()),
        ]))
        self.distance = L1Distance()
        self.head = nn.Linear(embedding_dim, 1)
        self.score = nn.Sigmoid()

    def forward(self, x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
        h1 = self.encoder(x1)  # (N, D)
        h2 = self.encoder(x2)  # (N, D): the same weights, called a second time
        return self.score(self.head(self.distance(h1, h2)))  # (N, 1)


def siamese(embedding_dim: int = 4096) -> SiameseNet:
    """Builds the Siamese network; see `SiameseNet`."""
    return SiameseNet(embedding_dim)
