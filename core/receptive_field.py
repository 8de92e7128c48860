"""Receptive-field bookkeeping for every tensor of a forward pass.

Each tensor produced while `RFTracker` is active gets an `RF` record: the size of the window of
input pixels that one of its units sees (`rf`), how many input pixels apart two neighbouring
units are (`jump`), and where the centre of its first unit sits in input pixel coordinates
(`start`). The arithmetic is Araujo, Norris & Sim, "Computing Receptive Fields of Convolutional
Neural Networks" (Distill, 2019), unclipped, so it may exceed the input size:

    k_eff = d * (k - 1) + 1
    rf_out = rf_in + (k_eff - 1) * jump_in
    jump_out = jump_in * s
    start_out = start_in + ((k_eff - 1) / 2 - p) * jump_in

Where paths meet (concatenation, residual addition, any element-wise op) the result takes the
largest receptive field over its inputs. Tracking happens at the level of torch functions, so
the functional `torch.cat` of torchvision's GoogLeNet and the `out += identity` of its ResNet
are seen as well as modules.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

Pair = tuple[float, float]


@dataclass(frozen=True)
class RF:
    """Receptive field of the units of one tensor, per spatial axis (height, width).

    Attributes:
        rf: receptive field size in input pixels.
        jump: distance in input pixels between neighbouring units (cumulative stride).
        start: centre of the first unit's receptive field, in input pixel coordinates.
        whole: True once a layer mixed every position (flatten before an FC layer, global
            pooling): each unit then sees the whole input, whatever `rf` says.
    """

    rf: Pair
    jump: Pair
    start: Pair
    whole: bool = False

    @staticmethod
    def input() -> "RF":
        """The receptive field of the input image itself: one pixel."""
        return RF((1.0, 1.0), (1.0, 1.0), (0.0, 0.0))

    def window(self, k: Pair, s: Pair, p: Pair, d: Pair = (1.0, 1.0)) -> "RF":
        """After a sliding window of kernel k, stride s, padding p and dilation d."""
        k_eff = [dd * (kk - 1) + 1 for kk, dd in zip(k, d)]
        return RF(
            tuple(r + (ke - 1) * j for r, ke, j in zip(self.rf, k_eff, self.jump)),
            tuple(j * ss for j, ss in zip(self.jump, s)),
            tuple(st + ((ke - 1) / 2 - pp) * j for st, ke, pp, j in zip(self.start, k_eff, p, self.jump)),
            self.whole,
        )

    def transposed(self, k: Pair, s: Pair, p: Pair) -> "RF":
        """After a transposed convolution: an output unit sees at most ceil(k / s) neighbouring
        input units, which are jump_in apart; output units are jump_in / s apart."""
        n = [math.ceil(kk / ss) for kk, ss in zip(k, s)]
        return RF(
            tuple(r + (nn - 1) * j for r, nn, j in zip(self.rf, n, self.jump)),
            tuple(j / ss for j, ss in zip(self.jump, s)),
            tuple(st - pp * j / ss for st, pp, j, ss in zip(self.start, p, self.jump, s)),
            self.whole,
        )

    def global_(self, size: Pair) -> "RF":
        """After mixing all positions of a size[0] x size[1] map (flatten, global pooling)."""
        return RF(
            tuple(r + (n - 1) * j for r, n, j in zip(self.rf, size, self.jump)),
            tuple(j * n for j, n in zip(self.jump, size)),
            tuple(st + (n - 1) / 2 * j for st, n, j in zip(self.start, size, self.jump)),
            True,
        )


def merge(rfs: list[RF], aligned: list[RF] | None = None) -> RF:
    """Where paths meet, a unit sees the union of what its inputs see: the largest field.

    Args:
        rfs: records of every input.
        aligned: records of the inputs laid out like the output (same spatial size); jump and
            start come from these. A broadcast input such as squeeze-and-excitation's 1x1 scale
            adds its field but not its grid. Defaults to `rfs`.
    """
    grid = max(aligned or rfs, key=lambda r: r.rf[0] * r.rf[1])
    best = max(rfs, key=lambda r: (r.rf[0] * r.rf[1], r.whole))
    return RF(best.rf, grid.jump, grid.start, any(r.whole for r in rfs))


def _pair(v: Any) -> Pair:
    if isinstance(v, (tuple, list)):
        return (float(v[0]), float(v[-1]))
    return (float(v), float(v))


def _tensors(obj: Any) -> list[torch.Tensor]:
    """The tensors in a torch function's arguments or result: the tensor itself or inside
    (nested) tuples, lists and dicts. A lighter `tree_leaves` for the thousands of calls of one
    forward pass."""
    if isinstance(obj, torch.Tensor):
        return [obj]
    if isinstance(obj, (tuple, list)):
        return [t for o in obj for t in _tensors(o)]
    if isinstance(obj, dict):
        return [t for o in obj.values() for t in _tensors(o)]
    return []


def _arg(args: tuple, kwargs: dict, i: int, name: str, default: Any) -> Any:
    if len(args) > i:
        return args[i]
    return kwargs.get(name, default)


def _spatial(t: torch.Tensor) -> Pair | None:
    """(H, W) of an (N, C, H, W) tensor, or of a view that splits channels (N, G, C/G, H, W) as
    ShuffleNet's channel shuffle does; None for vectors and sequences."""
    return (float(t.shape[-2]), float(t.shape[-1])) if t.dim() >= 4 else None


