"""What each stop of the lecture path shows, as a panel: a short list of blocks (text, metrics, a
table, a chart, pictures, a diagram, a callout) computed by the same core functions and figure
builders as the full pages (`core.analysis`, `core.explain`, `core.design`, `core.design_text`,
`core.figures`, `core.zoo`, `core.features`, the lab tasks).

The lecture page lays blocks out with Streamlit, the handout (`core.lecture.handout`) writes them
as HTML, and `core.lecture.prepare` computes them ahead of a class and keeps them on disk, so a
stop renders from a pickle instead of a model. A training stop's panel is built from its finished
runs (`FinishedRun`: the job's events and the folder its handler left).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal, Union

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from core import registry
from core.analysis import Summary, summarize
from core.design import (DEFAULT_STACK, analyze_stack, gap_vs_fc, residual_blocks, separable_cost,
                         stack_vs_large)
from core.design_text import (BOTTLENECK_VERDICT, GAP_VERDICT, RESIDUAL_VERDICT, block_text, bottleneck_text,
                              gap_text, inception_text, separable_text, stack_text, stack_verdict)
from core.diagram import diagram, render
from core.explain import block_fields, card_markdown, fields_of_view, layer_card, variant_notes
from core.figures import (TABLE2_CAPTION, bottleneck_figure, curves, error_curves, gap_figure, grouped_bars,
                          layer_chart, lr_finder_figure, resnet_table2, rf_grid_figure, separable_figure,
                          stack_cost_figure, styled, totals_bars, zoo_groups, zoo_scatter)
from core.formatting import fmt_bytes, fmt_count, fmt_int, fmt_macs, fmt_shape
from core.lecture.stops import Stop
from core.notes import RESNET_PAPER_GMACS, inception_358m_note
from core.train.advice import SCENARIOS, TABLE
from core.train.events import Epoch, Event, LRFound, RunInfo, Step

# --- blocks -------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Text:
    md: str


@dataclass(frozen=True, eq=False)
class Metrics:
    items: tuple[tuple[str, str, str], ...]     # (label, value, help)


@dataclass(frozen=True, eq=False)
class Table:
    frame: pd.DataFrame
    caption: str = ""
    matrix: bool = False               # a small grid of numbers: no header, as wide as its numbers


@dataclass(frozen=True, eq=False)
class Chart:
    figure: go.Figure
    caption: str = ""


@dataclass(frozen=True, eq=False)
class Images:
    images: tuple[np.ndarray, ...]     # (H, W) or (H, W, 3) uint8
    captions: tuple[str, ...]
    width: int                         # pixels on screen per image
    caption: str = ""


@dataclass(frozen=True, eq=False)
class Callout:
    kind: Literal["info", "warning", "success"]
    text: str


@dataclass(frozen=True, eq=False)
class Graph:
    dot: str                           # Graphviz source, drawn in the browser
    caption: str = ""


@dataclass(frozen=True, eq=False)
class Row:
    """Blocks side by side, one list per column."""

    columns: tuple[tuple["Block", ...], ...]


Block = Union[Text, Metrics, Table, Chart, Images, Callout, Graph, Row]
Panel = tuple[Block, ...]


def walk(panel: Panel) -> list[Block]:
    """Every block of a panel, those inside rows included, in order."""
    out: list[Block] = []
    for b in panel:
        if isinstance(b, Row):
            for col in b.columns:
                out.extend(walk(col))
        else:
            out.append(b)
    return out


# --- finished runs ---------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class FinishedRun:
    """A run a training stop shows: its plan, the job's settings, how it ended, its events and the
    folder its handler left (results are read from it by the job kind's loader)."""

    plan: str
    kind: str                   # job kind: "train", "lr_find" or "lab"
    config: Any
    state: str
    message: str
    events: tuple[Event, ...]
    folder: Path | None
    seconds: float = 0.0        # wall time from submission to the end
    results: Any = field(default=None, compare=False)

    def loaded(self) -> Any:
        """The run's results (`core.train.results.Results` or `core.lab.common.LabResults`), or None."""
        if self.results is not None:
            return self.results
        if self.folder is None or self.kind == "lr_find":
            return None
        from core.train.jobs import RESULT_LOADERS, resolve

        return resolve(RESULT_LOADERS[self.kind])(self.folder)


# --- helpers --------------------------------------------------------------------------------------------

def _summary(arch: str, size: tuple[int, int, int] | None = None, **opts: Any) -> Summary:
    return summarize(arch, size, opts)


def _totals(s: Summary, spec_title: str) -> Metrics:
    t = s.totals
    return Metrics((("Parameters", fmt_int(t.params), f"{spec_title}: learnable weights and biases"),
                    ("Operations", fmt_macs(t.macs), f"multiply-accumulates for one image; FLOPs = 2 x MACs "
                                                     f"= {fmt_int(t.flops)}"),
                    ("Activations / image", fmt_bytes(t.forward_bytes), "forward, fp32; about twice with backward"),
                    ("Weights in memory", fmt_bytes(t.param_bytes), "4 bytes per parameter (fp32)")))


SHOWN_TYPES = {"Conv2d", "Linear", "MaxPool2d", "AvgPool2d", "AdaptiveAvgPool2d", "ConvTranspose2d", "Flatten",
               "Concat", "CenterCrop"}
MAX_TABLE_ROWS = 40


def _layer_table(s: Summary) -> pd.DataFrame:
    """The layers that change the shape or hold parameters (convolutions, pooling, FC), one row each,
    or the top-level stages when there are too many."""
    rows = [(r, f) for r, f in zip(s.layers, fields_of_view(s)) if r.type in SHOWN_TYPES]
    if len(rows) <= MAX_TABLE_ROWS:
        return pd.DataFrame([{"layer": r.name, "type": r.type, "output": fmt_shape(r.output_shape),
                              "params": fmt_int(r.params), "MACs": fmt_int(r.macs), "receptive field": f.label()}
                             for r, f in rows])
    blocks = s.blocks(1)
    return pd.DataFrame([{"stage": b.name, "type": b.type, "layers": b.layers, "output": fmt_shape(b.output_shape),
                          "params": fmt_int(b.params), "MACs": fmt_int(b.macs), "receptive field": f.label()}
                         for b, f in zip(blocks, block_fields(s, blocks))])


def _notes(arch: str, layer: str | None = None) -> list[Block]:
    """The architecture's variant notes (those of one layer, or those of none), slips as warnings."""
    return [Callout("warning" if n.slip else "info", ("Slide slip. " if n.slip else "") + n.text)
            for n in variant_notes(arch) if n.layer == layer]


def _gray(img: np.ndarray) -> np.ndarray:
    """A float map with NaN gaps (core.features.mosaic) as a uint8 picture, gaps white."""
    finite = img[np.isfinite(img)]
    lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    out = (np.nan_to_num((img - lo) / max(hi - lo, 1e-12), nan=1.0) * 255).clip(0, 255)
    return out.astype(np.uint8)


def _weights_caption(title: str, used: Any) -> str:
    return f"{title}: {used.describe()}" + (f" ({used.reason})" if used.fell_back and used.reason else "")


# --- the builders of the kinds of component --------------------------------------------------------------

def summary_panel(arch: str, size: tuple[int, int, int] | None = None, chart: bool = False,
                  compare: str | None = None, **opts: Any) -> Panel:
    """An architecture's totals, its layers (or stages) with the receptive field, its variant notes;
    optionally the per-layer chart and the ratio to another architecture."""
    spec = registry.get(arch)
    s = _summary(arch, size, **opts)
    blocks: list[Block] = [Text(f"**{spec.title}** ({spec.year}): {spec.description}"), _totals(s, spec.title)]
    if compare:
        other = _summary(compare)
        ot = other.totals
        blocks.append(Text(f"Against **{registry.get(compare).title}**: {fmt_int(ot.params)} parameters and "
                           f"{fmt_macs(ot.macs)} MACs, {ot.params / s.totals.params:.1f}x the parameters and "
                           f"{ot.macs / s.totals.macs:.1f}x the operations."))
    if s.totals.bn_stat_elems:
        blocks.append(Text(f"Keras would report {fmt_int(s.totals.keras_params)} parameters, "
                           f"{fmt_int(s.totals.bn_stat_elems)} of them non-trainable (BatchNorm's moving mean and "
                           "variance, which PyTorch keeps as buffers)."))
    if chart:
        blocks.append(Chart(layer_chart(s, None, True, height=420),
                            "Parameters and activation values per layer (log scale): early layers hold the "
                            "activations, late (FC) layers the parameters."))
    blocks.append(Table(_layer_table(s), "Receptive field in input pixels, unclipped."))
    return tuple(blocks + _notes(arch))


def layer_card_panel(arch: str, layer: int, size: tuple[int, int, int] | None = None, **opts: Any) -> Panel:
    """One layer's card, the explorer's: output size, parameters, MACs, receptive field, memory."""
    s = _summary(arch, size, **opts)
    rec = s.layers[layer]
    title, steps = layer_card(s, layer)
    return (Text(f"#### {title}\n\n{card_markdown(steps)}"),
            Text(f"Layer {layer} of 0 to {len(s.layers) - 1} of {registry.get(arch).title}: input "
                 f"{fmt_shape(rec.input_shape)} -> output {fmt_shape(rec.output_shape)}."),
            *_notes(arch, rec.module))


def param_table_panel(arch: str) -> Panel:
    """The slide's parameter table: weights, biases and parameters of every layer with weights or a
    new shape, and the total."""
    s = _summary(arch)
    rows = []
    for r in s.layers:
        if r.type not in ("Conv2d", "Linear", "MaxPool2d"):
            continue
        biases = r.output_shape[0] if r.bias else 0
        shape = r.output_shape
        size = "x".join(map(str, [shape[1], shape[2], shape[0]])) if len(shape) == 3 else f"{shape[0]}x1"
        rows.append({"layer": r.name, "tensor size": size, "weights": fmt_int(r.params - biases),
                     "biases": fmt_int(biases), "parameters": fmt_int(r.params)})
    rows.append({"layer": "total", "tensor size": "", "weights": "", "biases": "", "parameters": fmt_int(s.totals.params)})
    conv = sum(r.params for r in s.layers if r.type == "Conv2d")
    fc = sum(r.params for r in s.layers if r.type == "Linear")
    return (Metrics((("Parameters", fmt_int(s.totals.params), "weights and biases"),
                     ("Memory (fp32)", fmt_bytes(s.totals.param_bytes), "4 bytes per parameter"),
                     ("Convolutions", fmt_count(conv), "parameters in the convolutional layers"),
                     ("Fully connected", fmt_count(fc), "parameters in the FC layers"))),
            Table(pd.DataFrame(rows), "Pooling layers have no parameters; FC6 reads POOL3's 6x6x256 = 9,216 values."))


def compare_layers_panel(archs: tuple[str, ...], layers: tuple[str, ...]) -> Panel:
    """The named layers of two or more architectures side by side: kernel, stride, output, parameters."""
    sums = {a: _summary(a) for a in archs}
    rows = []
    for name in layers:
        row: dict[str, str] = {"layer": name}
        for a, s in sums.items():
            r = next(x for x in s.layers if x.name == name)
            k = f"{r.kernel[0]}x{r.kernel[1]}, stride {r.stride[0]}" if r.kernel else ""
            title = registry.get(a).title
            row[f"{title}: filters"] = f"{r.output_shape[0]} of {k}"
            row[f"{title}: output"] = fmt_shape(r.output_shape)
            row[f"{title}: params"] = fmt_int(r.params)
        rows.append(row)
    totals = Metrics(tuple((registry.get(a).title, fmt_int(s.totals.params), f"parameters; {fmt_macs(s.totals.macs)} MACs")
                           for a, s in sums.items()))
    return (totals, Table(pd.DataFrame(rows)), *_notes(archs[-1]))


def filters_panel(archs: tuple[str, ...]) -> Panel:
    """The first convolution's filters of each architecture, with the weights each really has."""
    from core.features import filter_mosaic, first_layer_filters
    from core.weights import build_with, default_start

    images, captions = [], []
    for arch in archs:
        model, used = build_with(arch, default_start(arch))
        f = first_layer_filters(model)
        conv = next(r for r in _summary(arch).layers if r.type == "Conv2d")
        images.append(filter_mosaic(f, cols=8, scale=max(1, 48 // f.shape[1])))
        captions.append(f"{registry.get(arch).title}: {f.shape[0]} filters {conv.kernel[0]}x{conv.kernel[1]}, "
                        f"stride {conv.stride[0]}; {used.describe()}")
    return (Images(tuple(images), tuple(captions), 380,
                   "Each filter stretched to its own range. Trained filters show oriented edges and colour blobs; "
                   "random ones are noise."),)


def feature_maps_panel(arch: str, image: str, layers: tuple[str, ...]) -> Panel:
    """One photo's feature maps at a few depths (the 8 most active channels each), with the weights
    the model really has."""
    from core.features import capture, channel_stats, mosaic
    from core.images import preprocess, sample_image
    from core.weights import build_with, default_start

    model, used = build_with(arch, default_start(arch))
    pre = preprocess(sample_image(image))
    acts, _ = capture(model, pre.tensor, list(layers))
    pics, caps = [pre.crop], [f"{image}, {pre.crop_size}x{pre.crop_size}"]
    for name in layers:
        a = acts[name]
        order = channel_stats(a).order[:8].tolist()
        img, _ = mosaic(a, order, cols=4)
        pics.append(_gray(img))
        caps.append(f"{name}: {a.shape[2]}x{a.shape[3]}x{a.shape[1]}, 8 most active channels")
    return (Images(tuple(pics), tuple(caps), 230, f"{registry.get(arch).title} with {used.describe()}."),)


def advice_panel() -> Panel:
    """The lecture's 2x2 table (the finished runs are added by the training view `compare`)."""
    return (Table(pd.DataFrame(TABLE)),)


def stages_panel(arch: str) -> Panel:
    """An architecture by top-level stage, and how much of it a detector or a captioner reuses (all
    but the classifier)."""
    spec = registry.get(arch)
    s = _summary(arch)
    blocks = s.blocks(1)
    head = sum(b.params for b in blocks if b.name == spec.classifier)
    total = s.totals.params
    frame = pd.DataFrame([{"stage": b.name, "type": b.type, "output": fmt_shape(b.output_shape),
                           "params": fmt_int(b.params), "reused": "no: the new task's head" if b.name == spec.classifier
                           else "yes"} for b in blocks])
    return (Metrics((("Reused", fmt_int(total - head), "parameters up to the last feature map"),
                     ("Replaced", fmt_int(head), f"the {spec.classifier} head (1,000 ImageNet classes)"),
                     ("Share reused", f"{(total - head) / total:.1%}", "of all parameters"))),
            Table(frame, f"{spec.title} by stage."))


def zoo_panel() -> Panel:
    """The Model Zoo's chart of every torchvision classifier."""
    from core.zoo import zoo_rows

    df = pd.DataFrame(zoo_rows())
    lecture = df[df.in_lecture]
    return (Metrics((("Models", str(len(df)), "torchvision classification models with ImageNet weights"),
                     ("Lecture families", str(len(lecture)), "AlexNet, VGG, GoogLeNet, ResNet, MobileNet"),
                     ("Best top-1", f"{df.acc1.max():.1f}%", df.loc[df.acc1.idxmax(), "name"]))),
            Chart(zoo_scatter(zoo_groups(df), True, height=560),
                  "Top-1 ImageNet accuracy against GMACs for one image, blob size proportional to parameters "
                  "(torchvision's weights metadata, read offline)."))


def own_stack_panel() -> Panel:
    """The Design Lab's default stack of our own against ResNet-18's parameters."""
    rows = analyze_stack(list(DEFAULT_STACK), (3, 224, 224))
    ok = [r for r in rows if not r.error]
    ours = sum(r.params for r in ok)
    resnet = _summary("resnet18").totals.params
    frame = pd.DataFrame([{"#": r.index, "type": r.layer.kind, "output": fmt_shape(r.out_shape),
                           "params": fmt_int(r.params), "MACs": fmt_int(r.macs), "receptive field": r.rf}
                          for r in ok])
    return (Metrics((("Our stack", fmt_int(ours), "parameters of the stack below"),
                     ("ResNet-18", fmt_int(resnet), "parameters, 1,000 classes"),
                     ("Ratio", f"{resnet / ours:.0f}x", "ResNet-18's parameters per parameter of ours"))),
            Table(frame, "The Design Lab's default stack on a 224x224x3 input."))


def stack_vs_large_panel(n: int, k: int, big: int, channels: int, fmap: int = 56) -> Panel:
    r = stack_vs_large(n, k, big, channels, fmap)
    return (Text(stack_text(r)), Row(((Chart(rf_grid_figure(r.rf_stack)),), (Chart(stack_cost_figure(r)),))),
            Callout("info", stack_verdict(r)))


def separable_panel() -> Panel:
    slide, mobile = separable_cost(3, 128, 3, 5), separable_cost(512, 512, 3, 14)
    return (Text("**The slide**: M = 3 input channels, N = 128 filters, D_K = 3, D_F = 5.\n\n" + separable_text(slide)),
            Chart(separable_figure(slide)),
            Text("**MobileNet's 14x14x512 layer**: M = N = 512, D_K = 3, D_F = 14.\n\n" + separable_text(mobile)))


def bottleneck_panel() -> Panel:
    naive, reduced = _summary("bottleneck_1x1"), _summary("bottleneck_1x1", reduce=True)
    a, b = _summary("inception_module"), _summary("inception_module", reductions=True)
    return (Text(bottleneck_text(naive, reduced)),
            Chart(bottleneck_figure(naive.totals.macs, reduced.totals.macs, a.totals.macs, b.totals.macs)),
            Callout("info", BOTTLENECK_VERDICT))


def inception_panel() -> Panel:
    spec = registry.get("inception_module")
    a, b = _summary("inception_module"), _summary("inception_module", reductions=True)
    d = diagram(spec.build_meta(), spec.input_size, 2, spec.num_inputs)
    return (Text(inception_text(a, b)), Callout("warning", inception_358m_note()),
            Graph(render(d, None, lambda path: None),
                  f"The naive module drawn from the model (torchview): four branches and the concatenation, "
                  f"{d.nodes} nodes."))


def gap_panel(h: int = 7, c: int = 1024, out: int = 1024) -> Panel:
    g = gap_vs_fc(h, h, c, out)
    return (Text(gap_text(g, h, c, out)), Chart(gap_figure(g)), Callout("info", GAP_VERDICT))


def residual_panel() -> Panel:
    blocks = residual_blocks()
    strided = residual_blocks(stride=2)[1]
    lines = [block_text(blocks[0], 64, 64), block_text(blocks[1], 256, 256),
             block_text(strided, 256, 256).replace(strided.name, f"{strided.name} at stride 2")]
    frame = pd.DataFrame([{"block": b.name, "weights": fmt_int(b.params), "MACs": fmt_int(b.macs),
                           "shortcut": b.shortcut} for b in (*blocks, strided)])
    return (Text("\n".join(lines)), Table(frame, "The ResNet paper's Figure 5 at a 56x56 map, and the bottleneck "
                                                 "block again at stride 2 (type 2: a 1x1 projection)."))


def resnet_variants_panel(archs: tuple[str, ...]) -> Panel:
    rows, names, gmacs = [], [], []
    for arch in archs:
        s = _summary(arch)
        depth = int(arch.removeprefix("resnet"))
        spec = registry.get(arch)
        paper_way = _summary(arch, stride_in="1x1").totals.macs / 1e9 if "stride_in" in spec.options else None
        rows.append({"network": spec.title, "params": fmt_int(s.totals.params),
                     "GMACs (torchvision)": f"{s.totals.macs / 1e9:.3f}",
                     "GMACs (the paper's stride placement)": f"{paper_way:.3f}" if paper_way else "same",
                     "paper's table": f"{RESNET_PAPER_GMACS[depth]}"})
        names.append(spec.title)
        gmacs.append(s.totals.macs / 1e9)
    return (Chart(totals_bars(names, gmacs, "Operations per image", "GMACs")), Table(pd.DataFrame(rows)))


def transposed_conv_panel() -> Panel:
    from core.lab.autoencoder import transposed_conv

    x, k = np.array([[1.0, 2.0], [3.0, 4.0]]), np.ones((3, 3))
    tc = transposed_conv(x, k, 2, 0)

    def frame(a: np.ndarray) -> pd.DataFrame:
        return pd.DataFrame(a.astype(int) if np.allclose(a, a.round()) else a)

    pieces = tuple((Table(frame(p), f"input ({i},{j}) = {x[i, j]:g} × kernel", matrix=True),)
                   for i, j, p in tc.pieces)
    return (Text(f"Input 2x2 = [[1, 2], [3, 4]], kernel 3x3 of ones, stride 2, padding 0. Output size: "
                 f"{tc.size_formula} → **{tc.output.shape[0]}x{tc.output.shape[1]}**"),
            Row(pieces),
            Table(frame(tc.output), "The sum: where the scaled kernels overlap, they add up.", matrix=True))


BUILDERS: dict[str, Callable[..., Panel]] = {
    "summary": summary_panel, "layer_card": layer_card_panel, "param_table": param_table_panel,
    "compare_layers": compare_layers_panel, "filters": filters_panel, "feature_maps": feature_maps_panel,
    "stages": stages_panel, "zoo": zoo_panel, "own_stack": own_stack_panel,
    "stack_vs_large": stack_vs_large_panel, "separable": separable_panel, "bottleneck": bottleneck_panel,
    "inception": inception_panel, "gap": gap_panel, "residual": residual_panel,
    "compare_archs": resnet_variants_panel, "transposed_conv": transposed_conv_panel,
}


# --- training stops -----------------------------------------------------------------------------------------

def _info(run: FinishedRun) -> RunInfo | None:
    return next((e for e in run.events if isinstance(e, RunInfo)), None)


def _ended(run: FinishedRun) -> list[Block]:
    if run.state == "done":
        return []
    return [Callout("warning", f"This run ended {run.state}: {run.message}")]


def studio_blocks(run: FinishedRun) -> list[Block]:
    """A Transfer Learning Studio run: accuracy, time, the weights it started from, its curves."""
    res = run.loaded()
    info = _info(run)
    cfg = run.config
    blocks: list[Block] = _ended(run)
    if res is not None:
        s = res.summary
        blocks.append(Metrics((("Validation accuracy", f"{s['val_acc']:.1%}", f"{len(s['classes'])} classes"),
                               ("Training time", f"{s['seconds']:.1f} s", "in the worker, data loading excluded"),
                               ("Trainable", fmt_int(info.trainable) if info else "-", "parameters trained"),
                               ("Frozen", fmt_int(info.frozen) if info else "-", "parameters kept as they were"))))
    if info is not None:
        scenario = SCENARIOS[cfg.scenario] if cfg.scenario == "finetune" else \
            f"scenario {cfg.scenario} ({SCENARIOS[cfg.scenario]})"
        blocks.append(Text(f"{registry.get(cfg.arch).title} on {cfg.dataset}, {scenario}, {cfg.image_size} px, "
                           "started from "
                           f"{info.weights.describe()}; {fmt_int(info.n_train)} training and {fmt_int(info.n_val)} "
                           "validation images."))
        if info.weights.fell_back:
            blocks.append(Callout("warning", f"This run started from {info.weights.sentence()}."))
    if any(isinstance(e, Step) for e in run.events):
        blocks.append(Chart(curves(list(run.events), "acc", "accuracy", percent=True, loss_title="cross-entropy")))
    return blocks


def lr_finder_blocks(run: FinishedRun) -> list[Block]:
    found = next((e for e in run.events if isinstance(e, LRFound)), None)
    if found is None:
        return _ended(run) or [Callout("info", "The LR finder left no curve.")]
    return [Chart(lr_finder_figure(found.lrs, found.losses, found.suggestion),
                  f"{len(found.lrs)} learning rates tried on the unfrozen model; suggested {found.suggestion:.1e} "
                  "(steepest descent of the smoothed loss).")]


def compare_blocks(runs: dict[str, FinishedRun]) -> list[Block]:
    """The scenario runs side by side: validation accuracy per run, on the lecture's 2x2 table."""
    acc = {}
    for name, run in runs.items():
        res = run.loaded()
        if res is not None:
            acc[SCENARIOS[run.config.scenario]] = res.summary["val_acc"]
    blocks: list[Block] = list(advice_panel())
    if acc:
        blocks.append(Chart(grouped_bars({"validation accuracy": acc}, "The finished runs of this path, same data "
                                         "and encoder", top=1.1)))
    return blocks


def autoencoder_blocks(run: FinishedRun) -> list[Block]:
    res = run.loaded()
    blocks: list[Block] = _ended(run)
    if res is None:
        return blocks
    f, a = res.final, res.arrays
    blocks.append(Metrics((("Bottleneck", str(f["bottleneck"]), "numbers in the code (49: the lecture's 7x7x1)"),
                           ("Mean squared error", f"{f['val_mse']:.4f}", "per pixel, validation digits"),
                           ("Training time", f"{f['seconds']:.1f} s", "the whole run"))))
    blocks.append(Chart(curves(list(run.events), "mse", "mean squared error", loss_title="binary cross-entropy")))
    n = min(8, len(a["val_images"]))
    blocks.append(Images(tuple(a["val_images"][:n]) + tuple(a["reconstructions"][:n]),
                         ("input",) * n + ("rebuilt",) * n, 56,
                         "Eight validation digits (top) and the network's reconstructions (bottom)."))
    return blocks


def unet_blocks(run: FinishedRun) -> list[Block]:
    res = run.loaded()
    blocks: list[Block] = _ended(run)
    if res is None:
        return blocks
    u, a = res.final["unet"], res.final["autoencoder"]
    blocks.append(Metrics((("IoU, whole mask", f"{u['iou']:.2f} vs {a['iou']:.2f}", "U-Net vs autoencoder"),
                           ("IoU on the thin curves", f"{u['thin_iou']:.2f} vs {a['thin_iou']:.2f}",
                            "U-Net vs autoencoder"),
                           ("IoU on the blobs", f"{u['blob_iou']:.2f} vs {a['blob_iou']:.2f}", "U-Net vs autoencoder"))))
    blocks.append(Chart(curves(list(run.events), "iou", "IoU", loss_title="binary cross-entropy")))
    arr = res.arrays
    n = min(4, len(arr["images"]))
    pics, caps = [], []
    for k in range(n):
        pics += [arr["images"][k], (arr["truth"][k] * 255).astype(np.uint8),
                 (arr["autoencoder"][k] * 255).astype(np.uint8), (arr["unet"][k] * 255).astype(np.uint8)]
        caps += ["image", "truth", "autoencoder", "U-Net"]
    blocks.append(Images(tuple(pics), tuple(caps), 84, "Validation images, true masks and the two networks' masks "
                                                          "(threshold 0.5)."))
    return blocks


def siamese_blocks(run: FinishedRun) -> list[Block]:
    res = run.loaded()
    blocks: list[Block] = _ended(run)
    if res is None:
        return blocks
    f = res.final
    ways = list(f["one_shot"])
    groups = {"Siamese network": f["one_shot"], "classifier's features": f["baselines"]["classifier"],
              "raw pixels": f["baselines"]["pixels"], "untrained network": f["untrained"], "chance": f["chance"]}
    groups = {name: {f"{n}-way": v[n] for n in ways} for name, v in groups.items()}
    n = ways[-1]
    blocks.append(Metrics((("One-shot accuracy", f"{f['one_shot'][n]:.0%}", f"{n}-way, unseen classes"),
                           ("Raw pixels", f"{f['baselines']['pixels'][n]:.0%}", f"{n}-way, nearest neighbour"),
                           ("Chance", f"{f['chance'][n]:.0%}", f"1 of {n}"))))
    blocks.append(Chart(grouped_bars(groups, f"One-shot accuracy on {f['unseen_classes']} unseen classes", top=1.1)))
    blocks.append(Text(f"{f['train_classes']} training classes, {f['unseen_classes']} never seen in training; every "
                       "method answers the same trials."))
    return blocks


def depth_blocks(run: FinishedRun) -> list[Block]:
    res = run.loaded()
    blocks: list[Block] = _ended(run)
    if res is None:
        return blocks
    f = res.final
    names = [str(n) for n in res.arrays["names"]]
    frame = pd.DataFrame([{"network": n, "training error": f"{f[n]['train_error']:.1%}",
                           "validation error": f"{f[n]['val_error']:.1%}", "parameters": fmt_int(f[n]["params"])}
                          for n in names])
    deg = f.get("degradation", {})
    verdict = ("Degradation showed: the deeper plain network trains worse, the deeper residual one does not."
               if deg.get("plain") and not deg.get("resnet") else
               "In this run the deeper plain network did not train clearly worse than the shallower one "
               "(short runs can hide it; the Lab runs longer ones).")
    return blocks + [Chart(error_curves(list(run.events))), Table(frame, f"Training error on {f['train_subset']} fixed "
                                                                         "training images."),
                     Callout("success" if deg.get("plain") and not deg.get("resnet") else "info", verdict),
                     Chart(styled(resnet_table2()), TABLE2_CAPTION), Callout("info", RESIDUAL_VERDICT)]


def training_panel(view: str, runs: dict[str, FinishedRun]) -> Panel:
    """A training stop's panel from its finished runs (keyed by plan name)."""
    if view == "compare":
        return tuple(compare_blocks(runs))
    blocks: list[Block] = []
    for run in runs.values():
        if run.kind == "lr_find":
            blocks += lr_finder_blocks(run)
        elif view in ("studio", "fastai"):
            blocks += studio_blocks(run)
        else:
            blocks += {"autoencoder": autoencoder_blocks, "unet": unet_blocks, "siamese": siamese_blocks,
                       "depth": depth_blocks}[view](run)
    return tuple(blocks)


def live_blocks(view: str, events: list[Event]) -> list[Block]:
    """What a run shows while it trains: its curves so far."""
    if not any(isinstance(e, (Step, Epoch)) for e in events):
        return []
    if view == "depth":
        return [Chart(error_curves(events))] if any(isinstance(e, Epoch) for e in events) else []
    metric = {"autoencoder": ("mse", "mean squared error", False), "unet": ("iou", "IoU", False),
              "siamese": ("loss", "loss", False)}.get(view, ("acc", "accuracy", True))
    return [Chart(curves(events, metric[0], metric[1], percent=metric[2]))]


def stop_panel(stop: Stop, runs: dict[str, FinishedRun] | None = None) -> Panel:
    """The panel of any stop: built from its component, or from its finished runs."""
    if stop.training:
        return training_panel(stop.component.kwargs["view"], runs or {})
    return BUILDERS[stop.component.kind](**stop.component.kwargs)
