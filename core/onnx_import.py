"""Any model file: an ONNX graph converted to a torch module and fed to the one analysis engine.

There is no second engine. The file is read with `onnx`, checked, converted node by node into a
`torch.fx.GraphModule` by onnx2torch (each ONNX Conv becomes an `nn.Conv2d`, Gemm an `nn.Linear`,
BatchNormalization an `nn.BatchNorm2d`, ...), and `core.analysis.summarize_module` then counts
shapes, parameters, MACs, memory and receptive fields exactly as it does for the registry. The
forward pass runs on the CPU with the file's own weights: a converted graph reads values from its
constants (a Reshape's target shape), which the meta device does not hold.

An upload is untrusted. Before anything is converted:
- size: at most MAX_ONNX_MB (ResNet-152's export, 230 MB, fits; a 300 MB file is refused);
- parsing: protobuf's own limits; a file it cannot read, or one without a graph, gets a sentence;
- nodes: at most MAX_NODES over the graph and its subgraphs; subgraphs nested at most MAX_NESTING deep;
- external data: a tensor whose values live in another file is refused, never looked up (its
  `location` is a path on the server);
- operators: every node is matched with onnx2torch's converters first, and all the unsupported
  ones are named in one message;
- names: node names become module paths (the exporter's "/layer1/layer1.0/conv1/Conv" becomes
  `layer1.0.conv1.Conv`), cut to letters, digits, "_" and "-", so that no name reaches a page's
  HTML or the diagram's DOT text as it was written.

onnx and onnx2torch are imported here only: `import core` works without them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from core.analysis import MAX_SIDE, AnalysisError, Summary, summarize_module

MAX_ONNX_MB = 256        # MiB, as Streamlit counts an upload; ResNet-152's ONNX export is 230 MB
MAX_NODES = 20_000       # ResNet-152 exports as 500 nodes, a ViT-L as about 1,800
MAX_NESTING = 3          # subgraphs (If / Loop bodies) inside subgraphs
DYNAMIC_SIDE = 224       # height and width when the file leaves them open
_NAME_PART = re.compile(r"[^A-Za-z0-9_-]+")
_TITLE = re.compile(r"[^A-Za-z0-9_.-]+")


class OnnxError(ValueError):
    """A model file that cannot be analysed, with a sentence for the user."""


@dataclass(frozen=True)
class OnnxNet:
    """A converted ONNX file, ready for `summarize_onnx`."""

    model: nn.Module                     # torch.fx.GraphModule, eval mode, CPU, the file's weights
    title: str                           # the file's name
    input_size: tuple[int, int, int]     # (C, H, W) of one input; DYNAMIC_SIDE where the file leaves a side open
    fixed_hw: tuple[bool, bool]          # whether the file fixes the height and the width
    inputs: int                          # image inputs per forward pass, all of one shape
    opset: int
    nodes: int
    producer: str                        # e.g. "pytorch 2.14.1"
    notes: tuple[str, ...]               # what a reader of the numbers should know about this file

    @property
    def name(self) -> str:
        """What `Summary.arch` says: "onnx:<file name>"."""
        return "onnx:" + self.title


def _first_line(e: BaseException) -> str:
    text = " ".join(str(e).split())
    return (text[:200] + "...") if len(text) > 200 else (text or type(e).__name__)


def _graphs(graph: Any) -> tuple[int, int]:
    """(nodes over the graph and every subgraph, deepest nesting), walked without recursion."""
    from onnx import AttributeProto

    nodes, deepest, stack = 0, 0, [(graph, 0)]
    while stack:
        g, depth = stack.pop()
        deepest = max(deepest, depth)
        if depth > MAX_NESTING:
            break
        nodes += len(g.node)
        if nodes > MAX_NODES:
            break
        for n in g.node:
            for a in n.attribute:
                if a.type == AttributeProto.GRAPH:
                    stack.append((a.g, depth + 1))
                elif a.type == AttributeProto.GRAPHS:
                    stack.extend((s, depth + 1) for s in a.graphs)
    return nodes, deepest


def _external(model: Any) -> str | None:
    """The `location` of the first tensor whose values live in another file, or None."""
    from onnx import TensorProto

    def where(t: Any) -> str | None:
        if t.data_location == TensorProto.EXTERNAL:
            return next((e.value for e in t.external_data if e.key == "location"), "?")
        return None

    stack = [model.graph]
    while stack:
        g = stack.pop()
        for t in list(g.initializer) + [s.values for s in g.sparse_initializer]:
            if where(t):
                return where(t)
        for n in g.node:
            for a in n.attribute:
                for t in ([a.t] if a.HasField("t") else []) + list(a.tensors):
                    if where(t):
                        return where(t)
                stack.extend(([a.g] if a.HasField("g") else []) + list(a.graphs))
    return None


def _image_inputs(model: Any, title: str) -> tuple[tuple[int, int, int], tuple[bool, bool], int]:
    """The graph's inputs (initializers listed as inputs left out): one or more float images of one
    shape (N, C, H, W). Returns (C, H, W), which of H and W the file fixes, and how many."""
    from onnx import TensorProto

    inits = {t.name for t in model.graph.initializer}
    ins = [v for v in model.graph.input if v.name not in inits]
    if not ins:
        raise OnnxError(f"{title} has no input to feed: its graph computes from constants alone.")
    shapes = []
    for v in ins:
        tt = v.type.tensor_type
        if not v.type.HasField("tensor_type") or tt.elem_type not in (TensorProto.FLOAT, TensorProto.FLOAT16,
                                                                      TensorProto.DOUBLE, TensorProto.BFLOAT16):
            raise OnnxError(f"{title}: input {v.name!r} is not a float tensor (an image); the explorer analyses "
                            "networks that read images.")
        dims = [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None for d in tt.shape.dim]
        if len(dims) != 4:
            raise OnnxError(f"{title}: input {v.name!r} has {len(dims)} dimensions; the explorer analyses networks "
                            "that read images as (N, C, H, W).")
        if dims[1] is None:
            raise OnnxError(f"{title}: input {v.name!r} leaves its number of channels open; the explorer needs it "
                            "fixed (export with a fixed C).")
        shapes.append(tuple(dims[1:]))
    if len(set(shapes)) > 1:
        raise OnnxError(f"{title} takes {len(ins)} inputs of different shapes; the explorer analyses networks whose "
                        "inputs are images of one shape.")
    c, h, w = shapes[0]
    return (int(c), int(h or DYNAMIC_SIDE), int(w or DYNAMIC_SIDE)), (h is not None, w is not None), len(ins)


def _unsupported(model: Any) -> list[str]:
    """Every operator of the graph that onnx2torch has no converter for, with its opset and count."""
    from onnx2torch.node_converters.registry import get_converter

    opsets = {("" if o.domain == "ai.onnx" else o.domain): o.version for o in model.opset_import}
    missing: dict[str, int] = {}
    for n in model.graph.node:
        domain = "" if n.domain == "ai.onnx" else n.domain
        version = opsets.get(domain)
        label = n.op_type + (f" (domain {domain})" if domain else "")
        if version is None:
            key = f"{label}, whose domain the file declares no opset for"
        else:
            try:
                get_converter(domain=domain, operation_type=n.op_type, version=version)
                continue
            except NotImplementedError:
                key = f"{label} at opset {version}"
        missing[key] = missing.get(key, 0) + 1
    return [f"{k} ({v} node{'s' if v > 1 else ''})" for k, v in sorted(missing.items())]


def _fold_identities(model: Any) -> None:
    """Exporters share equal constants through Identity nodes (torch's dedupes equal initializers, e.g.
    the ones and zeros of fresh BatchNorm layers); onnx2torch wants a layer's weights as initializers.
    Each Identity of an initializer becomes a copy of it under the Identity's output name."""
    from onnx import TensorProto

    g = model.graph
    inits = {t.name: t for t in g.initializer}
    outputs = {o.name for o in g.output}
    keep = []
    for n in g.node:
        if n.op_type == "Identity" and len(n.input) == 1 and n.input[0] in inits and n.output[0] not in outputs:
            t = TensorProto()
            t.CopyFrom(inits[n.input[0]])
            t.name = n.output[0]
            g.initializer.append(t)
            inits[t.name] = t
        else:
            keep.append(n)
    if len(keep) != len(g.node):
        del g.node[:]
        g.node.extend(keep)


