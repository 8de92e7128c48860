"""The analysis engine against independent computations, over the whole registry.

- parameters against sum(p.numel()) of the model,
- MACs against torch.utils.flop_counter (2 FLOPs per MAC), in total and per layer,
- output shapes against a real forward pass on the CPU,
- per-layer sums against the totals,
- analysing on the meta device allocates no weights.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from core import registry
from core.analysis import (AnalysisError, InputTooSmallError, analyze_model, last_spatial_layer,
                           summarize)
from core.features import gradcam_layer
from core.spec import weightless
from tests.conftest import ROOT
from tests.sweeps import every


def _meta_model(name, options=None):
    spec = registry.get(name)
    with torch.device("meta"):
        model = spec.build(options)
    return spec, model.train(spec.trains_forward(options))


@pytest.mark.parametrize("name", every())
def test_params_match_numel_and_layers_add_up(name):
    s = summarize(name)
    _, model = _meta_model(name)
    numel = sum(p.numel() for p in model.parameters())
    assert s.totals.params == numel
    # counted per layer at each module's first call, they must add up to the model's own count
    assert sum(r.params for r in s.layers) == numel and s.totals.unused_params == 0
    assert sum(r.trainable_params for r in s.layers) == sum(p.numel() for p in model.parameters() if p.requires_grad)


@pytest.mark.parametrize("name", every())
def test_macs_match_flop_counter(name):
    s = summarize(name)
    spec, model = _meta_model(name)
    xs = [torch.empty(1, *spec.input_size, device="meta") for _ in range(spec.num_inputs)]
    with torch.no_grad(), FlopCounterMode(display=False) as fc:
        model(*xs)
    assert 2 * s.totals.macs == fc.get_total_flops()
    per_module = fc.get_flop_counts()
    root = type(model).__name__
    by_module: dict[str, int] = {}
    for r in s.layers:
        by_module[r.module] = by_module.get(r.module, 0) + r.macs
    for block, macs in by_module.items():
        counted = sum(per_module.get(f"{root}.{block}", {}).values())
        assert 2 * macs == counted, block


def _real_output_shapes(name, size):
    """Leaf-module output shapes, in call order, from a real forward pass on the CPU."""
    spec, model = _meta_model(name)
    model = model.to_empty(device="cpu").eval()  # uninitialised weights: only shapes matter
    shapes, handles = [], []
    for n, m in model.named_modules():
        if n and next(m.children(), None) is None:
            handles.append(m.register_forward_hook(
                lambda m, a, o: shapes.append(list(o.shape[1:])) if isinstance(o, torch.Tensor) else None))
    try:
        with torch.no_grad():
            model(*[torch.zeros(1, *size) for _ in range(spec.num_inputs)])
    finally:
        for h in handles:
            h.remove()
    return shapes


def _small_size(name):
    """Torchvision classifiers pool adaptively, so a small input keeps the real pass cheap."""
    spec = registry.get(name)
    return (3, 64, 64) if spec.torchvision_name else spec.input_size


@pytest.mark.parametrize("name", every())
def test_shapes_match_a_real_forward_pass(name):
    if name == "googlenet":
        pytest.importorskip("torchvision")
    size = _small_size(name)
    s = summarize(name, size)
    assert [r.output_shape for r in s.layers] == _real_output_shapes(name, size)


def test_summarize_allocates_no_weights():
    """VGG-19's weights are 575 MB in fp32; analysing it must not allocate them."""
    code = ("import resource, sys; sys.path.insert(0, '.');"
            "from core.analysis import summarize; import torch;"
            "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss;"
            "s = summarize('vgg19');"
            "after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss;"
            "print(s.totals.param_bytes, (after - before) * 1024)")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    weight_bytes, grown = map(int, out.stdout.split())
    assert weight_bytes > 500e6
    assert grown < 50e6, f"peak memory grew by {grown / 1e6:.0f} MB"