def _adaptive(inp: torch.Tensor, out: torch.Tensor) -> tuple[Pair, Pair]:
    """Largest window and average stride of an adaptive pooling from inp's to out's size.
    PyTorch's window i spans [floor(i*H/o), ceil((i+1)*H/o))."""
    ks, ss = [], []
    for h, o in zip(inp.shape[-2:], out.shape[-2:]):
        ks.append(max(math.ceil((i + 1) * h / o) - math.floor(i * h / o) for i in range(o)))
        ss.append(h / o)
    return (float(ks[0]), float(ks[1])), (ss[0], ss[1])


def _funcs(*names: str) -> frozenset:
    """The torch and torch.nn.functional callables of these names that exist in this version."""
    found = (getattr(mod, n, None) for mod in (F, torch, torch._C._nn) for n in names)
    return frozenset(f for f in found if f is not None)


_CONV = _funcs("conv2d")
_TCONV = _funcs("conv_transpose2d")
_MAXPOOL = _funcs("max_pool2d")
_POOL = _MAXPOOL | _funcs("avg_pool2d")
_ADAPTIVE = _funcs("adaptive_avg_pool2d", "adaptive_max_pool2d")


# Shape-preserving functions whose meta-device kernels run slowly in Python (decomposed into
# prims); on the meta device only their output shape matters, which is their input's. The value
# is the position of their `inplace` argument (None: never in place).
_SHAPE_PRESERVING_INPLACE_ARG = {"hardtanh": 3, "relu6": 1, "hardswish": 1, "hardsigmoid": 1,
                                 "silu": 1, "gelu": None, "batch_norm": None}
_SHAPE_PRESERVING = {f: pos for name, pos in _SHAPE_PRESERVING_INPLACE_ARG.items() for f in _funcs(name)}


_RNN = _funcs("lstm", "gru")


