"""Feature capture, filters, predictions and captum attributions."""

from __future__ import annotations

import io
import math
import pickle
import subprocess

import pytest
import torch
from safetensors.torch import save as save_safetensors
from torch import nn

from core.__main__ import main
from core.analysis import summarize
from core.attribution import METHODS, attribute
from core.features import capture, channel_stats, feature_layers, first_layer_filters, gradcam_layer, mosaic, top_k
from core.weights import WeightsError, apply_user_weights, build_model, read_user_weights


class _Boom(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)

    def forward(self, x):
        self.conv(x)
        raise RuntimeError("boom")


def test_hooks_removed_and_mode_restored_even_when_forward_raises():
    m = _Boom().train()
    with pytest.raises(RuntimeError, match="boom"):
        capture(m, torch.zeros(1, 3, 8, 8), ["conv"])
    assert m.training and not m.conv._forward_hooks
    m.eval()
    with pytest.raises(RuntimeError):
        capture(m, torch.zeros(1, 3, 8, 8), ["conv"])
    assert not m.training


def test_capture_shapes_match_the_analysis():
    model, _ = build_model("resnet18")
    s = summarize("resnet18")
    layers = feature_layers(s)
    paths = [fl.path for fl in layers]
    assert "layer1.0" in paths and "layer4" in paths and "conv1" in paths
    assert paths.index("layer1.0.conv1") < paths.index("layer1.0") < paths.index("layer1")
    acts, logits = capture(model, torch.randn(1, 3, 224, 224), paths)
    assert tuple(logits.shape) == (1, 1000)
    for fl in layers:
        assert acts[fl.path].shape[1] == fl.channels
    relu = acts["relu"]
    st = channel_stats(relu)
    assert st.zero_fraction == float((relu == 0).float().mean()) and 0 < st.zero_fraction < 1
    assert st.means[st.order[0]] == st.means.max()
    img, idx = mosaic(relu, [int(c) for c in st.order[:16]], cols=8)
    assert img.shape == (2 * 113 - 1, 8 * 113 - 1) and idx[0, 0] == st.order[0]


def test_first_layer_filters_and_top_k():
    model, _ = build_model("alexnet")
    f = first_layer_filters(model)
    assert f.shape == (96, 11, 11, 3) and f.min() >= 0 and f.max() <= 1
    logits = torch.tensor([[0.0, 3.0, 1.0]])
    preds = top_k(logits, ["a", "b", "c"], 2)
    z = 1 + math.exp(3) + math.exp(1)
    assert [p[:2] for p in preds] == [(1, "b"), (2, "c")]
    assert [p[2] for p in preds] == pytest.approx([math.exp(3) / z, math.exp(1) / z])
    assert [p[1] for p in top_k(logits, None, 1)] == ["class 1"]


@pytest.mark.parametrize("method", METHODS)
def test_attributions_have_the_input_spatial_shape(method):
    model, _ = build_model("resnet18")
    model.requires_grad_(False)
    x = torch.randn(1, 3, 64, 64)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    target = int(model(x).argmax())  # the top class, as the page defaults to
    a = attribute(model, x, target, method, gradcam_layer(summarize("resnet18", (3, 64, 64))))
    assert tuple(a.heat.shape) == (64, 64) and a.seconds > 0
    assert float(a.heat.max()) == pytest.approx(1.0) and float(a.heat.min()) == 0.0
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # never mutated


def test_user_weights_never_unpickle_objects():
    model, _ = build_model("resnet18")
    state = model.state_dict()
    st = read_user_weights(save_safetensors({k: v.contiguous() for k, v in state.items()}), "w.safetensors")
    apply_user_weights(model, st)
    buf = io.BytesIO()
    torch.save(state, buf)
    assert set(read_user_weights(buf.getvalue(), "w.pt")) == set(state)

    class Evil:
        def __reduce__(self):
            return (subprocess.call, (["touch", "/tmp/convnetlab-pwned"],))

    with pytest.raises(WeightsError, match="Cannot read"):
        read_user_weights(pickle.dumps({"x": Evil()}), "evil.pt")
    with pytest.raises(WeightsError):
        read_user_weights(b"garbage", "w.safetensors")
    with pytest.raises(WeightsError, match="do not fit"):
        apply_user_weights(model, {"fc.weight": torch.zeros(3, 3)})


