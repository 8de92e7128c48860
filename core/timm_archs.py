"""Every architecture timm can build, by name: `timm:<name>` resolved to an `ArchSpec`.

The registry (core.registry) stays the curated lecture set. timm (PyTorch Image Models, pinned in
requirements.txt) builds about 1,400 more architectures, among them the lecture's "Inception
successors" (Inception v3 and v4, Inception-ResNet v2, Xception), ConvNeXt, EfficientNet, RegNet
and the Vision Transformers. A name with the prefix `timm:` is resolved here, when asked for,
into the same `ArchSpec` the registry holds: a builder (timm's `create_model` without weights),
the default input size and classifier from timm's pretrained config, and a description that says
where the architecture comes from. Nothing is registered and nothing is imported until a timm
name is used, so `import core` works without timm.

Pretrained weights are not used: timm downloads them from the Hugging Face Hub, which this
dashboard never does at run time. The analysis runs on the meta device like the registry's.
"""

from __future__ import annotations

import importlib.util
from functools import partial
from typing import Any

from torch import nn

from core.spec import ArchSpec, UnknownArchitectureError

PREFIX = "timm:"
DEFAULT_SIZE = (3, 224, 224)


def available() -> bool:
    """True when timm is installed (the dashboard works without it, minus these architectures)."""
    try:
        return importlib.util.find_spec("timm") is not None
    except (ImportError, ValueError):     # a finder that refuses it; a half-imported module
        return False


def is_timm(name: str) -> bool:
    """True for a name of the form `timm:<architecture>`."""
    return isinstance(name, str) and name.startswith(PREFIX)


def names() -> list[str]:
    """Every architecture timm lists, as `timm:<name>`, in timm's (natural) order; [] without timm."""
    if not available():
        return []
    import timm

    return [PREFIX + n for n in timm.list_models()]


def canonical(name: str) -> str:
    """The name timm builds under: an old name timm still accepts (`timm:xception`) becomes the one it
    now lists (`timm:legacy_xception`); a listed name stays as it is. Raises UnknownArchitectureError."""
    if not is_timm(name):
        raise UnknownArchitectureError(f"{name!r} is not a timm name (they start with {PREFIX!r}).")
    if not available():
        raise UnknownArchitectureError(f"{name}: timm is not installed on this machine (pip install -r "
                                       "requirements.txt installs it).")
    import timm
    from timm.models import get_arch_name, get_deprecated_models

    bare = name[len(PREFIX):]
    moved = get_deprecated_models().get(bare)
    if moved:
        bare = get_arch_name(moved)
    if not timm.is_model(bare):
        import difflib

        close = difflib.get_close_matches(bare, timm.list_models(), n=3)
        hint = f" Did you mean {', '.join(PREFIX + c for c in close)}?" if close else ""
        raise UnknownArchitectureError(f"timm {timm.__version__} has no architecture {bare!r}.{hint}")
    return PREFIX + bare


def _build(timm_name: str, **_: Any) -> nn.Module:
    """A timm model without pretrained weights (never downloads)."""
    import timm

    return timm.create_model(timm_name, pretrained=False)


def spec(name: str) -> ArchSpec:
    """The `ArchSpec` of `timm:<name>`, built afresh (cheap: no model is built).

    Raises:
        UnknownArchitectureError: timm is missing, or has no such architecture.
    """
    full = canonical(name)
    bare = full[len(PREFIX):]
    import timm
    from timm.models import get_pretrained_cfg
    from timm.models._registry import _model_to_module  # the timm source module: the picker's family

    cfg = get_pretrained_cfg(bare)
    size = tuple(int(v) for v in cfg.input_size) if cfg is not None and cfg.input_size else DEFAULT_SIZE
    hub = (f"Hugging Face Hub: {cfg.hf_hub_id}" if cfg.hf_hub_id else cfg.url) if cfg is not None else None
    family = _model_to_module.get(bare, "timm")
    weights = (f"Its pretrained weights ({hub}) need a download, which this dashboard does not do: the "
               "analysis needs none." if hub else "timm has no pretrained weights for it; the analysis needs none.")
    return ArchSpec(
        name=full, title=f"{bare} (timm)", short=f"{bare} (timm)"[:28], family=f"timm: {family}",
        builder=partial(_build, bare), input_size=size,   # type: ignore[arg-type]
        paper=f"timm {timm.__version__} (Wightman, PyTorch Image Models), module timm.models.{family}",
        year=0, description=f"{bare} as timm builds it (timm.models.{family}), with random weights. " + weights,
        classifier=cfg.classifier if cfg is not None and isinstance(cfg.classifier, str) else None)