def test_a_summary_asked_for_again_is_a_fresh_copy_of_the_same_analysis(monkeypatch):
    """summarize keeps its last results: asked again (its options spelled out or not) it returns what
    a fresh analysis returns, as a copy that a caller who changed the first one did not touch; another
    input size or option is analysed anew, and so is everything after forget_summaries."""
    from core.analysis import forget_summaries, summarize_module
    from core.spec import ArchSpec

    built = []
    build_meta = ArchSpec.build_meta
    monkeypatch.setattr(ArchSpec, "build_meta", lambda self, options=None: built.append(self.name)
                        or build_meta(self, options))
    forget_summaries()
    first = summarize("alexnet")
    assert summarize("alexnet").to_json() == first.to_json() and built == ["alexnet"]   # analysed once
    forget_summaries()
    summarize("alexnet")
    assert built == ["alexnet", "alexnet"]
    first.layers[0].output_shape[0] = -1
    first.layers.pop()
    spec = registry.get("alexnet")
    fresh = summarize_module(spec.build_meta(), spec.name, spec.title, spec.input_size,
                             options=spec.resolve_options(None))
    again = summarize("alexnet", None, spec.resolve_options(None))
    assert again is not first and again.to_json() == fresh.to_json()
    towers = summarize("alexnet", options={"two_towers": True})
    assert towers.totals.params < fresh.totals.params         # grouped convolutions: fewer weights
    assert summarize("resnet18", (3, 64, 64)).layers[-3].output_shape != summarize("resnet18").layers[-3].output_shape


def test_too_small_input_names_the_layer():
    with pytest.raises(InputTooSmallError) as e:
        summarize("alexnet", (3, 32, 32))
    assert e.value.layer == "pool2"
    assert "pool2" in str(e.value)
    with pytest.raises(InputTooSmallError) as e:
        summarize("vgg16", (3, 16, 16))
    assert e.value.layer == "features.30"


@pytest.mark.parametrize("size,match", [
    ((3, 5000, 224), "at most 4096"),
    ((1, 224, 224), "3-channel"),
    ((3, 0, 224), "at least 1"),
    ("3x224", "three numbers"),
    ("a b c", "whole numbers"),
])
def test_impossible_sizes_are_refused_clearly(size, match):
    with pytest.raises(AnalysisError, match=match):
        summarize("resnet18", size)


def test_fixed_classifier_mismatch_is_explained():
    with pytest.raises(AnalysisError, match="fc6 .* expects 9,216"):
        summarize("alexnet", (3, 300, 300))


def test_unet_size_rule():
    with pytest.raises(AnalysisError, match="divisible by 16"):
        summarize("unet", (1, 100, 100))
    assert summarize("unet", (1, 96, 96)).layers[-1].output_shape == [1, 96, 96]


def test_siamese_shares_weights():
    s = summarize("siamese")
    twins = [r for r in s.layers if r.name.startswith("encoder.conv1")]
    assert len(twins) == 2 and twins[0].params == 64 * 10 * 10 + 64 and twins[1].params == 0
    assert twins[1].shared and twins[1].macs == twins[0].macs


def test_googlenet_aux_classifiers_counted_in_training_mode():
    s = summarize("googlenet", options={"aux_logits": True})
    assert s.train_mode and s.totals.params == 13_004_888 and s.totals.unused_params == 0
    assert any(r.name.startswith("aux1.") for r in s.layers)


def test_json_and_csv_are_complete():
    s = summarize("lenet5")
    d = json.loads(s.to_json())
    assert {"layers", "totals"} <= set(d)
    for key in ("name", "type", "output_shape", "params", "macs", "activation_elems", "rf", "jump"):
        assert all(key in layer for layer in d["layers"])
    for key in ("params", "trainable_params", "macs", "activation_elems"):
        assert key in d["totals"]
    assert d["layers"][0]["output_shape"] == [6, 28, 28]
    lines = s.to_csv().strip().splitlines()
    assert len(lines) == len(s.layers) + 1 and lines[1].split(",")[4] == "28x28x6"


