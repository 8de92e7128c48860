"""Architecture Explorer: pick an architecture and step through it layer by layer.

State (architecture, options, input size, layer, quiz mode) is mirrored in the URL so a
lecturer can link a slide to an exact layer: /explorer?arch=alexnet&layer=0. Besides the lecture's
architectures: any timm architecture (?arch=timm:inception_v4), an uploaded ONNX file, and a
finished Studio run's network with its new head (?job=..., read-only with view=).
"""

from __future__ import annotations

from urllib.parse import urlencode

import pandas as pd
import streamlit as st

from core import archs, registry, timm_archs
from core.diagram import MAX_NODES, render
from core.links import read_choice, read_flag, read_int
from core.analysis import AnalysisError, Summary, check_input_size, parse_input_size
from core.explain import (ShownNote, block_fields, card_markdown, fields_of_view, layer_card, shown_warnings,
                          variant_notes)
from core.quiz import DEFAULT_QUIZ_KINDS, QUIZ_KINDS, check_answer, givens, is_quizzed, next_quizzed, quiz_questions
from core.figures import layer_chart
from core.formatting import fmt_bytes, fmt_count, fmt_int, fmt_macs, fmt_shape
from core.onnx_import import MAX_ONNX_MB, OnnxError
from core.spec import ArchSpec, OptionError, UnknownArchitectureError
from pages.common import cached_diagram, cached_summary, require_router
from pages.own_model import (file_digest, linked_run, onnx_diagram, onnx_net, onnx_summary, run_diagram, run_query,
                             run_summary, timm_names)

require_router()

ss = st.session_state
qp = st.query_params
MAX_SIDE = 4096   # pixels per side the explorer analyses
SOURCES = {"lecture": "the lecture's", "timm": "timm's (search)", "onnx": "an ONNX file", "run": "your Studio run"}


# --- state from the URL, once per session ------------------------------------------------------
def _init_from_url() -> None:
    if ss.get("_explorer_init"):
        return
    ss["_explorer_init"] = True
    if qp.get("job"):
        ss["arch_source"] = "run"      # checked below (linked_run): a link that does not hold falls back
    arch = None
    if timm_archs.is_timm(qp.get("arch")):
        try:
            arch = ss["timm_arch"] = archs.canonical(qp["arch"])
            ss["arch_source"] = "timm"
        except UnknownArchitectureError as e:
            ss.setdefault("_url_errors", []).append(f"The link asks for an architecture this server cannot build "
                                                    f"({e}); showing AlexNet instead.")
            del qp["arch"]
    if arch is None:
        arch, problem = read_choice(qp.get("arch"), "arch", registry.names())
        if problem:
            ss.setdefault("_url_errors", []).append(f"The link asks for an unknown architecture ({problem}); "
                                                    "showing AlexNet instead.")
        arch = arch or "alexnet"
        ss["arch"] = arch
    spec = archs.resolve(arch)
    for k, o in spec.options.items():
        if f"o_{k}" in qp:
            try:
                ss[f"opt_{arch}_{k}"] = o.parse(k, qp[f"o_{k}"])
            except OptionError as e:
                ss.setdefault("_url_errors", []).append(f"Ignored from the link: {e}")
    if "size" in qp:
        # checked with the link's own options (the paper's U-Net takes 572 only with padding=valid)
        linked = {k: ss[f"opt_{arch}_{k}"] for k in spec.options if f"opt_{arch}_{k}" in ss}
        try:
            size = parse_input_size(qp["size"])
            check_input_size(spec, size, linked)
            ss[f"h_{arch}"], ss[f"w_{arch}"] = size[1], size[2]
        except AnalysisError as e:
            ss.setdefault("_url_errors", []).append(f"Ignored from the link: {e}")
    layer, problem = read_int(qp.get("layer"), "layer", 0, 100_000)   # clamped to the network below
    if problem:
        ss.setdefault("_url_errors", []).append(f"Ignored from the link: {problem}.")
    if layer is not None:
        ss["layer"] = layer
    ss["quiz"] = read_flag(qp.get("quiz"))
    depth, problem = read_int(qp.get("depth"), "depth", 1, 12)      # the diagram's, kept across a click
    if problem:
        ss.setdefault("_url_errors", []).append(f"Ignored from the link: {problem}.")
    if depth is not None:
        ss[f"diagram_{arch}"] = depth


