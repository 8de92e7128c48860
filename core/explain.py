"""Worked arithmetic for one layer, written the way the slides do it.

"CONV1: 96 filters 11x11, stride 4, pad 0 -> (227 - 11 + 2×0)/4 + 1 = 55 -> 55x55x96;
parameters 11*11*3*96 + 96 = 34,944". Every number comes from a `LayerRecord` (or, for the
few hyper-parameters a record does not keep, such as a dropout's p, from the module itself);
this module only arranges them. Every "a×b×c = N" it writes is an equation that holds: a test
renders every card of every architecture and evaluates them.

Also the quiz (which layers and questions, how answers are checked), the receptive field as a
student should read it (`field_of_view`), the variant notes of an architecture, and which of
the engine's warnings a page should show.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from torch import nn

from core import registry
from core.analysis import LayerRecord, Summary
from core.formatting import fmt_bytes, fmt_int, fmt_num, fmt_shape, plural_units
from core.notes import notes_of
from core.spec import UnknownArchitectureError

if TYPE_CHECKING:
    from core.analysis import Block

CONV_TYPES = {"Conv1d", "Conv2d", "Conv3d"}
TCONV_TYPES = {"ConvTranspose2d"}
POOL_TYPES = {"MaxPool2d", "AvgPool2d"}
ADAPTIVE_TYPES = {"AdaptiveAvgPool2d", "AdaptiveMaxPool2d"}
NORM_TYPES = {"BatchNorm2d", "BatchNorm1d"}
ACT_TYPES = {"ReLU", "ReLU6", "Tanh", "Sigmoid", "Hardswish", "Hardsigmoid", "SiLU", "GELU"}
RESHAPE_TYPES = {"Flatten", "Unflatten"}   # reorder values, compute nothing, mix nothing


def _times(dims: list[int] | tuple[int, ...]) -> str:
    """'55×55×96' (with thousands separators inside factors: '9,216×4,096')."""
    return "×".join(fmt_int(d) for d in dims)


def _hwc(shape: list[int]) -> list[int]:
    """(C, H, W) -> [H, W, C], the slides' order; vectors unchanged."""
    return [shape[1], shape[2], shape[0]] if len(shape) == 3 else list(shape)


def _shape_text(shape: list[int]) -> str:
    """'55x55x96' for a map, '4,096 values' (or '1 value') for a vector."""
    if len(shape) == 1:
        return plural_units(shape[0], "value")
    return fmt_shape(shape)


# ---------------------------------------------------------------------------------------------
# The receptive field as a student should read it


@dataclass(frozen=True)
class FieldOfView:
    """What one output value of a layer sees of the input image.

    Attributes:
        whole: it depends on every input pixel (a fully connected layer or a global pooling
            mixed all positions, here or before).
        pixels: the unclipped receptive field in input pixels; None when `whole`.
        jump: input pixels between neighbouring outputs; None when `whole`.
    """

    whole: bool
    pixels: int | None
    jump: float | None

    def label(self) -> str:
        """'11' or 'whole input', for a table column."""
        return "whole input" if self.whole else fmt_int(self.pixels)


def _producer(summary: Summary, index: int) -> LayerRecord | None:
    """The record whose output is layer `index`'s input: the nearest earlier one with the same
    shape, field and jump; else (a functional reshape in between) the nearest with as many values."""
    r = summary.layers[index]
    earlier = summary.layers[:index]
    for p in reversed(earlier):
        if p.output_shape == r.input_shape and p.rf == round(r.rf_in) and p.jump == r.jump_in:
            return p
    n = math.prod(r.input_shape)
    return next((p for p in reversed(earlier) if math.prod(p.output_shape) == n), None)


def _sees_whole(summary: Summary, index: int) -> bool:
    """Whether layer `index`'s output depends on the whole input. The engine marks a flatten
    as mixing all positions (what follows it does); here a reshape passes on what its input sees."""
    r = summary.layers[index]
    if r.type in RESHAPE_TYPES:
        p = _producer(summary, index)
        return _sees_whole(summary, p.index) if p is not None else r.whole_input
    return r.whole_input