def test_weights_cli_offline(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    assert main(["weights", "list"]) == 0
    out = capsys.readouterr().out
    assert "resnet18" in out and "not cached" in out and str(tmp_path) in out
    assert main(["weights", "prefetch", "lenet5"]) == 2
    assert "no torchvision ImageNet weights" in capsys.readouterr().err


def test_deconvnet_and_guided_backprop_match_their_relu_rules():
    """On a two-layer net, by hand: the class weight vector passes the ReLU as deconvnet (only
    positive gradients) and as guided backprop (and only where the ReLU's input was positive),
    then back through the first layer. In-place ReLUs are handled and restored."""
    import torch
    from torch import nn

    from core.attribution import attribute

    torch.manual_seed(0)
    fc1, fc2 = nn.Linear(12, 6), nn.Linear(6, 3)
    model = nn.Sequential(nn.Flatten(), fc1, nn.ReLU(inplace=True), fc2)
    x = torch.randn(1, 3, 2, 2)
    z = fc1(x.flatten(1))[0].detach()
    g = fc2.weight[2].detach()                                   # d class-2 score / d ReLU output
    rules = {"Deconvnet": g.clamp_min(0), "Guided backprop": g.clamp_min(0) * (z > 0)}
    for method, g_relu in rules.items():
        want = (fc1.weight.detach().T @ g_relu).reshape(3, 2, 2).abs().amax(0)
        want = (want - want.min()) / (want.max() - want.min())
        got = attribute(model, x, 2, method, gradcam_layer="")
        assert got.heat.shape == (2, 2) and got.seconds > 0
        assert torch.allclose(got.heat, want, atol=1e-5), method
    assert model[2].inplace                                      # put back as it was


def test_attribution_passes_count_the_model_calls_captum_makes():
    """The cost the Inside page caps is the number of forward passes (a backward counting two), checked
    against the calls captum really makes through a counting forward hook."""
    from core.attribution import passes

    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.ReLU(),
                                torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(4, 5))
    seen = []
    model[0].register_forward_hook(lambda m, a, o: seen.append(a[0].shape[0]))
    x = torch.randn(1, 3, 64, 64)
    for method in ("Integrated Gradients", "Occlusion", "Saliency"):
        seen.clear()
        attribute(model, x, 2, method, "0")
        images = sum(seen)                                    # images through the network, all batches
        backward = 0 if method == "Occlusion" else images     # the gradient methods go back through each
        assert passes(method, 64) == images + 2 * backward, method


def test_inside_refuses_costly_attributions_on_a_cpu_with_a_reason():
    from streamlit.testing.v1 import AppTest

    from tests.conftest import ROOT

    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    at.switch_page("pages/inside.py").run()
    at.selectbox(key="in_arch").set_value("vgg16").run()
    at.multiselect(key="in_methods").set_value(["Integrated Gradients", "Saliency"]).run()
    warning = next(w.value for w in at.warning if "Not run on this CPU server" in w.value)
    assert "Integrated Gradients on VGG-16 needs about 1,48" in warning and "96 passes of 15.5" in warning
    assert "Saliency" not in warning.split(". The limit")[0]
    at.button(key="in_attr_go").click().run()
    assert not at.exception
    assert [m for m, _, _ in at.session_state["attr_result"][3]] == ["Saliency"]
    at.multiselect(key="in_methods").set_value(["Occlusion"]).run()
    assert at.button(key="in_attr_go").disabled
    at.selectbox(key="in_arch").set_value("resnet18").run()                   # 81 x 1.8 GMACs: allowed
    at.multiselect(key="in_methods").set_value(["Occlusion"]).run()
    assert not any("Not run on this CPU server" in w.value for w in at.warning)
    assert not at.button(key="in_attr_go").disabled


def test_the_weights_upload_limit_takes_every_model_the_pages_build():
    """The largest weights a page builds (VGG-19 on Inside, a fine-tuned VGG-16 from the Studio), counted
    from the models' own tensors, fit under MAX_WEIGHTS_MB; and the server, whose maxUploadSize caps
    every upload whatever a widget says, allows as much."""
    import tomllib

    from core import registry
    from core.train.transfer import ENCODERS
    from core.weights import MAX_WEIGHTS_MB
    from tests.conftest import ROOT

    archs = {n for n, s in registry.REGISTRY.items() if s.classifier and s.input_size[0] == 3} | set(ENCODERS)
    sizes = {}
    for name in archs:
        with torch.device("meta"):
            model = registry.get(name).build()
        sizes[name] = sum(t.numel() * t.element_size() for t in model.state_dict().values()) / 2**20
    assert max(sizes.values()) > 500 and max(sizes, key=sizes.get).startswith("vgg19")   # the count is real
    assert max(sizes.values()) + 1 < MAX_WEIGHTS_MB                    # + 1 MiB for a safetensors header
    server = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())["server"]
    assert server["maxUploadSize"] >= MAX_WEIGHTS_MB
