"""Quiz mode: which layers are asked about, the questions a layer can ask, and grading what a
student types against the layer's record (rounded answers, "35K", weights without biases)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from core.analysis import LayerRecord, Summary
from core.explain import ADAPTIVE_TYPES, CONV_TYPES, NORM_TYPES, POOL_TYPES, TCONV_TYPES
from core.formatting import fmt_int, fmt_num, fmt_shape, plural_units

# Which layers the quiz asks about, by kind; a student picks the kinds.
QUIZ_KINDS = {"conv": "convolutions", "fc": "fully connected layers", "pool": "pooling",
              "norm": "normalisation (BatchNorm, LRN)", "other": "activations, dropout, reshapes, concatenation"}
DEFAULT_QUIZ_KINDS = ("conv", "fc")
ROUNDING_TOLERANCE = 0.01   # a rounded answer counts within 1% (and if the exact count rounds to it)


def layer_kind(r: LayerRecord) -> str:
    """The quiz kind of a layer: a key of QUIZ_KINDS."""
    if r.type in CONV_TYPES | TCONV_TYPES:
        return "conv"
    if r.type == "Linear":
        return "fc"
    if r.type in POOL_TYPES | ADAPTIVE_TYPES:
        return "pool"
    if r.type in NORM_TYPES | {"LocalResponseNorm"}:
        return "norm"
    return "other"


def is_quizzed(r: LayerRecord, kinds: tuple[str, ...] | list[str] = DEFAULT_QUIZ_KINDS) -> bool:
    """Whether quiz mode asks about this layer."""
    return layer_kind(r) in kinds


def next_quizzed(summary: Summary, index: int, kinds: tuple[str, ...] | list[str]) -> int | None:
    """The next layer after `index` that the quiz asks about, or None."""
    return next((r.index for r in summary.layers[index + 1:] if is_quizzed(r, kinds)), None)


@dataclass
class Check:
    """Result of checking one answer.

    Attributes:
        correct: counts as right (exact, correctly rounded, or the weights without biases).
        expected: the exact answer.
        message: what to tell the student, starting with what they typed.
    """

    correct: bool
    expected: str
    message: str


def givens(r: LayerRecord) -> str:
    """What a question about a layer states, as the slides state it: the input, and the layer's
    own settings (kernel, stride, padding; the filters of a convolution, the units of an FC
    layer), never its output or its parameter count."""
    parts = [f"Input {_hwc_text(r.input_shape)}."]
    if r.type in CONV_TYPES | TCONV_TYPES and r.kernel:
        groups = f", groups {r.groups}" if (r.groups or 1) > 1 else ""
        parts.append(f"{r.output_shape[0]} filters {r.kernel[0]}x{r.kernel[1]}, stride {r.stride[0]}, "
                     f"padding {r.padding[0]}{groups}" + ("" if r.bias else ", no bias") + ".")
    elif r.type == "Linear":
        parts.append(f"{fmt_int(r.output_shape[-1])} output units" + ("" if r.bias else ", no bias") + ".")
    elif r.kernel:
        parts.append(f"Window {r.kernel[0]}x{r.kernel[1]}, stride {r.stride[0]}, padding {r.padding[0]}.")
    return " ".join(parts)


def _hwc_text(shape: list[int]) -> str:
    return fmt_shape(shape) if len(shape) > 1 else f"{fmt_int(shape[0])} values"


def quiz_questions(r: LayerRecord) -> list[str]:
    """The questions a layer can ask: its output size always, its parameters when it has any
    or when zero is the interesting answer (pooling)."""
    qs = ["output size"]
    if r.params or r.shared or r.type in POOL_TYPES | CONV_TYPES | TCONV_TYPES | {"Linear"}:
        qs.append("parameters")
    return qs


@dataclass(frozen=True)
class _Number:
    value: float
    unit: float      # place value of the last digit typed: 1 for '34944', 1000 for '35K' or '35000'
    text: str


_SUFFIX = {"": 1.0, "k": 1e3, "m": 1e6, "g": 1e9, "b": 1e9}


def _numbers(text: str) -> list[_Number]:
    """Numbers in an answer: thousands separators removed ('34,944'), K/M/G suffixes applied
    ('35K', '37.75M'); '55x55x96' and '55, 55, 96' give three numbers."""
    clean = re.sub(r"(?<=\d),(?=\d{3}\b)", "", text.strip()).replace("_", "")
    out = []
    for m in re.finditer(r"(\d+(?:\.\d+)?)\s*(?:([kKmMgGbB])(?![a-zA-Z]))?", clean):
        digits, suffix = m.group(1), (m.group(2) or "").lower()
        mult = _SUFFIX[suffix]
        if "." in digits:
            unit = 10.0 ** -len(digits.partition(".")[2])
        else:
            stripped = digits.rstrip("0")
            unit = 10.0 ** (len(digits) - len(stripped)) if stripped else 1.0
        out.append(_Number(float(digits) * mult, unit * mult, m.group(0).strip()))
    return out


def _own_params(r: LayerRecord) -> tuple[int, int]:
    """(weights, biases) of the layer itself, also for a repeated call whose record counts 0."""
    if r.type in CONV_TYPES and r.kernel:
        c_out = r.output_shape[0]
        return r.kernel[0] * r.kernel[1] * (r.input_shape[0] // (r.groups or 1)) * c_out, c_out if r.bias else 0
    if r.type in TCONV_TYPES and r.kernel:
        c_out = r.output_shape[0]
        return r.kernel[0] * r.kernel[1] * r.input_shape[0] * (c_out // (r.groups or 1)), c_out if r.bias else 0
    if r.type == "Linear":
        d_out = r.output_shape[-1]
        return r.input_shape[-1] * d_out, d_out if r.bias else 0
    return r.params, 0


def expected(r: LayerRecord, question: str) -> str:
    """The exact answer to a question about a layer, as the card writes it (55x55x96, 34,944)."""
    if question == "output size":
        return fmt_shape(r.output_shape)
    return fmt_int(sum(_own_params(r)))


def _rounds_to(exact: int, n: _Number) -> bool:
    """The exact count rounds to what was typed, at the digits typed, and is within 1%."""
    diff = abs(exact - n.value)
    return n.unit > 1 and diff <= n.unit / 2 and diff <= ROUNDING_TOLERANCE * exact


def check_answer(r: LayerRecord, question: str, answer: str) -> Check:
    """Checks a student's answer for a layer. Output sizes are read in the slides' H x W x C
    order (C x H x W is accepted too). A parameter count is right when exact; when rounded
    ('35K', '37.75M') if the exact count rounds to it and is within 1%; and when it is the
    weights without the biases (as the VGG slide counts), which the message says."""
    got = _numbers(answer)
    typed = f"You typed “{answer.strip()}”" if answer.strip() else "You typed nothing"
    if question == "output size":
        expected = fmt_shape(r.output_shape)
        s = r.output_shape
        ok_orders = [s] if len(s) != 3 else [[s[1], s[2], s[0]], s]
        if not got:
            return Check(False, expected, f"{typed}. Type the output size as H x W x C, e.g. 55x55x96.")
        values = [n.value for n in got]
        read = " x ".join(fmt_num(v) for v in values)
        ok = values in ok_orders
        return Check(ok, expected, f"{typed}, read as {read}. " + ("Correct!" if ok else
                                                                   f"Not quite: the output is {expected}."))
    weights, biases = _own_params(r)
    exact = weights + biases
    expected = fmt_int(exact)
    once = " These are the same weights as the first call: the total counts them once." if r.shared else ""
    if len(got) != 1:
        return Check(False, expected, f"{typed}. Type one number, e.g. 34944, 34,944 or 35K.")
    n = got[0]
    said = f"{typed}, read as {fmt_num(n.value)}. "
    split = f"{plural_units(weights, 'weight')} + {plural_units(biases, 'bias')} = {expected}"
    if n.value == exact:
        return Check(True, expected, said + "Correct!" + once)
    # The full count first: a rounded answer that fits it (102.8M for 102,764,544) is the full count,
    # even when the weights alone round to the same figure.
    if _rounds_to(exact, n):
        return Check(True, expected, said + f"Correct, rounded: the exact count is {expected}. (A rounded "
                     f"answer counts when the exact count rounds to it and is within "
                     f"{ROUNDING_TOLERANCE:.0%}.)" + once)
    if biases and (n.value == weights or _rounds_to(weights, n)):
        how = "exactly" if n.value == weights else "rounded"
        return Check(True, expected, said + f"Correct for the weights alone ({how}): the layer has {split} "
                     "parameters. Slides differ here: VGG's table counts weights only, AlexNet's adds the "
                     "biases." + once)
    hint = ""
    if exact and abs(n.value - exact) <= 0.05 * exact:
        hint = f" Close: within {abs(n.value / exact - 1):.1%}."
        if n.unit > 1:
            hint += (f" At the digits you typed, {expected} rounds to "
                     f"{fmt_num(round(exact / n.unit) * n.unit)}.")
        elif biases:
            hint += " Did you count the biases?"
    return Check(False, expected, said + f"Not quite: it has {split if biases else expected} parameters.{hint}"
                 + once)
