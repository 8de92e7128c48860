"""The lecture's numbers, reproduced by the engine (the slide is the independent source)."""

from __future__ import annotations

import pytest
from torch import nn

from core import registry
from core.analysis import summarize
from core.explain import layer_card
from core.formatting import fmt_shape
from tests.sweeps import every

# The slide "Number of parameters": layer, output, weights, biases, parameters.
ALEXNET_TABLE = [
    ("conv1", "55x55x96", 34_848, 96, 34_944),
    ("pool1", "27x27x96", 0, 0, 0),
    ("conv2", "27x27x256", 614_400, 256, 614_656),
    ("pool2", "13x13x256", 0, 0, 0),
    ("conv3", "13x13x384", 884_736, 384, 885_120),
    ("conv4", "13x13x384", 1_327_104, 384, 1_327_488),
    ("conv5", "13x13x256", 884_736, 256, 884_992),
    ("pool3", "6x6x256", 0, 0, 0),
    ("fc6", "4096", 37_748_736, 4_096, 37_752_832),
    ("fc7", "4096", 16_777_216, 4_096, 16_781_312),
    ("fc8", "1000", 4_096_000, 1_000, 4_097_000),
]


def test_alexnet_parameter_table():
    s = summarize("alexnet")
    by_name = {r.name: r for r in s.layers}
    for name, shape, weights, biases, params in ALEXNET_TABLE:
        r = by_name[name]
        assert fmt_shape(r.output_shape) == shape, name
        assert r.params == params == weights + biases, name
    assert s.totals.params == 62_378_344
    assert round(s.totals.param_bytes / 1e6) == 250  # "4 bytes per parameter: 249 MB" (249.5)


def test_alexnet_two_towers_is_the_papers_count():
    assert summarize("alexnet", options={"two_towers": True}).totals.params == 60_965_224


def test_alexnet_cards_show_the_slides_arithmetic():
    s = summarize("alexnet")
    idx = {r.name: r.index for r in s.layers}
    title, steps = layer_card(s, idx["conv1"])
    text = title + " " + " ".join(st.text for st in steps)
    assert "96 filters 11x11, stride 4, pad 0" in title
    assert "(227 - 11 + 2×0)/4 + 1 = 55" in text and "55x55x96" in text
    assert "11×11×3×96 + 96 = **34,944**" in text
    _, steps = layer_card(s, idx["pool1"])
    assert "(55 - 3)/2 + 1 = 27" in steps[0].text and "**0**" in steps[1].text
    _, steps = layer_card(s, idx["fc6"])
    text = " ".join(st.text for st in steps)
    assert "6x6x256" in text and "9,216" in text and "37,748,736" in text


# The VGG-16 slide: memory (activations) and parameters (weights only, as the slide counts them).
VGG16_ROWS = [  # (H, C) of each CONV/POOL/FC row and its weight count
    (224, 64, 1_728), (224, 64, 36_864), (112, 64, 0), (112, 128, 73_728), (112, 128, 147_456),
    (56, 128, 0), (56, 256, 294_912), (56, 256, 589_824), (56, 256, 589_824), (28, 256, 0),
    (28, 512, 1_179_648), (28, 512, 2_359_296), (28, 512, 2_359_296), (14, 512, 0),
    (14, 512, 2_359_296), (14, 512, 2_359_296), (14, 512, 2_359_296), (7, 512, 0),
]


def test_vgg16_memory_and_parameter_table():
    s = summarize("vgg16")
    rows = [r for r in s.layers if r.type in ("Conv2d", "MaxPool2d")]
    assert len(rows) == len(VGG16_ROWS)
    for r, (h, c, weights) in zip(rows, VGG16_ROWS):
        assert r.output_shape == [c, h, h]
        assert r.activation_elems == h * h * c
        assert r.params - (r.output_shape[0] if r.type == "Conv2d" else 0) == weights
    fcs = [r for r in s.layers if r.type == "Linear"]
    assert [r.params - r.output_shape[0] for r in fcs] == [102_760_448, 16_777_216, 4_096_000]
    assert round(s.totals.params / 1e6) == 138
    assert round(s.totals.param_bytes / 1e6) == 553      # the slide: "552 MB"
    # the slide's rows sum to ~15.2M values (its "24M" total is a known slip)
    assert 15.1e6 < s.totals.activation_elems + s.totals.input_elems < 15.4e6


@pytest.mark.parametrize("name,torchvision_gmacs,paper_gmacs", [
    ("resnet18", 1.814, 1.8), ("resnet34", 3.664, 3.6), ("resnet50", 4.089, 3.8),
    ("resnet101", 7.801, 7.6), ("resnet152", 11.514, 11.3),
])
def test_resnet_operations_table(name, torchvision_gmacs, paper_gmacs):
    tv = summarize(name).totals.macs / 1e9
    has_bottlenecks = name not in ("resnet18", "resnet34")
    # Only bottleneck networks offer the stride placement; for ResNet-18/34 it would change nothing.
    assert ("stride_in" in registry.get(name).options) == has_bottlenecks
    paper = summarize(name, options={"stride_in": "1x1"} if has_bottlenecks else {}).totals.macs / 1e9
    assert round(tv, 3) == torchvision_gmacs
    assert abs(paper - paper_gmacs) / paper_gmacs < 0.025