def module_paths(node_names: list[str]) -> list[str]:
    """Module paths for ONNX node names, in order: the scopes of "/layer1/layer1.0/conv1/Conv" become
    `layer1.0.conv1.Conv` (a scope that repeats its parent's path plus ".x" keeps only "x"); characters
    other than letters, digits, "_" and "-" become "_"; every path unique, and none the prefix of another
    (a module cannot be both a layer and a container)."""
    paths: list[str] = []
    for k, raw in enumerate(node_names):
        parts: list[str] = []
        prev = ""
        for scope in (s for s in raw.split("/") if s):
            short = scope[len(prev) + 1:] if prev and scope.startswith(prev + ".") else scope
            prev = scope
            parts.extend(p for p in short.split(".") if p)
        parts = [(_NAME_PART.sub("_", p)[:64] or "_") for p in parts] or [f"node{k}"]
        paths.append(".".join(parts))
    seen: dict[str, int] = {}
    unique = []
    for p in paths:
        q = p
        while q in seen:
            seen[p] += 1
            q = f"{p}_{seen[p]}"
        seen.setdefault(p, 0)
        seen[q] = 0
        unique.append(q)
    prefixes = {".".join(p.split(".")[:i]) for p in unique for i in range(1, p.count(".") + 1)}
    return [p + "_" if p in prefixes else p for p in unique]


