"""Worked arithmetic for one layer, written the way the slides do it.

"CONV1: 96 filters 11x11, stride 4, pad 0 -> (227 - 11 + 2×0)/4 + 1 = 55 -> 55x55x96;
parameters 11*11*3*96 + 96 = 34,944". Every number comes from a `LayerRecord`; this module
only arranges them. Also the quiz: which questions a layer can ask and how to check answers.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from core.analysis import LayerRecord, Summary
from core.formatting import fmt_bytes, fmt_int, fmt_num, fmt_shape

CONV_TYPES = {"Conv1d", "Conv2d", "Conv3d"}
TCONV_TYPES = {"ConvTranspose2d"}
POOL_TYPES = {"MaxPool2d", "AvgPool2d"}
NORM_TYPES = {"BatchNorm2d", "BatchNorm1d"}
ACT_TYPES = {"ReLU", "ReLU6", "Tanh", "Sigmoid", "Hardswish", "Hardsigmoid", "SiLU", "GELU"}


@dataclass
class Step:
    """One line of the card: what is computed, the arithmetic, and the result."""

    label: str
    text: str


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


def _spatial_prev(summary: Summary, index: int) -> list[int] | None:
    """The last 3-D (C, H, W) shape before this layer: what a flatten step reshaped."""
    for r in reversed(summary.layers[:index + 1]):
        if len(r.input_shape) == 3:
            return r.input_shape
    return None


def _rf_step(r: LayerRecord) -> str:
    """'r = 1 + (11 - 1)×1 = 11; jump = 1×4 = 4' for a sliding window; a plain sentence otherwise."""
    if r.kernel and r.type in CONV_TYPES | POOL_TYPES:
        k, s = r.kernel[0], r.stride[0]
        d = (r.dilation or [1])[0]
        k_txt = f"{k}" if d == 1 else f"{d}×({k} - 1) + 1"
        return (f"r = r_in + (k - 1)×j_in = {fmt_num(r.rf_in)} + ({k_txt} - 1)×{fmt_num(r.jump_in)} = "
                f"{fmt_int(r.rf)} pixels; jump j = j_in×s = {fmt_num(r.jump_in)}×{s} = {fmt_num(r.jump)}")
    if r.whole_input:
        return (f"{fmt_int(r.rf)} pixels (unclipped): every value here depends on the whole input, "
                "because a flatten or global pooling step mixed all positions")
    if r.rf != round(r.rf_in):
        return f"{fmt_int(r.rf)} pixels (the largest over the paths that meet here); jump {fmt_num(r.jump)}"
    return f"unchanged: {fmt_int(r.rf)} pixels, jump {fmt_num(r.jump)} (this layer looks at one position at a time)"


def _memory_step(r: LayerRecord) -> str:
    if r.inplace:
        return (f"{fmt_shape(r.output_shape)} values, but no new memory: this layer works in place "
                "or returns a view of its input")
    dims = "×".join(str(v) for v in (r.output_shape[1:] + r.output_shape[:1] if len(r.output_shape) == 3
                                     else r.output_shape))
    return f"{dims} = {fmt_int(r.activation_elems)} values x 4 bytes = {fmt_bytes(r.activation_bytes)} (fp32)"


def layer_card(summary: Summary, index: int) -> tuple[str, list[Step]]:
    """Title and worked steps for layer `index` of `summary`."""
    r = summary.layers[index]
    steps: list[Step] = []
    out = fmt_shape(r.output_shape)
    t = r.type
    title = f"{r.name} ({t})"
    if t in CONV_TYPES:
        c_in, c_out = r.input_shape[0], r.output_shape[0]
        k, s, p, d, g = r.kernel[0], r.stride[0], r.padding[0], (r.dilation or [1])[0], r.groups or 1
        kind = "depthwise " if g == c_in and g > 1 else (f"grouped ({g} groups) " if g > 1 else "")
        title = (f"{r.name}: {c_out} {kind}filters {r.kernel[0]}x{r.kernel[1]}, stride {s}, pad {p}"
                 + (f", dilation {d}" if d > 1 else ""))
        steps.append(Step("Output size", f"{_size_step(r.input_shape[1], k, s, p, d, r.output_shape[1])} "
                                         f"-> **{out}**"))
        per_filter = f"{r.kernel[0]}×{r.kernel[1]}×{c_in // g}"
        weights = r.kernel[0] * r.kernel[1] * (c_in // g) * c_out
        bias = c_out if r.bias else 0
        steps.append(Step("Parameters", f"{per_filter}×{c_out}" + (f" + {c_out}" if r.bias else "")
                          + f" = **{fmt_int(weights + bias)}**"
                          + (" (no bias: the BatchNorm after it has one)" if not r.bias else "")
                          + (f" (each filter sees {c_in // g} of the {c_in} input channels)" if g > 1 else "")
                          + (" - shared with the first call" if r.shared else "")))
        steps.append(Step("MACs", f"({fmt_shape(r.output_shape).replace('x', '×')} outputs) x ({per_filter} "
                                  f"per output) = **{fmt_int(r.macs)}** multiply-accumulates "
                                  f"({fmt_int(r.flops)} FLOPs)"))
    elif t in TCONV_TYPES:
        k, s, p, op = r.kernel[0], r.stride[0], r.padding[0], (r.output_padding or [0])[0]
        n = r.input_shape[1]
        title = f"{r.name}: {r.output_shape[0]} transposed filters {k}x{k}, stride {s}, pad {p}"
        steps.append(Step("Output size", f"({n} - 1)×{s} - 2×{p} + {k} + {op} = {r.output_shape[1]} -> **{out}**"))
        c_in, c_out = r.input_shape[0], r.output_shape[0]
        steps.append(Step("Parameters", f"{k}×{k}×{c_in}×{c_out}" + (f" + {c_out}" if r.bias else "")
                          + f" = **{fmt_int(r.params)}**"))
        steps.append(Step("MACs", f"({fmt_shape(r.input_shape).replace('x', '×')} inputs) x ({k}×{k}×{c_out} "
                                  f"outputs each touches) = **{fmt_int(r.macs)}**"))
    elif t in POOL_TYPES:
        k, s, p = r.kernel[0], r.stride[0], r.padding[0]
        what = "max" if t.startswith("Max") else "average"
        title = f"{r.name}: {k}x{k} {what} pooling, stride {s}" + (f", pad {p}" if p else "")
        steps.append(Step("Output size", f"{_size_step(r.input_shape[1], k, s, p, 1, r.output_shape[1], bool(r.ceil_mode), False)}"
                                         f" -> **{out}** (the depth stays {r.output_shape[0]})"))
        steps.append(Step("Parameters", f"**0**: pooling takes the {what} of each {k}x{k} window; "
                                        "there is nothing to learn"))
    elif t == "Linear":
        d_in, d_out = r.input_shape[-1], r.output_shape[-1]
        prev = _spatial_prev(summary, index)
        title = f"{r.name}: fully connected, {fmt_int(d_out)} neurons"
        if prev is not None:
            steps.append(Step("Input", f"{fmt_shape(prev)} = {'×'.join(map(str, [prev[1], prev[2], prev[0]]))} "
                                       f"= {fmt_int(d_in)} values, reshaped into one vector"))
        steps.append(Step("Parameters", f"{fmt_int(d_in)}×{fmt_int(d_out)} = {fmt_int(d_in * d_out)} weights"
                          + (f" + {fmt_int(d_out)} biases" if r.bias else "")
                          + f" = **{fmt_int(r.params)}**" + (" - shared with the first call" if r.shared else "")))
        steps.append(Step("MACs", f"{fmt_int(d_in)}×{fmt_int(d_out)} = **{fmt_int(r.macs)}** (one per weight)"))
    elif t == "Flatten":
        dims = r.input_shape
        steps.append(Step("Reshape", f"{fmt_shape(dims)} = {'×'.join(map(str, dims[1:] + dims[:1]))} "
                                     f"= **{fmt_int(r.output_shape[0])}** values in one vector; no parameters"))
    elif t in NORM_TYPES:
        c = r.output_shape[0]
        steps.append(Step("Parameters", f"2×{c} = **{fmt_int(r.params)}** (a scale and a shift per channel) plus "
                                        f"{fmt_int(r.buffer_elems)} buffer values (running mean and variance). "
                                        "Keras would list those as non-trainable parameters; PyTorch keeps "
                                        "them as buffers"))
    elif t == "LocalResponseNorm":
        steps.append(Step("Parameters", "**0**: each value is divided by a function of its neighbours "
                                        "in 5 adjacent channels; the constants are fixed"))
    elif t in ACT_TYPES:
        steps.append(Step("Parameters", f"**0**: {t} is applied to each value on its own"))
    elif t == "Dropout":
        steps.append(Step("Parameters", "**0**: zeroes a random half of the values while training; "
                                        "passes everything through at test time"))
    elif t == "Concat":
        chans = " + ".join(str(s[0]) for s in r.input_shapes)
        steps.append(Step("Output size", f"depths {chans} = {r.output_shape[0]} -> **{out}** "
                                         "(the maps are stacked along the channel axis)"))
    elif t == "AdaptiveAvgPool2d":
        steps.append(Step("Output size", f"{fmt_shape(r.input_shape)} averaged to **{out}**; no parameters"))
    steps.append(Step("Receptive field", _rf_step(r)))
    steps.append(Step("Memory", _memory_step(r)))
    if t not in CONV_TYPES | TCONV_TYPES | POOL_TYPES | {"Concat", "Flatten", "AdaptiveAvgPool2d"}:
        steps.insert(0, Step("Output", f"{fmt_shape(r.input_shape)} -> **{out}**"))
    return title, steps


# ---------------------------------------------------------------------------------------------
# Quiz

@dataclass
class Check:
    """Result of checking one answer."""

    correct: bool
    expected: str
    message: str


def quiz_questions(r: LayerRecord) -> list[str]:
    """The questions a layer can ask: its output size always, its parameters when it has any
    or when zero is the interesting answer (pooling)."""
    qs = ["output size"]
    if r.params or r.type in POOL_TYPES | CONV_TYPES | {"Linear"}:
        qs.append("parameters")
    return qs


def _numbers(text: str) -> list[int]:
    """Integers in an answer, thousands separators removed ('34,944' -> [34944]; '55x55x96' ->
    [55, 55, 96]); '35K' and '1.2M' are read as 35,000 and 1,200,000."""
    text = text.strip().replace(",", "").replace("_", "")
    out = []
    for num, suffix in re.findall(r"(\d+(?:\.\d+)?)\s*([kKmM]?)", text):
        value = float(num) * {"": 1, "k": 1e3, "m": 1e6}[suffix.lower()]
        out.append(int(round(value)))
    return out


def check_answer(r: LayerRecord, question: str, answer: str) -> Check:
    """Checks a student's answer for a layer. Output sizes are read in the slides' H x W x C
    order (C x H x W is accepted too); parameter counts must be exact."""
    got = _numbers(answer)
    if question == "output size":
        expected = fmt_shape(r.output_shape)
        s = r.output_shape
        ok_orders = [s] if len(s) != 3 else [[s[1], s[2], s[0]], s]
        if not got:
            return Check(False, expected, "Type the output size as H x W x C, e.g. 55x55x96.")
        ok = got in ok_orders
        return Check(ok, expected, "Correct!" if ok else f"Not quite: the output is {expected}.")
    expected = fmt_int(r.params)
    if len(got) != 1:
        return Check(False, expected, "Type one number, e.g. 34944 or 34,944.")
    ok = got[0] == r.params
    close = not ok and r.params and math.isclose(got[0], r.params, rel_tol=0.02)
    hint = " Close: did you count the biases?" if close else ""
    return Check(ok, expected, "Correct!" if ok else f"Not quite: it has {expected} parameters.{hint}")