def _mixes(summary: Summary, index: int) -> bool:
    """Whether layer `index` is where all positions meet: it sees the whole input and its input
    does not."""
    if summary.layers[index].type in RESHAPE_TYPES or not _sees_whole(summary, index):
        return False
    p = _producer(summary, index)
    return p is None or not _sees_whole(summary, p.index)


def field_of_view(summary: Summary, index: int) -> FieldOfView:
    """The receptive field of layer `index` as the cards and tables state it: a number of
    pixels, or the whole input (after which growing numbers would mean nothing)."""
    r = summary.layers[index]
    if _sees_whole(summary, index):
        return FieldOfView(True, None, None)
    if r.type in RESHAPE_TYPES:
        return FieldOfView(False, int(round(r.rf_in)), r.jump_in)
    return FieldOfView(False, r.rf, r.jump)


def fields_of_view(summary: Summary) -> list[FieldOfView]:
    """`field_of_view` for every layer, in order."""
    return [field_of_view(summary, i) for i in range(len(summary.layers))]


def block_fields(summary: Summary, blocks: list[Block]) -> list[FieldOfView]:
    """The field of view of each block of `summary.blocks(depth)`: that of its last layer."""
    fovs, out, last = fields_of_view(summary), [], -1
    for b in blocks:
        last += b.layers
        out.append(fovs[last])
    return out


def _vector_origin(summary: Summary, index: int) -> tuple[LayerRecord | None, list[str], bool]:
    """Where layer `index`'s input values were made: walks back over reshapes and over layers
    that pass values on one by one (activations, dropout).

    Returns:
        The record that made them (None if no record did), the names of the pass-through layers
        on the way (in forward order), and whether a pooling written as a function call (no layer
        of its own, e.g. MobileNet v2's) sits between that record, a map, and this layer.
    """
    r = summary.layers[index]
    p, passed = _producer(summary, index), []
    while p is not None and (p.type in RESHAPE_TYPES or (p.type in ACT_TYPES | {"Dropout"}
                                                           and p.output_shape == p.input_shape
                                                           and len(p.output_shape) == 1)):
        if p.type not in RESHAPE_TYPES:
            passed.append(p.name)
        p = _producer(summary, p.index)
    if p is None:  # no record holds these values: look for the map a functional pooling reduced
        n = math.prod(r.input_shape)
        p = next((q for q in reversed(summary.layers[:index]) if len(q.output_shape) == 3
                  and q.output_shape[0] == n and q.output_shape[1] * q.output_shape[2] > 1), None)
        return p, list(reversed(passed)), p is not None
    return p, list(reversed(passed)), False


def _spatial_source(summary: Summary, index: int) -> LayerRecord | None:
    """For a fully connected layer: the last map (C, H, W) its input vector was made from."""
    p, _, _ = _vector_origin(summary, index)
    return p if p is not None and len(p.output_shape) == 3 else None


def _mixing_text(summary: Summary, index: int) -> str:
    """How layer `index` makes every value depend on the whole input, with the span of the
    fields it combines: r + (n - 1)×j."""
    r = summary.layers[index]
    if r.type in ADAPTIVE_TYPES | POOL_TYPES:
        rf, jump, hw, what = r.rf_in, r.jump_in, r.input_shape[1:], "of its input"
        verb = "each output averages" if "Avg" in r.type else "each output takes the maximum over"
    else:
        src, _, functional = _vector_origin(summary, index)
        if src is None or len(src.output_shape) != 3:
            return "the whole input: all positions were mixed before this layer"
        rf, jump, hw, what = src.rf, src.jump, src.output_shape[1:], f"of {src.name}'s output"
        verb = ("a pooling written as a function call (no layer of its own) combined"
                if functional else "each output is connected to")
    n = max(hw)
    if n == 1:
        return f"the whole input: each value already saw it ({plural_units(rf, 'pixel')})"
    span = rf + (n - 1) * jump
    size = max(summary.input_size[1:])
    mixed = f"{verb} all {hw[0]}x{hw[1]} positions {what}"
    if span != r.rf:  # a non-square map: the engine's per-axis value is the one to trust
        return f"the whole input: {mixed}"
    arithmetic = (f"whose {fmt_num(rf)}-pixel fields, {fmt_num(jump)} pixels apart, span {fmt_num(rf)} + "
                  f"({n} - 1)×{fmt_num(jump)} = {fmt_num(span)} pixels unclipped")
    if span >= size:
        return (f"the whole input: {mixed}, {arithmetic}, "
                + (f"more than the {size}-pixel input" if span > size else f"exactly the {size}-pixel input"))
    return (f"everything that reaches this layer: {mixed}, {arithmetic}, of the {size}-pixel input (rounding "
            "down in the layers before dropped the last rows and columns)")