def _on_arch_change() -> None:
    ss["layer"] = 0


@st.cache_data(max_entries=64, show_spinner=False)
def _notes(arch: str) -> list[ShownNote]:
    """The architecture's variant notes and slide slips (computed notes run the engine); the lecture's
    architectures have them, timm's, files and runs none."""
    return variant_notes(arch) if arch in registry.REGISTRY else []


def _option_widgets(spec: ArchSpec) -> dict[str, object]:
    values = {}
    for k, o in spec.options.items():
        key = f"opt_{spec.name}_{k}"
        if key not in ss:
            ss[key] = o.default
        if isinstance(o.default, bool):
            values[k] = st.toggle(k.replace("_", " "), key=key, help=o.help)
        elif o.choices:
            values[k] = st.selectbox(k.replace("_", " "), o.choices, key=key, help=o.help)
        elif isinstance(o.default, float):
            values[k] = st.number_input(k.replace("_", " "), min_value=o.min_value, max_value=o.max_value,
                                        step=0.25, key=key, help=o.help)
        else:
            values[k] = st.number_input(k.replace("_", " "), min_value=int(o.min_value or 1),
                                        max_value=int(o.max_value or 4096), step=1, key=key, help=o.help)
    return values


_init_from_url()
st.title("Architecture Explorer")
# Diagrams at their natural size (10 pt text, 13 px), scrolled sideways when wider than the page: a
# diagram shrunk to the column's width is unreadable on a projector. Set before anything is drawn, so
# the first frame of a diagram is already at that size.
st.html("<style>[data-testid='stGraphVizChart']{overflow-x:auto}"
        "[data-testid='stGraphVizChart'] svg{max-width:none!important;height:auto}</style>")
for msg in ss.pop("_url_errors", []):
    st.warning(msg)
run = linked_run() if ss.get("arch_source") == "run" else None
if ss.get("arch_source") == "run" and run is None:
    ss["arch_source"] = "lecture"
net = None            # an uploaded ONNX file, converted
fixed_hw = (False, False)

