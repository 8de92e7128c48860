"""Variant notes and slide slips, keyed by architecture name: where our numbers, the slide and the
paper differ, and why.

A note that states one of our numbers computes it when it is shown (`Note.render`), so it cannot
drift from what the explorer displays. Figures quoted from a slide or a paper are constants, named
after their source. This module sits above both the registry (a plain table) and the analysis
engine; neither imports it (`core.explain.variant_notes` renders what it holds).
"""

from __future__ import annotations

from functools import partial
from typing import Any

from torch import nn

from core import registry
from core.analysis import LayerRecord, Summary, Totals, analyze_model, summarize
from core.spec import Note

IMAGENET = registry.IMAGENET


# --- helpers -------------------------------------------------------------------------------------

def _summary(name: str, **options: Any) -> Summary:
    """The analysis of a registered architecture at its default input size."""
    return summarize(name, options=options)


def _analyze(model: nn.Module, size: tuple[int, int, int]) -> tuple[list[LayerRecord], Totals]:
    """The analysis of any model (built on the meta device by the caller)."""
    layers, totals, _, _ = analyze_model(model, size)
    return layers, totals


def _layer(s: Summary, name: str) -> LayerRecord:
    return next(r for r in s.layers if r.name == name)


def _within(ours: float, quoted: float) -> str:
    """'within 3.1%' of a quoted figure (to one decimal; 'within 0.1%' at the least)."""
    return f"within {max(0.1, abs(ours / quoted - 1) * 100):.1f}%"


def _fmt(n: float) -> str:
    return f"{int(n):,}"


# LeNet-5 (LeCun et al. 1998): C3 connects each of its 16 maps to 3, 4 or 6 of S2's 6 maps
# (Table I): 6 maps take 3 inputs, 9 take 4, 1 takes all 6.
LENET_C3_TABLE = ((6, 3), (9, 4), (1, 6))
LENET_PAPER_PARAMS = 60_000


def _lenet5_count() -> str:
    s = _summary("lenet5")
    c1, c3, f5, f6, out = (_layer(s, n).params for n in ("conv1", "conv2", "fc3", "fc4", "fc5"))
    c3_paper = sum(maps * k for maps, k in LENET_C3_TABLE) * 25 + 16
    s2, s4 = 6 * 2, 16 * 2
    paper = c1 + s2 + c3_paper + s4 + f5 + f6
    groups = " + ".join(f"{maps}×{k}" for maps, k in LENET_C3_TABLE)
    return (f"Our LeNet-5 has {_fmt(c1)} + {_fmt(c3)} + {_fmt(f5)} + {_fmt(f6)} + {_fmt(out)} = "
            f"{_fmt(s.totals.params)} parameters (C1, C3, C5, F6, output). The paper's "
            f"{_fmt(LENET_PAPER_PARAMS)} are C1 + S2 + C3 + S4 + C5 + F6 = {_fmt(c1)} + {_fmt(s2)} + "
            f"{_fmt(c3_paper)} + {_fmt(s4)} + {_fmt(f5)} + {_fmt(f6)} = {_fmt(paper)}. Three differences: "
            f"C3 connects each of its 16 maps to only 3, 4 or 6 of S2's 6 maps, ({groups})×25 + 16 = "
            f"{_fmt(c3_paper)} parameters instead of our fully connected {_fmt(c3)}; each subsampling map "
            f"has a trainable coefficient and bias (S2: 6×2 = {s2}, S4: 16×2 = {s4}), where our plain "
            f"average pooling has none; and the paper's 10 output units are RBF units with fixed weights, "
            f"not counted, where ours are a trainable 84×10 + 10 = {_fmt(out)}.")


def lenet5_notes() -> tuple[Note, ...]:
    return (Note(_lenet5_count),
            Note("The slide calls LeNet-5 the \"first-ever CNN (1998)\". LeCun et al. trained a convolutional "
                 "network with backpropagation to read handwritten zip codes in 1989 (\"Backpropagation Applied "
                 "to Handwritten Zip Code Recognition\"); LeNet-5 (1998) is a later member of that line.",
                 slip=True))


