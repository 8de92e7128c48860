"""The Model Zoo's table against torchvision and our analysis engine."""

from __future__ import annotations

import pytest

from core.analysis import summarize
from core.zoo import classification_models, last_feature_map_rf, load_rf_file, zoo_models


def test_every_classification_model_is_listed_with_metadata():
    models = zoo_models()
    assert len(models) == len(classification_models()) >= 80
    assert all(m.params > 0 and m.gmacs > 0 and 0 < m.acc1 < 100 and m.year > 2000 for m in models)
    lecture = {m.name for m in models if m.in_lecture}
    assert {"alexnet", "vgg16", "googlenet", "resnet50", "mobilenet_v2"} <= lecture
    assert "vit_b_16" not in lecture


@pytest.mark.parametrize("name", ["resnet18", "resnet50", "vgg16", "mobilenet_v2", "alexnet"])
def test_torchvision_gmacs_and_params_agree_with_our_engine(name):
    m = next(m for m in zoo_models() if m.name == name)
    arch = "alexnet_torchvision" if name == "alexnet" else name
    s = summarize(arch)
    assert m.params == s.totals.params
    assert round(s.totals.macs / 1e9, 3) == pytest.approx(m.gmacs, abs=0.0015)


@pytest.mark.parametrize("name", ["resnet18", "vgg16", "densenet121", "shufflenet_v2_x1_0", "regnet_x_400mf"])
def test_stored_receptive_fields_are_current(name):
    """assets/zoo_rf.json must match a fresh computation (regenerate: python -m core zoo --write)."""
    stored = load_rf_file()[name]
    assert tuple(stored) == last_feature_map_rf(name)


def test_last_feature_map_rf_matches_the_explorer():
    s = summarize("vgg16")
    pool5 = next(r for r in s.layers if r.name == "features.30")
    assert last_feature_map_rf("vgg16")[0] == pool5.rf == 212
    assert last_feature_map_rf("vit_b_16") is None
