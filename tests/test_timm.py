"""Every architecture timm builds, resolved by name (`timm:<name>`) for the one analysis engine.

The lecture's "Inception successors" (Inception v4, Xception) against independent computations:
parameters against the model's own numel, MACs against torch's FLOP counter, output shapes against
a real forward pass; the names, the old names timm still accepts, and the registry left as it was.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from core import archs, registry, timm_archs
from core.analysis import summarize
from core.spec import UnknownArchitectureError
from tests.conftest import ROOT

SUCCESSORS = ["timm:inception_v4", "timm:legacy_xception"]


def _meta(name: str) -> torch.nn.Module:
    return archs.resolve(name).build_meta().eval()


@pytest.mark.parametrize("name", SUCCESSORS)
def test_params_and_macs_against_independent_counts(name):
    spec = archs.resolve(name)
    s = summarize(name)
    model = _meta(name)
    assert s.input_size == [3, 299, 299] == list(spec.input_size)
    assert s.totals.params == sum(p.numel() for p in model.parameters()) == sum(r.params for r in s.layers)
    with torch.no_grad(), FlopCounterMode(display=False) as fc:
        model(torch.empty(1, *spec.input_size, device="meta"))
    assert 2 * s.totals.macs == fc.get_total_flops()


def test_inception_v4s_published_size():
    """timm's Inception v4: 42,679,816 parameters (its model card: 42.7 M), 12.25 GMACs at 299x299."""
    s = summarize("timm:inception_v4")
    assert s.totals.params == 42_679_816 and round(s.totals.macs / 1e9, 2) == 12.25


def test_shapes_against_a_real_forward_pass():
    """Xception at 96x96 on the CPU with uninitialised weights (only shapes matter)."""
    size = (3, 96, 96)
    s = summarize("timm:legacy_xception", size)
    model = _meta("timm:legacy_xception").to_empty(device="cpu")
    shapes, handles = [], []
    for n, m in model.named_modules():
        if n and next(m.children(), None) is None:
            handles.append(m.register_forward_hook(lambda m, a, o: shapes.append(list(o.shape[1:]))))
    try:
        with torch.no_grad():
            model(torch.zeros(1, *size))
    finally:
        for h in handles:
            h.remove()
    assert [r.output_shape for r in s.layers] == shapes


def test_the_names_cover_the_lectures_successors_and_more():
    names = timm_archs.names()
    assert len(names) > 1000 and len(set(names)) == len(names)
    for n in ("inception_v3", "inception_v4", "inception_resnet_v2", "legacy_xception", "convnext_tiny",
              "efficientnet_b0", "regnety_016", "vit_base_patch16_224"):
        assert "timm:" + n in names
    assert not any(timm_archs.is_timm(n) for n in registry.names())      # the registry stays the lecture's set


def test_old_and_unknown_names():
    assert archs.canonical("timm:xception") == "timm:legacy_xception"
    assert summarize("timm:xception").arch == "timm:legacy_xception"
    with pytest.raises(UnknownArchitectureError, match="Did you mean timm:inception_v4"):
        archs.resolve("timm:inception_v44")
    spec = archs.resolve("timm:inception_v4")
    assert spec.classifier == "last_linear" and "need a download" in spec.description
    assert archs.resolve("resnet18") is registry.get("resnet18")


def test_the_cli_takes_a_timm_name(capsys):
    from core.__main__ import main      # in this process: `python -m core` only calls main() and exits with it

    assert main(["summary", "timm:inception_v4", "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["arch"] == "timm:inception_v4" and d["totals"]["params"] == 42_679_816
    assert main(["summary", "timm:nosuchnet"]) == 2
    assert "has no architecture 'nosuchnet'" in capsys.readouterr().err


def test_core_imports_and_analyses_without_timm_onnx_or_onnx2torch():
    """The GPU machine has torch, not necessarily these: core still imports, the registry still works,
    and a timm name says what is missing."""
    code = """
import sys
for name in ('timm', 'onnx', 'onnx2torch'):
    sys.modules[name] = None         # what an import finds for a package that is not installed
sys.path.insert(0, '.')
import core, core.archs, core.onnx_import, core.timm_archs, core.__main__
from core.analysis import summarize
from core.onnx_import import OnnxError, read_onnx
assert summarize('resnet18').totals.params == 11689512
assert core.timm_archs.names() == []
try:
    summarize('timm:inception_v4')
except KeyError as e:
    print('timm:', e)
try:
    read_onnx(b'x', 'm.onnx')
except OnnxError as e:
    print('onnx:', e)
"""
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=240)
    assert out.returncode == 0, out.stderr
    assert "timm: timm:inception_v4: timm is not installed" in out.stdout
    assert "onnx: Reading ONNX files needs the onnx and onnx2torch packages" in out.stdout
