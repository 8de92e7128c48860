"""What fine-tuning changed, measured on one finished Studio run: the lecture's claim that early
layers are generic and later ones specific.

The network the run started from is rebuilt from the run's model card as `load_trained` rebuilds a
frozen encoder: the same configuration, the weights the run really started from (ImageNet, the
starter weights or random initialisation) and the same seed, so the new head gets the very values
it was initialised with. Then, stage by stage (the Studio's stages: the model's top-level blocks
with parameters, the head last):

- relative weight change ||W_after - W_before|| / ||W_before||, over the stage's parameters;
- representation similarity: linear CKA (core.cka) between the stage's outputs in the starting and
  in the fine-tuned network, on the same validation images.

Frozen stages (every encoder stage of scenarios 1 and 2, those before "unfreeze from") did not
change: 0 and a CKA of 1, measured, not assumed. Scenario 3 trains no network weights at all.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from core.cka import cka_from_grams, gram
from core.features import first_layer_filters
from core.images import normalise
from core.train.results import EncoderMismatch, Results, load_results
from core.train.transfer import TrainConfig, build_transfer_model, stages
from core.weights import WeightsUsed

MAX_IMAGES = 100       # validation images the CKA compares (Gram matrices are n x n; n = 100 is plenty)


@dataclass(frozen=True)
class StageChange:
    """One stage of the run's network, before and after training."""

    stage: str              # top-level module, e.g. "layer3"
    params: int
    trained: bool           # its parameters were trainable in this run
    new: bool               # the new head: it started from random initialisation, not from the encoder's weights
    weight_change: float    # ||W_after - W_before|| / ||W_before|| over its parameters
    cka: float              # linear CKA of its output, starting vs fine-tuned network, on the same images


@dataclass(frozen=True)
class WhatChanged:
    """What `what_changed` returns (numpy and plain values: it crosses a process)."""

    arch: str
    scenario: str
    started_from: str            # the starting weights, in words
    n_images: int                # validation images the CKA compared
    stages: list[StageChange]
    filters_before: np.ndarray | None   # first-layer filters (N, k, k, 3), each stretched to 0..1
    filters_after: np.ndarray | None
    first_conv_change: float | None     # relative change of the first convolution's weight alone

    def verdict(self) -> str:
        """What the numbers say, in the lecture's terms, for the page."""
        frozen = [s.stage for s in self.stages if not s.trained]
        trained = [s for s in self.stages if s.trained and not s.new]
        parts = []
        if frozen:
            parts.append(f"Frozen in this run: {', '.join(frozen)}. They did not change (weight change "
                         f"{max(s.weight_change for s in self.stages if not s.trained):g}, CKA "
                         f"{min(s.cka for s in self.stages if not s.trained):.3f}), as scenarios 1 to 3 leave the "
                         "encoder as it started.")
        if len(trained) >= 2:
            first, last = trained[0], trained[-1]
            more = last.weight_change > first.weight_change
            parts.append(f"Of the trained stages, {first.stage} moved {first.weight_change:.3g} of its norm and "
                         f"{last.stage} {last.weight_change:.3g}; their outputs kept a CKA of {first.cka:.2f} and "
                         f"{last.cka:.2f} with the start. "
                         + ("Later stages changed more: early layers are generic, later ones specific, as the lecture "
                            "says." if more and last.cka <= first.cka else
                            "Here the early stages changed as much or more: with random starting weights, or a high "
                            "learning rate for the body, every stage has to learn."))
        head = next((s for s in self.stages if s.new), None)
        if head is not None:
            parts.append(f"The new head ({head.stage}) started from random values and moved {head.weight_change:.3g} "
                         "of its norm.")
        return " ".join(parts)


def starting_model(model_info: dict[str, Any]) -> nn.Module:
    """The network a run started from, in eval mode: its card's configuration with the weights it
    really started from, built with the run's seed (its new head at its initial values).

    Raises:
        EncoderMismatch: those weights are not on this machine now (ImageNet's deleted from the cache).
    """
    used = WeightsUsed(**model_info["weights"])
    cfg = TrainConfig(**{**model_info["config"], "weights": used.kind})
    tm = build_transfer_model(cfg, len(model_info["classes"]))
    if tm.weights.kind != used.kind:
        raise EncoderMismatch(f"this run started from {used.describe()}, which are not on this machine now")
    return tm.model.eval()