def _rnn_shapes(func: Callable, args: tuple) -> tuple[torch.Tensor, ...] | None:
    """torch.lstm / torch.gru on meta tensors, shapes only: on the meta device their kernels run as
    Python decompositions, step by step (timm's Sequencer2D took 20 s for one forward pass). The
    padded-batch overload only: (input, hx, params, has_biases, layers, dropout, train, bidirectional,
    batch_first); None for anything else."""
    if len(args) < 9 or not isinstance(args[1], (tuple, list)) or not isinstance(args[8], bool):
        return None
    x, hx, batch_first = args[0], list(args[1]), args[8]
    if not (isinstance(x, torch.Tensor) and x.is_meta and x.dim() == 3 and hx and all(h.is_meta for h in hx)):
        return None
    h = hx[0]                                        # (layers x directions, N, H_out)
    directions = 2 if args[7] else 1
    n, seq = (x.shape[0], x.shape[1]) if batch_first else (x.shape[1], x.shape[0])
    out_shape = (n, seq, directions * h.shape[-1]) if batch_first else (seq, n, directions * h.shape[-1])
    out = torch.empty(out_shape, dtype=x.dtype, device=x.device)
    return (out, *(torch.empty(t.shape, dtype=t.dtype, device=t.device) for t in hx))


# Out-of-place element-wise arithmetic: on the meta device each call runs a Python reference
# implementation (broadcasting and type promotion in Python, ~1 ms); a transformer makes thousands.
_BINARY = frozenset({"add", "sub", "mul", "div", "__add__", "__radd__", "__sub__", "__rsub__", "__mul__", "__rmul__",
                     "__truediv__", "__rtruediv__"})


def _binary_shape(name: str, args: tuple, kwargs: dict) -> torch.Tensor | None:
    """a (op) b for meta tensors (or a meta tensor and a number), shape and dtype only (true division of
    whole numbers gives floats)."""
    if len(args) != 2 or set(kwargs) - {"alpha"} or kwargs.get("alpha", 1) is not None and \
            not isinstance(kwargs.get("alpha", 1), (int, float)):
        return None
    a, b = args
    ts = [t for t in (a, b) if isinstance(t, torch.Tensor)]
    if not ts or not all(t.is_meta for t in ts) or any(not isinstance(t, (torch.Tensor, int, float)) for t in (a, b)):
        return None
    shape = torch.broadcast_shapes(*(t.shape for t in ts))
    dtype = torch.result_type(a, b)
    if "div" in name and not (dtype.is_floating_point or dtype.is_complex):
        dtype = torch.get_default_dtype()
    return torch.empty(shape, dtype=dtype, device="meta")


def _shape_only(func: Callable, args: tuple, kwargs: dict) -> Any:
    """Result of a shape-preserving function (or a recurrent layer, or element-wise arithmetic) on a meta
    tensor without running its kernel."""
    if func in _RNN:
        return _rnn_shapes(func, args)
    name = getattr(func, "__name__", None)
    if name in _BINARY:
        return _binary_shape(name, args, kwargs)
    if func not in _SHAPE_PRESERVING or not args or not isinstance(args[0], torch.Tensor) or not args[0].is_meta:
        return None
    pos = _SHAPE_PRESERVING[func]
    inplace = kwargs.get("inplace", False) or (pos is not None and len(args) > pos and args[pos] is True)
    x = args[0]
    # torch.empty, not empty_like: on the meta device empty_like runs a Python reference
    # implementation (about 1 ms per call the first time round), empty a C++ kernel.
    return x if inplace else torch.empty(x.shape, dtype=x.dtype, device=x.device)


