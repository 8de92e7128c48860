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
from torch.utils.flop_counter import FlopCounterMode

from core import registry
from core.analysis import AnalysisError, InputTooSmallError, summarize
from tests.conftest import ROOT

NAMES = registry.names()


def _meta_model(name, options=None):
    spec = registry.get(name)
    with torch.device("meta"):
        model = spec.build(options)
    return spec, model.train(spec.trains_forward(options))


@pytest.mark.parametrize("name", NAMES)
def test_params_match_numel_and_layers_add_up(name):
    s = summarize(name)
    _, model = _meta_model(name)
    assert s.totals.params == sum(p.numel() for p in model.parameters())
    assert sum(r.params for r in s.layers) + s.totals.unused_params == s.totals.params
    assert s.totals.unused_params == 0
    assert sum(r.trainable_params + r.frozen_params for r in s.layers) == sum(r.params for r in s.layers)
    assert sum(r.macs for r in s.layers) == s.totals.macs
    assert sum(r.activation_elems for r in s.layers) == s.totals.activation_elems


@pytest.mark.parametrize("name", NAMES)
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
        by_module[r.block] = by_module.get(r.block, 0) + r.macs
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


@pytest.mark.parametrize("name", NAMES)
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


def test_training_memory_estimate_adds_up():
    s = summarize("resnet18")
    m = s.training_memory(batch=32, optimizer="adam")
    assert m.activations == 32 * s.totals.forward_bytes
    assert m.grads == 4 * s.totals.trainable_params and m.optimizer == 2 * m.grads
    assert m.total == m.activations + m.params + m.grads + m.optimizer