def _alexnet_counts() -> str:
    one, two = _summary("alexnet").totals.params, _summary("alexnet", two_towers=True).totals.params
    return (f"The slide's {_fmt(one)} parameters are this one-tower model with 96-256-384-384-256 filters and "
            "a 227x227 input. The paper's model was split over two GPUs with grouped CONV2, CONV4 and CONV5: "
            f"{_fmt(two)} parameters (turn on 'two towers'). The paper says \"60 million\".")


def alexnet_torchvision_note() -> str:
    s = _summary("alexnet_torchvision")
    return (f"{_fmt(s.totals.params)} parameters and {s.totals.macs / 1e9:.3f} GMACs at 224x224, as "
            "torchvision's metadata says; the lecture's one-tower AlexNet is 'alexnet'.")


def alexnet_notes() -> tuple[Note, ...]:
    return (Note(_alexnet_counts),
            Note("The paper says 224x224 inputs, but (224 - 11)/4 + 1 = 54.25 is not a whole number; 227x227 "
                 "makes the arithmetic work, (227 - 11)/4 + 1 = 55, as the slide says."),
            Note(lambda: "torchvision's alexnet is a different variant (64-192-384-256-256 filters, no LRN, "
                         "224 input): " + alexnet_torchvision_note().replace("the lecture's one-tower AlexNet "
                                                                               "is 'alexnet'", "see "
                                                                               "'alexnet_torchvision'")))


def zfnet_note() -> str:
    s = _summary("zfnet")
    sizes = [str(_layer(s, n).output_shape[1]) for n in ("conv1", "pool1", "conv2", "pool2", "conv5", "pool3")]
    return ("We use padding 1 on CONV1 and ceil-mode pooling in POOL1 and POOL2 so the sizes match the paper's "
            f"figure: {', '.join(sizes)} after CONV1, POOL1, CONV2, POOL2, CONV5 and POOL3.")


# The VGG-16 slide's memory column adds up to this, "24M x 4 bytes = 96MB/image".
VGG16_SLIDE_ACTIVATIONS = 24_000_000


def _vgg_activations(name: str) -> str:
    s = _summary(name)
    rows = s.totals.input_elems + sum(r.activation_elems for r in s.layers
                                      if r.type in ("Conv2d", "MaxPool2d", "Linear"))
    total = s.totals.activation_elems + s.totals.input_elems
    extra: dict[str, int] = {}
    for r in s.layers:
        if r.type not in ("Conv2d", "MaxPool2d", "Linear") and r.activation_elems:
            extra[r.type] = extra.get(r.type, 0) + r.activation_elems
    pool = extra.get("AdaptiveAvgPool2d", 0)
    parts = [f"{_fmt(pool)} values of torchvision's adaptive average pool, which copies the 7x7x512 map "
             "unchanged at 224x224"] if pool else []
    parts += [f"{_fmt(v)} values of the {k} layers" for k, v in extra.items() if k != "AdaptiveAvgPool2d"]
    head = ""
    if name == "vgg16":
        head = (f"The VGG slide adds up its memory column as 24M × 4 bytes = 96 MB per image, but its own rows "
                f"(input, CONV, POOL and FC) sum to {_fmt(rows)} values × 4 bytes = {rows * 4 / 1e6:.2f} MB; "
                "24M is a slip that spread with the slide. ")
    else:
        head = (f"The input and the CONV, POOL and FC outputs (the kind of rows the lecture's VGG-16 table "
                f"lists) add up to {_fmt(rows)} values ({rows * 4 / 1e6:.2f} MB). ")
    return (head + f"Our total, {_fmt(total)} values = {total * 4 / 1e6:.2f} MB, adds "
            + " and ".join(parts) + f": {_fmt(total - rows)} values ({(total - rows) * 4 / 1e6:.2f} MB).")