def _storage_bytes(tensors: list[torch.Tensor]) -> int:
    """Bytes of the distinct storages behind these tensors (views and in-place results count once)."""
    storages = {t.untyped_storage().data_ptr(): t.untyped_storage().nbytes() for t in tensors}
    return sum(storages.values())


@pytest.mark.parametrize("optimizer,torch_opt", [
    ("sgd", lambda p: torch.optim.SGD(p, lr=0.1)),
    ("sgd_momentum", lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9)),
    ("adam", lambda p: torch.optim.Adam(p)),
])
def test_training_memory_against_a_real_training_step(optimizer, torch_opt):
    """Every part of the estimate against the tensors a real step on the CPU allocates."""
    spec, model = _meta_model("lenet5")
    model = model.to_empty(device="cpu").train()
    x = torch.randn(3, *spec.input_size)
    outputs = [x]
    hooks = [m.register_forward_hook(lambda m, a, o: outputs.append(o)) for n, m in model.named_modules()
             if n and next(m.children(), None) is None]
    try:
        loss = model(x).square().sum()
    finally:
        for h in hooks:
            h.remove()
    opt = torch_opt(model.parameters())
    loss.backward()
    opt.step()
    m = summarize("lenet5").training_memory(batch=3, optimizer=optimizer)
    assert m.activations == _storage_bytes(outputs)
    assert m.params == _storage_bytes(list(model.parameters()))
    assert m.grads == _storage_bytes([p.grad for p in model.parameters()])
    state = [t for st in opt.state.values() for k, t in st.items() if k != "step"]
    assert m.optimizer == _storage_bytes(state)


def _real_leaf_outputs(name, size):
    """(module path, output shape) of every leaf-module call, from a real forward pass on the CPU."""
    spec, model = _meta_model(name)
    model = model.to_empty(device="cpu").eval()
    calls, handles = [], []
    for n, m in model.named_modules():
        if n and next(m.children(), None) is None:
            handles.append(m.register_forward_hook(lambda m, a, o, n=n: calls.append((n, list(o.shape[1:])))))
    try:
        with torch.no_grad():
            model(torch.zeros(1, *size))
    finally:
        for h in handles:
            h.remove()
    return calls


@pytest.mark.parametrize("side,stage,shape", [(224, "layer4", [512, 7, 7]), (32, "layer3", [256, 2, 2])])
def test_last_spatial_layer_against_a_real_forward_pass(side, stage, shape):
    """ResNet-18's last map larger than 1x1: layer4 at 224; at 32 layer4 is 1x1, so layer3."""
    s = summarize("resnet18", (3, side, side))
    last = last_spatial_layer(s.layers)
    real = [(n, out) for n, out in _real_leaf_outputs("resnet18", (3, side, side))
            if len(out) == 3 and out[1] * out[2] > 1][-1]
    assert (last.module, last.output_shape) == real
    assert last.stage == stage and last.output_shape == shape
    assert gradcam_layer(s) == stage


def test_last_spatial_layer_refuses_a_network_without_maps():
    layers, *_ = analyze_model(nn.Sequential(nn.Flatten(), nn.Linear(12, 2)), (3, 2, 2))
    with pytest.raises(AnalysisError, match="larger than 1x1"):
        last_spatial_layer(layers)


