"""The layer-by-layer analysis engine: one `LayerRecord` per leaf-layer call, computed once.

`summarize(name, input_size, options)` builds the architecture on the meta device (shapes and
metadata only: analysing VGG-19 allocates none of its 548 MB of weights), runs one forward
pass with hooks on every leaf module and an `RFTracker` for receptive fields, and returns a
`Summary` of raw numbers. Units and thousands separators are the formatting module's job.

Counting conventions (the UI says which one a number uses):
- `macs`: multiply-accumulates, what the lecture calls "ops", torchinfo "Mult-Adds",
  torchvision "GFLOPS" and the ResNet paper "FLOPs (multiply-adds)". Only convolutions,
  transposed convolutions and fully connected layers count, as in PyTorch's FLOP counter.
- `flops = 2 * macs`, the convention of `torch.utils.flop_counter`.
- `activation_elems`: values a layer newly allocates for one image. In-place layers (ReLU with
  inplace=True) and views (flatten) allocate nothing and count 0; their output shape still shows.
"""

from __future__ import annotations

import csv
import io
import json
import math
import pickle
import threading
from collections import OrderedDict
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Sequence

import torch
from torch import nn

from core import archs
from core.formatting import fmt_bytes, fmt_shape
from core.receptive_field import RF, RFTracker
from core.spec import ArchSpec

BYTES_FP32 = 4
MAX_SIDE = 4096          # refuse inputs larger than this on a side: nobody teaches with them
WARN_ACTIVATION_BYTES = 8 * 10**9  # warn above 8 GB (decimal, as fmt_bytes prints) per image


class AnalysisError(ValueError):
    """A clear, user-facing reason why an architecture cannot be analysed at this input."""


class InputTooSmallError(AnalysisError):
    """The spatial size drops below 1 at `layer`."""

    def __init__(self, message: str, layer: str) -> None:
        super().__init__(message)
        self.layer = layer


@dataclass
class LayerRecord:
    """Raw numbers for one call of one leaf layer, for one image (batch size 1).

    Shapes leave the batch dimension out: (C, H, W) for maps, (D,) for vectors.
    """

    index: int
    name: str                      # module path; " (call k)" when a module runs again
    module: str                    # module path alone
    type: str                      # class name, e.g. "Conv2d"
    input_shape: list[int]         # of the first input
    output_shape: list[int]
    input_shapes: list[list[int]]  # every tensor input (Concat has several)
    kernel: list[int] | None = None
    stride: list[int] | None = None
    padding: list[int] | None = None
    dilation: list[int] | None = None
    output_padding: list[int] | None = None
    groups: int | None = None
    bias: bool | None = None
    ceil_mode: bool | None = None
    params: int = 0                # counted at a module's first call only
    trainable_params: int = 0
    frozen_params: int = 0
    buffer_elems: int = 0          # running mean/variance of BatchNorm and friends
    shared: bool = False           # a repeated call: weights already counted
    macs: int = 0
    activation_elems: int = 0
    inplace: bool = False          # output reuses the input's memory (in place or a view)
    rf: int = 1                    # larger of the two axes, in input pixels
    rf_hw: list[float] = field(default_factory=lambda: [1.0, 1.0])
    jump: float = 1.0
    start: float = 0.0
    rf_in: float = 1.0             # receptive field and jump of the input, for the arithmetic
    jump_in: float = 1.0
    whole_input: bool = False      # every unit sees the whole input (after flatten/global pool)

    @property
    def activation_bytes(self) -> int:
        """fp32 bytes of `activation_elems`."""
        return self.activation_elems * BYTES_FP32

    @property
    def param_bytes(self) -> int:
        """fp32 bytes of `params`."""
        return self.params * BYTES_FP32

    @property
    def flops(self) -> int:
        """2 x MACs, PyTorch's flop-counter convention."""
        return 2 * self.macs

    @property
    def stage(self) -> str:
        """The top-level module this layer belongs to (ResNet's "layer4", VGG's "features")."""
        return self.module.split(".")[0]

    def to_dict(self) -> dict[str, Any]:
        """All fields plus the derived byte counts, JSON-ready."""
        d = asdict(self)
        d.update(activation_bytes=self.activation_bytes, param_bytes=self.param_bytes, flops=self.flops)
        return d