def _rf_step(summary: Summary, index: int) -> str:
    """'r = r_in + (k - 1)×j_in = 1 + (11 - 1)×1 = 11 pixels; jump ...' for a sliding window;
    a sentence otherwise."""
    r = summary.layers[index]
    fov = field_of_view(summary, index)
    if fov.whole:
        if _mixes(summary, index):
            return _mixing_text(summary, index)
        mixer = next((p for p in reversed(summary.layers[:index]) if _mixes(summary, p.index)), None)
        why = f" ({mixer.name} mixed all positions)" if mixer is not None else ""
        return f"the whole input: every value here already depends on every input pixel{why}"
    if r.type in RESHAPE_TYPES:
        return (f"unchanged: {plural_units(fov.pixels, 'pixel')}, jump {fmt_num(r.jump_in)}. Reshaping only lines the "
                "values up; it mixes nothing (the layer that uses all of them does)")
    if r.kernel and r.type in CONV_TYPES | POOL_TYPES:
        k, s = r.kernel[0], r.stride[0]
        d = (r.dilation or [1])[0]
        k_txt = f"{k}" if d == 1 else f"{d}×({k} - 1) + 1"
        return (f"r = r_in + (k - 1)×j_in = {fmt_num(r.rf_in)} + ({k_txt} - 1)×{fmt_num(r.jump_in)} = "
                f"{plural_units(r.rf, 'pixel')}; jump j = j_in×s = {fmt_num(r.jump_in)}×{s} = {fmt_num(r.jump)}")
    if r.kernel and r.type in TCONV_TYPES:
        k, s = r.kernel[0], r.stride[0]
        return (f"r = r_in + (⌈k/s⌉ - 1)×j_in = {fmt_num(r.rf_in)} + (⌈{k}/{s}⌉ - 1)×{fmt_num(r.jump_in)} = "
                f"{plural_units(r.rf, 'pixel')} (an output sees at most ⌈k/s⌉ neighbouring inputs); "
                f"jump j = j_in/s = {fmt_num(r.jump_in)}/{s} = {fmt_num(r.jump)}")
    if r.type in ADAPTIVE_TYPES and r.input_shape[1:] != r.output_shape[1:]:
        h, o = r.input_shape[1], r.output_shape[1]
        k = max(math.ceil((i + 1) * h / o) - math.floor(i * h / o) for i in range(o))
        return (f"r = r_in + (k_max - 1)×j_in = {fmt_num(r.rf_in)} + ({k} - 1)×{fmt_num(r.jump_in)} = "
                f"{plural_units(r.rf, 'pixel')} (the widest of its windows has {k} cells); "
                f"jump j = j_in×{h}/{o} = {fmt_num(r.jump_in)}×{h}/{o} = {fmt_num(r.jump)}")
    if r.rf != round(r.rf_in):
        return f"{plural_units(r.rf, 'pixel')} (the largest over the paths that meet here); jump {fmt_num(r.jump)}"
    return (f"unchanged: {plural_units(r.rf, 'pixel')}, jump {fmt_num(r.jump)} (this layer looks at one position "
            "at a time)")


# ---------------------------------------------------------------------------------------------
# The card


