"""The Design Lab's formulas against real layers, PyTorch's FLOP counter and the analysis engine."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode
from torchvision.models.resnet import Bottleneck

from core.analysis import analyze_model
from core.design import (StackLayer, analyze_stack, gap_vs_fc, residual_blocks, rf_grid, separable_cost,
                         stack_from_records, stack_from_text, stack_to_text, stack_vs_large)
from core.erf import (cross_section, effective_rf, erf_input_batch, fit_gaussian, radius_containing,
                      theoretical_box)
from core.images import IMAGENET_MEAN, IMAGENET_STD
from core.measure import separable_timing


def _macs(model: nn.Module, x: torch.Tensor) -> int:
    with torch.no_grad(), FlopCounterMode(display=False) as fc:
        model(x)
    return fc.get_total_flops() // 2


@pytest.mark.parametrize("n,k,big,c,d,stride,dil", [(3, 3, 7, 3, 56, 1, 1), (2, 3, 5, 64, 28, 1, 1),
                                                    (3, 3, 7, 16, 32, 2, 1), (2, 3, 9, 8, 40, 1, 2)])
def test_stack_vs_large_against_real_layers(n, k, big, c, d, stride, dil):
    r = stack_vs_large(n, k, big, c, d, stride, dil)
    stack = nn.Sequential(*[nn.Conv2d(c, c, k, stride=stride, padding=dil * (k // 2), dilation=dil, bias=False)
                            for _ in range(n)])
    large = nn.Conv2d(c, c, big, padding=big // 2, bias=False)
    assert r.weights_stack == sum(p.numel() for p in stack.parameters())
    assert r.weights_large == large.weight.numel()
    x = torch.zeros(1, c, d, d)
    assert r.macs_large == _macs(large, x)
    assert r.macs_stack == _macs(stack, x)
    layers, *_ = analyze_model(stack, (c, d, d))
    assert r.rf_stack == [L.rf for L in layers]


def test_stack_vs_large_slide_and_paper_numbers():
    r = stack_vs_large()
    assert (r.slide_stack, r.slide_large) == (81, 147)          # the slide: 3x3x3x3 vs 1x7x7x3
    assert r.rf_stack == [3, 5, 7] and r.rf_large == 7
    assert round(stack_vs_large(channels=64).extra_weights_pct) == 81  # VGG: 49C^2 is 81% more than 27C^2


def test_rf_grid_matches_the_receptive_fields():
    rfs = stack_vs_large(4, 3, 9).rf_stack
    grid = rf_grid(rfs)
    for layer, rf in enumerate(rfs, start=1):
        covered = sum(1 for row in grid for v in row if 0 < v <= layer)
        assert covered == rf * rf


@pytest.mark.parametrize("m,n,dk,df", [(3, 128, 3, 5), (512, 512, 3, 14), (32, 64, 5, 9)])
def test_separable_cost_against_flop_counter(m, n, dk, df):
    sc = separable_cost(m, n, dk, df)
    x = torch.zeros(1, m, df, df)
    std = nn.Conv2d(m, n, dk, padding=dk // 2, bias=False)
    dw = nn.Conv2d(m, m, dk, padding=dk // 2, groups=m, bias=False)
    pw = nn.Conv2d(m, n, 1, bias=False)
    assert sc.standard == _macs(std, x)
    assert sc.depthwise == _macs(dw, x) and sc.pointwise == _macs(pw, x)
    assert sc.params_standard == std.weight.numel()
    assert sc.params_separable == dw.weight.numel() + pw.weight.numel()
    assert math.isclose(sc.ratio, 1 / n + 1 / dk ** 2)


def test_separable_slide_example():
    sc = separable_cost()
    assert (sc.standard, sc.depthwise, sc.pointwise, sc.separable) == (86_400, 675, 9_600, 10_275)


def test_gap_vs_fc():
    g = gap_vs_fc()
    assert g.fc_weights == nn.Linear(7 * 7 * 1024, 1024, bias=False, device="meta").weight.numel() == 51_380_224
    assert g.gap_weights == sum(p.numel() for p in nn.AdaptiveAvgPool2d(1).parameters())
    x = torch.zeros(1, 256, 5, 3)  # (N, C, H, W)
    g = gap_vs_fc(5, 3, 256, 10)
    assert g.fc_inputs == nn.Flatten()(x).shape[1]
    assert g.gap_outputs == nn.AdaptiveAvgPool2d(1)(x).flatten(1).shape[1]
    assert g.fc_weights == nn.Linear(g.fc_inputs, 10, bias=False).weight.numel()


@pytest.mark.parametrize("c_in,width,stride", [(256, 64, 1), (256, 128, 2), (64, 64, 1)])
def test_bottleneck_block_against_torchvision(c_in, width, stride):
    blocks = residual_blocks(c_in, width, stride, 56)
    down = None
    if stride != 1 or c_in != 4 * width:
        down = nn.Sequential(nn.Conv2d(c_in, 4 * width, 1, stride=stride, bias=False), nn.BatchNorm2d(4 * width))
    tv = Bottleneck(c_in, width, stride=stride, downsample=down)
    # paper stride placement: stride in the first 1x1
    tv.conv1.stride, tv.conv2.stride = tv.conv2.stride, (1, 1)
    conv_weights = sum(m.weight.numel() for m in tv.modules() if isinstance(m, nn.Conv2d))
    bottleneck = blocks[1]
    assert bottleneck.params == conv_weights
    assert bottleneck.macs == _macs(tv.eval(), torch.zeros(1, c_in, 56, 56))
    assert (bottleneck.shortcut == "identity") == (down is None)


def _sequential(layers: list[StackLayer], c: int) -> nn.Sequential:
    mods = []
    for L in layers:
        if L.kind == "conv":
            mods.append(nn.Conv2d(c, L.out, L.k, L.s, L.p, L.d, groups=L.groups))
            c = L.out
        elif L.kind == "conv1x1":
            mods.append(nn.Conv2d(c, L.out, 1, L.s))
            c = L.out
        elif L.kind == "depthwise":
            mods.append(nn.Conv2d(c, c, L.k, L.s, L.p, L.d, groups=c))
        elif L.kind == "maxpool":
            mods.append(nn.MaxPool2d(L.k, L.s, L.p, L.d))
        else:
            mods.append(nn.AvgPool2d(L.k, L.s, L.p))
    return nn.Sequential(*mods)


def test_build_your_own_stack_matches_the_engine():
    layers = [StackLayer("conv", 32, 5, 2, 2), StackLayer("maxpool", 0, 3, 2, 1), StackLayer("depthwise", 0, 3, 1, 2, 2),
              StackLayer("conv1x1", 64, 1, 1, 0), StackLayer("conv", 64, 3, 1, 1, 1, 4), StackLayer("avgpool", 0, 2, 2, 0)]
    rows = analyze_stack(layers, (3, 96, 96))
    assert not any(r.error for r in rows)
    ref, *_ = analyze_model(_sequential(layers, 3), (3, 96, 96))
    for row, rec in zip(rows, ref):
        assert list(row.out_shape) == rec.output_shape
        assert row.params == rec.params and row.macs == rec.macs
        assert row.rf == rec.rf and row.jump == rec.jump


def test_invalid_rows_are_reported_and_skipped():
    layers = [StackLayer("conv", 64, 3, 1, 1), StackLayer("conv", 30, 3, 1, 1, 1, 4),   # 4 groups, 30 filters
              StackLayer("conv", 64, 3, 1, -1), StackLayer("conv", 64, 99, 1, 0),        # negative pad, too big
              StackLayer("maxpool", 0, 2, 2, 0)]
    rows = analyze_stack(layers, (3, 32, 32))
    assert [bool(r.error) for r in rows] == [False, True, True, True, False]
    assert "groups=4" in rows[1].error and "negative" in rows[2].error and "too small" in rows[3].error
    assert rows[4].in_shape == (64, 32, 32) and rows[4].out_shape == (64, 16, 16)


def test_stack_text_round_trip_and_bad_text():
    layers = [StackLayer("conv", 64, 3, 1, 1), StackLayer("maxpool", 64, 2, 2, 0)]
    assert stack_from_text(stack_to_text(layers)) == layers
    with pytest.raises(ValueError, match="7 fields"):
        stack_from_text("conv:64:3")
    with pytest.raises(ValueError, match="not a whole number"):
        stack_from_text("conv:x:3:1:1:1:1")


def test_stack_from_editor_records():
    recs = [{"kind": "conv", "out": 16.0, "k": 3, "s": None, "p": float("nan"), "d": 1, "groups": 1},
            {"kind": "conv", "out": 2.5, "k": 3, "s": 1, "p": 1, "d": 1, "groups": 1}]
    a, b = stack_from_records(recs)
    assert (a.kind, a.out, a.s, a.p) == ("conv", 16, 1, 1)
    assert b.kind == "invalid"
    assert analyze_stack([b])[0].error.startswith("unknown layer type")


def test_effective_rf_of_average_convolutions_is_the_binomial_bump():
    """n stacked 3x3 averaging convolutions: the gradient of the centre unit is the n-fold
    convolution of the 3x3 box with itself (a discrete, nearly Gaussian bump)."""
    n, size = 4, 21
    model = nn.Sequential(*[nn.Conv2d(1, 1, 3, padding=1, bias=False) for _ in range(n)]).double()
    with torch.no_grad():
        for m in model:
            m.weight.fill_(1 / 9)
    erf, unit = effective_rf(model, str(n - 1), torch.zeros(1, 1, size, size, dtype=torch.float64))
    assert unit == (size // 2, size // 2)
    expected = torch.zeros(1, 1, size, size, dtype=torch.float64)
    expected[0, 0, size // 2, size // 2] = 1
    box = torch.full((1, 1, 3, 3), 1 / 9, dtype=torch.float64)
    for _ in range(n):
        expected = torch.nn.functional.conv2d(expected, box, padding=1)
    expected = expected[0, 0] / expected.max()
    assert torch.allclose(erf, expected)
    assert int((erf > 0).sum()) == (2 * n + 1) ** 2       # support = theoretical field, 9x9
    assert radius_containing(erf) < n + 0.5              # but the mass sits in the middle


def test_effective_rf_restores_the_model():
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Conv2d(2, 2, 3)).train()
    effective_rf(model, "2", torch.randn(2, 1, 12, 12))
    assert model.training
    assert not model[2]._forward_hooks
    assert all(p.grad is None for p in model.parameters())


def test_fit_gaussian_recovers_a_known_gaussian():
    xs = np.arange(121)
    peak, mu, sigma = 0.8, 47.3, 6.5
    profile = peak * np.exp(-((xs - mu) ** 2) / (2 * sigma ** 2))
    fit = fit_gaussian(profile)
    assert fit.sigma == pytest.approx(sigma, rel=1e-4) and fit.mu == pytest.approx(mu, rel=1e-4)
    assert fit.peak == pytest.approx(profile.max())
    assert np.allclose(fit.curve(xs), profile, atol=1e-3)
    wide = fit_gaussian(np.exp(-((xs - 60) ** 2) / (2 * 12.0 ** 2)))
    assert wide.sigma == pytest.approx(12.0, rel=1e-3)


def test_theoretical_box_is_the_engines_field_and_the_gradient_support():
    """A stride-2 stack without padding in the first layer (so the field's centre is offset):
    the box of an off-centre unit has the engine's size and sits exactly on the pixels with a
    non-zero gradient (positive weights, field inside the image)."""
    model = nn.Sequential(nn.Conv2d(1, 1, 3, stride=2), nn.Conv2d(1, 1, 3, padding=1),
                          nn.Conv2d(1, 1, 5, padding=2)).double()
    with torch.no_grad():
        for m in model:
            m.weight.fill_(1 / m.weight.numel())
            m.bias.zero_()
    layers, *_ = analyze_model(model, (1, 33, 33))
    rec = layers[-1]
    unit = (4, 5)
    box = theoretical_box(rec, unit)
    assert (box.y1 - box.y0 + 1, box.x1 - box.x0 + 1) == (rec.rf, rec.rf) == (15, 15)
    erf, _ = effective_rf(model, "2", torch.zeros(1, 1, 33, 33, dtype=torch.float64), unit)
    rows = torch.nonzero(erf.sum(1)).flatten()
    cols = torch.nonzero(erf.sum(0)).flatten()
    assert (int(rows.min()), int(rows.max()), int(cols.min()), int(cols.max())) == (box.y0, box.y1, box.x0, box.x1)
    assert np.array_equal(cross_section(erf.numpy(), box.cy), erf.numpy()[int(box.cy)])
    assert np.array_equal(cross_section(erf.numpy(), -9.0), erf.numpy().max(0))


def test_erf_input_batch():
    before = torch.random.get_rng_state()
    noise = erf_input_batch((3, 32, 32), "noise", n=8)
    assert torch.equal(torch.random.get_rng_state(), before)  # the global generator is left alone
    assert tuple(noise.images.shape) == (8, 3, 32, 32) and noise.preview.shape == (32, 32, 3)
    assert torch.equal(noise.images, erf_input_batch((3, 32, 32), "noise", n=8).images)
    assert abs(float(noise.images.mean())) < 0.05 and abs(float(noise.images.std()) - 1) < 0.05
    photos = erf_input_batch((3, 48, 48), "samples")
    assert photos.images.shape[1:] == (3, 48, 48) and photos.preview.dtype == np.uint8
    mean, std = torch.tensor(IMAGENET_MEAN)[:, None, None], torch.tensor(IMAGENET_STD)[:, None, None]
    pixels = (photos.images[0] * std + mean) * 255  # undo the normalisation: the preview's pixels
    assert torch.allclose(pixels, torch.from_numpy(photos.preview).permute(2, 0, 1).float(), atol=0.01)
    with pytest.raises(ValueError, match="unknown source"):
        erf_input_batch((3, 32, 32), "photos")


def test_separable_timing_measures_both():
    res = separable_timing([8, 16], df=8, batch=1, repeats=3)
    assert [r.channels for r in res] == [8, 16]
    for r in res:
        for t in (r.standard, r.separable):
            assert t.runs == 3 and 0 < t.lo <= t.median <= t.hi
        lo, hi = r.ratio_range
        assert lo <= r.time_ratio <= hi and math.isfinite(r.time_ratio)
        assert r.clear == (r.separable.hi < r.standard.lo or r.separable.lo > r.standard.hi)
    assert math.isclose(res[0].mac_ratio, 1 / 8 + 1 / 9)


def test_overlapping_timings_claim_no_ratio():
    from core.measure import SeparableTiming, Timing

    fast, slow = Timing(1.0, 0.9, 1.1, 5), Timing(2.0, 1.9, 2.2, 5)
    assert SeparableTiming(8, slow, fast, 0.2).clear and SeparableTiming(8, slow, fast, 0.2).ratio_range == (0.9 / 2.2, 1.1 / 1.9)
    noisy = Timing(1.5, 0.5, 3.0, 5)                  # the case the issue saw: 0.011 then 0.51
    assert not SeparableTiming(8, slow, noisy, 0.2).clear
