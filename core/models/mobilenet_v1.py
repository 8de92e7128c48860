"""MobileNet v1 (Howard et al. 2017): depthwise-separable convolutions with a width multiplier."""

from __future__ import annotations

from collections import OrderedDict

from torch import nn

# (output channels, stride) of the 13 depthwise-separable blocks of the paper's Table 1.
# Table 1 prints "Conv dw / s2" for the last block, but its input and output are both 7x7:
# the stride is 1 there, as every reference implementation has it.
_BLOCKS = [(64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2),
           (512, 1), (512, 1), (512, 1), (512, 1), (512, 1), (1024, 2), (1024, 1)]


def _separable(c_in: int, c_out: int, stride: int) -> nn.Sequential:
    """Depthwise 3x3 (one filter per input channel) then pointwise 1x1, each with BN and ReLU."""
    return nn.Sequential(OrderedDict([
        ("dw", nn.Conv2d(c_in, c_in, 3, stride=stride, padding=1, groups=c_in, bias=False)),
        ("dw_bn", nn.BatchNorm2d(c_in)),
        ("dw_relu", nn.ReLU(inplace=True)),
        ("pw", nn.Conv2d(c_in, c_out, 1, bias=False)),
        ("pw_bn", nn.BatchNorm2d(c_out)),
        ("pw_relu", nn.ReLU(inplace=True)),
    ]))


def mobilenet_v1(width_mult: float = 1.0, num_classes: int = 1000) -> nn.Sequential:
    """MobileNet v1 at width multiplier alpha = `width_mult` (the paper's 1.0, 0.75, 0.5, 0.25).

    Every channel count is scaled by alpha (at least 8). At alpha = 1 and 224x224 it has about
    4.2M parameters and 569M multiply-adds, as in the paper's Table 8.
    """
    def ch(c: int) -> int:
        return max(8, int(c * width_mult))

    layers: list[tuple[str, nn.Module]] = [("conv0", nn.Sequential(OrderedDict([
        ("conv", nn.Conv2d(3, ch(32), 3, stride=2, padding=1, bias=False)),
        ("bn", nn.BatchNorm2d(ch(32))),
        ("relu", nn.ReLU(inplace=True)),
    ])))]
    c_in = ch(32)
    for i, (c_out, stride) in enumerate(_BLOCKS, start=1):
        layers.append((f"block{i}", _separable(c_in, ch(c_out), stride)))
        c_in = ch(c_out)
    layers += [("avgpool", nn.AdaptiveAvgPool2d(1)), ("flatten", nn.Flatten()),
               ("fc", nn.Linear(c_in, num_classes))]
    return nn.Sequential(OrderedDict(layers))
