"""The effective receptive field (Luo, Li, Urtasun & Zemel, NeurIPS 2016).

The gradient of one output unit with respect to the input image, in absolute value and averaged
over input images, shows which pixels actually influence that unit. It is roughly Gaussian and
fills only part of the theoretical receptive field, and training changes its shape.
"""

from __future__ import annotations

import torch
from torch import nn


class _Stop(Exception):
    """Ends the forward pass once the chosen layer has produced its output."""


def effective_rf(model: nn.Module, layer: str, images: torch.Tensor,
                 unit: tuple[int, int] | None = None, channel: int | None = None) -> tuple[torch.Tensor, tuple[int, int]]:
    """|d unit / d input| summed over channels and averaged over `images`.

    Args:
        model: any network; left in its original train/eval mode, hooks removed, no parameter
            gradients kept.
        layer: dotted module path whose output holds the unit.
        images: (N, C, H, W) inputs.
        unit: (row, column) in the layer's output map; its centre when None.
        channel: output channel; all channels summed when None (Luo et al. use the sum).

    Returns:
        The (H, W) map, normalised to a maximum of 1, and the unit that was used.
    """
    target = model.get_submodule(layer)
    got: dict[str, torch.Tensor] = {}

    def hook(m: nn.Module, a: tuple, o: torch.Tensor) -> None:
        got["out"] = o
        raise _Stop

    was_training = model.training
    model.eval()
    handle = target.register_forward_hook(hook)
    x = images.detach().clone().requires_grad_(True)
    try:
        try:
            model(x)
        except _Stop:
            pass
        out = got["out"]  # (N, C_out, h, w)
        if out.dim() != 4:
            raise ValueError(f"layer {layer} has no spatial output (shape {tuple(out.shape)})")
        h, w = out.shape[-2:]
        i, j = unit if unit is not None else (h // 2, w // 2)
        sel = out[:, :, i, j] if channel is None else out[:, channel, i, j]
        grad, = torch.autograd.grad(sel.sum(), x)
    finally:
        handle.remove()
        model.train(was_training)
    g = grad.abs().sum(1).mean(0)  # (H, W)
    return g / g.max().clamp_min(1e-30), (int(i), int(j))


def radius_containing(erf: torch.Tensor, fraction: float = 0.95) -> float:
    """Radius (pixels) of the centred square holding `fraction` of the map's mass: a size for
    the effective field comparable with the theoretical one."""
    h, w = erf.shape
    total = float(erf.sum())
    ci, cj = int(torch.argmax(erf.sum(1))), int(torch.argmax(erf.sum(0)))
    for r in range(max(h, w)):
        box = erf[max(0, ci - r):ci + r + 1, max(0, cj - r):cj + r + 1]
        if float(box.sum()) >= fraction * total:
            return r + 0.5
    return max(h, w) / 2
