"""What the registry holds: `ArchSpec` (one architecture) and `OptionSpec` (one of its options)."""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Union

import torch
from torch import nn
from torch.overrides import TorchFunctionMode


class UnknownArchitectureError(KeyError):
    """Raised for a name that is not in the registry; the message lists the known names."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class OptionError(ValueError):
    """Raised for an option that an architecture does not have, or a value it cannot take."""


@dataclass(frozen=True)
class OptionSpec:
    """One user-settable option of an architecture.

    Attributes:
        default: value used when the user sets nothing; its Python type (bool, int, float, str)
            is the option's type.
        help: one line for the UI and the CLI.
        choices: allowed values for a str option (None: any value of the type).
        min_value: smallest allowed value of a numeric option.
        max_value: largest allowed value of a numeric option.
    """

    default: Any
    help: str
    choices: tuple[Any, ...] | None = None
    min_value: float | None = None
    max_value: float | None = None

    def parse(self, name: str, raw: Any) -> Any:
        """Converts a raw value (a string from the CLI or the URL, or a Python value) to the
        option's type, checking choices and bounds."""
        kind = type(self.default)
        try:
            if kind is bool:
                if isinstance(raw, str):
                    low = raw.strip().lower()
                    if low not in {"1", "0", "true", "false", "yes", "no", "on", "off"}:
                        raise ValueError(raw)
                    value: Any = low in {"1", "true", "yes", "on"}
                else:
                    value = bool(raw)
            else:
                value = kind(raw)
        except (TypeError, ValueError):
            raise OptionError(f"option {name!r} expects a {kind.__name__}, got {raw!r}") from None
        if self.choices is not None and value not in self.choices:
            raise OptionError(f"option {name!r} must be one of {list(self.choices)}, got {value!r}")
        if self.min_value is not None and value < self.min_value:
            raise OptionError(f"option {name!r} must be at least {self.min_value}, got {value!r}")
        if self.max_value is not None and value > self.max_value:
            raise OptionError(f"option {name!r} must be at most {self.max_value}, got {value!r}")
        return value


NoteText = Union[str, Callable[[], str]]


@dataclass(frozen=True)
class Note:
    """One variant note: where our numbers, the slide and the paper differ, and why.

    Attributes:
        text: the sentence, or a function that writes it with numbers computed by the analysis
            engine (called when the note is shown, never at import time).
        slip: True for a slip on the lecture's slide (a wrong number or claim the tool flags),
            False for a difference between variants (ours, torchvision's, the paper's).
        layer: module path of the layer the note is about (the step-through shows the note on
            that layer's card); None for the whole architecture.
    """

    text: NoteText
    slip: bool = False
    layer: str | None = None

    def render(self) -> str:
        """The note's sentence, computing its numbers if it has to."""
        return self.text() if callable(self.text) else self.text


@dataclass(frozen=True)
class ArchSpec:
    """Everything the dashboard knows about one architecture.

    Attributes:
        name: registry key, used in the CLI, URLs and tests.
        title: display name.
        family: group in the picker (e.g. "ResNet").
        builder: callable that takes the options as keyword arguments and returns a fresh module.
        input_size: default (C, H, W) of one input image.
        paper: citation of the paper the architecture comes from.
        year: year of that paper.
        description: two or three sentences in our own words.
        classifier: dotted path of the final classification layer, or None (e.g. autoencoders).
        options: option name -> OptionSpec.
        num_inputs: how many images one forward pass takes (2 for a Siamese network).
        torchvision_name: name of the torchvision builder whose ImageNet weights fit, if any.
        train_mode_option: a bool option that, when on, makes the analysis run the forward pass
            in training mode (GoogLeNet's auxiliary classifiers only run while training).
        side_rule: (side length, resolved options) -> why that height or width cannot work (with
            one that can), or None; e.g. U-Net's multiples of 16.
        short: the name in pickers when `title` is too long for a sidebar at 1024 px (28 characters).
    """

    name: str
    title: str
    family: str
    builder: Callable[..., nn.Module]
    input_size: tuple[int, int, int]
    paper: str
    year: int
    description: str
    classifier: str | None = None
    options: dict[str, OptionSpec] = field(default_factory=dict)
    num_inputs: int = 1
    torchvision_name: str | None = None
    train_mode_option: str | None = None
    side_rule: Callable[[int, dict[str, Any]], str | None] | None = None
    short: str = ""

    @property
    def label(self) -> str:
        """The name in pickers: `short` if set, else `title`."""
        return self.short or self.title

    def resolve_options(self, raw: dict[str, Any] | None = None) -> dict[str, Any]:
        """Returns every option with its value: the defaults overridden by `raw`, parsed."""
        raw = dict(raw or {})
        unknown = sorted(set(raw) - set(self.options))
        if unknown:
            known = ", ".join(sorted(self.options)) or "none"
            raise OptionError(f"{self.name} has no option {unknown[0]!r} (its options: {known})")
        return {k: spec.parse(k, raw.get(k, spec.default)) for k, spec in self.options.items()}

    def trains_forward(self, options: dict[str, Any] | None = None) -> bool:
        """Whether the analysis runs the forward pass in training mode with these options."""
        return bool(self.train_mode_option and self.resolve_options(options).get(self.train_mode_option))

    def build(self, options: dict[str, Any] | None = None) -> nn.Module:
        """Builds a fresh model with the given options (unset ones take their defaults)."""
        return self.builder(**self.resolve_options(options))

    def build_meta(self, options: dict[str, Any] | None = None) -> nn.Module:
        """The model's structure without weights: built on the meta device with no initialisation
        (VGG-19's 548 MB are neither allocated nor drawn at random), for the analysis and the diagram."""
        with weightless():
            return self.build(options)


# In-place initialisers that constructors call (nn.init's normal_, uniform_, trunc_normal_ and
# constant_, BatchNorm's reset_running_stats). A meta tensor holds no values, so on it they change
# nothing, yet each runs a Python decomposition: half the time of building ResNet-152 on meta.
_INIT_OPS = frozenset({"normal_", "uniform_", "fill_", "zero_", "erfinv_", "mul_", "add_", "clamp_"})


class _SkipInitOnMeta(TorchFunctionMode):
    """Skips `_INIT_OPS` on meta tensors while a model is built (a mode is thread-local: other
    threads' models are untouched)."""

    def __torch_function__(self, func: Callable, types: tuple, args: tuple = (), kwargs: dict | None = None):
        if args and getattr(func, "__name__", None) in _INIT_OPS and isinstance(args[0], torch.Tensor) \
                and args[0].is_meta:
            return args[0]
        return func(*args, **(kwargs or {}))


@contextmanager
def weightless() -> Iterator[None]:
    """Models built inside are structure only: on the meta device, their initialisers skipped."""
    with torch.device("meta"), _SkipInitOnMeta():
        yield