@dataclass
class Totals:
    """Whole-network numbers for one image."""

    params: int                    # every parameter of the model, shared ones once
    trainable_params: int
    frozen_params: int
    unused_params: int             # parameters of layers the forward pass never ran
    buffer_elems: int
    bn_stat_elems: int             # BatchNorm running mean + variance: Keras' "non-trainable"
    macs: int
    activation_elems: int          # sum over layers, input excluded
    input_elems: int

    @property
    def flops(self) -> int:
        return 2 * self.macs

    @property
    def keras_params(self) -> int:
        """The total a Keras summary prints: parameters plus BatchNorm's moving statistics."""
        return self.params + self.bn_stat_elems

    @property
    def param_bytes(self) -> int:
        return self.params * BYTES_FP32

    @property
    def forward_bytes(self) -> int:
        """Activation memory of one forward pass, input included, fp32 (the VGG slide's sum)."""
        return (self.activation_elems + self.input_elems) * BYTES_FP32

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.update(flops=self.flops, keras_params=self.keras_params, param_bytes=self.param_bytes,
                 forward_bytes=self.forward_bytes)
        return d


@dataclass
class TrainingMemory:
    """An estimate of training memory in bytes (fp32); it ignores framework workspace,
    allocator fragmentation and the extra tensors some layers keep for backward."""

    activations: int   # kept for the backward pass, whole batch
    params: int
    grads: int         # one gradient per trainable parameter
    optimizer: int     # state per trainable parameter: 1 for SGD with momentum, 2 for Adam

    @property
    def total(self) -> int:
        return self.activations + self.params + self.grads + self.optimizer


OPTIMIZER_STATES = {"sgd": 0, "sgd_momentum": 1, "adam": 2}


@dataclass(frozen=True)
class Block:
    """Consecutive layers under one module path prefix (a stage or a block), for one image."""

    name: str                  # module path prefix, e.g. "layer1" or "layer1.0"
    type: str                  # class name of that module, e.g. "BasicBlock"
    layers: int                # layer records (calls) inside it
    input_shape: list[int]     # of its first record
    output_shape: list[int]    # of its last record
    params: int
    macs: int
    activation_elems: int
    rf: int                    # receptive field of its output, input pixels
    jump: float


@dataclass
class Summary:
    """What `summarize` returns: the records, the totals and how they were made."""

    arch: str
    title: str
    options: dict[str, Any]
    input_size: list[int]
    layers: list[LayerRecord]
    totals: Totals
    module_types: dict[str, str]   # module path -> class name, for the block view
    warnings: list[str] = field(default_factory=list)
    train_mode: bool = False

    def blocks(self, depth: int) -> list[Block]:
        """Layers grouped by the first `depth` components of their module path.

        Consecutive records with the same prefix form one block; its output and receptive
        field are those of its last record, its counts the sums of its records.
        """
        groups: list[list[LayerRecord]] = []
        keys: list[str] = []
        for r in self.layers:
            key = ".".join(r.module.split(".")[:depth])
            if keys and keys[-1] == key:
                groups[-1].append(r)
            else:
                keys.append(key)
                groups.append([r])
        return [Block(name=key, type=self.module_types.get(key, rs[0].type), layers=len(rs),
                      input_shape=rs[0].input_shape, output_shape=rs[-1].output_shape,
                      params=sum(r.params for r in rs), macs=sum(r.macs for r in rs),
                      activation_elems=sum(r.activation_elems for r in rs), rf=rs[-1].rf, jump=rs[-1].jump)
                for key, rs in zip(keys, groups)]

    def max_depth(self) -> int:
        """Deepest module path among the layers."""
        return max((r.module.count(".") + 1 for r in self.layers), default=1)

    def training_memory(self, batch: int, optimizer: str = "adam") -> TrainingMemory:
        """Estimates training memory for a batch; see `TrainingMemory`."""
        t = self.totals
        trainable = t.trainable_params * BYTES_FP32
        return TrainingMemory(activations=batch * t.forward_bytes, params=t.param_bytes,
                              grads=trainable, optimizer=OPTIMIZER_STATES[optimizer] * trainable)

    def to_dict(self) -> dict[str, Any]:
        return {"arch": self.arch, "title": self.title, "options": self.options,
                "input_size": self.input_size, "train_mode": self.train_mode,
                "warnings": self.warnings, "totals": self.totals.to_dict(),
                "layers": [r.to_dict() for r in self.layers]}

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    def to_csv(self) -> str:
        """One row per layer, the columns of the JSON records (shapes as the slides' H x W x C)."""
        cols = ["index", "name", "type", "input_shape", "output_shape", "kernel", "stride",
                "padding", "dilation", "groups", "params", "trainable_params", "frozen_params",
                "buffer_elems", "macs", "flops", "activation_elems", "activation_bytes",
                "param_bytes", "rf", "jump", "start"]
        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow(cols)
        for r in self.layers:
            d = r.to_dict()
            d["input_shape"], d["output_shape"] = fmt_shape(r.input_shape), fmt_shape(r.output_shape)
            w.writerow(["x".join(map(str, v)) if isinstance(v, list) else v for v in (d[c] for c in cols)])
        return buf.getvalue()