def _vgg_biases(name: str) -> str:
    s = _summary(name)
    conv = next(r for r in s.layers if r.type == "Conv2d")
    c_out, c_in = conv.output_shape[0], conv.input_shape[0]
    weights = conv.params - c_out
    return ("Parameters: the slide's per-layer rows count weights without biases, e.g. CONV3-64: "
            f"(3×3×{c_in})×{c_out} = {_fmt(weights)}; with its {c_out} biases the layer has {_fmt(weights)} + "
            f"{c_out} = {_fmt(conv.params)} parameters, which is what the layer cards show. The total, "
            f"{_fmt(s.totals.params)} ({s.totals.params / 1e6:.0f}M), includes the biases.")


def vgg_notes(name: str) -> tuple[Note, ...]:
    notes = (Note(partial(_vgg_activations, name)), Note(partial(_vgg_biases, name)))
    if name.endswith("_bn"):
        notes += (Note("BatchNorm was published after VGG; torchvision added it later. Its running mean and "
                       "variance are buffers, not parameters."),)
    return notes


# The GoogLeNet paper (Szegedy et al. 2014, Table 1): 40% dropout before the classifier.
GOOGLENET_PAPER_DROPOUT = 0.4


def _googlenet_params() -> str:
    without, with_aux = (_summary("googlenet", aux_logits=a).totals.params for a in (False, True))
    return (f"torchvision's GoogLeNet has {_fmt(without)} parameters without and {_fmt(with_aux)} with the "
            "auxiliary classifiers. The slide's \"5 million\" comes from the later Inception-v3 paper; the "
            "GoogLeNet paper's own table sums to about 6.8M.")


def _googlenet_deviations() -> str:
    import torch

    from core.models.googlenet import googlenet_paper_layers

    s = _summary("googlenet")
    with torch.device("meta"):
        tv_model = registry_googlenet()
        paper_model = googlenet_paper_layers()
    pool4, drop = tv_model.maxpool4, tv_model.dropout
    paper_layers, paper_totals = _analyze(paper_model, IMAGENET)

    def gap_rf(layers: list[LayerRecord]) -> int:  # the field of the map the global pool averages
        return int(next(r for r in layers if r.name == "avgpool").rf_in)

    k = pool4.kernel_size
    return ("torchvision's GoogLeNet differs from the paper's Table 1 in four ways: maxpool4 is "
            f"{k}x{k} at stride {pool4.stride} (the paper: 3x3 at stride 2); the \"5x5\" branch of every "
            "Inception module is a 3x3 convolution; every convolution is followed by BatchNorm (published "
            f"after GoogLeNet); and the dropout before the classifier has p = {drop.p:g} (the paper: "
            f"{GOOGLENET_PAPER_DROPOUT:g}). With the paper's pooling and 5x5 convolutions, the receptive field "
            f"of the map that the global average pool reads grows from {gap_rf(s.layers)} to "
            f"{gap_rf(paper_layers)} pixels, and the operations from {s.totals.macs / 1e9:.2f} to "
            f"{paper_totals.macs / 1e9:.2f} GMACs ({_fmt(s.totals.macs)} vs {_fmt(paper_totals.macs)}; "
            "BatchNorm adds no MACs in this count).")


def registry_googlenet() -> nn.Module:
    """The model the 'googlenet' entry builds, with its default options."""
    return registry.get("googlenet").build()


def googlenet_notes() -> tuple[Note, ...]:
    return Note(_googlenet_params), Note(_googlenet_deviations)


def _naive_row_slip(layer: str, k: int) -> str:
    r = _layer(_summary("inception_module"), layer)
    c_out, c_in = r.output_shape[0], r.input_shape[0]
    return (f"The slide writes this row as 28×28×{c_out}×{k}×{c_in}, dropping one ×{k} of the {k}x{k} kernel: "
            f"it is 28×28×{c_out}×{k}×{k}×{c_in} = {_fmt(r.macs)} MACs. The slide's total, 854M, counts it "
            "right.")


def _naive_total() -> str:
    s = _summary("inception_module")
    rows = [r.macs for r in s.layers if r.macs]
    return (f"Naive module: the three rows are {' + '.join(_fmt(m) for m in rows)} = {_fmt(s.totals.macs)} "
            f"MACs, the slide's 854M. (The slide's 3x3 and 5x5 rows each drop a factor; see those layers.)")