class RFTracker(TorchFunctionMode):
    """Propagates `RF` records through every torch function call made while it is active.

    Use as a context manager; seed it with `track(input_tensor, RF.input())`, then look up any
    tensor's record with `get`. Tensors are kept alive until the tracker is dropped, so ids
    cannot be reused (on the meta device they cost no memory).
    """

    def __init__(self) -> None:
        super().__init__()
        self._info: dict[int, RF] = {}
        self._alive: list[torch.Tensor] = []
        self.unknown_ops: set[str] = set()
        self.paused = False  # set while hooks do their own bookkeeping with tensor calls

    def track(self, t: torch.Tensor, rf: RF) -> None:
        """Attaches a record to a tensor."""
        self._info[id(t)] = rf
        self._alive.append(t)

    def get(self, t: Any) -> RF | None:
        """The record of a tensor, or None for tensors the input does not flow into."""
        return self._info.get(id(t)) if isinstance(t, torch.Tensor) else None

    def __torch_function__(self, func: Callable, types: tuple, args: tuple = (), kwargs: dict | None = None):
        kwargs = kwargs or {}
        out = _shape_only(func, args, kwargs)
        if out is None:
            out = func(*args, **kwargs)
        if self.paused:
            return out
        outs = _tensors(out)
        if not outs:
            return out
        ins = [t for t in _tensors((args, kwargs)) if id(t) in self._info]
        if not ins:
            return out
        rf = self._rule(func, args, kwargs, ins, outs[0])
        for t in outs:
            self.track(t, rf)
        return out

    def _rule(self, func: Callable, args: tuple, kwargs: dict, ins: list[torch.Tensor],
              out: torch.Tensor) -> RF:
        first = self._info[id(ins[0])]
        x = args[0] if args and isinstance(args[0], torch.Tensor) else ins[0]
        name = getattr(func, "__name__", str(func))
        if func in _CONV:
            w = _arg(args, kwargs, 1, "weight", None)
            k = (float(w.shape[-2]), float(w.shape[-1]))
            d = _pair(_arg(args, kwargs, 5, "dilation", 1))
            pad = _arg(args, kwargs, 4, "padding", 0)
            if isinstance(pad, str):   # "same": d(k - 1) in all, the smaller half first; "valid": none
                pad = tuple(0.0 if pad == "valid" else float(int(dd * (kk - 1)) // 2) for kk, dd in zip(k, d))
            return first.window(k, _pair(_arg(args, kwargs, 3, "stride", 1)), _pair(pad), d)
        if func in _TCONV:
            w = _arg(args, kwargs, 1, "weight", None)
            k = (float(w.shape[-2]), float(w.shape[-1]))
            return first.transposed(k, _pair(_arg(args, kwargs, 3, "stride", 1)),
                                    _pair(_arg(args, kwargs, 4, "padding", 0)))
        if func in _POOL:
            k = _pair(_arg(args, kwargs, 1, "kernel_size", None))
            s = _arg(args, kwargs, 2, "stride", None)
            s = k if s is None or s == [] or s == () else _pair(s)
            d = _pair(_arg(args, kwargs, 4, "dilation", 1)) if func in _MAXPOOL else (1.0, 1.0)
            return first.window(k, s, _pair(_arg(args, kwargs, 3, "padding", 0)), d)
        if func in _ADAPTIVE:
            if tuple(x.shape[-2:]) == tuple(out.shape[-2:]):
                return first
            if tuple(out.shape[-2:]) == (1, 1):
                return first.global_(_spatial(x))
            k, s = _adaptive(x, out)
            return first.window(k, s, (0.0, 0.0))
        if name == "narrow" and x.dim() >= 2:
            # A crop (U-Net's crop-and-copy): the field is unchanged, the grid starts `start` units in.
            dim = _arg(args, kwargs, 1, "dim", 0) % x.dim()
            start = float(_arg(args, kwargs, 2, "start", 0))
            if dim == x.dim() - 2:
                return first.window((1.0, 1.0), (1.0, 1.0), (-start, 0.0))
            if dim == x.dim() - 1:
                return first.window((1.0, 1.0), (1.0, 1.0), (0.0, -start))
        sx, so = _spatial(x), _spatial(out)
        if sx is not None and name in {"mean", "sum", "amax"} and so in (None, (1.0, 1.0)):
            return first.global_(sx)  # x.mean((2, 3)): global average pooling written as a call
        if sx is not None and so is None:
            # A 4-D map became a vector (flatten, view, reshape): what follows mixes all positions.
            return first.global_(sx)
        aligned = [self._info[id(t)] for t in ins if t.shape[-2:] == out.shape[-2:]]
        if so is not None and not aligned:
            self.unknown_ops.add(name)
        return merge([self._info[id(t)] for t in ins], aligned)
