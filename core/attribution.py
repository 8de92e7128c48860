"""Attributions with captum: which input pixels drive a class score.

Each method returns an (H, W) map at the input's size and the seconds it took. Only input
gradients are taken (no parameter gradients accumulate), so a shared cached model is not changed.
"""

from __future__ import annotations

import contextlib
import math
import time
import warnings
from dataclasses import dataclass
from typing import Callable, Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from core.images import normalise

METHODS = ("Saliency", "Deconvnet", "Guided backprop", "Integrated Gradients", "Occlusion", "Grad-CAM")
# Deconvnet (Zeiler & Fergus 2014, the ZFNet paper's visualisation) and guided backpropagation
# (Springenberg et al. 2015) change how gradients pass each ReLU: only positive gradients
# (deconvnet), or only where both the input and the gradient are positive (guided).
SLOW = {"Integrated Gradients", "Occlusion"}


@dataclass
class Attribution:
    """One method's map, normalised to 0..1, and its run time."""

    method: str
    heat: torch.Tensor     # (H, W)
    seconds: float


def _norm(a: torch.Tensor) -> torch.Tensor:
    a = a.detach().float()
    a = a - a.min()
    return a / a.max().clamp_min(1e-12)


@contextlib.contextmanager
def _relus_not_inplace(model: nn.Module) -> Iterator[None]:
    relus = [m for m in model.modules() if isinstance(m, nn.ReLU) and m.inplace]
    for m in relus:
        m.inplace = False
    try:
        yield
    finally:
        for m in relus:
            m.inplace = True


def attribute(model: nn.Module, x: torch.Tensor, target: int, method: str, gradcam_layer: str,
              ig_steps: int = 32, ig_batch: int = 8, occlusion_window: int = 32) -> Attribution:
    """Runs one captum method on a (1, 3, H, W) input for class `target`.

    Integrated Gradients integrates from a black (all-zero after normalisation) baseline with
    `ig_steps` steps, `ig_batch` at a time (bounded memory). Occlusion slides a grey window
    of `occlusion_window` pixels at strides of three quarters of a window. Grad-CAM weights the chosen stage's
    channels by their average gradient, keeps the positive part and upsamples to the input.
    """
    # captum (with matplotlib and pandas) is imported on first use, not with the pages that only name the methods
    from captum.attr import (Deconvolution, GuidedBackprop, IntegratedGradients, LayerAttribution, LayerGradCam,
                             Occlusion, Saliency)

    was_training = model.training
    model.eval()
    t = time.perf_counter()
    try:
        xs = x.detach().clone().requires_grad_(True)
        if method == "Saliency":
            a = Saliency(model).attribute(xs, target=target, abs=True)[0].amax(0)
        elif method in ("Deconvnet", "Guided backprop"):
            cls = Deconvolution if method == "Deconvnet" else GuidedBackprop
            with _relus_not_inplace(model), warnings.catch_warnings():  # in-place ReLUs defeat captum's hooks
                warnings.filterwarnings("ignore", message="Setting backward hooks on ReLU")  # removed after, as it says
                a = cls(model).attribute(xs, target=target)[0].abs().amax(0)
        elif method == "Integrated Gradients":
            a = IntegratedGradients(model).attribute(xs, target=target, n_steps=ig_steps,
                                                     internal_batch_size=ig_batch)[0].abs().sum(0)
        elif method == "Occlusion":
            w, s = occlusion_window, max(1, occlusion_window * 3 // 4)
            a = Occlusion(model).attribute(xs, target=target, sliding_window_shapes=(3, w, w),
                                           strides=(3, s, s), baselines=0.0, perturbations_per_eval=16)[0].sum(0)
            a = a.clamp_min(0)
        elif method == "Grad-CAM":
            layer = model.get_submodule(gradcam_layer)
            cam = LayerGradCam(model, layer).attribute(xs, target=target, relu_attributions=True)
            a = LayerAttribution.interpolate(cam, tuple(x.shape[-2:]), interpolate_mode="bilinear")[0, 0]
        else:
            raise ValueError(f"unknown method {method!r}; choose from {', '.join(METHODS)}")
    finally:
        model.train(was_training)
    return Attribution(method, _norm(a), time.perf_counter() - t)


def passes(method: str, side: int, ig_steps: int = 32, occlusion_window: int = 32) -> int:
    """Forward-pass equivalents one method costs on a side x side image (a backward pass counts
    as two forwards): what the page multiplies by the model's MACs to refuse work a shared CPU
    server should not do."""
    if method == "Integrated Gradients":
        return 3 * ig_steps
    if method == "Occlusion":
        stride = max(1, occlusion_window * 3 // 4)
        # captum slides until the window covers the last pixel (a ceiling), plus one unoccluded pass
        return (math.ceil(max(0, side - occlusion_window) / stride) + 1) ** 2 + 1
    if method in METHODS:
        return 3
    raise ValueError(f"unknown method {method!r}; choose from {', '.join(METHODS)}")


def attribute_all(model: nn.Module, x: torch.Tensor, target: int, methods: list[str], gradcam_layer: str,
                  progress: Callable[[float, str], None] | None = None) -> list[Attribution]:
    """Several methods in turn, reporting progress before each."""
    out = []
    for i, m in enumerate(methods):
        if progress:
            progress(i / len(methods), f"{m}...")
        out.append(attribute(model, x, target, m, gradcam_layer))
    if progress:
        progress(1.0, "done")
    return out


def overlay(image: torch.Tensor, heat: torch.Tensor, alpha: float = 0.5) -> torch.Tensor:
    """Blends a 0..1 heat map (H, W), coloured red-yellow, over an (H, W, 3) uint8 image."""
    h = heat.clamp(0, 1)
    colour = torch.stack([torch.ones_like(h), h, torch.zeros_like(h)], -1) * 255  # red -> yellow
    img = image.float()
    a = (alpha * h).unsqueeze(-1)
    return (img * (1 - a) + colour * a).round().to(torch.uint8)



@dataclass(frozen=True)
class GradCamView:
    """One image with the Grad-CAM map of its predicted class laid over it."""

    image: np.ndarray      # (side, side, 3) uint8
    true: str
    predicted: str
    stage: str             # the module whose feature map Grad-CAM used


def gradcam_views(model: nn.Module, images: torch.Tensor, labels: list[int], preds: list[int], classes: list[str],
                  stage: str, size: int, side: int = 128) -> list[GradCamView]:
    """Grad-CAM of each image's predicted class at `stage` (the rule `core.features.gradcam_layer`
    picks it everywhere), over the image scaled to `side` pixels.

    Args:
        images: (N, 3, H, W) uint8, as a run keeps its validation images.
        size: the side the model was trained at (images are resized and normalised to it).
    """
    out = []
    for img, y, p in zip(images, labels, preds):
        img = img[None]                                                            # (1, 3, H, W) uint8
        heat = attribute(model, normalise(img, size), int(p), "Grad-CAM", stage).heat
        big = F.interpolate(img.float(), size=(side, side))[0].permute(1, 2, 0).to(torch.uint8)
        heat = F.interpolate(heat[None, None], size=(side, side), mode="bilinear")[0, 0]
        out.append(GradCamView(overlay(big, heat).numpy(), classes[int(y)], classes[int(p)], stage))
    return out