with st.sidebar:
    st.header("Architecture")
    sources = [k for k in SOURCES if k != "run" or run is not None]
    source = st.radio("Architectures", sources, key="arch_source", format_func=SOURCES.get, horizontal=True,
                      on_change=_on_arch_change,
                      help="The lecture's curated set; about 1,400 more that timm builds (type a name to search); "
                           "a model file of your own (ONNX); a Studio run's network with its new head.")
    if source == "timm":
        names = timm_names()
        if not names:
            st.error("timm is not installed on this server (pip install -r requirements.txt installs it).")
            st.stop()
        if ss.get("timm_arch") not in names:
            ss["timm_arch"] = "timm:inception_v4"
        arch = st.selectbox(f"timm architecture ({len(names):,}; type to search)", names, key="timm_arch",
                            on_change=_on_arch_change, format_func=lambda n: n[len(timm_archs.PREFIX):])
        spec = archs.resolve(arch)
        options = {}
        st.caption(f"Built by timm (marked *{arch}*), with random weights: {spec.description.split('. ', 1)[1]}")
    elif source == "onnx":
        up = st.file_uploader("ONNX file", type=["onnx"], key="onnx_file", max_upload_size=MAX_ONNX_MB,
                              help=f"Up to {MAX_ONNX_MB} MB, weights inside the file. Converted to PyTorch layers by "
                                   "onnx2torch and analysed by the same engine as every other network here.")
        if up is None:
            st.info("Upload an ONNX file (e.g. `torch.onnx.export(model, x, 'model.onnx', dynamo=False, "
                    "do_constant_folding=False)`) to see its layers, parameters, MACs, memory and diagram.")
            st.stop()
        data = up.getvalue()
        digest = file_digest(data)
        try:
            net = onnx_net(digest, up.name, data)
        except OnnxError as e:
            st.error(str(e))
            st.stop()
        spec = ArchSpec(name=net.name, title=net.title, family="ONNX file", builder=lambda **_: net.model,
                        input_size=net.input_size, year=0,
                        paper=f"written by {net.producer}, ONNX opset {net.opset}, {net.nodes:,} nodes",
                        description="Your model file, converted node by node to PyTorch layers (onnx2torch) and analysed "
                                    "with its own weights.")
        arch, options, fixed_hw = net.name, {}, net.fixed_hw
    elif source == "run":
        job_id, res = run
        spec = res.network_spec(job_id)
        arch, options = spec.name, {}
        st.caption(f"Studio run {job_id}: " + ", ".join(res.classes[:8]) + (", ..." if len(res.classes) > 8 else ""))
    else:
        arch = st.selectbox("Architecture", registry.names(), key="arch", on_change=_on_arch_change,
                            format_func=lambda n: registry.get(n).label)
        spec = registry.get(arch)
        options = _option_widgets(spec)
    st.subheader("Input size")
    for dim, default in (("h", spec.input_size[1]), ("w", spec.input_size[2])):
        if f"{dim}_{arch}" not in ss or fixed_hw[dim == "w"]:
            ss[f"{dim}_{arch}"] = default
    c_col, h_col, w_col = st.columns(3)
    c_col.number_input("C", value=spec.input_size[0], disabled=True, key=f"c_{arch}",
                       help="The number of input channels is fixed by the first layer.")
    # No max_value: the box would silently keep a typed 99999 while the page used the old size;
    # out-of-range sizes are refused below, with a message.
    h = h_col.number_input("H", min_value=1, step=1, key=f"h_{arch}", disabled=fixed_hw[0])
    w = w_col.number_input("W", min_value=1, step=1, key=f"w_{arch}", disabled=fixed_hw[1])
    if any(fixed_hw):
        st.caption("The file fixes the input size.")
    if (h, w) != tuple(spec.input_size[1:]):
        st.button("Reset to the default size", on_click=lambda: ss.update({f"h_{arch}": spec.input_size[1],
                                                                          f"w_{arch}": spec.input_size[2]}))
size = (spec.input_size[0], int(h), int(w))
if max(size[1:]) > MAX_SIDE:
    st.error(f"{int(h)}x{int(w)} is larger than this page analyses ({MAX_SIDE:,} pixels a side; the input image "
             f"alone would be {fmt_bytes(4 * spec.input_size[0] * int(h) * int(w))} in fp32). The default input for "
             f"{spec.title} is {'x'.join(map(str, spec.input_size))} (C x H x W); \"Reset to the default size\" "
             "sets it back.")
    st.stop()

st.caption(f"**{spec.title}**" + (f" ({spec.year})" if spec.year else "") + f" — {spec.description}  \n*{spec.paper}*")
if net is not None:
    for note in net.notes:
        st.info(note)


def _summary() -> Summary:
    """The engine's summary of what the sidebar chose (every source goes through the one engine)."""
    if net is not None:
        return onnx_summary(digest, size, net)
    if run is not None and source == "run":
        return run_summary(run[0], size, run[1])
    return cached_summary(arch, size, tuple(sorted(options.items())))


def _diagram(depth: int):
    if net is not None:
        return onnx_diagram(digest, size, depth, net)
    if run is not None and source == "run":
        return run_diagram(run[0], size, depth, run[1])
    return cached_diagram(arch, size, tuple(sorted(options.items())), depth)


try:
    summary: Summary = _summary()
except (AnalysisError, OptionError) as e:
    st.error(str(e))
    st.info(f"The default input for {spec.title} is {'x'.join(map(str, spec.input_size))} (C x H x W).")
    if source in ("lecture", "timm"):
        qp.from_dict({"arch": arch, "size": "x".join(map(str, size)), **({"sid": ss["sid"]} if "sid" in ss else {})})
    st.stop()

layers = summary.layers
t = summary.totals
for w_ in shown_warnings(summary):
    st.warning(w_)