# The slide's total for the module with reductions.
INCEPTION_SLIDE_REDUCED = 358e6


def inception_358m_note() -> str:
    """The slide's 358M for the Inception module with reductions: our rows' sum and the two
    readings that give 358M (also shown in the Design Lab)."""
    import torch
    from torch import nn as tnn

    naive, red = _summary("inception_module"), _summary("inception_module", reductions=True)
    row3 = _layer(red, "branch3x3.conv3x3.conv")
    with torch.device("meta"):
        # the 3x3 row fed with 128 channels (a container: the engine records named leaf layers)
        wide = tnn.Sequential(tnn.Conv2d(128, row3.output_shape[0], 3, padding=1))
    (wide_row,), _ = _analyze(wide, (128, 28, 28))
    twice = red.totals.macs + row3.macs
    wide_total = red.totals.macs - row3.macs + wide_row.macs
    c_out = row3.output_shape[0]
    return (f"With reductions each of the slide's six rows matches our per-layer MACs, but the rows add up to "
            f"{_fmt(red.totals.macs)} ({red.totals.macs / 1e6:.1f}M), not the slide's 358M. Two readings give "
            f"exactly 358M: the 3x3 row (28×28×{c_out}×3×3×64 = {_fmt(row3.macs)}) counted twice, "
            f"{_fmt(red.totals.macs)} + {_fmt(row3.macs)} = {_fmt(twice)}; or the 3x3 row computed with 128 input "
            f"channels, the width of Inception 3b's 3x3 reduce in the paper, instead of the 64 the slide's reduce "
            f"row lists: 28×28×{c_out}×3×3×128 = {_fmt(wide_row.macs)}, total {_fmt(wide_total)}. The slide does "
            f"not say which. Either way the reductions cut the cost by a factor of "
            f"{naive.totals.macs / INCEPTION_SLIDE_REDUCED:.1f} (to 358M) to "
            f"{naive.totals.macs / red.totals.macs:.1f} (to {red.totals.macs / 1e6:.1f}M).")


def inception_module_notes() -> tuple[Note, ...]:
    return (Note("The slide's \"ops\" are multiply-accumulates (MACs). PyTorch's FLOP counter reports twice as "
                 "many FLOPs."),
            Note(_naive_total),
            Note(partial(_naive_row_slip, "branch3x3.conv", 3), slip=True, layer="branch3x3.conv"),
            Note(partial(_naive_row_slip, "branch5x5.conv", 5), slip=True, layer="branch5x5.conv"),
            Note(inception_358m_note, slip=True))


def bottleneck_1x1_note() -> str:
    naive, red = _summary("bottleneck_1x1"), _summary("bottleneck_1x1", reduce=True)
    r1, r5 = red.layers
    return (f"Directly: (14×14×48)×(5×5×480) = {_fmt(naive.totals.macs)} MACs. With the 1x1 reduction to 16 "
            f"channels: (14×14×16)×(1×1×480) = {_fmt(r1.macs)} and (14×14×48)×(5×5×16) = {_fmt(r5.macs)}, "
            f"together {_fmt(red.totals.macs)}. The slide rounds these to 112.9M and 1.5M + 3.8M = 5.3M.")


# The ResNet paper's Table 1 (multiply-adds, billions) and its weight decay (Sec. 3.4).
RESNET_PAPER_GMACS = {18: 1.8, 34: 3.6, 50: 3.8, 101: 7.6, 152: 11.3}


def _resnet_ops(depth: int) -> str:
    name = f"resnet{depth}"
    tv = _summary(name)
    paper = RESNET_PAPER_GMACS[depth]
    if depth < 50:
        return (f"No bottleneck blocks, so no stride placement to choose: {tv.totals.macs / 1e9:.3f} GMACs "
                f"({_fmt(tv.totals.macs)} MACs), {_within(tv.totals.macs / 1e9, paper)} of the paper's {paper}G.")
    p = _summary(name, stride_in="1x1")
    return ("Stride placement: the paper puts the stride-2 of a downsampling bottleneck in its first 1x1 "
            f"convolution: {p.totals.macs / 1e9:.3f} GMACs, {_within(p.totals.macs / 1e9, paper)} of the "
            f"paper's {paper}G (option 'stride in' = 1x1). torchvision's \"v1.5\" puts it in the 3x3: "
            f"{tv.totals.macs / 1e9:.3f} GMACs. The parameters are the same either way ({_fmt(tv.totals.params)}).")


