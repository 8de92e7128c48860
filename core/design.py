"""The Design Lab's comparisons: closed-form costs of design choices, and a user-built layer stack.

Every function returns raw numbers (a dataclass or a list of them); the page formats them. The
formulas are checked in tests against real layers (`nn.Conv2d` parameter counts, PyTorch's
FLOP counter) and against the analysis engine.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

# The Design Lab's tabs, in order: a tab's label is its value in the page's link (`?tab=...`).
DESIGN_TABS = ("3x3 stacks vs 7x7", "Depthwise-separable", "1x1 bottleneck", "GAP vs FC", "Plain vs residual",
               "Build your own stack", "Effective receptive field")


# --- 1. a stack of small kernels vs one large kernel ------------------------------------------


@dataclass(frozen=True)
class StackVsLarge:
    """n layers of k x k vs one K x K, all C -> C channels, at a D x D feature map.

    Attributes:
        rf_stack: receptive field after each layer of the stack (stride and dilation applied).
        rf_large: receptive field of the single large layer.
        weights_stack: n * k^2 * C^2 (no biases), the VGG paper's 27C^2 for n=k=3.
        weights_large: K^2 * C^2, the paper's 49C^2 for K=7.
        slide_stack: the slide's per-filter count n * k * k * C ("3 x 3 x 3 x 3 = 81").
        slide_large: the slide's K * K * C ("1 x 7 x 7 x 3 = 147").
        macs_stack: multiply-accumulates of the stack on a D x D input ("same" padding; each
            layer's stride shrinks the map the next one sees).
        macs_large: multiply-accumulates of the large layer at the same map.
        nonlinearities_stack: one ReLU per layer.
    """

    n: int
    k: int
    big: int
    channels: int
    fmap: int
    stride: int
    dilation: int
    rf_stack: list[int]
    rf_large: int
    weights_stack: int
    weights_large: int
    slide_stack: int
    slide_large: int
    macs_stack: int
    macs_large: int
    nonlinearities_stack: int
    nonlinearities_large: int = 1

    @property
    def extra_weights_pct(self) -> float:
        """How many percent more weights the large kernel needs (the VGG paper's "81% more")."""
        return 100.0 * (self.weights_large / self.weights_stack - 1)


def stack_vs_large(n: int = 3, k: int = 3, big: int = 7, channels: int = 3, fmap: int = 56,
                   stride: int = 1, dilation: int = 1) -> StackVsLarge:
    """Compares n stacked k x k convolutions with one big x big convolution.

    Args:
        n: layers in the stack.
        k: kernel of each stacked layer.
        big: kernel of the single layer.
        channels: C, input and output channels of every layer.
        fmap: D, the feature map's height and width (for MACs).
        stride: stride of each stacked layer (the receptive field grows faster with it).
        dilation: dilation of each stacked layer.
    """
    if min(n, k, big, channels, fmap, stride, dilation) < 1:
        raise ValueError("every size must be at least 1")
    rf, jump, rfs = 1, 1, []
    for _ in range(n):
        rf += dilation * (k - 1) * jump
        jump *= stride
        rfs.append(rf)
    c2 = channels * channels
    macs_stack, d = 0, fmap
    for _ in range(n):
        d = max(1, math.ceil(d / stride))  # "same" padding: only the stride shrinks the map
        macs_stack += d * d * k * k * c2
    return StackVsLarge(n=n, k=k, big=big, channels=channels, fmap=fmap, stride=stride, dilation=dilation,
                        rf_stack=rfs, rf_large=big, weights_stack=n * k * k * c2, weights_large=big * big * c2,
                        slide_stack=n * k * k * channels, slide_large=big * big * channels,
                        macs_stack=macs_stack, macs_large=fmap * fmap * big * big * c2, nonlinearities_stack=n)


def rf_grid(rf_stack: list[int], size: int | None = None) -> list[list[int]]:
    """A size x size grid where each cell holds the first layer (1-based) whose receptive field,
    centred on the middle cell, covers it; 0 where none does. For drawing nested squares."""
    size = size or (max(rf_stack) + 2 if rf_stack else 3)
    c = size // 2
    grid = [[0] * size for _ in range(size)]
    for layer in range(len(rf_stack), 0, -1):
        half = rf_stack[layer - 1] // 2
        for i in range(max(0, c - half), min(size, c + half + 1)):
            for j in range(max(0, c - half), min(size, c + half + 1)):
                grid[i][j] = layer
    return grid


# --- 2. depthwise-separable vs standard convolution --------------------------------------------


@dataclass(frozen=True)
class SeparableCost:
    """Costs in multiply-accumulates (MobileNet's "Mult-Adds") of one layer, M -> N channels,
    D_K x D_K kernel, D_F x D_F output map, and their parameters (no biases)."""

    m: int
    n: int
    dk: int
    df: int
    standard: int       # D_K * D_K * M * N * D_F * D_F
    depthwise: int      # D_K * D_K * M * D_F * D_F
    pointwise: int      # M * N * D_F * D_F
    params_standard: int
    params_separable: int

    @property
    def separable(self) -> int:
        return self.depthwise + self.pointwise

    @property
    def ratio(self) -> float:
        """separable / standard = 1/N + 1/D_K^2."""
        return self.separable / self.standard


def separable_cost(m: int = 3, n: int = 128, dk: int = 3, df: int = 5) -> SeparableCost:
    """The MobileNet paper's cost formulas; the defaults are the slide's example (86,400 vs 10,275)."""
    if min(m, n, dk, df) < 1:
        raise ValueError("M, N, D_K and D_F must be at least 1")
    return SeparableCost(m=m, n=n, dk=dk, df=df, standard=dk * dk * m * n * df * df,
                         depthwise=dk * dk * m * df * df, pointwise=m * n * df * df,
                         params_standard=dk * dk * m * n, params_separable=dk * dk * m + m * n)


# --- 4. global average pooling vs a fully connected head ---------------------------------------


@dataclass(frozen=True)
class GapVsFc:
    """A classifier head on an h x w x c map: one FC layer on the flattened map, or global
    average pooling (GoogLeNet's choice), which has no weights. Biases are left out."""

    fc_inputs: int      # h * w * c
    fc_weights: int     # h * w * c * out
    gap_outputs: int    # c: one average per channel
    gap_weights: int = 0


def gap_vs_fc(h: int = 7, w: int = 7, c: int = 1024, out: int = 1024) -> GapVsFc:
    """Weights of an FC layer on a flattened h x w x c map vs global average pooling (none)."""
    return GapVsFc(fc_inputs=h * w * c, fc_weights=h * w * c * out, gap_outputs=c)


# --- 5. plain vs residual blocks ----------------------------------------------------------------


@dataclass(frozen=True)
class BlockCost:
    """Parameters (convolution weights only, as in the ResNet paper's reasoning) and MACs."""

    name: str
    params: int
    macs: int
    shortcut: str       # "identity" or "projection (1x1, stride s)"
    shortcut_params: int


def residual_blocks(c_in: int = 256, width: int = 64, stride: int = 1, fmap: int = 56,
                    basic_channels: int = 64) -> list[BlockCost]:
    """A basic block (two 3x3 convolutions, `basic_channels` in and out) and a bottleneck block
    (1x1 from `c_in` to `width`, 3x3, 1x1 to `4 * width`). The defaults are the ResNet paper's
    Figure 5: a 64-channel basic block (ResNet-34) next to a 256-channel bottleneck (ResNet-50),
    which cost about the same.

    A block's shortcut is an identity when the block keeps the shape (stride 1 and as many
    channels out as in); otherwise a 1x1 convolution with the block's stride projects it (the
    lecture's "type 2"). MACs assume the stride sits in the first convolution (the paper's
    placement), so every convolution runs at the output map size. No biases (BatchNorm follows
    every convolution).
    """
    out = max(1, math.ceil(fmap / stride))

    def block(name: str, convs: int, b_in: int, b_out: int) -> BlockCost:
        projection = stride != 1 or b_in != b_out
        sc = b_in * b_out if projection else 0
        sc_name = f"projection (1x1, stride {stride})" if projection else "identity"
        return BlockCost(name, convs + sc, out * out * (convs + sc), sc_name, sc)

    b = basic_channels
    c_out = 4 * width
    return [
        block("basic (3x3, 3x3)", 9 * b * b + 9 * b * b, b, b),
        block("bottleneck (1x1, 3x3, 1x1)", c_in * width + 9 * width * width + width * c_out, c_in, c_out),
    ]


# The ResNet paper's Table 2 (top-1 error, %, 10-crop testing on ImageNet validation).
PLAIN_VS_RESNET = {"18 layers": (27.94, 27.88), "34 layers": (28.54, 25.03)}


# --- 6. build your own stack --------------------------------------------------------------------

LAYER_KINDS = ("conv", "depthwise", "conv1x1", "maxpool", "avgpool")


@dataclass
class StackLayer:
    """One row of a user-built stack. `out` is ignored by pooling and depthwise layers."""

    kind: str = "conv"
    out: int = 64
    k: int = 3
    s: int = 1
    p: int = 1
    d: int = 1
    groups: int = 1


@dataclass
class StackRow:
    """The result for one row: numbers when valid, else `error` (and the shape passes through)."""

    index: int
    layer: StackLayer
    in_shape: tuple[int, int, int]
    out_shape: tuple[int, int, int] | None = None
    params: int = 0
    macs: int = 0
    rf: int | None = None
    jump: int | None = None
    error: str | None = None
    formula: str = ""
    notes: list[str] = field(default_factory=list)


def analyze_stack(layers: list[StackLayer], in_shape: tuple[int, int, int] = (3, 224, 224)) -> list[StackRow]:
    """Output shape, parameters (with biases for convolutions), MACs, receptive field and jump after
    every row. An invalid row is reported at that row and skipped; the rows after it continue from
    the last valid shape."""
    rows: list[StackRow] = []
    c, h, w = in_shape
    rf, jump = 1, 1
    for i, L in enumerate(layers):
        row = StackRow(i, L, (c, h, w))
        kind = L.kind
        k, s, p, d = (1, 1, 0, 1) if kind == "conv1x1" else (L.k, L.s, L.p, L.d)
        if kind == "conv1x1":
            s = L.s
        groups = c if kind == "depthwise" else (L.groups if kind in ("conv", "conv1x1") else 1)
        out_c = c if kind in ("depthwise", "maxpool", "avgpool") else L.out
        problems = []
        if kind not in LAYER_KINDS:
            problems.append(f"unknown layer type {kind!r} (use one of {', '.join(LAYER_KINDS)})")
        if k < 1 or s < 1 or d < 1:
            problems.append("kernel, stride and dilation must be at least 1")
        if p < 0:
            problems.append("padding cannot be negative")
        if out_c < 1:
            problems.append("the number of filters must be at least 1")
        if groups < 1 or c % groups or out_c % groups:
            problems.append(f"groups={groups} must divide both the input channels ({c}) and the filters ({out_c})")
        if kind in ("maxpool", "avgpool") and p > k // 2:
            problems.append(f"pooling padding must be at most half the kernel ({k // 2})")
        if not problems:
            k_eff = d * (k - 1) + 1
            oh = (h + 2 * p - k_eff) // s + 1
            ow = (w + 2 * p - k_eff) // s + 1
            if oh < 1 or ow < 1:
                problems.append(f"output size ({h} + 2×{p} - {k_eff})/{s} + 1 < 1: the map is too small "
                                "for this kernel")
        if problems:
            row.error = "; ".join(problems)
            rows.append(row)
            continue
        row.formula = f"({h} + 2×{p} - {k_eff})/{s} + 1 = {oh}"
        if kind in ("conv", "conv1x1", "depthwise"):
            per_out = (c // groups) * k * k
            row.params = per_out * out_c + out_c
            row.macs = oh * ow * out_c * per_out
        rf += (k_eff - 1) * jump
        jump *= s
        c, h, w = out_c, oh, ow
        row.out_shape, row.rf, row.jump = (c, h, w), rf, jump
        if rf > max(in_shape[1:]):
            row.notes.append("receptive field larger than the input (unclipped)")
        rows.append(row)
    return rows


def stack_from_records(records: list[dict]) -> list[StackLayer]:
    """Rows from an editable table: blank cells take the defaults; a cell that is not a whole
    number makes its row invalid (kind "invalid"), to be reported at that row."""
    defaults = StackLayer()
    layers = []
    for rec in records:
        vals, ok = {}, True
        for f in ("out", "k", "s", "p", "d", "groups"):
            v = rec.get(f)
            if v is None or (isinstance(v, float) and math.isnan(v)):
                vals[f] = getattr(defaults, f)
                continue
            try:
                vals[f] = int(v)
                ok = ok and float(v) == vals[f]
            except (TypeError, ValueError):
                ok = False
        kind = rec.get("kind") or defaults.kind
        layers.append(StackLayer(str(kind) if ok else "invalid", **{f: vals.get(f, getattr(defaults, f))
                                                                   for f in ("out", "k", "s", "p", "d", "groups")}))
    return layers


def stack_to_text(layers: list[StackLayer]) -> str:
    """Compact form for the URL: 'conv:64:3:1:1:1:1;maxpool:64:2:2:0:1:1'."""
    return ";".join(f"{L.kind}:{L.out}:{L.k}:{L.s}:{L.p}:{L.d}:{L.groups}" for L in layers)


def stack_from_text(text: str) -> list[StackLayer]:
    """Parses `stack_to_text`'s form. Raises ValueError with a readable message."""
    layers = []
    for n, part in enumerate(filter(None, text.split(";")), start=1):
        bits = part.split(":")
        if len(bits) != 7:
            raise ValueError(f"row {n} ({part!r}) needs 7 fields kind:out:k:s:p:d:groups")
        try:
            nums = [int(b) for b in bits[1:]]
        except ValueError:
            raise ValueError(f"row {n} ({part!r}) has a field that is not a whole number") from None
        if any(abs(x) > 100_000 for x in nums):
            raise ValueError(f"row {n} has an absurd number")
        layers.append(StackLayer(bits[0], *nums))
    if len(layers) > 64:
        raise ValueError("at most 64 rows")
    return layers


# The stack the page opens with: VGG's first block, then a depthwise-separable pair.
DEFAULT_STACK = [StackLayer("conv", 64, 3, 1, 1), StackLayer("conv", 64, 3, 1, 1),
                 StackLayer("maxpool", 64, 2, 2, 0), StackLayer("depthwise", 64, 3, 1, 1),
                 StackLayer("conv1x1", 128, 1, 1, 0)]