def _nest(gm: Any, node_names: dict[str, str]) -> Any:
    """The GraphModule with its layers under nested module paths (`module_paths`), same graph."""
    from torch import fx

    calls = [n for n in gm.graph.nodes if n.op == "call_module"]
    new = dict(zip((n.target for n in calls), module_paths([node_names.get(n.target, n.target) for n in calls])))
    root: dict[str, Any] = {}
    for n in gm.graph.nodes:
        if n.op == "call_module":
            root[new[n.target]] = gm.get_submodule(n.target)
            n.target = new[n.target]
        elif n.op == "get_attr":
            root[n.target] = gm.get_buffer(n.target) if "." in n.target else getattr(gm, n.target)
    return fx.GraphModule(root, gm.graph, class_name="OnnxModel")


def read_onnx(data: bytes, filename: str = "model.onnx") -> OnnxNet:
    """An uploaded ONNX file converted for the analysis engine.

    Raises:
        OnnxError: a sentence for the user: too large, not ONNX, too many nodes or too deep, weights in
            another file, operators the converter does not know (all named), or a conversion that failed.
    """
    title = _TITLE.sub("_", str(filename))[:80] or "model.onnx"
    if len(data) > MAX_ONNX_MB * 2**20:
        raise OnnxError(f"{title} is {len(data) / 2**20:,.0f} MB; the explorer reads ONNX files of up to "
                        f"{MAX_ONNX_MB} MB (ResNet-152's export is 230 MB).")
    try:
        import onnx
        from onnx2torch import convert
        from onnx2torch.onnx_graph import OnnxGraph
    except ImportError:
        raise OnnxError("Reading ONNX files needs the onnx and onnx2torch packages (pip install -r "
                        "requirements.txt).") from None
    model = onnx.ModelProto()
    try:
        model.ParseFromString(data)
    except Exception as e:  # noqa: BLE001 - DecodeError and friends: the file's fault, said in one line
        raise OnnxError(f"{title} is not an ONNX file: protobuf cannot read it ({_first_line(e)}).") from None
    if not model.HasField("graph") or not model.graph.node or model.ir_version < 3:
        raise OnnxError(f"{title} is not an ONNX model: it holds no graph of operators"
                        + (f" (IR version {model.ir_version}; the converter reads 3 and later)"
                           if model.graph.node and model.ir_version < 3 else "") + ".")
    nodes, depth = _graphs(model.graph)
    if depth > MAX_NESTING:
        raise OnnxError(f"{title} nests subgraphs more than {MAX_NESTING} deep; the explorer does not read it.")
    if nodes > MAX_NODES:
        raise OnnxError(f"{title} has more than {MAX_NODES:,} nodes; the explorer reads graphs of up to that many.")
    where = _external(model)
    if where is not None:
        raise OnnxError(f"{title} keeps weights in another file ({_NAME_PART.sub('_', where)[:60]}); upload one file "
                        "with its weights inside (onnx.save(model, path, save_as_external_data=False)).")
    size, fixed, n_inputs = _image_inputs(model, title)
    missing = _unsupported(model)
    if missing:
        raise OnnxError(f"{title} uses operators that the converter (onnx2torch) cannot turn into PyTorch layers: "
                        + "; ".join(missing) + ". The explorer analyses graphs of the common CNN operators "
                        "(Conv, BatchNormalization, Relu, MaxPool, Gemm, Add, Concat, ...).")
    try:
        onnx.checker.check_model(model)
    except Exception as e:  # noqa: BLE001 - ValidationError and the checker's other complaints
        raise OnnxError(f"{title} is not a valid ONNX model: {_first_line(e)}") from None
    _fold_identities(model)
    try:
        gm = convert(model)
        names = {unique: node.name for unique, node in OnnxGraph(model.graph).nodes.items()}
        gm = _nest(gm, names)
    except NotImplementedError as e:
        raise OnnxError(f"{title}: the converter (onnx2torch) does not support part of this graph: "
                        f"{_first_line(e)}") from None
    except Exception as e:  # noqa: BLE001 - any failure inside the converter is reported, never a traceback
        raise OnnxError(f"{title} cannot be converted to PyTorch layers ({type(e).__name__}: {_first_line(e)}).") from None
    gm.eval()
    ops = {n.op_type for n in model.graph.node}
    notes = []
    if "Conv" in ops and "BatchNormalization" not in ops:
        notes.append("This file has no BatchNormalization layers. If the network had any: exported in eval mode "
                     "with constant folding (torch.onnx's default), BatchNorm is folded into the convolution before it, "
                     "which then gets a bias, so the file has fewer parameters than the PyTorch model (ResNet-18: "
                     "11,684,712 instead of 11,689,512) and the same MACs. do_constant_folding=False keeps it.")
    if "MatMul" in ops:
        notes.append("MatMul nodes with a constant weight are converted to matrix products, not layers: their "
                     "weights count as buffers, and their multiply-accumulates are not counted (the engine counts "
                     "convolutions and fully connected layers).")
    producer = " ".join(p for p in (model.producer_name, model.producer_version) if p) or "unknown"
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    return OnnxNet(gm, title, size, fixed, n_inputs, opset, nodes, producer, tuple(notes))