# --- totals ------------------------------------------------------------------------------------
# Two by two: four metrics side by side cut the exact counts at projector widths (1024x768).
m1, m2 = st.columns(2)
m3, m4 = st.columns(2)
m1.metric("Parameters", fmt_int(t.params), help="Learnable weights and biases; shared weights once.")
m2.metric("Operations", fmt_macs(t.macs),
          help=f"Multiply-accumulates for one image (the lecture's 'ops'). FLOPs = 2 x MACs = {fmt_int(t.flops)}.")
m3.metric("Activations / image (forward)", fmt_bytes(t.forward_bytes),
          help="Input plus every newly allocated layer output, fp32. Backward needs roughly twice this.")
m4.metric("Weights in memory", fmt_bytes(t.param_bytes), help="4 bytes per parameter (fp32).")
st.caption(f"{fmt_int(t.activation_elems + t.input_elems)} activation values x 4 bytes = "
           f"{fmt_bytes(t.forward_bytes)} per image forward (~x2 = {fmt_bytes(2 * t.forward_bytes)} with "
           f"backward). FLOPs = 2 x MACs = {fmt_count(t.flops, 2)}."
           + (f" Keras would report {fmt_int(t.keras_params)} parameters, {fmt_int(t.bn_stat_elems)} of them "
              "non-trainable (BatchNorm's moving mean and variance, which PyTorch keeps as buffers)."
              if t.bn_stat_elems else ""))

# --- step through ------------------------------------------------------------------------------
st.subheader("Step through the layers", anchor="step")
n = len(layers)
ss["layer"] = min(max(int(ss.get("layer", 0)), 0), n - 1)


def _step(delta: int) -> None:
    ss["layer"] = min(max(ss["layer"] + delta, 0), n - 1)


if n > 1:
    st.slider("Layer", 0, n - 1, key="layer", label_visibility="collapsed", format="%d", help="Drag to any layer")
b1, b2, b3 = st.columns(3, vertical_alignment="center")
b1.button("◀ Previous", on_click=_step, args=(-1,), disabled=ss["layer"] == 0, width="stretch")
b2.button("Next ▶", on_click=_step, args=(1,), disabled=ss["layer"] == n - 1, width="stretch")
b3.toggle("Quiz mode", key="quiz", help="Answer a question about each layer before its arithmetic is shown.")
if ss["quiz"]:
    if "quiz_kinds" not in ss:
        ss["quiz_kinds"] = list(DEFAULT_QUIZ_KINDS)
    st.multiselect("Quiz me on", list(QUIZ_KINDS), key="quiz_kinds", format_func=QUIZ_KINDS.get,
                   help="The other layers show their arithmetic straight away.")
i = ss["layer"]
rec = layers[i]
title, steps = layer_card(summary, i)
reveal_key = f"{arch}|{size}|{sorted(options.items())}|{i}"
revealed = ss.setdefault("revealed", set())
kinds = ss.get("quiz_kinds", list(DEFAULT_QUIZ_KINDS))
hidden = ss["quiz"] and is_quizzed(rec, kinds) and reveal_key not in revealed
def _shape(shape: list[int]) -> str:
    return fmt_shape(shape) if len(shape) > 1 else f"{fmt_int(shape[0])} values"


st.caption(f"Layer {i} (of 0 to {n - 1}): input {_shape(rec.input_shape)}"
           + ("" if hidden else f" -> output {_shape(rec.output_shape)}"))
with st.container(border=True):
    if hidden:
        st.markdown(f"#### {rec.name} ({rec.type})")
        st.markdown(givens(rec))
        q = st.radio("Question", quiz_questions(rec), horizontal=True, key=f"quiz_q_{i}")
        st.text_input("Your answer", placeholder="e.g. 55x55x96 or 34,944", key=f"quiz_a_{i}")

        def _check() -> None:
            res = check_answer(rec, ss[f"quiz_q_{i}"], ss.get(f"quiz_a_{i}", ""))
            score = ss.setdefault("quiz_score", [0, 0])
            score[0] += int(res.correct)
            score[1] += 1
            revealed.add(reveal_key)
            ss["last_quiz"] = (reveal_key, res.correct, res.message)

        st.button("Check", on_click=_check, type="primary")
        st.button("Show me", on_click=lambda: revealed.add(reveal_key))
    else:
        last = ss.get("last_quiz")
        if ss["quiz"] and last and last[0] == reveal_key:
            (st.success if last[1] else st.error)(last[2])
        st.markdown(f"#### {title}")
        st.markdown(card_markdown(steps))
        for note in (n for n in _notes(arch) if n.layer == rec.module):
            (st.warning if note.slip else st.info)(("**Slide slip.** " if note.slip else "") + note.text)