def _shortcut_params(s: Summary) -> int:
    return sum(r.params for r in s.layers if ".downsample." in r.name)


def _resnet_shortcuts(depth: int) -> str:
    s = _summary(f"resnet{depth}")
    sc = _shortcut_params(s)
    text = (f"Where a block changes the shape, torchvision's shortcut is a 1x1 projection with BatchNorm (the "
            f"paper's option B): {_fmt(sc)} of the {_fmt(s.totals.params)} parameters.")
    if depth == 34:
        text += (" The paper's Table 2 ResNet-34, compared there with plain-34, uses zero-padding identity "
                 f"shortcuts (option A) instead, which add no parameters: {_fmt(s.totals.params)} - {_fmt(sc)} "
                 f"= {_fmt(s.totals.params - sc)}, as many as plain-34.")
    return text


RESNET_WEIGHT_DECAY_SLIP = Note(
    "The slide's training recipe says \"weight decay of 1e-5\"; the ResNet paper (Sec. 3.4) uses a weight "
    "decay of 0.0001 = 1e-4.", slip=True)


def resnet_notes(depth: int) -> tuple[Note, ...]:
    return Note(partial(_resnet_ops, depth)), Note(partial(_resnet_shortcuts, depth)), RESNET_WEIGHT_DECAY_SLIP


def _plain34_params() -> str:
    plain, res = _summary("plain34"), _summary("resnet34")
    sc = _shortcut_params(res)
    return (f"Plain-34 has {_fmt(plain.totals.params)} parameters, {_fmt(res.totals.params)} - "
            f"{_fmt(plain.totals.params)} = {_fmt(res.totals.params - plain.totals.params)} fewer than "
            f"torchvision's ResNet-34: those are ResNet-34's 1x1 projection shortcuts with their BatchNorm "
            f"({_fmt(sc)}). The paper's Table 2 compares plain-34 with a ResNet-34 whose shortcuts are "
            "zero-padding identities (option A), which add no parameters: there the two have the same count.")


def plain34_notes() -> tuple[Note, ...]:
    return (Note(_plain34_params),
            Note("The slide labels plain-34's curve \"vanishing gradient problem!\" (and an earlier slide's "
                 "hypothesis blames vanishing gradients). He et al. (Sec. 4.1) argue the opposite: the plain "
                 "networks are trained with BatchNorm, their forward signals have non-zero variances and their "
                 "backward gradients healthy norms, so the optimisation difficulty \"is unlikely to be caused by "
                 "vanishing gradients\"; they conjecture that deep plain nets converge exponentially slowly.",
                 slip=True),
            RESNET_WEIGHT_DECAY_SLIP)


# (parameters, multiply-adds) as the papers print them: MobileNet v1 Table 8, v2 Table 4,
# v3 Table 3.
MOBILENET_PAPER = {"mobilenet_v1": (4.2e6, 569e6), "mobilenet_v2": (3.4e6, 300e6),
                   "mobilenet_v3_large": (5.4e6, 219e6), "mobilenet_v3_small": (2.5e6, 56e6)}


def _versus(ours: float, quoted: float) -> str:
    """'which rounds to the paper's 4.2M' when it does, else 'within 3.1% of the paper's 3.4M'
    (quoted figures in millions)."""
    q = f"{quoted / 1e6:g}"
    digits = len(q.partition(".")[2])
    if round(ours / 1e6, digits) == round(quoted / 1e6, digits):
        return f"which rounds to the paper's {q}M"
    return f"{_within(ours, quoted)} of the paper's {q}M"


