"""Sweeps over the whole registry: every architecture in the full run, one of each kind in the quick loop.

A sweep (the diagram at every depth, receptive fields against gradients, every page of the explorer,
the engine against an independent count) runs for every registry entry in `bash scripts/test.sh`.
The quick loop (`-m "not slow"`) keeps the entries in `QUICK`, one for each way of building a network
that the engine, the diagram and the cards must handle; the others are marked slow, so the quick
loop's summary counts them as deselected, never as passed.
"""

from __future__ import annotations

import pytest

from core import registry

# One per building block: plain stacks (LeNet-5, AlexNet, VGG-16), Inception branches (GoogLeNet and the
# lecture's module), 1x1 bottlenecks, residual basic and bottleneck blocks (ResNet-18, ResNet-50),
# depthwise-separable (MobileNet v1) and inverted residuals with squeeze-excitation (MobileNet v3 Small),
# transposed convolutions (the autoencoder), skips across an encoder-decoder (U-Net), shared twins.
QUICK = ("lenet5", "alexnet", "vgg16", "googlenet", "inception_module", "bottleneck_1x1", "resnet18",
         "resnet50", "mobilenet_v1", "mobilenet_v3_small", "conv_autoencoder", "unet", "siamese")


def every(names: list[str] | None = None) -> list:
    """`names` (default: the whole registry) as parameters; those outside `QUICK` are marked slow."""
    return [pytest.param(n, id=n, marks=() if n in QUICK else pytest.mark.slow)
            for n in (registry.names() if names is None else names)]