if ss["quiz"]:
    nq = next_quizzed(summary, i, kinds)
    q1, q2 = st.columns([2, 6])
    q1.button("Next question ▶", disabled=nq is None, key="quiz_next",
              on_click=lambda n=nq: ss.update(layer=n), help="Jump to the next layer the quiz asks about.")
    if ss.get("quiz_score"):
        q2.caption(f"Quiz score this session: {ss['quiz_score'][0]} of {ss['quiz_score'][1]}")

# --- details -------------------------------------------------------------------------------------
def url_params(layer: int) -> dict[str, str]:
    """The page's state as a link: the address bar mirrors it; diagram nodes link to other layers. An
    uploaded file cannot be linked to; a Studio run is linked by its job (and view token)."""
    params = ({"src": "onnx", "layer": str(layer)} if net is not None else
              {**run_query(run[0]), "layer": str(layer)} if source == "run" else {"arch": arch, "layer": str(layer)})
    if size != tuple(spec.input_size):
        params["size"] = "x".join(map(str, size))
    for k, v in options.items():
        if v != spec.options[k].default:
            params[f"o_{k}"] = str(v)
    if ss["quiz"]:
        params["quiz"] = "1"
    if f"diagram_{arch}" in ss:
        params["depth"] = str(ss[f"diagram_{arch}"])
    if "sid" in ss:
        params["sid"] = ss["sid"]   # the session's runs stay one reload away on every page
    return params


# While a quiz question is open, the views that show every layer's shape or parameters wait too.
ANSWER_FIRST = ("This view shows the answer to the open question (every layer's output shape and parameters): "
                "it opens once you check your answer or press Show me.")
tab_diagram, tab_chart, tab_struct, tab_table, tab_mem, tab_notes = st.tabs(
    ["Diagram", "Per-layer chart", "Stages and blocks", "Full table", "Training memory", "Variant notes"])

with tab_diagram:
    if hidden:
        st.info(ANSWER_FIRST)
    else:
        top = max(1, summary.max_depth())
        if f"diagram_{arch}" not in ss:
            ss[f"diagram_{arch}"] = min(2 if top < 4 else 1, top)
        d_depth = (st.slider("Depth", 1, top, key=f"diagram_{arch}",
                             help="1 = the top-level blocks; each step opens the containers one level further")
                   if top > 1 else 1)
        try:
            drawn, first = _diagram(int(d_depth))
        except Exception as e:  # noqa: BLE001 - a trace torchview cannot follow: said, the rest of the page stays
            drawn = None
            st.info(f"The diagram cannot be drawn for this network at depth {d_depth} ({type(e).__name__}: "
                    f"{str(e)[:200]}); the Full table tab lists every layer.")
        if drawn is not None and drawn.nodes > MAX_NODES:
            st.info(f"At depth {d_depth} the diagram has {drawn.nodes:,} nodes, too many to read; choose a smaller "
                    "depth (the Full table tab lists every layer).")
        elif drawn is not None:
            # At its natural size (the style at the top of the page). A click reloads the page on
            # the step-through (#step), at the same depth.
            link = (lambda path: "?" + urlencode(url_params(first[path])) + "#step" if path in first else None)
            st.graphviz_chart(render(drawn, rec.module, link), width="content")
            st.caption(f"Drawn from the model by torchview: each box is a module with its input and output shapes; "
                       f"`add` and `cat` nodes are residual additions and concatenations. The red box holds the current "
                       f"layer ({rec.name}); click a box to step there. {drawn.nodes} nodes at depth {d_depth}.")

