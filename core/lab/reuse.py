"""The encoder the lecture's "transfer learning is the norm" tasks reuse: a ResNet-18 with the
starter weights (or ImageNet's, when cached), or the same network from scratch, and which of its
stages train.

Both tasks (`core.lab.detect`, `core.lab.caption`) train two networks one after the other on the
same scenes with the same recipe: "pretrained" starts its encoder from trained weights,
"scratch" from random ones. Only the pretrained encoder can be frozen (wholly or in part): a
frozen random encoder is not a network that learnt anything, so the scratch network trains
every layer.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from core.lab.common import Knob
from core.weights import WeightsUsed, build_with, imagenet_cached

ARCH = "resnet18"
SERIES = ("pretrained", "scratch")
STAGES = ("conv1", "bn1", "layer1", "layer2", "layer3", "layer4")   # the encoder's trainable children, in order
# Which stages of the pretrained encoder train; the scratch network always trains all of them.
TRAINS = {"frozen": (), "top": ("layer3", "layer4"), "all": STAGES}

PRETRAINED_KNOB = Knob(
    "Pretrained weights", choices=("starter", "imagenet"),
    names={"starter": "starter (fractals)", "imagenet": "ImageNet (when cached)"},
    help="starter: the ResNet-18 this project pre-trained on generated fractals (no photographs), shipped in "
         "assets/. ImageNet: torchvision's ResNet-18 weights when they are in this machine's cache; else the "
         "starter weights, with a note.")
BACKBONE_KNOB = Knob(
    "Pretrained encoder", choices=tuple(TRAINS),
    names={"frozen": "frozen", "top": "layer3-4 train", "all": "fine-tuned"},
    help="Which stages of the pretrained encoder train (the new layers always do). The network from scratch "
         "trains every layer.")


def resolve(requested: str) -> tuple[str, str]:
    """The weights the pretrained network really starts from ("imagenet" or "starter") and, when
    that is not what was asked for, a sentence saying why."""
    if requested == "imagenet" and not imagenet_cached(ARCH):
        return "starter", ("ImageNet weights for ResNet-18 are not cached on this machine (`python -m core weights "
                           "prefetch resnet18` fetches them where there is a network): the pretrained network "
                           "starts from the starter weights instead.")
    return requested, ""


def encoder(kind: str) -> tuple[nn.Module, WeightsUsed]:
    """A torchvision ResNet-18 with `kind` weights ("starter", "imagenet" or "random"), in training
    mode; its `fc` layer is unused by the tasks."""
    model, used = build_with(ARCH, kind)  # type: ignore[arg-type]
    return model.train(), used


def set_trainable(resnet: nn.Module, stages: tuple[str, ...]) -> None:
    """Only the named stages of the encoder get gradients (the others, and `fc`, stay as they are)."""
    for name, child in resnet.named_children():
        for p in child.parameters():
            p.requires_grad_(name in stages)


def counts(model: nn.Module) -> tuple[int, int]:
    """(trainable, frozen) parameters."""
    t = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return t, sum(p.numel() for p in model.parameters()) - t


CLEAR_MARGIN = 0.05      # "clearly above": at least 5 points (absolute) higher, on a 0..1 metric


@dataclass(frozen=True)
class Comparison:
    """One metric of the two networks after the same budget, and whether the lecture's claim held
    in this run: the pretrained network clearly above the one from scratch."""

    metric: str
    pretrained: float
    scratch: float

    @property
    def gap(self) -> float:
        return self.pretrained - self.scratch

    @property
    def held(self) -> bool:
        return self.gap >= CLEAR_MARGIN


def compare(final: dict, metric: str) -> Comparison:
    """The comparison of a finished run's `metric` ("map50", "bleu4", ...)."""
    return Comparison(metric, float(final["pretrained"][metric]), float(final["scratch"][metric]))
