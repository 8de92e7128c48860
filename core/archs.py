"""Any architecture name the dashboard takes: a registry entry (`resnet18`) or a timm one
(`timm:inception_v4`, core.timm_archs). The registry stays the plain table of the lecture's set;
this is the one place that also knows the other names."""

from __future__ import annotations

from core import registry, timm_archs
from core.spec import ArchSpec


def resolve(name: str) -> ArchSpec:
    """The spec of a registry name or a `timm:` name.

    Raises:
        UnknownArchitectureError: with the known names, or timm's closest ones.
    """
    return timm_archs.spec(name) if timm_archs.is_timm(name) else registry.get(name)


def canonical(name: str) -> str:
    """The name as the pickers list it (an old timm name becomes its new one); registry names unchanged."""
    return timm_archs.canonical(name) if timm_archs.is_timm(name) else registry.get(name).name
