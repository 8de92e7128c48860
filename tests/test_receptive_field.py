"""Receptive fields against a gradient measurement, over the whole registry.

The measurement: a real float64 model with every weight positive (1/fan-in), biases zero,
BatchNorm an identity, max pooling replaced by average pooling of the same window (max pooling
sends gradient to one input only) and a small positive input. Then every path from an input
pixel to an output unit carries a positive gradient, so the pixels with a non-zero gradient of
one unit are exactly the part of its theoretical receptive field that lies inside the image.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from core import registry
from core.analysis import summarize
from tests.sweeps import every


class _Stop(Exception):
    pass


def _positive_model(name, layers):
    """The measurement model, built on the meta device; only the modules of `layers` (the records
    up to the deepest one measured) get real memory, every value of which is set below. VGG's
    120M-parameter classifier, which no measurement reaches, is never allocated; a call into a
    module left out would fail on the meta device rather than pass unnoticed."""
    spec = registry.get(name)
    with torch.device("meta"):
        model = spec.build()
    running = {r.module for r in layers}
    for path, m in model.named_modules():
        if path in running:
            m.to_empty(device="cpu", recurse=False)
    model = model.double().eval().requires_grad_(False)  # only the input's gradient is measured
    for parent in list(model.modules()):
        for child_name, child in list(parent.named_children()):
            if isinstance(child, nn.MaxPool2d):
                setattr(parent, child_name, nn.AvgPool2d(child.kernel_size, child.stride, child.padding,
                                                         ceil_mode=child.ceil_mode))
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
                m.weight.fill_(1.0 / (m.weight[0].numel()))
                if m.bias is not None:
                    m.bias.zero_()
            elif isinstance(m, nn.BatchNorm2d):
                m.weight.fill_(1.0)
                m.bias.zero_()
                m.running_mean.zero_()
                m.running_var.fill_(1.0)
    return spec, model


def _supports(model, spec, size, targets):
    """For each (layer, unit) in `targets`: rows and columns of input pixels with a non-zero
    gradient of that output unit. One forward pass, stopped once every layer has run."""
    x = torch.full((1, *size), 0.01, dtype=torch.float64, requires_grad=True)
    layers = {layer for layer, _ in targets}
    got = {}

    def hook(m, a, o, layer):
        got.setdefault(layer, o)  # the first call, as in the records measured
        if got.keys() == layers:
            raise _Stop

    handles = [model.get_submodule(layer).register_forward_hook(
        lambda m, a, o, layer=layer: hook(m, a, o, layer)) for layer in layers]
    try:
        model(*([x] * spec.num_inputs))
    except _Stop:
        pass
    finally:
        for h in handles:
            h.remove()
    found = []
    for layer, (i, j) in targets:
        g, = torch.autograd.grad(got[layer][0, 0, i, j], x, retain_graph=True)
        g = g[0].abs().sum(0)  # (H, W)
        rows = torch.nonzero(g.sum(1)).flatten()
        cols = torch.nonzero(g.sum(0)).flatten()
        found.append(((int(rows.min()), int(rows.max())), (int(cols.min()), int(cols.max()))))
    return found


def _theory(rec, n, unit_index, axis):
    """Pixels [lo, hi] covered by the unclipped receptive field, clipped to the image."""
    centre = rec.start + unit_index * rec.jump
    half = (rec.rf_hw[axis] - 1) / 2
    return max(0, math.ceil(centre - half - 1e-9)), min(n - 1, math.floor(centre + half + 1e-9))


def _size(name):
    spec = registry.get(name)
    return (spec.input_size[0], 96, 96) if spec.torchvision_name else spec.input_size


def _sample(records, k=6):
    """Up to k layers spread over the network: sliding-window layers with a 4-D output."""
    cands = [r for r in records if r.kernel and len(r.output_shape) == 3 and r.name == r.module]
    if len(cands) <= k:
        return cands
    step = (len(cands) - 1) / (k - 1)
    return [cands[round(i * step)] for i in range(k)]


EXACT = [n for n in registry.names() if n not in {"conv_autoencoder", "unet"}]


@pytest.mark.parametrize("name", every(EXACT))
def test_receptive_field_matches_gradient(name):
    size = _size(name)
    s = summarize(name, size)
    sample = _sample(s.layers)
    spec, model = _positive_model(name, s.layers[:sample[-1].index + 1])
    units = [(rec.output_shape[1] // 2, rec.output_shape[2] // 2) for rec in sample]
    supports = _supports(model, spec, size, [(rec.module, unit) for rec, unit in zip(sample, units)])
    for rec, unit, ((r0, r1), (c0, c1)) in zip(sample, units, supports):
        if rec.whole_input:
            assert (r0, r1, c0, c1) == (0, size[1] - 1, 0, size[2] - 1), rec.name
            continue
        assert (r0, r1) == _theory(rec, size[1], unit[0], 0), rec.name
        assert (c0, c1) == _theory(rec, size[2], unit[1], 1), rec.name


@pytest.mark.parametrize("name", ["conv_autoencoder", "unet"])
def test_transposed_convolution_bound(name):
    """Behind a transposed convolution units differ in how many inputs they see; the recorded
    field is the largest, so no measured support may exceed it and some unit must reach it."""
    spec = registry.get(name)
    size = spec.input_size if name == "conv_autoencoder" else (1, 64, 64)
    s = summarize(name, size)
    tconvs = [r for r in s.layers if r.type == "ConvTranspose2d"]
    _, model = _positive_model(name, s.layers[:tconvs[-1].index + 1])
    for rec in tconvs:
        h = rec.output_shape[1]
        supports = _supports(model, spec, size, [(rec.module, (i, i)) for i in range(h // 2 - 2, h // 2 + 2)])
        widths = [r1 - r0 + 1 for (r0, r1), _ in supports]
        if rec.whole_input:
            # Everything here depends on all that reached the bottleneck; floor-mode pooling may
            # have dropped the last rows, so compare with what the flatten step covered.
            glob = next(r for r in s.layers if r.whole_input)
            lo, hi = _theory(glob, size[1], 0, 0)
            assert max(widths) == hi - lo + 1, rec.name
        else:
            assert max(widths) == min(rec.rf, size[1]), rec.name


def test_stack_of_three_3x3_is_7x7():
    """The VGG slide: three 3x3 convolutions see 7x7, two see 5x5."""
    s = summarize("vgg16")
    convs = [r for r in s.layers if r.type == "Conv2d"]
    assert [c.rf for c in convs[:2]] == [3, 5]
    # after the first pooling (jump 2) each 3x3 adds 2*2 = 4
    assert convs[2].rf == 6 + 2 * 2 and convs[2].jump == 2


def test_branches_take_the_largest_path():
    s = summarize("inception_module", options={"reductions": True})
    assert s.layers[-1].type == "Concat" and s.layers[-1].rf == 5   # the 5x5 branch wins
    r = summarize("resnet18")
    # the shortcut of a residual block does not shrink the field of the block's output
    relu_after_add = [x for x in r.layers if x.name.startswith("layer1.0.relu")][-1]
    conv2 = next(x for x in r.layers if x.name == "layer1.0.conv2")
    assert relu_after_add.rf == conv2.rf


def test_transposed_convolution_exact_on_a_small_stack():
    """conv 3x3 -> pool 2 -> transposed 3x3 stride 2 -> conv 3x3, at 64x64: the field of the last
    layer is small enough to measure unclipped; the widest unit must match the record."""
    from core.analysis import analyze_model

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.AvgPool2d(2),
                          nn.ConvTranspose2d(4, 4, 3, stride=2, padding=1, output_padding=1),
                          nn.Conv2d(4, 4, 3, padding=1)).double()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
                m.weight.fill_(0.1)
                m.bias.zero_()
    layers, *_ = analyze_model(model, (1, 64, 64))
    widths = []
    for i in range(28, 36):
        x = torch.full((1, 1, 64, 64), 0.01, dtype=torch.float64, requires_grad=True)
        model(x)[0, 0, i, i].backward()
        rows = torch.nonzero(x.grad[0, 0].abs().sum(1)).flatten()
        widths.append(int(rows.max() - rows.min() + 1))
    assert max(widths) == layers[-1].rf
    assert layers[2].jump == 1  # stride 2 down, stride 2 up
