"""The architecture as a diagram, drawn from the model itself by torchview.

torchview traces one forward pass (on the meta device: no memory, no weights) and draws each
module as a node with its input and output shapes, containers collapsed below a chosen depth, and
function calls such as a residual `add` or Inception's `cat` as nodes of their own, so branches
and skips show as they run. `diagram()` keeps the DOT text and which module each node stands for;
`render()` then marks the node that holds the explorer's current layer and makes every module
node a link that moves the step-through there. The DOT text is drawn in the browser
(`st.graphviz_chart`), so no Graphviz binary is needed.
"""

from __future__ import annotations

import re
import threading
import warnings
from dataclasses import dataclass
from typing import Callable, Sequence

import torch
from torch import nn

MAX_NODES = 400        # beyond this a diagram is unreadable: the page asks for a smaller depth
# torchview records modules by swapping `nn.Module.__call__` and torch's creation ops (zeros, randn,
# ...) for the whole process while it traces, and puts the originals back when it ends. Two traces at
# once (two users, two threads) undo each other's swap: the later one loses its modules halfway and
# draws them as function calls (conv2d, batch_norm, hardtanh for ReLU6). One trace at a time.
_TRACE = threading.Lock()


def _only_in(thread: int, traced: Callable, original: Callable) -> Callable:
    def call(*args, **kwargs):
        return (traced if threading.get_ident() == thread else original)(*args, **kwargs)
    return call


def _thread_recorder():
    """torchview's Recorder, its swaps seen only by the tracing thread. Without this, another
    session's thread that makes a tensor during a trace (torch.zeros) gets torchview's recording
    tensor back: its model's calls land in the diagram as extra nodes, and its own results are
    recording tensors."""
    from torchview import recorder_tensor

    class ThreadRecorder(recorder_tensor.Recorder):
        per_thread = True

        def __enter__(self) -> None:
            # Installs the thread-bound swaps directly: torchview's own __enter__ would first make
            # the recording versions global, and a thread that made a tensor in that moment got one.
            me = threading.get_ident()
            nn.Module.__call__ = _only_in(me, self.new_module_forward, self.orig_module_forward)
            for name, op in zip(recorder_tensor.orig_name_list, recorder_tensor._orig_op_list):
                setattr(torch, name, _only_in(me, recorder_tensor.creation_ops_wrapper(op, self.model_graph), op))

    return ThreadRecorder


@dataclass(frozen=True)
class Diagram:
    dot: str                              # Graphviz source
    modules: tuple[tuple[str, str], ...]  # (node id, module path) of every module node
    nodes: int                            # nodes drawn
    depth: int


def diagram(model: nn.Module, input_size: Sequence[int], depth: int, num_inputs: int = 1,
            device: str = "meta") -> Diagram:
    """The diagram of `model` for one input of (C, H, W) `input_size`, containers expanded down
    to `depth` (1 = the top-level blocks). `device`: where the trace runs; "cpu" for a model whose
    forward needs values, not only shapes (a converted ONNX graph reads its shape constants)."""
    import torchview.torchview
    from torchview import draw_graph
    from torchview.computation_node import ModuleNode

    if not getattr(torchview.torchview.Recorder, "per_thread", False):
        torchview.torchview.Recorder = _thread_recorder()     # draw_graph looks it up there

    names = {id(m): name for name, m in model.named_modules() if name}
    shape = (1, *input_size)
    with _TRACE, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        g = draw_graph(model, input_size=[shape] * num_inputs, depth=depth, device=device, expand_nested=True,
                       hide_inner_tensors=True, roll=False, graph_name=type(model).__name__)
    modules: dict[str, str] = {}
    for edge in g.edge_list:
        for node in edge:
            if isinstance(node, ModuleNode) and node.node_id in g.id_dict and node.compute_unit_id in names:
                modules[str(g.id_dict[node.node_id])] = names[node.compute_unit_id]
    # torchview fits the drawing into 12 x 12 inches; a tall network's 10 pt text then shrinks to
    # unreadable sizes. The page shows the natural size and scrolls instead.
    dot = re.sub(r' size="[0-9.]+,[0-9.]+"', "", g.visual_graph.source, count=1)
    return Diagram(dot, tuple(sorted(modules.items(), key=lambda kv: int(kv[0]))),
                   len(g.id_dict), depth)


def first_layers(d: Diagram, layer_modules: Sequence[str]) -> dict[str, int]:
    """Module path of each node -> index of the first layer (in `layer_modules`, the module path of
    every layer call in order) that runs inside it: where a click on that node steps to."""
    first: dict[str, int] = {}
    for _, path in d.modules:
        prefix = path + "."
        first_index = next((i for i, m in enumerate(layer_modules) if m == path or m.startswith(prefix)), None)
        if first_index is not None:
            first[path] = first_index
    return first


def node_of(d: Diagram, layer: str) -> str | None:
    """The node that holds `layer` (a module path): the module itself, or its deepest drawn ancestor."""
    best, best_len = None, -1
    for node, path in d.modules:
        if (layer == path or layer.startswith(path + ".")) and len(path) > best_len:
            best, best_len = node, len(path)
    return best


def render(d: Diagram, current: str | None, link: Callable[[str], str | None]) -> str:
    """The DOT text with the current layer's node filled and every module node linked (`link` maps
    a module path to a URL, or None for no link)."""
    extra = []
    here = node_of(d, current) if current else None
    for node, path in d.modules:
        attrs = []
        url = link(path)
        if url:
            attrs.append(f'href="{url}" target="_self" tooltip="step to {path}"')
        if node == here:
            attrs.append('fillcolor="#f5b7b1" penwidth=3 color="#c0392b"')
        if attrs:
            extra.append(f'\t{node} [{" ".join(attrs)}]')
    body = d.dot.rstrip().rstrip("}")
    return body + "\n" + "\n".join(extra) + "\n}\n"