@dataclass
class Step:
    """One line of the card: what is computed, the arithmetic, and the result."""

    label: str
    text: str


def card_markdown(steps: list[Step]) -> str:
    """A card's steps as the Markdown list the explorer and the lecture path show."""
    return "\n".join(f"- **{s.label}:** {s.text}" for s in steps)


def _size_step(n: int, k: int, s: int, p: int, d: int, out: int, ceil: bool = False,
               show_pad: bool = True) -> str:
    """'(227 - 11 + 2×0)/4 + 1 = 55', with floor or ceil brackets when the division is inexact.
    The slides leave '+ 2×0' out for pooling (show_pad=False)."""
    k_eff = d * (k - 1) + 1
    kpart = f"{k}" if d == 1 else f"({d}×({k} - 1) + 1)"
    num = n + 2 * p - k_eff
    pad = f" + 2×{p}" if show_pad or p else ""
    frac = f"({n} - {kpart}{pad})/{s}"
    if num % s == 0 or s == 1:
        return f"{frac} + 1 = {out}"
    bracket = ("⌈", "⌉") if ceil else ("⌊", "⌋")
    return f"{bracket[0]}{frac}{bracket[1]} + 1 = {bracket[0]}{num / s:g}{bracket[1]} + 1 = {out}"


def _window_sizes(r: LayerRecord, show_pad: bool) -> str:
    """The output-size arithmetic of a conv or pool, for each axis where they differ."""
    d = r.dilation or [1, 1]
    axes = [_size_step(r.input_shape[1 + a], r.kernel[a], r.stride[a], r.padding[a], d[a],
                       r.output_shape[1 + a], bool(r.ceil_mode), show_pad) for a in (0, 1)]
    if axes[0] == axes[1]:
        return axes[0]
    return f"height {axes[0]}; width {axes[1]}"


def _memory_step(r: LayerRecord) -> str:
    if r.inplace:
        return (f"{_shape_text(r.output_shape)}, but no new memory: this layer works in place "
                "or returns a view of its input")
    if len(r.output_shape) == 1:
        values = plural_units(r.activation_elems, "value")
    else:
        values = f"{_times(_hwc(r.output_shape))} = {fmt_int(r.activation_elems)} values"
    return f"{values} × 4 bytes = {fmt_bytes(r.activation_bytes)} (fp32)"


def _module(summary: Summary, path: str) -> nn.Module | None:
    """The module behind a record, for a hyper-parameter the record does not keep (a dropout's
    p): the architecture rebuilt on the meta device. None for a model outside the registry."""
    try:
        spec = registry.get(summary.arch)
    except UnknownArchitectureError:
        return None
    model = spec.build_meta(summary.options)
    try:
        return model.get_submodule(path)
    except AttributeError:
        return None


def _fc_input(summary: Summary, index: int) -> str:
    """Where a fully connected layer's input vector comes from, with the real chain of shapes:
    '6x6x256 (the output of pool3), flattened: 6×6×256 = 9,216 values', '7x7x2048 -> avgpool
    (global average) -> 1x1x2048, flattened: 1×1×2048 = 2,048 values', or '4,096 values: the
    output of fc6 (after relu6, drop6)'."""
    r = summary.layers[index]
    d_in = r.input_shape[-1]
    src, passed, functional = _vector_origin(summary, index)
    then = f", then {', '.join(passed)}" if passed else ""
    if src is None:
        return f"**{fmt_int(d_in)}** values"
    if len(src.output_shape) != 3:
        after = f" (after {', '.join(passed)})" if passed else ""
        return f"**{fmt_int(d_in)}** values: the output of {src.name}{after}"
    if functional:
        return (f"{fmt_shape(src.output_shape)} (the output of {src.name}) -> pooled to 1x1x{src.output_shape[0]} by "
                f"a function call in the model's forward (no layer of its own) -> flattened: "
                f"1×1×{fmt_int(d_in)} = **{fmt_int(d_in)}** values in one vector{then}")
    flat = f"flattened: {_times(_hwc(src.output_shape))} = **{fmt_int(d_in)}** values in one vector{then}"
    if src.type in ADAPTIVE_TYPES:
        before, after = fmt_shape(src.input_shape), fmt_shape(src.output_shape)
        if src.input_shape == src.output_shape:
            return (f"{after} ({src.name}, an adaptive average pool to {src.output_shape[1]}x"
                    f"{src.output_shape[2]}, leaves it unchanged at this input size), {flat}")
        how = ("global average: each map becomes one number" if src.output_shape[1:] == [1, 1]
               else f"adaptive average to {src.output_shape[1]}x{src.output_shape[2]}")
        return f"{before} -> {src.name} ({how}) -> {after}, {flat}"
    return f"{fmt_shape(src.output_shape)} (the output of {src.name}), {flat}"


