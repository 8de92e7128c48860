"""Heavy page computations as jobs: timings and the effective receptive field run in a worker.

A page that ran these itself would hold the server's cores and memory for every user (VGG-16's
effective receptive field alone peaks near 2 GB, and glibc keeps most of it after the work is
done). As a job they queue with the training runs, report progress, can be cancelled, and their
memory goes back to the system when the worker ends. A timing also measures better alone than
beside somebody's training run.

`ComputeConfig` names a target from `TARGETS` (no free-form import paths travel in a job) and its
keyword arguments; the target takes `device` and `progress(fraction, message)` besides them and
returns something picklable, which the handler leaves in the job's folder.
"""

from __future__ import annotations

import importlib
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.train.events import Cancelled, Phase
from core.train.context import JobContext
from core.train.jobs import JobSpec

TARGETS: dict[str, str] = {
    "latency": "core.measure:model_latency",         # Model Zoo: inference time of torchvision models
    "separable": "core.measure:separable_timing",    # Design Lab: depthwise-separable vs standard
    "erf": "core.erf:effective_rf_of",               # Design Lab: the effective receptive field
    "changed": "core.train.changed:what_changed_of", # Inside, a Studio run: what fine-tuning changed
    "handout": "core.lecture.handout:handout_job",   # Lecture path: the static handout, zipped
}
RESULT_FILE = "result.pkl"


@dataclass(frozen=True)
class ComputeConfig:
    target: str                                # a key of TARGETS
    kwargs: tuple[tuple[str, Any], ...] = ()   # the target's arguments, besides device and progress
    label: str = ""                            # what the user asked for, in words

    @staticmethod
    def of(target: str, label: str, **kwargs: Any) -> "ComputeConfig":
        if target not in TARGETS:
            raise ValueError(f"unknown computation {target!r}; choose from {', '.join(TARGETS)}")
        return ComputeConfig(target, tuple(sorted(kwargs.items())), label)


def run(spec: JobSpec, ctx: JobContext) -> str:
    """The job handler: runs the target with progress events, stops at the next progress call
    after a cancel, and pickles the result into the job's folder."""
    cfg: ComputeConfig = spec.config
    module, _, name = TARGETS[cfg.target].partition(":")
    target = getattr(importlib.import_module(module), name)

    def progress(fraction: float, message: str) -> None:
        if ctx.should_stop():
            raise Cancelled("cancelled")
        ctx.emit(Phase(message, round(100 * fraction), 100))

    result = target(**dict(cfg.kwargs), device=ctx.device, progress=progress)
    with open(ctx.out_dir / RESULT_FILE, "wb") as f:
        pickle.dump(result, f)
    return f"{cfg.label or cfg.target}: finished"


def load_result(folder: str | Path) -> Any | None:
    """A finished computation's result (the job folder is the server's own, written by `run`)."""
    path = Path(folder) / RESULT_FILE
    if not path.is_file():
        return None
    with open(path, "rb") as f:
        return pickle.load(f)