def mobilenet_note(name: str) -> str:
    t = _summary(name).totals
    p, m = MOBILENET_PAPER[name]
    return (f"At 224x224: {_fmt(t.params)} parameters, {_versus(t.params, p)}; {_fmt(t.macs)} MACs "
            f"(multiply-adds), {_versus(t.macs, m)}.")


def _autoencoder_counts() -> str:
    t = _summary("conv_autoencoder").totals
    return (f"Keras counts BatchNorm's moving mean and variance as non-trainable parameters: {_fmt(t.keras_params)} "
            f"total, {_fmt(t.bn_stat_elems)} non-trainable, as the slide's summary says. PyTorch keeps them as "
            f"buffers: {_fmt(t.params)} parameters plus {_fmt(t.bn_stat_elems)} buffer values (and one step "
            "counter per BatchNorm layer).")


def _autoencoder_valid_slip() -> str:
    s = _summary("conv_autoencoder", listing="second")
    t3, c4 = _layer(s, "tconv3"), _layer(s, "conv4")
    n = t3.input_shape[1]
    return (f"The slide's second Keras listing gives this layer Keras' default 'valid' padding: "
            f"({n} - 1)×1 + 3 = {t3.output_shape[1]}, so its output is {'x'.join(map(str, t3.output_shape[1:]))}"
            f"x{t3.output_shape[0]}, and the last 3x3 convolution brings it back to "
            f"{'x'.join(map(str, c4.output_shape[1:]))}x{c4.output_shape[0]}. The summary printed beside that "
            "listing says 28x28x32, copied from the first listing ('same' padding). Option 'listing' = second "
            "shows it; the parameters are the same.")


def autoencoder_notes() -> tuple[Note, ...]:
    return Note(_autoencoder_counts), Note(_autoencoder_valid_slip, slip=True, layer="tconv3")


# --- the table ------------------------------------------------------------------------------------

NOTES: dict[str, tuple[Note | str, ...]] = {
    "lenet5": lenet5_notes(),
    "alexnet": alexnet_notes(),
    "alexnet_torchvision": (Note(alexnet_torchvision_note),),
    "zfnet": ("The slide's 512-1024-512 filters in CONV3-5 come from a larger model of the paper's "
              "Table 2; the architecture of the paper's Figure 3 keeps 384-384-256.",
              Note(zfnet_note)),
    **{f"vgg{d}{bn}": vgg_notes(f"vgg{d}{bn}") for d in (11, 13, 16, 19) for bn in ("", "_bn")},
    "googlenet": googlenet_notes(),
    "inception_module": inception_module_notes(),
    "bottleneck_1x1": (Note(bottleneck_1x1_note),),
    **{f"resnet{d}": resnet_notes(d) for d in (18, 34, 50, 101, 152)},
    "plain34": plain34_notes(),
    "mobilenet_v1": ("The paper's Table 1 marks the last depthwise layer \"s2\", but its input and output "
                     "are both 7x7; it has stride 1 here, as in every reference implementation.",
                     Note(partial(mobilenet_note, "mobilenet_v1"))),
    **{n: (Note(partial(mobilenet_note, n)),)
       for n in ("mobilenet_v2", "mobilenet_v3_small", "mobilenet_v3_large")},
    "conv_autoencoder": autoencoder_notes(),
    "unet": ("The lecture's Keras version pads every convolution ('same'), so the output has the input's "
             "size; the paper's original (option padding=valid) used unpadded convolutions: every block "
             "loses 4 pixels, so the encoder's maps are centre-cropped before they are concatenated "
             "(crop-and-copy), and 572x572 in gives 388x388 out.",),
    "siamese": ("The encoder runs twice per pair but its weights are stored once: its second run adds "
                "operations and activations, and no parameters.",),
}


def notes_of(name: str) -> tuple[Note, ...]:
    """The notes of a registered architecture (plain strings wrapped as variant notes); () when it
    has none. An unknown name raises like `registry.get`."""
    registry.get(name)
    return tuple(n if isinstance(n, Note) else Note(n) for n in NOTES.get(name, ()))