def layer_card(summary: Summary, index: int) -> tuple[str, list[Step]]:
    """Title and worked steps for layer `index` of `summary`."""
    r = summary.layers[index]
    steps: list[Step] = []
    out = fmt_shape(r.output_shape)
    t = r.type
    title = f"{r.name} ({t})"
    shared = " (the same weights as the first call: the total counts them once)" if r.shared else ""
    nxt = summary.layers[index + 1] if index + 1 < len(summary.layers) else None
    if t in CONV_TYPES:
        c_in, c_out = r.input_shape[0], r.output_shape[0]
        s, p, d, g = r.stride[0], r.padding[0], (r.dilation or [1])[0], r.groups or 1
        kind = "depthwise " if g == c_in and g > 1 else (f"grouped ({g} groups) " if g > 1 else "")
        title = (f"{r.name}: {c_out} {kind}filters {r.kernel[0]}x{r.kernel[1]}, stride {s}, pad {p}"
                 + (f", dilation {d}" if d > 1 else ""))
        steps.append(Step("Output size", f"{_window_sizes(r, True)} -> **{out}**"))
        per_filter = [r.kernel[0], r.kernel[1], c_in // g]
        weights = math.prod(per_filter) * c_out
        no_bias = ""
        if not r.bias:
            no_bias = (" (no bias: the BatchNorm after it has one)" if nxt is not None and nxt.type in NORM_TYPES
                       else " (no bias)")
        steps.append(Step("Parameters", f"{_times(per_filter)}×{c_out}" + (f" + {c_out}" if r.bias else "")
                          + f" = **{fmt_int(weights + (c_out if r.bias else 0))}**" + no_bias
                          + (f" (each filter sees {c_in // g} of the {c_in} input channels)" if g > 1 else "")
                          + shared))
        steps.append(Step("MACs", f"{_times(_hwc(r.output_shape))} outputs × {_times(per_filter)} weights each: "
                                  f"{_times(_hwc(r.output_shape))}×{_times(per_filter)} = **{fmt_int(r.macs)}** "
                                  f"multiply-accumulates (FLOPs = 2 × MACs = {fmt_int(r.flops)})"))
    elif t in TCONV_TYPES:
        k, s, p, op = r.kernel[0], r.stride[0], r.padding[0], (r.output_padding or [0])[0]
        g = r.groups or 1
        c_in, c_out = r.input_shape[0], r.output_shape[0]
        title = f"{r.name}: {c_out} transposed filters {k}x{r.kernel[1]}, stride {s}, pad {p}"
        n = r.input_shape[1]
        steps.append(Step("Output size", f"({n} - 1)×{s} - 2×{p} + {k} + {op} = {r.output_shape[1]} -> **{out}**"))
        per_input = [r.kernel[0], r.kernel[1], c_out // g]
        weights = math.prod(per_input) * c_in
        steps.append(Step("Parameters", f"{_times(per_input)}×{c_in}" + (f" + {c_out}" if r.bias else "")
                          + f" = **{fmt_int(weights + (c_out if r.bias else 0))}**" + shared))
        steps.append(Step("MACs", f"{_times(_hwc(r.input_shape))} inputs, each added into {_times(per_input)} "
                                  f"outputs: {_times(_hwc(r.input_shape))}×{_times(per_input)} = "
                                  f"**{fmt_int(r.macs)}** multiply-accumulates"))
    elif t in POOL_TYPES:
        k, s, p = r.kernel[0], r.stride[0], r.padding[0]
        what = "max" if t.startswith("Max") else "average"
        title = f"{r.name}: {r.kernel[0]}x{r.kernel[1]} {what} pooling, stride {s}" + (f", pad {p}" if p else "")
        steps.append(Step("Output size", f"{_window_sizes(r, False)} -> **{out}** (the depth stays "
                                         f"{r.output_shape[0]})"))
        steps.append(Step("Parameters", f"**0**: pooling takes the {what} of each {r.kernel[0]}x{r.kernel[1]} "
                                        "window; there is nothing to learn"))
    elif t == "Linear":
        d_in, d_out = r.input_shape[-1], r.output_shape[-1]
        title = f"{r.name}: fully connected, {plural_units(d_out, 'neuron')}"
        if len(r.input_shape) == 1:
            steps.append(Step("Input", _fc_input(summary, index)))
        weights = d_in * d_out
        steps.append(Step("Parameters", f"{fmt_int(d_in)}×{fmt_int(d_out)}" + (f" + {fmt_int(d_out)}" if r.bias else "")
                          + f" = **{fmt_int(weights + (d_out if r.bias else 0))}**"
                          + (f" ({fmt_int(d_in)}×{fmt_int(d_out)} = {plural_units(weights, 'weight')} and "
                             f"{plural_units(d_out, 'bias')})" if r.bias else " (no biases)") + shared))
        positions = math.prod(r.input_shape[:-1])
        steps.append(Step("MACs", (f"{fmt_int(d_in)}×{fmt_int(d_out)}" if positions == 1 else
                                   f"{fmt_int(positions)} positions × {fmt_int(d_in)}×{fmt_int(d_out)}: "
                                   f"{fmt_int(positions)}×{fmt_int(d_in)}×{fmt_int(d_out)}")
                          + f" = **{fmt_int(r.macs)}** (one per weight{'' if positions == 1 else ' and position'})"))
    elif t == "Flatten":
        steps.append(Step("Reshape", f"{fmt_shape(r.input_shape)} -> one vector of {_times(_hwc(r.input_shape))} = "
                                     f"**{fmt_int(r.output_shape[0])}** values; no parameters, "
                                     "nothing is computed"))
    elif t == "Unflatten":
        steps.append(Step("Reshape", f"{_shape_text(r.input_shape)} -> **{out}** ({_times(_hwc(r.output_shape))} "
                                     f"= {fmt_int(math.prod(r.output_shape))}); no parameters, nothing is computed"))
    elif t in NORM_TYPES:
        c = r.output_shape[0]
        steps.append(Step("Parameters", f"2×{c} = **{fmt_int(r.params)}** (a scale and a shift per channel) plus "
                                        f"{fmt_int(r.buffer_elems)} buffer values (running mean and variance). "
                                        "Keras would list those as non-trainable parameters; PyTorch keeps "
                                        "them as buffers"))
    elif t == "LocalResponseNorm":
        m = _module(summary, r.module)
        consts = (f"n = {m.size} adjacent channels, with k = {m.k:g}, α = {m.alpha:g} and β = {m.beta:g}"
                  if isinstance(m, nn.LocalResponseNorm) else "n adjacent channels")
        steps.append(Step("Parameters", "**0**: each value is divided by (k + α/n × the sum of the squares over "
                                        f"{consts})^β; the constants are fixed, nothing is learned"))
    elif t in ACT_TYPES:
        steps.append(Step("Parameters", f"**0**: {t} is applied to each value on its own"))
    elif t == "Dropout":
        m = _module(summary, r.module)
        if isinstance(m, nn.Dropout):
            keep = f"1/(1 - {m.p:g}) = {fmt_num(1 / (1 - m.p))}" if m.p < 1 else "nothing (p = 1)"
            rule = (f"while training, each value is zeroed with probability p = {m.p:g} (read from the "
                    f"module) and the others are scaled by {keep}")
        else:
            rule = "while training, each value is zeroed with the probability p set in the model"
        steps.append(Step("Parameters", f"**0**: {rule}; at test time every value passes through unchanged"))
    elif t == "Concat":
        chans = " + ".join(str(s[0]) for s in r.input_shapes)
        steps.append(Step("Output size", f"depths {chans} = {r.output_shape[0]} -> **{out}** "
                                         "(the maps are stacked along the channel axis)"))
    elif t == "CenterCrop":
        (c, h, w), (_, h2, w2) = r.input_shapes[0], r.output_shape
        steps.append(Step("Output size", f"crop-and-copy: the encoder's {h}x{w} map is cut to its central "
                                         f"{h2}x{w2}, ({h} - {h2})/2 = {fmt_num((h - h2) / 2)} pixels off each side, "
                                         f"to match the up-convolution's output -> **{out}**; no parameters. The "
                                         "unpadded convolutions lost those border pixels on the way down and up"))
    elif t in ADAPTIVE_TYPES:
        what = "averaged" if "Avg" in t else "max-pooled"
        h, o = r.input_shape[1], r.output_shape[1]
        if r.input_shape == r.output_shape:
            how = f"{fmt_shape(r.input_shape)} stays **{out}**: at this input size the adaptive pool does nothing"
        elif r.output_shape[1:] == [1, 1]:
            how = (f"{fmt_shape(r.input_shape)} {what} over all {_times(r.input_shape[1:])} = "
                   f"{fmt_int(math.prod(r.input_shape[1:]))} positions of each map -> **{out}** (global pooling)")
        else:
            sizes = sorted({math.ceil((i + 1) * h / o) - math.floor(i * h / o) for i in range(o)})
            how = (f"{fmt_shape(r.input_shape)} {what} to **{out}**: output cell i covers input cells ⌊i×{h}/{o}⌋ "
                   f"to ⌈(i + 1)×{h}/{o}⌉ - 1, windows of {' or '.join(map(str, sizes))} cells")
        steps.append(Step("Output size", f"{how}; no parameters"))
    steps.append(Step("Receptive field", _rf_step(summary, index)))
    steps.append(Step("Memory", _memory_step(r)))
    if t not in CONV_TYPES | TCONV_TYPES | POOL_TYPES | ADAPTIVE_TYPES | RESHAPE_TYPES | {"Concat", "CenterCrop"}:
        steps.insert(0, Step("Output", f"{_shape_text(r.input_shape)} -> **{_shape_text(r.output_shape)}**"))
    return title, steps


# ---------------------------------------------------------------------------------------------
# Variant notes and warnings


@dataclass(frozen=True)
class ShownNote:
    """A variant note or slide slip with its numbers computed (see `core.spec.Note`)."""

    text: str
    slip: bool
    layer: str | None


def variant_notes(name: str) -> list[ShownNote]:
    """The notes of a registered architecture, rendered (computed notes run the engine)."""
    return [ShownNote(n.render(), n.slip, n.layer) for n in notes_of(name)]


# analysis.analyze_model's wording for operations its receptive-field tracker does not know.
_RF_UNTRACKED = "Receptive field not tracked through: "


def shown_warnings(summary: Summary) -> list[str]:
    """The engine's warnings worth showing a student. "Receptive field not tracked through:
    unflatten" is left out when every such operation is a reshape layer whose input already sees
    the whole input: there was nothing left to track."""
    shown = []
    for w in summary.warnings:
        if w.startswith(_RF_UNTRACKED):
            ops = {o.strip().lower() for o in w[len(_RF_UNTRACKED):].split(",")}
            harmless = {r.type.lower() for i, r in enumerate(summary.layers)
                        if r.type in RESHAPE_TYPES and _sees_whole(summary, i)}
            if ops <= harmless:
                continue
        shown.append(w)
    return shown
