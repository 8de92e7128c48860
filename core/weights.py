"""Pretrained ImageNet weights through torchvision's weights API, and what is cached offline.

torchvision's `load_state_dict_from_url` looks in `$TORCH_HOME/hub/checkpoints/<file name of
the weights URL>` before it downloads anything, so a file placed there ahead of a lecture makes
the weights available offline. The weights' metadata (parameters, GMACs, accuracy, class names)
ships inside torchvision and needs no download.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torchvision.models import get_model_weights
from torchvision.models._api import WeightsEnum

from core import registry


def default_weights(name: str) -> WeightsEnum | None:
    """torchvision's DEFAULT ImageNet weights for a registry entry, or None when it has none."""
    tv = registry.get(name).torchvision_name
    return get_model_weights(tv).DEFAULT if tv else None


def cache_path(weights: WeightsEnum) -> Path:
    """Where torchvision looks for this weights file before downloading it."""
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(weights.url)


@dataclass(frozen=True)
class WeightsStatus:
    """One registry entry's pretrained weights and whether they are on this machine."""

    arch: str
    weights: str        # e.g. "ResNet50_Weights.IMAGENET1K_V2"
    cached: bool
    path: str
    file_mb: float
    acc1: float | None  # ImageNet top-1 accuracy from torchvision's metadata


def weights_status() -> list[WeightsStatus]:
    """Every registry entry with torchvision weights, cached or not."""
    out = []
    for name in registry.names():
        w = default_weights(name)
        if w is None:
            continue
        p = cache_path(w)
        out.append(WeightsStatus(name, f"{type(w).__name__}.{w.name}", p.is_file(), str(p),
                                 float(w.meta.get("_file_size", 0.0)),
                                 w.meta.get("_metrics", {}).get("ImageNet-1K", {}).get("acc@1")))
    return out


def build_model(name: str, pretrained: bool = False) -> tuple["torch.nn.Module", str]:
    """A CPU model of a registry entry in eval mode, with ImageNet weights when asked for and
    cached on this machine, else randomly initialised. Returns the model and a sentence saying
    which weights it has."""
    from core import registry as _registry

    spec = _registry.get(name)
    model = spec.build().eval()
    w = default_weights(name)
    if not pretrained:
        return model, "random initialisation"
    if w is None:
        return model, f"random initialisation ({spec.title} has no torchvision ImageNet weights)"
    if not cache_path(w).is_file():
        return model, (f"random initialisation: {type(w).__name__}.{w.name} is not cached on this machine "
                       f"(expected at {cache_path(w)})")
    model.load_state_dict(w.get_state_dict(progress=False, check_hash=False))
    return model, f"ImageNet weights {type(w).__name__}.{w.name}"
