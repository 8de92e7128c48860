"""The real torchvision weights-loading code, run offline against a cache in a temporary TORCH_HOME."""

from __future__ import annotations

import torch

from core import registry
from core.weights import build_model, cache_path, default_weights, weights_status


def _place_random_checkpoint(name: str, seed: int = 0) -> dict:
    torch.manual_seed(seed)
    state = registry.get(name).build().state_dict()
    path = cache_path(default_weights(name))
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, path)
    return state


def test_cached_weights_are_loaded_through_torchvision(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    state = _place_random_checkpoint("resnet18", seed=1)
    assert str(tmp_path) in str(cache_path(default_weights("resnet18")))
    model, used = build_model("resnet18", pretrained=True)
    assert (used.kind, used.name, used.fell_back) == ("imagenet", "ResNet18_Weights.IMAGENET1K_V1", False)
    assert used.trained and used.describe() == "ImageNet weights (ResNet18_Weights.IMAGENET1K_V1)"
    assert torch.equal(model.conv1.weight, state["conv1.weight"])
    assert not model.training
    cached = {s.arch for s in weights_status() if s.cached}
    assert cached == {"resnet18"}


def test_missing_weights_fall_back_to_random_with_a_reason(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    model, used = build_model("vgg11", pretrained=True)
    assert (used.kind, used.requested, used.fell_back, used.trained) == ("random", "imagenet", True, False)
    assert "not cached" in used.reason and str(tmp_path) in used.reason and used.reason in used.sentence()
    _, used = build_model("lenet5", pretrained=True)
    assert used.kind == "random" and "no torchvision ImageNet weights" in used.reason


def test_googlenet_checkpoint_with_auxiliary_classifiers_loads(tmp_path, monkeypatch):
    """torchvision's GoogLeNet checkpoint holds aux1/aux2 weights; loading goes through
    torchvision's own builder, which knows what to do with them."""
    from torchvision.models import googlenet

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    torch.manual_seed(0)
    state = googlenet(weights=None, aux_logits=True, init_weights=False).state_dict()
    path = cache_path(default_weights("googlenet"))
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, path)
    model, used = build_model("googlenet", pretrained=True)
    assert used.kind == "imagenet" and used.name.startswith("GoogLeNet_Weights")
    assert torch.equal(model.conv1.conv.weight, state["conv1.conv.weight"]) and model.aux1 is None


def test_the_streamed_download_checks_the_checksum_in_the_file_name(tmp_path):
    """The download button's path, with a file:// URL standing in for torchvision's server: the
    bytes land where torchvision looks only when their SHA-256 starts as the name says."""
    import hashlib

    import pytest

    from core.weights import WeightsError, _stream

    src = tmp_path / "served.pth"
    src.write_bytes(b"weights" * 300_000)
    good = hashlib.sha256(src.read_bytes()).hexdigest()[:8]
    seen = []
    target = tmp_path / "cache" / f"net-{good}.pth"
    _stream(src.as_uri(), target, lambda f, msg: seen.append((f, msg)), chunk=1 << 18)
    assert target.read_bytes() == src.read_bytes() and seen[-1] == (1.0, "2.1 of 2.1 MB")
    assert [f for f, _ in seen] == sorted(f for f, _ in seen) and len(seen) == 9
    bad = tmp_path / "cache" / "net-00000000.pth"
    with pytest.raises(WeightsError, match="does not match its checksum"):
        _stream(src.as_uri(), bad, lambda f, msg: None)
    assert not bad.exists() and not bad.with_name(bad.name + ".part").exists()
