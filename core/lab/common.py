"""What every lab task shares: the task table, the job handler, the results on disk, the CLI's
options and the data helpers.

A task module defines `Config` (a frozen dataclass whose fields are the task's options, each with
its unit in a comment, checked in `__post_init__`), `train(cfg, ctx) -> dict` (the final metrics,
exactly the JSON the CLI prints last) and `summary(final) -> str` (one sentence for the user).
`train` emits events through `ctx.emit` and leaves its pictures in `ctx.out_dir` with
`save_arrays`.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Callable

import numpy as np

from core.train.events import Event
from core.train.context import JobContext
from core.train.jobs import JobSpec

TASKS = {"autoencoder": "core.lab.autoencoder", "unet": "core.lab.unet", "siamese": "core.lab.siamese",
         "depth": "core.lab.depth"}
TITLES = {"autoencoder": "Autoencoder", "unet": "U-Net vs autoencoder", "siamese": "Siamese one-shot",
          "depth": "Plain vs residual"}


def task_module(task: str) -> ModuleType:
    if task not in TASKS:
        raise ValueError(f"unknown lab task {task!r}; choose from {', '.join(TASKS)}")
    return importlib.import_module(TASKS[task])


def task_of(cfg: Any) -> str:
    return next(t for t, m in TASKS.items() if type(cfg).__module__ == m)


def run(spec: JobSpec, ctx: JobContext) -> str:
    """The "lab" job handler: trains the task its config belongs to and saves the final metrics."""
    task = task_of(spec.config)
    module = task_module(task)
    final = module.train(spec.config, ctx)
    (ctx.out_dir / "final.json").write_text(json.dumps({"task": task, "config": asdict(spec.config),
                                                         "final": final}))
    return module.summary(final)


def run_headless(cfg: Any, out_dir: str | Path, device: str = "cpu",
                 on_event: Callable[[Event], None] = lambda e: None,
                 should_stop: Callable[[], bool] = lambda: False) -> tuple[dict, "LabResults"]:
    """A task in this process (the CLI, tests), its results left in `out_dir`: the final metrics
    and the results read back."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    run(JobSpec("lab", cfg), JobContext(on_event, should_stop, out, device))
    res = load_results(out)
    assert res is not None
    return res.final, res


# --- results on disk -------------------------------------------------------------------------------

def save_arrays(out: Path, **arrays: np.ndarray) -> None:
    """Numeric arrays only: read back with allow_pickle=False."""
    np.savez_compressed(out / "arrays.npz", **arrays)


@dataclass
class LabResults:
    folder: Path
    task: str
    config: dict[str, Any]
    final: dict[str, Any]
    arrays: dict[str, np.ndarray]

    def model_file(self, name: str = "model.safetensors") -> Path | None:
        p = self.folder / name
        return p if p.is_file() else None


def load_results(folder: str | Path) -> LabResults | None:
    f = Path(folder)
    if not (f / "final.json").is_file():
        return None
    meta = json.loads((f / "final.json").read_text())
    arrays: dict[str, np.ndarray] = {}
    if (f / "arrays.npz").is_file():
        with np.load(f / "arrays.npz", allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    return LabResults(f, meta["task"], meta["config"], meta["final"], arrays)


# --- options, for the CLI and the pages --------------------------------------------------------------

def options(config_cls: type) -> list[dataclasses.Field]:
    """The fields of a task's Config that a user sets (everything but the class constants)."""
    return [f for f in dataclasses.fields(config_cls) if f.init]


def check_range(problems: list[str], name: str, value: Any, lo: float, hi: float, whole: bool = True) -> None:
    """Appends a sentence when `value` is not a number from lo to hi (a whole one when asked)."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and lo <= value <= hi
    if whole and ok and int(value) != value:
        ok = False
    if not ok:
        kind = "a whole number" if whole else "a number"
        problems.append(f"{name} must be {kind} from {lo:g} to {hi:g} (got {value!r})")