def relative_change(before: list[torch.Tensor], after: list[torch.Tensor]) -> float:
    """||W_after - W_before|| / ||W_before||, the Frobenius norms over all the tensors together."""
    diff = sum(float(((a.detach().double() - b.detach().double()) ** 2).sum()) for b, a in zip(before, after))
    base = sum(float((b.detach().double() ** 2).sum()) for b in before)
    return math.sqrt(diff / base) if base > 0 else float("nan")


def stage_grams(model: nn.Module, names: list[str], x: torch.Tensor) -> dict[str, torch.Tensor]:
    """The (n, n) Gram matrix of each named module's output on the batch x: computed inside the
    forward hook, so a stage's activations are never all kept. Hooks removed, eval mode restored."""
    grams: dict[str, torch.Tensor] = {}
    handles = []
    was_training = model.training
    try:
        for name in names:
            handles.append(model.get_submodule(name).register_forward_hook(
                lambda m, a, o, name=name: grams.__setitem__(name, gram(o if isinstance(o, torch.Tensor) else o[0]))))
        model.eval()
        with torch.no_grad():
            model(x)
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return grams


def what_changed(res: Results, device: str = "cpu", progress: Callable[[float, str], None] | None = None,
                 max_images: int = MAX_IMAGES) -> WhatChanged:
    """Per stage, how far training moved the weights and the representation of a finished run.

    Args:
        res: the run's results (core.train.results.load_results); scenarios 1, 2 and fine-tuning.
        device: where the two forward passes run.
        progress: (fraction, message), called between the steps.
        max_images: the first validation images compared (at most).

    Raises:
        ValueError: the run saved no network (scenario 3).
        EncoderMismatch: the starting weights are not on this machine now.
    """
    say = progress or (lambda f, m: None)
    if not res.has_model:
        raise ValueError("this run saved no network (scenario 3 trains a scikit-learn classifier on frozen features)")
    info = res.model_info
    from core import registry

    head = registry.get(info["arch"]).classifier
    say(0.0, "rebuilding the starting network")
    before = starting_model(info)
    say(0.2, "loading the fine-tuned network")
    after = res.trained_model()
    trainable = {n: any(p.requires_grad for p in ps) for n, ps in stages(before, head)}
    names = [n for n, _ in stages(before, head)]
    size = int(info["config"]["image_size"])
    dev = torch.device(device)
    x = normalise(res.val_images[:max_images].to(dev), size)            # (n, 3, S, S)
    say(0.4, f"the starting network on {len(x)} validation images")
    g_before = stage_grams(before.to(dev), names, x)
    say(0.7, "the fine-tuned network on the same images")
    g_after = stage_grams(after.to(dev), names, x)
    rows = []
    after_stages = dict(stages(after, head))
    for name, ps in stages(before, head):
        rows.append(StageChange(stage=name, params=sum(p.numel() for p in ps), trained=trainable[name],
                                new=name == head.split(".")[0], weight_change=relative_change(ps, after_stages[name]),
                                cka=cka_from_grams(g_before[name], g_after[name])))
    conv_b = next((m for m in before.modules() if isinstance(m, nn.Conv2d)), None)
    conv_a = next((m for m in after.modules() if isinstance(m, nn.Conv2d)), None)
    say(1.0, "done")
    return WhatChanged(arch=info["arch"], scenario=info["config"]["scenario"],
                       started_from=WeightsUsed(**info["weights"]).describe(), n_images=len(x), stages=rows,
                       filters_before=first_layer_filters(before.cpu()), filters_after=first_layer_filters(after.cpu()),
                       first_conv_change=relative_change([conv_b.weight], [conv_a.weight]) if conv_b is not None else None)


def what_changed_of(folder: str, device: str = "cpu",
                    progress: Callable[[float, str], None] | None = None) -> WhatChanged:
    """`what_changed` of the run in `folder` (a job folder of this server's runner); the target of the
    "changed" computation (core.train.compute), so the two forward passes run in a worker."""
    res = load_results(Path(folder))
    if res is None:
        raise ValueError("this run left no results")
    return what_changed(res, device, progress)
