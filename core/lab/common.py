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
import math
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Callable, Mapping

import numpy as np

from core.train.events import Event
from core.train.context import JobContext
from core.train.jobs import JobSpec

MAX_LINK_TEXT = 200      # a link's value longer than this is refused unread

TASKS = {"autoencoder": "core.lab.autoencoder", "unet": "core.lab.unet", "siamese": "core.lab.siamese",
         "depth": "core.lab.depth", "detect": "core.lab.detect", "caption": "core.lab.caption"}
TITLES = {"autoencoder": "Autoencoder", "unet": "U-Net vs autoencoder", "siamese": "Siamese one-shot",
          "depth": "Plain vs residual", "detect": "Detection (R-CNN)",
          "caption": "Captioning (CNN + RNN)"}


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


@dataclass(frozen=True)
class Knob:
    """One option of a lab task, stated once: the values its Config accepts and how a page offers
    it. The Config checks every value against its knobs (`check_knobs`), the page draws its widget
    from the same knob, and the CLI takes its choices from it; so a value a link may carry fits its
    widget exactly when the Config accepts it.

    Attributes:
        label: the widget's label.
        lo, hi: the smallest and largest number accepted (numbers only).
        whole: numbers must be whole.
        choices: the accepted values, when only a few are (text, or numbers with steps of their own).
        names: how choices are shown ({value: label}).
        step: the widget's step (numbers).
        rate: a rate typed in exponent form (3.0e-03).
        more: shown under the page's "More settings" rather than in the first list.
        help: the widget's tooltip.
    """

    label: str
    lo: float | None = None
    hi: float | None = None
    whole: bool = True
    choices: tuple[Any, ...] | None = None
    names: dict[Any, str] | None = None
    step: float | None = None
    rate: bool = False
    more: bool = False
    help: str = ""


@dataclass(frozen=True)
class LinkValues:
    """What a link (`?task=unet&epochs=3`) sets: the values taken, the names ignored (each with a
    sentence for the page) and the resulting options, the Config's defaults for the rest."""

    values: dict[str, Any]
    ignored: dict[str, str]


def _parse(default: Any, raw: str) -> Any:
    if isinstance(default, bool):
        if raw.lower() not in ("1", "0", "true", "false"):
            raise ValueError("not on or off (1 or 0)")
        return raw.lower() in ("1", "true")
    if isinstance(default, int):
        if not re.fullmatch(r"[0-9]{1,10}", raw):
            raise ValueError("not a whole number")
        return int(raw)
    if isinstance(default, float):
        value = float(raw)           # ValueError for text; "nan" and "inf" parse and the knob refuses them
        if not math.isfinite(value):
            raise ValueError("not a finite number")
        return value
    return raw


def link_values(config_cls: type, raw: Mapping[str, str]) -> LinkValues:
    """The options a link sets for a task. All of them when the Config accepts them together;
    otherwise one at a time, in passes until nothing changes: a value is kept when the Config
    accepts it with those kept so far (and the defaults for the rest), else it is ignored with the
    Config's reason. Never raises."""
    defaults = {f.name: f.default for f in options(config_cls)}
    parsed, ignored = {}, {}
    for name, default in defaults.items():
        text = raw.get(name)
        if text is None:
            continue
        if len(text) > MAX_LINK_TEXT:
            ignored[name] = f"{name}={_shown(text)} (longer than {MAX_LINK_TEXT} characters)"
            continue
        try:
            parsed[name] = _parse(default, text)
        except ValueError as e:
            ignored[name] = f"{name}={_shown(text)} ({e})"
    if _accepts(config_cls, {**defaults, **parsed}) is None:
        return LinkValues({**defaults, **parsed}, ignored)
    values, waiting, reasons = dict(defaults), dict(parsed), {}
    while True:
        taken = {}
        for name, value in waiting.items():
            reason = _accepts(config_cls, {**values, **taken, name: value})
            if reason is None:
                taken[name] = value
            else:
                reasons[name] = reason
        if not taken:
            break
        values |= taken
        waiting = {n: v for n, v in waiting.items() if n not in taken}
    for name in waiting:
        reason = reasons[name]
        if not reason.startswith(name):
            reason = f"it does not fit the other settings: {reason}"
        ignored[name] = f"{name}={_shown(raw[name])} ({reason[:300]})"
    return LinkValues(values, {n: ignored[n] for n in defaults if n in ignored})


def _accepts(config_cls: type, values: dict[str, Any]) -> str | None:
    """None when the Config takes these values, else its reason."""
    try:
        config_cls(**values)
        return None
    except (TypeError, ValueError) as e:
        return str(e) if isinstance(e, ValueError) else "not a value of this option"


def _shown(text: str) -> str:
    return text if len(text) <= 40 else text[:40] + "..."


def check_knobs(problems: list[str], cfg: Any) -> None:
    """Appends a sentence for each field of `cfg` that its knob does not accept (`cfg.KNOBS`)."""
    for name, knob in cfg.KNOBS.items():
        value = getattr(cfg, name)
        if knob.choices is not None:
            if value not in knob.choices:
                shown = ", ".join(str(c) for c in knob.choices)
                problems.append(f"{name} must be one of {shown} (got {value!r})")
        elif knob.lo is not None and knob.hi is not None:
            check_range(problems, name, value, knob.lo, knob.hi, whole=knob.whole)


def check_range(problems: list[str], name: str, value: Any, lo: float, hi: float, whole: bool = True) -> None:
    """Appends a sentence when `value` is not a number from lo to hi (a whole one when asked)."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and lo <= value <= hi
    if whole and ok and int(value) != value:
        ok = False
    if not ok:
        kind = "a whole number" if whole else "a number"
        problems.append(f"{name} must be {kind} from {lo:g} to {hi:g} (got {value!r})")