with tab_chart:
    if hidden:
        st.info(ANSWER_FIRST)
    else:
        log = st.toggle("Logarithmic scale", value=True, key="log_chart")
        st.plotly_chart(layer_chart(summary, i, log), width="stretch", key="layer_chart")
        st.caption("The current layer is red. Early layers hold the activations, late (FC) layers the parameters.")

with tab_struct:
    if hidden:
        st.info(ANSWER_FIRST)
    else:
        max_depth = summary.max_depth()
        depth = 1
        if max_depth > 1:
            depth = st.slider("Grouping depth", 1, max_depth, min(2, max_depth), key=f"block_depth_{arch}",
                              help="1 = top-level stages; deeper = blocks inside them")
        blocks = summary.blocks(depth)
        st.dataframe(pd.DataFrame([{"block": b.name, "type": b.type, "layers": b.layers,
                                    "input": fmt_shape(b.input_shape), "output": fmt_shape(b.output_shape),
                                    "params": b.params, "MACs": b.macs, "receptive field": f.label(),
                                    "jump": f.jump} for b, f in zip(blocks, block_fields(summary, blocks))]),
                     hide_index=True, width="stretch",
                     column_config={"params": st.column_config.NumberColumn(format="localized"),
                                    "MACs": st.column_config.NumberColumn(format="localized")})

with tab_table:
    if hidden:
        st.info(ANSWER_FIRST)
    else:
        df = pd.DataFrame([{"#": r.index, "layer": r.name, "type": r.type, "output": fmt_shape(r.output_shape),
                            "params": r.params, "MACs": r.macs, "activations": r.activation_elems,
                            "memory (bytes)": r.activation_bytes, "receptive field": f.label(), "jump": f.jump}
                           for r, f in zip(layers, fields_of_view(summary))])
        st.dataframe(df, hide_index=True, width="stretch", height=420,
                     column_config={c: st.column_config.NumberColumn(format="localized")
                                    for c in ("params", "MACs", "activations", "memory (bytes)")})
        st.caption("Receptive field in input pixels, unclipped; \"whole input\" once a fully connected layer or a "
                   "global pooling has mixed all positions (from there a growing number would mean nothing).")
        st.download_button("Download CSV", summary.to_csv(), file_name=f"{arch.replace(':', '_')}_{'x'.join(map(str, size))}.csv",
                           mime="text/csv", icon=":material/download:")

with tab_mem:
    c1, c2 = st.columns(2)
    batch = c1.number_input("Batch size", 1, 4096, 32, key="mem_batch")
    opt = c2.selectbox("Optimiser", ["sgd", "sgd_momentum", "adam"], index=2, key="mem_opt",
                       format_func={"sgd": "SGD", "sgd_momentum": "SGD with momentum", "adam": "Adam"}.get)
    mem = summary.training_memory(int(batch), opt)
    st.dataframe(pd.DataFrame([
        {"part": "activations kept for backward", "bytes": mem.activations, "size": fmt_bytes(mem.activations)},
        {"part": "parameters", "bytes": mem.params, "size": fmt_bytes(mem.params)},
        {"part": "gradients", "bytes": mem.grads, "size": fmt_bytes(mem.grads)},
        {"part": "optimiser state", "bytes": mem.optimizer, "size": fmt_bytes(mem.optimizer)},
        {"part": "total", "bytes": mem.total, "size": fmt_bytes(mem.total)},
    ]), hide_index=True)
    st.caption("An estimate (fp32): real training also needs workspace for convolutions, memory lost to "
               "allocator fragmentation and a few extra tensors some layers keep for backward.")

with tab_notes:
    notes = _notes(arch)
    for note in (n for n in notes if not n.slip):
        st.info(note.text)
    slips = [n for n in notes if n.slip]
    if slips:
        st.markdown("**Slide slips** (where the lecture's slides are wrong or loose)")
        for note in slips:
            st.warning(note.text + (f" (layer {note.layer})" if note.layer else ""))
    if not notes:
        st.write("No variant notes for this architecture.")

# --- mirror the state in the URL ------------------------------------------------------------------
params = url_params(i)
if dict(qp) != params:
    qp.from_dict(params)