def summarize_onnx(net: OnnxNet, size: tuple[int, int, int] | None = None) -> Summary:
    """The engine's `Summary` of a converted file at its input size, or at `size` where the file leaves
    the height or width open.

    Raises:
        AnalysisError: a size the file fixes otherwise, out of bounds, or a forward pass that fails.
    """
    size = tuple(net.input_size) if size is None else tuple(int(v) for v in size)
    c, h, w = size
    if c != net.input_size[0]:
        raise AnalysisError(f"{net.title} takes {net.input_size[0]}-channel input; got {c} channels.")
    for axis, (side, fixed, own) in enumerate(zip((h, w), net.fixed_hw, net.input_size[1:])):
        if fixed and side != own:
            raise AnalysisError(f"{net.title} fixes its input {'height' if axis == 0 else 'width'} at {own}; "
                                f"got {side}.")
    if min(h, w) < 1 or max(h, w) > MAX_SIDE:
        raise AnalysisError(f"Height and width must be from 1 to {MAX_SIDE}, got {h}x{w}.")
    try:
        return summarize_module(net.model, net.name, net.title, (c, h, w), net.inputs)
    except AnalysisError:
        raise
    except MemoryError:
        raise AnalysisError(f"{net.title} needs more memory than this server has at {h}x{w}.") from None
    except Exception as e:  # noqa: BLE001 - a converted op that fails at this size: said, not a traceback
        raise AnalysisError(f"{net.title} cannot run at input {c}x{h}x{w}: {type(e).__name__}: "
                            f"{_first_line(e)}") from None


def export_onnx(model: nn.Module, size: tuple[int, int, int], keep_batchnorm: bool = True) -> bytes:
    """A model as ONNX bytes through torch's TorchScript exporter (`dynamo=False`, which needs no
    onnxscript), opset 17, for one (1, C, H, W) input; `keep_batchnorm` turns constant folding off
    so BatchNorm stays a layer of its own. For tests and the CLI; the dashboard only reads files."""
    import io
    import warnings

    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")        # the TorchScript exporter's deprecation notice
        torch.onnx.export(model.eval(), (torch.zeros(1, *size),), buf, dynamo=False, opset_version=17,
                          do_constant_folding=not keep_batchnorm, input_names=["image"], output_names=["logits"])
    return buf.getvalue()