def test_blocks_against_the_modules_they_group():
    """Depth 1 groups ResNet-18 by top-level module: parameters against the module's own count,
    MACs against the FLOP counter per module, output shapes against a real forward pass."""
    s = summarize("resnet18")
    _, model = _meta_model("resnet18")
    blocks = s.blocks(1)
    assert [b.name for b in blocks] == [n for n, _ in model.named_children()]
    with torch.no_grad(), FlopCounterMode(display=False) as fc:
        model(torch.empty(1, 3, 224, 224, device="meta"))
    counts = fc.get_flop_counts()
    real = dict(_real_leaf_outputs("resnet18", (3, 224, 224)))
    for b in blocks:
        module = model.get_submodule(b.name)
        assert b.type == type(module).__name__
        assert b.params == sum(p.numel() for p in module.parameters()), b.name
        assert 2 * b.macs == sum(counts.get(f"ResNet.{b.name}", {}).values()), b.name
        last_leaf = [n for n in real if n == b.name or n.startswith(b.name + ".")][-1]
        assert b.output_shape == real[last_leaf], b.name
    layer1 = [b for b in s.blocks(2) if b.name.startswith("layer1")]
    assert [(b.name, b.type, b.input_shape, b.output_shape) for b in layer1] == [
        ("layer1.0", "BasicBlock", [64, 56, 56], [64, 56, 56]), ("layer1.1", "BasicBlock", [64, 56, 56], [64, 56, 56])]


def test_activation_memory_warning_in_decimal_gigabytes():
    """The warning fires above 8 GB (10^9 bytes, the unit fmt_bytes prints), not 8 GiB, and states
    the size: at 2592x2592 VGG-16 needs 8.2 GB, between the two."""
    small, big = summarize("vgg16", (3, 224, 224)), summarize("vgg16", (3, 2592, 2592))
    assert small.totals.forward_bytes < 8e9 < big.totals.forward_bytes < 8 * 2**30
    assert not any("activations" in w for w in small.warnings)
    gb = big.totals.forward_bytes / 1e9
    assert any(f"{gb:.1f} GB of activations" in w for w in big.warnings)


def test_initialisers_are_skipped_on_meta_only():
    """The build-time shortcut: meta parameters keep their shapes, real tensors still change."""
    real = torch.zeros(3)
    with weightless():
        layer = nn.Linear(4, 3)
        real.fill_(2.0)
    assert layer.weight.is_meta and tuple(layer.weight.shape) == (3, 4) and tuple(layer.bias.shape) == (3,)
    assert torch.equal(real, torch.full((3,), 2.0))


def test_padding_same_and_recurrent_layers():
    """padding="same" (timm's ConvMixer) pads d(k - 1) in all, the smaller half first: the output keeps
    the input's size and the field grows by k - 1, as with the explicit padding; an LSTM on the meta
    device gets the shapes of a real forward pass without running its step-by-step kernel."""
    same = nn.Sequential(nn.Conv2d(3, 4, 7, padding="same"), nn.Conv2d(4, 4, 4, padding="same", dilation=2))
    explicit = nn.Sequential(nn.Conv2d(3, 4, 7, padding=3), nn.Conv2d(4, 4, 4, padding=3, dilation=2))
    a, _, _, _ = analyze_model(same, (3, 20, 20))
    b, _, _, _ = analyze_model(explicit, (3, 20, 20))
    assert [r.output_shape for r in a] == [r.output_shape for r in b] == [[4, 20, 20], [4, 20, 20]]
    assert a[0].padding == [3, 3] and a[1].padding == [3, 3]          # d(k - 1) = 6 for the dilated 4x4
    # the dilated 4x4 spans k_eff = 2 x 3 + 1 = 7 pixels: 7 + 6 = 13
    assert [(r.rf, r.jump, r.start) for r in a] == [(r.rf, r.jump, r.start) for r in b] == [(7, 1, 0), (13, 1, 0)]

    class Rows(nn.Module):
        def __init__(self):
            super().__init__()
            self.lstm = nn.LSTM(8, 16, batch_first=True, bidirectional=True)

        def forward(self, x):                      # (N, C, H, W) -> each row a sequence of W steps
            n, c, h, w = x.shape
            out, _ = self.lstm(x.permute(0, 2, 3, 1).reshape(n * h, w, c))
            return out                              # (N*H, W, 32)

    with torch.device("meta"):
        meta = Rows()
    layers, totals, _, _ = analyze_model(meta, (8, 5, 6))
    assert layers[0].output_shape == list(Rows()(torch.zeros(1, 8, 5, 6)).shape[1:]) == [6, 32]
    assert totals.params == sum(p.numel() for p in Rows().parameters())