def is_spatial(shape: Sequence[int]) -> bool:
    """A feature map with more than one position: (C, H, W) with H * W > 1."""
    return len(shape) == 3 and shape[1] * shape[2] > 1


def last_spatial_layer(layers: Sequence[LayerRecord]) -> LayerRecord:
    """The last layer whose output is a feature map larger than 1x1: where Grad-CAM looks and
    whose receptive field the Model Zoo reports (ResNet-18 at 224: layer4's last ReLU, 7x7;
    at 32, where layer4 is 1x1, layer3's).

    Args:
        layers: records in call order, e.g. `Summary.layers`.

    Raises:
        AnalysisError: no layer outputs a spatial map (a network of vectors only).
    """
    for r in reversed(layers):
        if is_spatial(r.output_shape):
            return r
    raise AnalysisError("No layer of this network outputs a feature map larger than 1x1.")


# ---------------------------------------------------------------------------------------------

_CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_TCONV = (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)
_POOL = (nn.MaxPool2d, nn.AvgPool2d)


def _ints(v: Any) -> list[int]:
    return [int(x) for x in v] if isinstance(v, (tuple, list)) else [int(v), int(v)]


def _macs(m: nn.Module, inp: torch.Tensor, out: torch.Tensor) -> int:
    """Multiply-accumulates of one call, batch 1."""
    if isinstance(m, _CONV):
        return out[0].numel() * (m.in_channels // m.groups) * math.prod(m.kernel_size)
    if isinstance(m, _TCONV):
        # every input value is multiplied into a k x k patch of each of C_out/groups outputs
        return inp[0].numel() * (m.out_channels // m.groups) * math.prod(m.kernel_size)
    if isinstance(m, nn.Linear):
        return out[0].numel() * m.in_features
    return 0


def _padding(m: nn.Module) -> list[int]:
    """A convolution's (left) padding per axis; PyTorch's padding="same" pads d(k-1) in all, the smaller
    half first, and "valid" pads nothing (ConvMixer in timm uses "same")."""
    if isinstance(m.padding, str):
        if m.padding == "valid":
            return [0] * len(_ints(m.kernel_size))
        return [d * (k - 1) // 2 for k, d in zip(_ints(m.kernel_size), _ints(m.dilation))]
    return _ints(m.padding)


def _hyperparams(m: nn.Module) -> dict[str, Any]:
    if isinstance(m, _CONV + _TCONV):
        d = dict(kernel=_ints(m.kernel_size), stride=_ints(m.stride), padding=_padding(m),
                 dilation=_ints(m.dilation), groups=m.groups, bias=m.bias is not None)
        if isinstance(m, _TCONV):
            d["output_padding"] = _ints(m.output_padding)
        return d
    if isinstance(m, _POOL):
        d = dict(kernel=_ints(m.kernel_size), stride=_ints(m.stride), padding=_ints(m.padding),
                 ceil_mode=bool(m.ceil_mode))
        if isinstance(m, nn.MaxPool2d):
            d["dilation"] = _ints(m.dilation)
        return d
    if isinstance(m, nn.Linear):
        return dict(bias=m.bias is not None)
    return {}


def _out_size(n: int, k: int, s: int, p: int, d: int, ceil: bool) -> int:
    """PyTorch's output-size formula for convolution and pooling."""
    span = n + 2 * p - d * (k - 1) - 1
    o = (math.ceil(span / s) if ceil else span // s) + 1
    if ceil and (o - 1) * s >= n + p:  # the last window must start inside the input or left padding
        o -= 1
    return o


def _check_window(name: str, m: nn.Module, x: torch.Tensor) -> None:
    """Raises InputTooSmallError before a conv or pool whose output would be empty."""
    if not isinstance(m, _CONV + _POOL) or x.dim() != 4:
        return
    hp = _hyperparams(m)
    d = hp.get("dilation", [1, 1])
    for axis, n in zip((0, 1), x.shape[-2:]):
        k, s, p = hp["kernel"][axis], hp["stride"][axis], hp["padding"][axis]
        o = _out_size(int(n), k, s, p, d[axis], hp.get("ceil_mode", False))
        if o < 1:
            k_eff = d[axis] * (k - 1) + 1
            raise InputTooSmallError(
                f"The input is too small for this architecture: at layer {name} ({type(m).__name__}, "
                f"{k}x{k} kernel, stride {s}, padding {p}) the feature map is only {int(n)} pixels "
                f"{'high' if axis == 0 else 'wide'}, and ({int(n)} + 2*{p} - {k_eff})/{s} + 1 < 1. "
                f"Use a larger input size.", layer=name)


def owns_params(m: nn.Module) -> bool:
    """The module holds parameters itself, not only through its children."""
    return next(m.parameters(recurse=False), None) is not None


class _Recorder:
    """Forward hooks that turn each call of a layer into a LayerRecord. A layer is a leaf module, or a
    module that holds parameters of its own besides its children (timm's BatchNormAct2d is a
    BatchNorm2d with an activation inside): its record covers the call, its children get their own.
    Records keep the order in which calls start, so a module comes before the modules it calls."""

    def __init__(self, model: nn.Module, tracker: RFTracker) -> None:
        self.tracker = tracker
        self.slots: list[LayerRecord | None] = []
        self.open: list[int] = []          # slots of the calls that have started and not yet ended
        self.calls: dict[str, int] = {}
        self.counted: set[int] = set()
        self.current: str | None = None
        self.handles = []
        for name, m in model.named_modules():
            if name and (next(m.children(), None) is None or owns_params(m)):
                self.handles.append(m.register_forward_pre_hook(self._pre(name)))
                self.handles.append(m.register_forward_hook(self._post(name)))

    @property
    def records(self) -> list[LayerRecord]:
        """The calls that produced a tensor, in the order they started, numbered from 0."""
        out = [r for r in self.slots if r is not None]
        for i, r in enumerate(out):
            r.index = i
        return out

    def remove(self) -> None:
        for h in self.handles:
            h.remove()

    def _pre(self, name: str):
        def hook(m: nn.Module, args: tuple) -> None:
            self.current = name
            self.open.append(len(self.slots))
            self.slots.append(None)
            x = next((a for a in args if isinstance(a, torch.Tensor)), None)
            if x is None:
                return
            _check_window(name, m, x)
            if isinstance(m, nn.Linear) and x.shape[-1] != m.in_features:
                raise AnalysisError(
                    f"Layer {name} is a fully connected layer with a fixed number of inputs: it expects "
                    f"{m.in_features:,} values but gets {x.shape[-1]:,} at this input size. This "
                    f"architecture only works at its default input size.")
        return hook

    def _post(self, name: str):
        def hook(m: nn.Module, args: tuple, out: Any) -> None:
            self.tracker.paused = True
            try:
                self.slots[self.open.pop()] = self._record(name, m, args, out)
            finally:
                self.tracker.paused = False
        return hook

    def _record(self, name: str, m: nn.Module, args: tuple, out: Any) -> LayerRecord | None:
        ins = [a for a in args if isinstance(a, torch.Tensor)]
        outs = [o for o in (out if isinstance(out, (tuple, list)) else [out]) if isinstance(o, torch.Tensor)]
        if not ins or not outs:
            return None
        x, y = ins[0], outs[0]
        k = self.calls.get(name, 0) + 1
        self.calls[name] = k
        first_call = id(m) not in self.counted
        self.counted.add(id(m))
        params = list(m.parameters(recurse=False)) if first_call else []
        rf_in = self.tracker.get(x) or RF.input()
        rf = self.tracker.get(y) or rf_in
        inplace = y is x or (y._base is not None and (y._base is x or y._base is x._base))
        return LayerRecord(
            index=0, name=name if k == 1 else f"{name} (call {k})", module=name,
            type=type(m).__name__, input_shape=list(x.shape[1:]), output_shape=list(y.shape[1:]),
            input_shapes=[list(t.shape[1:]) for t in ins],
            params=sum(p.numel() for p in params),
            trainable_params=sum(p.numel() for p in params if p.requires_grad),
            frozen_params=sum(p.numel() for p in params if not p.requires_grad),
            buffer_elems=sum(b.numel() for b in m.buffers(recurse=False)
                             if b.is_floating_point()) if first_call else 0,
            shared=not first_call and any(True for _ in m.parameters(recurse=False)),
            macs=_macs(m, x, y), activation_elems=0 if inplace else y[0].numel(), inplace=inplace,
            rf=int(round(max(rf.rf))), rf_hw=list(rf.rf), jump=_num(max(rf.jump)),
            start=_num(rf.start[0]), rf_in=_num(max(rf_in.rf)), jump_in=_num(max(rf_in.jump)),
            whole_input=rf.whole, **_hyperparams(m))


def _num(v: float) -> float:
    """Whole numbers as int (for JSON readers), others rounded."""
    return int(v) if float(v).is_integer() else round(float(v), 4)


def parse_input_size(text: str | list | tuple) -> tuple[int, int, int]:
    """Reads "3x224x224", "3 224 224", "3,224,224" or a sequence into (C, H, W)."""
    if isinstance(text, str):
        parts = [p for p in text.replace("x", " ").replace("X", " ").replace(",", " ").split() if p]
    else:
        parts = list(text)
    try:
        vals = tuple(int(p) for p in parts)
    except (TypeError, ValueError):
        raise AnalysisError(f"Input size must be three whole numbers C H W, got {text!r}") from None
    if len(vals) != 3:
        raise AnalysisError(f"Input size must be three numbers C H W (channels, height, width), got {text!r}")
    return vals  # type: ignore[return-value]


def check_input_size(spec: ArchSpec, size: tuple[int, int, int], options: dict[str, Any] | None = None) -> None:
    """Refuses sizes that cannot work before anything is built (`options`: the architecture's,
    raw or resolved; defaults when None)."""
    c, h, w = size
    if c != spec.input_size[0]:
        raise AnalysisError(f"{spec.title} takes {spec.input_size[0]}-channel input; got {c} channels.")
    if h < 1 or w < 1:
        raise AnalysisError(f"Height and width must be at least 1, got {h}x{w}.")
    if h > MAX_SIDE or w > MAX_SIDE:
        raise AnalysisError(f"{h}x{w} is larger than this tool analyses (at most {MAX_SIDE} pixels on a side).")
    if spec.side_rule is not None:
        opts = spec.resolve_options(options)
        why = spec.side_rule(h, opts) or spec.side_rule(w, opts)
        if why:
            raise AnalysisError(f"{spec.title} cannot take {h}x{w}: {why}.")


def summarize(name: str, input_size: tuple[int, int, int] | list[int] | str | None = None,
              options: dict[str, Any] | None = None) -> Summary:
    """Analyses one architecture at one input size, layer by layer.

    Args:
        name: registry name, e.g. "alexnet", or a timm one, e.g. "timm:inception_v4" (core.archs).
        input_size: (C, H, W) of one image; the architecture's default when None.
        options: architecture options (strings are parsed, unset ones take their defaults).

    Returns:
        A Summary with `.layers` and `.totals`, serialisable with `.to_json()`.

    Raises:
        UnknownArchitectureError, OptionError, AnalysisError (InputTooSmallError): with a
        message meant for the user.
    """
    spec = archs.resolve(name)
    opts = spec.resolve_options(options)
    size = spec.input_size if input_size is None else parse_input_size(input_size)
    check_input_size(spec, size, opts)
    key = (spec.name, tuple(size), tuple(sorted(opts.items())))
    with _KEPT_LOCK:
        kept = _KEPT.get(key)
        if kept is not None:
            _KEPT.move_to_end(key)
    if kept is not None:
        return pickle.loads(kept)
    model = spec.build_meta(opts)
    summary = summarize_module(model, spec.name, spec.title, size, spec.num_inputs, spec.trains_forward(opts), opts)
    with _KEPT_LOCK:
        _KEPT[key] = pickle.dumps(summary)
        while len(_KEPT) > KEEP_SUMMARIES:
            _KEPT.popitem(last=False)
    return summary


# The last summaries computed in this process, pickled: the lecture's notes, the quiz and the CLI ask
# for the same few networks again and again (ResNet-152 takes 0.3 s; a copy from here 4 ms). Each
# caller gets its own copy, free to change. At most KEEP_SUMMARIES (ResNet-152's is about 0.2 MB).
KEEP_SUMMARIES = 64
_KEPT: OrderedDict[tuple, bytes] = OrderedDict()
_KEPT_LOCK = threading.Lock()


def forget_summaries() -> None:
    """Drops the kept summaries: the next `summarize` analyses again (a benchmark times the analysis)."""
    with _KEPT_LOCK:
        _KEPT.clear()


def summarize_module(model: nn.Module, arch: str, title: str, size: tuple[int, int, int], num_inputs: int = 1,
                     train: bool = False, options: dict[str, Any] | None = None) -> Summary:
    """`analyze_model` as a `Summary`, for any model (a registry entry, a timm one, a converted ONNX file,
    a Studio run's network): the one engine behind every view. A failed forward pass becomes an
    AnalysisError that names the layer.

    Args:
        model: the network, best on the meta device; its train/eval mode is restored afterwards.
        arch: what `Summary.arch` says (a registry name, "timm:...", "onnx:...", "run:...").
        title: the display name.
        size: (C, H, W) of one input image.
        num_inputs: images per forward pass.
        train: run the forward pass in training mode.
        options: the options the model was built with, for the record.
    """
    try:
        layers, totals, module_types, warnings = analyze_model(model, size, num_inputs, train)
    except RuntimeError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise AnalysisError(f"{title} cannot run at input {size[0]}x{size[1]}x{size[2]}: "
                            f"{first}") from e
    return Summary(arch=arch, title=title, options=dict(options or {}), input_size=list(size), layers=layers,
                   totals=totals, module_types=module_types, warnings=warnings, train_mode=train)


def analyze_model(model: nn.Module, size: tuple[int, int, int], num_inputs: int = 1,
                  train: bool = False) -> tuple[list[LayerRecord], Totals, dict[str, str], list[str]]:
    """Runs the per-layer analysis on any model (best built on the meta device).

    Args:
        model: the network; its train/eval mode is restored afterwards.
        size: (C, H, W) of one input image.
        num_inputs: how many images the forward pass takes.
        train: run the forward pass in training mode.

    Returns:
        The layer records, the totals, module path -> class name, and warnings.
    """
    ref = next(model.parameters(), torch.empty(0, device="meta"))
    xs = [torch.zeros(1, *size, device=ref.device, dtype=ref.dtype) for _ in range(num_inputs)]
    tracker = RFTracker()
    for x in xs:
        tracker.track(x, RF.input())
    was_training = model.training
    model.train(train)
    rec = _Recorder(model, tracker)
    try:
        with torch.no_grad(), tracker:
            model(*xs)
    except RuntimeError as e:
        raise RuntimeError(f"the forward pass failed at layer {rec.current}: {e}") from e
    finally:
        rec.remove()
        model.train(was_training)
    layers = rec.records
    all_params = {id(p): p for p in model.parameters()}
    total = sum(p.numel() for p in all_params.values())
    own = sum(p.numel() for p in model.parameters(recurse=False))   # the root's own: no layer holds them
    warnings = []
    if tracker.unknown_ops:
        warnings.append("Receptive field not tracked through: " + ", ".join(sorted(tracker.unknown_ops)))
    totals = Totals(
        params=total,
        trainable_params=sum(p.numel() for p in all_params.values() if p.requires_grad),
        frozen_params=sum(p.numel() for p in all_params.values() if not p.requires_grad),
        unused_params=total - own - sum(r.params for r in layers),
        buffer_elems=sum(b.numel() for b in model.buffers() if b.is_floating_point()),
        bn_stat_elems=sum(m.running_mean.numel() + m.running_var.numel() for m in model.modules()
                          if isinstance(m, nn.modules.batchnorm._NormBase) and m.running_mean is not None),
        macs=sum(r.macs for r in layers),
        activation_elems=sum(r.activation_elems for r in layers),
        input_elems=sum(x[0].numel() for x in xs),
    )
    if totals.unused_params:
        warnings.append(f"{totals.unused_params:,} parameters belong to layers this forward pass does not run.")
    if own:
        warnings.append(f"{own:,} parameters belong to the network itself, not to one of its layers (e.g. a "
                        "Vision Transformer's position embedding and class token): the layers' parameters add up "
                        "to the total less these.")
    if totals.forward_bytes > WARN_ACTIVATION_BYTES:
        warnings.append(f"At this input size one image needs {fmt_bytes(totals.forward_bytes)} of activations.")
    return layers, totals, {n: type(m).__name__ for n, m in model.named_modules() if n}, warnings