def test_autoencoder_summary_keras_and_pytorch_views():
    s = summarize("conv_autoencoder")
    assert s.totals.keras_params == 140_850
    assert s.totals.keras_params - s.totals.trainable_params == 256   # Keras' non-trainable
    assert s.totals.params == s.totals.trainable_params == 140_594
    keras_rows = [320, 18_496, 36_928, 28_273, 640, 36_928, 18_464, 289]
    assert [r.params for r in s.layers if r.params and r.type != "BatchNorm2d"] == keras_rows
    shapes = [fmt_shape(r.output_shape) for r in s.layers if r.type in ("ConvTranspose2d", "Conv2d")]
    assert shapes == ["26x26x32", "11x11x64", "3x3x64", "14x14x64", "28x28x64", "28x28x32", "28x28x1"]


def test_inception_module_operations():
    naive = summarize("inception_module")
    reduced = summarize("inception_module", options={"reductions": True})
    assert round(naive.totals.macs / 1e6) == 854
    # Every row of the slide's "with reduction" list, in MACs (28x28 outputs):
    slide_rows = sorted([64 * 256, 64 * 256, 128 * 256, 192 * 9 * 64, 96 * 25 * 64, 64 * 256])
    ours = sorted(r.macs // (28 * 28) for r in reduced.layers if r.macs)
    assert ours == slide_rows
    # The rows add up to 271.4M; the slide's "358M" is that plus the 3x3 row a second time (or,
    # the same number, the 3x3 row fed with 128 channels: see test_explain).
    assert round(reduced.totals.macs / 1e6, 1) == 271.4
    assert round((reduced.totals.macs + 28 * 28 * 192 * 9 * 64) / 1e6) == 358
    assert naive.layers[-1].output_shape == [672, 28, 28]
    assert reduced.layers[-1].output_shape == [480, 28, 28]


def test_one_by_one_bottleneck_example():
    naive = summarize("bottleneck_1x1")
    reduced = summarize("bottleneck_1x1", options={"reduce": True})
    assert round(naive.totals.macs / 1e5) / 10 == 112.9
    assert [round(r.macs / 1e5) / 10 for r in reduced.layers] == [1.5, 3.8]
    assert round(reduced.totals.macs / 1e5) / 10 == 5.3


def test_mobilenet_v1_matches_the_paper():
    s = summarize("mobilenet_v1")
    assert round(s.totals.params / 1e5) / 10 == 4.2 and round(s.totals.macs / 1e6) == 569
    half = summarize("mobilenet_v1", options={"width_mult": 0.5})
    assert round(half.totals.macs / 1e6) == 149  # Table 6: 0.50 MobileNet-224, 149M


def test_googlenet_and_plain34():
    assert summarize("googlenet").totals.params == 6_624_904
    assert summarize("googlenet", options={"aux_logits": True}).totals.params == 13_004_888
    assert summarize("plain34").totals.params < summarize("resnet34").totals.params


def test_alexnet_without_lrn_lists_no_placeholder_layer():
    s = summarize("alexnet", options={"lrn": False})
    assert [r.type for r in s.layers].count("Identity") == 0
    assert not any(r.name.startswith("norm") for r in s.layers)
    assert len(s.layers) == len(summarize("alexnet").layers) - 2
    assert s.totals.params == 62_378_344                       # LRN has no parameters


def test_design_lab_basic_vs_bottleneck_defaults_are_the_papers_figure_5():
    """He et al., Figure 5: a 64-channel basic block (ResNet-34) vs a 256-channel bottleneck
    (ResNet-50), "similar time complexity". Counted against torchvision's blocks."""
    from torchvision.models.resnet import BasicBlock, Bottleneck

    from core.design import residual_blocks

    def conv_weights(block: nn.Module) -> int:
        return sum(m.weight.numel() for m in block.modules() if isinstance(m, nn.Conv2d))

    basic, bottleneck = residual_blocks()
    assert basic.params == conv_weights(BasicBlock(64, 64)) == 73_728
    assert bottleneck.params == conv_weights(Bottleneck(256, 64)) == 69_632
    assert basic.shortcut == bottleneck.shortcut == "identity"
    assert basic.macs == 56 * 56 * basic.params and abs(basic.macs / bottleneck.macs - 1) < 0.1


def test_model_zoo_gmacs_are_for_each_models_own_resolution():
    """The "comparing complexity" chart: torchvision counts each model at its weights' crop size."""
    from torchvision.models import get_model_weights

    from core.zoo import zoo_models

    models = {m.name: m for m in zoo_models()}
    assert models["vit_h_14"].resolution == 518 and models["resnet18"].resolution == 224
    for name in ("vit_h_14", "efficientnet_b7", "inception_v3", "resnet50"):
        w = get_model_weights(name).DEFAULT
        assert models[name].resolution == w.transforms().crop_size[0]
    assert {m.resolution for m in models.values()} != {224}


@pytest.mark.parametrize("name", every())
def test_every_layer_has_a_card_with_its_output_and_parameters(name):
    """Each card states the layer's output shape; layers with parameters show their count."""
    s = summarize(name)
    for r in s.layers:
        title, steps = layer_card(s, r.index)
        text = title + " ".join(st.text for st in steps)
        out = r.output_shape
        shown = fmt_shape(out) if len(out) > 1 else f"{out[0]:,} value" + ("s" if out[0] != 1 else "")
        assert shown in text, r.name
        if r.params:
            assert f"{r.params:,}" in text, r.name
