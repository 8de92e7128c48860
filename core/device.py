"""Which accelerator this process can use, described for people."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class DeviceInfo:
    """The device training and inference will use."""

    kind: str      # "cuda", "mps" or "cpu"
    name: str      # e.g. "NVIDIA H100 80GB HBM3" or "CPU (2 threads)"

    @property
    def label(self) -> str:
        return f"{self.kind.upper()}: {self.name}"


def describe_device() -> DeviceInfo:
    """The best available device: CUDA, then Apple's MPS, then the CPU."""
    if torch.cuda.is_available():
        return DeviceInfo("cuda", torch.cuda.get_device_name(0))
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return DeviceInfo("mps", "Apple GPU (Metal)")
    return DeviceInfo("cpu", f"CPU ({torch.get_num_threads()} threads)")
