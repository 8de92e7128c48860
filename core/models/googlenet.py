"""GoogLeNet with the paper's layers where torchvision's differ, to measure what the differences do.

torchvision's `googlenet` keeps two deviations from Szegedy et al. (2014, Table 1) for the sake
of its pretrained weights: the last max pooling before Inception 5a is 2x2 at stride 2 (the
paper's is 3x3 at stride 2), and the "5x5" branch of every Inception module is a 3x3
convolution. This builder restores both; it keeps torchvision's BatchNorm (which adds no
multiply-accumulates in our count). No pretrained weights fit it.
"""

from __future__ import annotations

from torch import nn
from torchvision.models import googlenet
from torchvision.models.googlenet import BasicConv2d, GoogLeNet, Inception


def googlenet_paper_layers(aux_logits: bool = False) -> GoogLeNet:
    """torchvision's GoogLeNet with a 3x3/2 maxpool4 and true 5x5 convolutions in the 5x5 branch."""
    model = googlenet(weights=None, init_weights=True, aux_logits=aux_logits)
    model.maxpool4 = nn.MaxPool2d(3, stride=2, ceil_mode=True)  # (N, 832, 7, 7), as with 2x2
    for m in model.modules():
        if isinstance(m, Inception):
            conv = m.branch3[1].conv  # torchvision's 3x3 "5x5"
            m.branch3[1] = BasicConv2d(conv.in_channels, conv.out_channels, kernel_size=5, padding=2)
    return model
