"""The architecture diagram: drawn from the model by torchview, its nodes tied to module paths,
the current layer's node marked and every module node linked."""

from __future__ import annotations

import re

import pytest

from core import registry
from core.diagram import diagram, node_of, render
from tests.sweeps import every


def _draw(arch: str, depth: int):
    spec = registry.get(arch)
    return diagram(spec.build_meta(), spec.input_size, depth, spec.num_inputs)


def test_top_level_diagram_has_one_node_per_top_level_module():
    d = _draw("resnet18", 1)
    model = registry.get("resnet18").builder()
    assert [p for _, p in d.modules] == [n for n, _ in model.named_children()]   # conv1 ... fc, in order
    assert "(1, 64, 56, 56)" in d.dot                                           # shapes on the nodes


def _edges(dot: str) -> list[tuple[str, str]]:
    return re.findall(r"^\s*(\w+) -> (\w+)", dot, re.M)


def test_branches_and_skips_are_drawn():
    inception = _draw("inception_module", 2)
    node = dict((p, n) for n, p in inception.modules)
    # the four branches meet in one node: the last node of each branch has an edge into the concatenation
    ends = {node["branch1x1.relu"], node["branch3x3.relu"], node["branch5x5.relu"], node["branch_pool"]}
    into_cat = {a for a, b in _edges(inception.dot) if b == node["concat"]}
    assert into_cat == ends
    # and every branch starts from the input: four edges leave the input node
    first = {node["branch1x1.conv"], node["branch3x3.conv"], node["branch5x5.conv"], node["branch_pool"]}
    assert {b for a, b in _edges(inception.dot) if a == "0"} == first
    resnet = _draw("resnet18", 3)
    assert resnet.dot.count("add") >= 8                 # eight basic blocks, one residual addition each
    assert node_of(resnet, "layer1.0.conv2") == dict((p, n) for n, p in resnet.modules)["layer1.0.conv2"]


def test_the_current_layer_is_marked_and_nodes_link_to_their_layers():
    d = _draw("resnet18", 2)
    here = node_of(d, "layer2.0.conv1")                 # collapsed into its block at depth 2
    assert here == dict((p, n) for n, p in d.modules)["layer2.0"]
    dot = render(d, "layer2.0.conv1", lambda path: f"?layer={path}" if path != "fc" else None)
    assert f'\t{here} [href="?layer=layer2.0"' in dot and 'fillcolor="#f5b7b1"' in dot
    assert dot.count("fillcolor=\"#f5b7b1\"") == 1
    assert 'tooltip="step to fc"' not in dot and dot.rstrip().endswith("}")


@pytest.mark.parametrize("arch", every())
def test_every_architecture_draws_at_every_depth_the_page_offers(arch):
    from core.analysis import summarize

    spec = registry.get(arch)
    model = spec.build_meta()        # as the page draws it: the structure, no weights
    sizes = []
    for depth in range(1, max(1, summarize(arch, tuple(spec.input_size)).max_depth()) + 1):
        d = diagram(model, spec.input_size, depth, spec.num_inputs)
        assert d.modules and d.dot.startswith(("digraph", "strict digraph")), depth
        sizes.append(d.nodes)
    assert sizes[0] <= 400 and sizes == sorted(sizes)          # opening containers only adds nodes


def test_each_node_links_to_the_first_layer_inside_it():
    import torch

    from core.analysis import summarize
    from core.diagram import first_layers

    layers = summarize("resnet18", (3, 224, 224)).layers
    d = _draw("resnet18", 2)
    first = first_layers(d, [r.module for r in layers])
    assert set(first) == {p for _, p in d.modules}
    # Independently: the order in which a real forward pass calls the leaf modules (hooks), and
    # for each node the first leaf called inside it.
    model = registry.get("resnet18").builder().eval()
    calls: list[str] = []
    hooks = [m.register_forward_pre_hook(lambda m, a, name=name: calls.append(name))
             for name, m in model.named_modules() if name and not list(m.children())]
    try:
        with torch.no_grad():
            model(torch.zeros(1, 3, 64, 64))
    finally:
        for h in hooks:
            h.remove()
    for path, i in first.items():
        called_first = next(c for c in calls if c == path or c.startswith(path + "."))
        assert layers[i].module == called_first, path
    assert layers[first["layer2.0"]].module == "layer2.0.conv1"


def test_two_diagrams_drawn_at_once_both_keep_their_modules():
    """Two sessions drawing at the same moment (threads of one server): each diagram is the one
    drawn alone (torchview swaps nn.Module.__call__ for the whole process while it traces)."""
    import threading

    spec = registry.get("mobilenet_v2")
    alone = diagram(spec.builder(), spec.input_size, 5)
    out: list = [None] * 4

    def draw(k: int) -> None:
        out[k] = diagram(spec.builder(), spec.input_size, 5)

    threads = [threading.Thread(target=draw, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for d in out:
        assert [p for _, p in d.modules] == [p for _, p in alone.modules] and d.nodes == alone.nodes
        assert "hardtanh" not in d.dot and "batch_norm" not in d.dot


def test_a_trace_leaves_other_threads_tensors_and_models_alone():
    """A server thread that makes tensors and runs a model while another session's diagram is traced
    (torchview swaps nn.Module.__call__ and torch.zeros, randn, ... for the whole process) gets plain
    tensors back, and the diagram stays the one drawn alone."""
    import threading

    import torch

    spec = registry.get("mobilenet_v2")
    alone = diagram(spec.builder(), spec.input_size, 5)
    other = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU())
    done = threading.Event()
    seen: set[type] = set()

    def busy() -> None:
        with torch.no_grad():
            while not done.is_set():
                x = torch.zeros(1, 3, 8, 8) + torch.randn(1, 3, 8, 8)
                seen.update({type(x), type(other(x))})

    worker = threading.Thread(target=busy)
    worker.start()
    try:
        traced = [diagram(spec.builder(), spec.input_size, 5) for _ in range(3)]
    finally:
        done.set()
        worker.join()
    assert seen == {torch.Tensor}
    for d in traced:
        assert [p for _, p in d.modules] == [p for _, p in alone.modules] and d.nodes == alone.nodes
