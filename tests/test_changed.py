"""What fine-tuning changed: linear CKA against independent computations, and the per-stage measures
on real Studio runs (frozen stages measured at exactly 0, fine-tuned ones not)."""

from __future__ import annotations

import math

import pytest
import torch

from core.cka import center, cka_from_grams, gram, linear_cka
from core.train.changed import relative_change, what_changed
from core.train.results import load_results, save_results


def _x(n=20, p=7, seed=0):
    return torch.randn(n, p, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def test_cka_of_a_representation_with_itself_is_one():
    x = _x()
    assert linear_cka(x, x) == pytest.approx(1.0, abs=1e-12)


def test_cka_is_invariant_to_orthogonal_transforms_and_isotropic_scaling():
    x, y = _x(seed=1), _x(p=5, seed=2)
    q, _ = torch.linalg.qr(_x(n=7, p=7, seed=3))                     # a random 7 x 7 orthogonal matrix
    base = linear_cka(x, y)
    assert linear_cka(x @ q, y) == pytest.approx(base, abs=1e-12)
    assert linear_cka(3.7 * x, 0.01 * y) == pytest.approx(base, abs=1e-12)
    assert linear_cka(x + 5.0, y) == pytest.approx(base, abs=1e-12)  # centred: a constant offset changes nothing
    # not invariant to any linear map: stretching one feature changes it (a test that can fail)
    stretch = torch.ones(7, dtype=torch.float64)
    stretch[0] = 10.0
    assert abs(linear_cka(x * stretch, y) - base) > 1e-3


def test_cka_by_the_feature_space_formula():
    """The paper's other form, ||Y^T X||_F^2 / (||X^T X||_F ||Y^T Y||_F) with centred features,
    computed independently of the Gram matrices."""
    x, y = _x(n=30, p=9, seed=4), _x(n=30, p=4, seed=5)
    xc, yc = x - x.mean(0), y - y.mean(0)
    expected = float((yc.T @ xc).norm() ** 2 / ((xc.T @ xc).norm() * (yc.T @ yc).norm()))
    assert linear_cka(x, y) == pytest.approx(expected, abs=1e-12)


def test_cka_of_a_small_case_by_hand():
    """x = (1, 2, 3), y = (1, 0, 2) as one feature over three images: centred x = (-1, 0, 1),
    y = (0, -1, 1); CKA = (x.y)^2 / (|x|^2 |y|^2) = 1 / (2 x 2) = 0.25."""
    x = torch.tensor([[1.0], [2.0], [3.0]])
    y = torch.tensor([[1.0], [0.0], [2.0]])
    assert linear_cka(x, y) == pytest.approx(0.25, abs=1e-12)
    assert center(gram(x)).sum().item() == pytest.approx(0.0, abs=1e-12)
    assert math.isnan(cka_from_grams(gram(torch.ones(3, 2)), gram(y)))   # a constant representation


def test_relative_change_by_hand():
    before = [torch.tensor([3.0, 4.0]), torch.tensor([0.0])]              # ||W|| = 5
    after = [torch.tensor([3.0, 4.0]), torch.tensor([5.0])]               # ||dW|| = 5
    assert relative_change(before, after) == pytest.approx(1.0)
    assert relative_change(before, before) == 0.0


def _run(tmp_path, scenario, unfreeze_from=""):
    from core.train import data as D
    from core.train.transfer import TrainConfig, fit

    data = D.shapes(classes=3, per_class=20, seed=1, size=32)
    res = fit(TrainConfig(dataset="shapes", shapes_classes=3, weights="random", scenario=scenario, epochs=2,
                          batch_size=8, lr=3e-3, lr_body=3e-3, unfreeze_from=unfreeze_from), data)
    save_results(res, data, tmp_path)
    return load_results(tmp_path)


def test_a_frozen_encoder_did_not_change_and_its_head_did(tmp_path):
    """Scenario 1: every encoder stage 0 and a CKA of 1 (measured on the validation images); the new
    head moved from its initial values."""
    res = _run(tmp_path, "1")
    wc = what_changed(res)
    enc, head = wc.stages[:-1], wc.stages[-1]
    assert [s.stage for s in wc.stages] == ["conv1", "bn1", "layer1", "layer2", "layer3", "layer4", "fc"]
    assert all(s.weight_change == 0.0 and not s.trained for s in enc)
    assert all(s.cka == pytest.approx(1.0, abs=1e-9) for s in enc)
    assert head.new and head.trained and head.weight_change > 0
    assert wc.first_conv_change == 0.0 and wc.n_images == len(res.val_labels) == 12
    assert (wc.filters_before == wc.filters_after).all()


def test_fine_tuning_from_a_stage_on_leaves_the_stages_before_it(tmp_path):
    """Fine-tuning from layer3: conv1 .. layer2 exactly as they started (so the rebuilt start really is
    the run's start: a wrong seed would make these random stages differ), layer3 on changed."""
    wc = what_changed(_run(tmp_path, "finetune", unfreeze_from="layer3"))
    by = {s.stage: s for s in wc.stages}
    for name in ("conv1", "bn1", "layer1", "layer2"):
        assert by[name].weight_change == 0.0 and not by[name].trained and by[name].cka == pytest.approx(1.0, abs=1e-9)
    for name in ("layer3", "layer4", "fc"):
        assert by[name].trained and by[name].weight_change > 0
    assert by["layer4"].cka < 1 - 1e-6
