"""What the layer cards, the quiz and the variant notes say, checked against independent
computations: real modules (`numel`, `in_features`, a forward pass on the meta device), the
receptive-field formula applied by hand, torchvision's metadata, and the lecture's text.

The audit at the end renders every card of every architecture and every note, and evaluates
every equation they print ("a×b×c = N", "(227 - 11)/4 + 1 = 55", "1.5M + 3.8M = 5.3M")."""

from __future__ import annotations

import math
import re

import pytest
import torch
from torch import nn
from torchvision.models import get_model_weights

from core import registry
from core.analysis import summarize
from core.explain import field_of_view, fields_of_view, layer_card, shown_warnings, variant_notes
from core.quiz import DEFAULT_QUIZ_KINDS, check_answer, is_quizzed, next_quizzed, quiz_questions
from tests.conftest import ROOT
from tests.sweeps import every

LECTURE = next((p for p in (ROOT / "shared", ROOT.parent / "shared") if p.exists()),
               ROOT / "shared") / "lecture" / "000_849b641bb26e7e6f.txt"


def _card(s, name: str) -> dict[str, str]:
    r = next(x for x in s.layers if x.name == name)
    title, steps = layer_card(s, r.index)
    return {"title": title, **{st.label: st.text for st in steps}}


def _meta_model(name: str, **options) -> nn.Module:
    with torch.device("meta"):
        return registry.get(name).build(options)


def _input_shapes(model: nn.Module, size: tuple[int, int, int], names: list[str]) -> dict[str, tuple]:
    """(C, H, W) or (D,) of what each named module receives in a real forward pass (meta device)."""
    seen, handles = {}, []

    def hook(name: str):
        def record(mod: nn.Module, args: tuple) -> None:
            seen.setdefault(name, tuple(args[0].shape[1:]))
        return record

    for n in names:
        handles.append(model.get_submodule(n).register_forward_pre_hook(hook(n)))
    try:
        with torch.no_grad():
            model.eval()(torch.zeros(1, *size, device="meta"))
    finally:
        for h in handles:
            h.remove()
    return seen


def _hwc(shape: tuple) -> str:
    return f"{shape[1]}x{shape[2]}x{shape[0]}"


# --- the FC layer's input --------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["resnet18", "resnet50", "resnet152", "googlenet", "mobilenet_v1"])
def test_fc_after_global_pooling_shows_the_pooled_chain(name):
    model = _meta_model(name)
    fc = model.get_submodule("fc")
    shapes = _input_shapes(model, (3, 224, 224), ["avgpool", "fc"])
    pooled = shapes["avgpool"]                               # e.g. (2048, 7, 7)
    assert shapes["fc"] == (fc.in_features,)
    text = _card(summarize(name), "fc")["Input"]
    assert f"{_hwc(pooled)} -> avgpool" in text
    assert f"1x1x{pooled[0]}" in text
    assert f"= **{fc.in_features:,}** values" in text
    assert f"{_hwc(pooled)} =" not in text                  # the old "7x7x2048 = ... = 2,048"


def test_vgg16_fc6_at_64x64_shows_the_adaptive_pool():
    model = _meta_model("vgg16")
    shapes = _input_shapes(model, (3, 64, 64), ["avgpool", "classifier.0"])
    assert shapes["avgpool"] == (512, 2, 2)
    fc6 = model.get_submodule("classifier.0")
    text = _card(summarize("vgg16", (3, 64, 64)), "classifier.0")["Input"]
    assert "2x2x512 -> avgpool" in text and "-> 7x7x512" in text
    assert f"7×7×512 = **{fc6.in_features:,}**" in text


@pytest.mark.parametrize("name,fc,previous", [
    ("alexnet", "fc7", "fc6"), ("alexnet", "fc8", "fc7"), ("vgg16", "classifier.3", "classifier.0"),
    ("vgg16", "classifier.6", "classifier.3"), ("lenet5", "fc4", "fc3"), ("lenet5", "fc5", "fc4"),
])
def test_fc_after_fc_reads_the_previous_layers_output(name, fc, previous):
    model = _meta_model(name)
    prev = model.get_submodule(previous)
    assert model.get_submodule(fc).in_features == prev.out_features
    text = _card(summarize(name), fc)["Input"]
    assert text.startswith(f"**{prev.out_features:,}** values: the output of {previous}")
    assert "x" not in text.split("(")[0]                     # no spatial shape repeated


def test_alexnet_fc6_input_is_pool3_flattened():
    text = _card(summarize("alexnet"), "fc6")["Input"]
    assert text.startswith("6x6x256 (the output of pool3), flattened: 6×6×256 = **9,216**")


# --- receptive field: flatten mixes nothing, the FC layer does ------------------------------------

def _rf_by_hand(layers: list[tuple[int, int]]) -> tuple[int, int]:
    """r_out = r_in + (k - 1) j_in, j_out = j_in s (Araujo et al., Distill 2019)."""
    r, j = 1, 1
    for k, s in layers:
        r, j = r + (k - 1) * j, j * s
    return r, j


ALEXNET_WINDOWS = [(11, 4), (3, 2), (5, 1), (3, 2), (3, 1), (3, 1), (3, 1), (3, 2)]


def test_flatten_keeps_the_field_and_fc6_sees_the_whole_input():
    s = summarize("alexnet")
    r_pool3, j_pool3 = _rf_by_hand(ALEXNET_WINDOWS)
    assert (r_pool3, j_pool3) == (195, 32)
    flatten = _card(s, "flatten")["Receptive field"]
    assert f"unchanged: {r_pool3} pixels" in flatten and "mixes nothing" in flatten
    assert "whole input" not in flatten
    fc6 = _card(s, "fc6")["Receptive field"]
    span = r_pool3 + (6 - 1) * j_pool3
    assert fc6.startswith("the whole input") and f"= {span} pixels" in fc6 and span == 355
    idx = {r.name: r.index for r in s.layers}
    assert field_of_view(s, idx["flatten"]).pixels == r_pool3
    assert field_of_view(s, idx["fc6"]).whole and field_of_view(s, idx["fc7"]).label() == "whole input"


def test_autoencoder_says_whole_input_after_the_dense_layer_and_no_warning():
    s = summarize("conv_autoencoder")
    names = [r.name for r in s.layers]
    fovs = fields_of_view(s)
    dense = names.index("dense")
    assert not any(f.whole for f in fovs[:dense])
    assert all(f.whole and f.pixels is None for f in fovs[dense:])
    for r in s.layers[dense + 1:]:
        text = _card(s, r.name)["Receptive field"]
        assert "pixels" not in text and "the whole input" in text, r.name
    assert s.warnings and shown_warnings(s) == []         # the engine's "unflatten" note is moot here
    # The dense layer sees 26 of the 28 pixels: floor-mode pooling of 11 rows dropped one.
    r_conv3, j_conv3 = _rf_by_hand([(3, 1), (2, 2), (3, 1), (2, 2), (3, 1)])
    assert f"= {r_conv3 + 2 * j_conv3} pixels" in _card(s, "dense")["Receptive field"]


def test_growing_field_numbers_never_follow_the_whole_input():
    """In every architecture, once a layer sees the whole input its successors on the same path say so."""
    for name in registry.names():
        s = summarize(name)
        for r, f in zip(s.layers, fields_of_view(s)):
            if f.whole:
                assert "r = r_in" not in _card(s, r.name)["Receptive field"], (name, r.name)


# --- dropout, LRN, tautologies, plurals ------------------------------------------------------------

def test_dropout_cards_read_p_from_the_module():
    """Every architecture's dropout layers (found at test time: a list made at collection would
    summarise every architecture in each test process, whether it runs this test or not)."""
    with_dropout = set()
    for name in registry.names():
        s = summarize(name)
        dropouts = [r for r in s.layers if r.type == "Dropout"]
        model = _meta_model(name) if dropouts else None
        for r in dropouts:
            p = model.get_submodule(r.module).p
            text = _card(s, r.name)["Parameters"]
            assert f"p = {p:g}" in text and "half" not in text, (name, r.name)
            with_dropout.add(name)
    assert {"alexnet", "zfnet", "vgg16", "googlenet", "mobilenet_v2"} <= with_dropout   # as in their papers


def test_googlenet_and_mobilenet_dropout_is_not_a_half():
    for name, module in (("googlenet", "dropout"), ("mobilenet_v2", "classifier.0"),
                         ("mobilenet_v3_large", "classifier.2")):
        assert _meta_model(name).get_submodule(module).p == 0.2
        assert "p = 0.2 " in _card(summarize(name), module)["Parameters"]


def test_lrn_card_reads_its_constants():
    m = _meta_model("alexnet").get_submodule("norm1")
    text = _card(summarize("alexnet"), "norm1")["Parameters"]
    assert f"n = {m.size} adjacent channels" in text and f"β = {m.beta:g}" in text


def test_vectors_are_not_written_as_tautologies_and_plurals_agree():
    s = summarize("siamese")
    head = _card(s, "head")
    assert head["title"].endswith("1 neuron") and "1 bias)" in head["Parameters"]
    assert "4096 = 4,096" not in " ".join(_card(summarize("alexnet"), "fc6").values())
    lenet = summarize("lenet5")
    assert "unchanged: 1 pixel," not in str([layer_card(lenet, 0)])  # conv1 is 5 pixels
    text = " ".join(" ".join(st.text for st in layer_card(lenet, r.index)[1]) for r in lenet.layers)
    assert not re.search(r"(?<![×x\d,.])\b1 (pixels|values|neurons|biases|weights)\b", text)


# --- the quiz ------------------------------------------------------------------------------------

def test_quiz_asks_about_conv_and_fc_by_default():
    s = summarize("alexnet")
    quizzed = [r.name for r in s.layers if is_quizzed(r, DEFAULT_QUIZ_KINDS)]
    assert quizzed == ["conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7", "fc8"]
    assert [r.name for r in s.layers if is_quizzed(r, ["norm", "other"])][:3] == ["relu1", "norm1", "relu2"]
    assert s.layers[next_quizzed(s, 0, DEFAULT_QUIZ_KINDS)].name == "conv2"


def test_quiz_accepts_the_slides_own_answers_and_says_why():
    vgg = summarize("vgg16")
    conv1 = vgg.layers[0]
    weights = nn.Conv2d(3, 64, 3).weight.numel()             # 1,728, the slide's number
    res = check_answer(conv1, "parameters", f"{weights:,}")
    assert res.correct and "weights alone" in res.message and "1,792" in res.message
    assert "“1,728”" in res.message                          # echoes what was typed

    alex = summarize("alexnet")
    c1 = alex.layers[0]
    exact = sum(p.numel() for p in nn.Conv2d(3, 96, 11).parameters())  # 34,944
    res = check_answer(c1, "parameters", "35K")
    assert res.correct and "rounded" in res.message and f"{exact:,}" in res.message
    fc6 = next(r for r in alex.layers if r.name == "fc6")
    assert check_answer(fc6, "parameters", "37.75M").correct
    assert check_answer(fc6, "parameters", "37.7M").correct   # the weights, 37,748,736, rounded
    near = check_answer(fc6, "parameters", "37.9M")          # 0.4% off: 37,752,832 rounds to 37.8M
    assert not near.correct and "37,800,000" in near.message
    assert not check_answer(c1, "parameters", "30K").correct  # rounds, but 14% off
    assert check_answer(c1, "parameters", "34,944").correct
    assert check_answer(c1, "output size", "55,55,96").correct
    out = check_answer(c1, "output size", "55x55x95")
    assert not out.correct and "read as 55 x 55 x 95" in out.message


def test_a_rounded_answer_that_fits_the_full_count_is_graded_for_the_full_count():
    vgg = summarize("vgg16")
    fc = next(r for r in vgg.layers if r.name == "classifier.0")
    full = sum(p.numel() for p in nn.Linear(25088, 4096).parameters())          # 102,764,544
    assert full == 102_764_544
    res = check_answer(fc, "parameters", "102.8M")      # the weights alone (102,760,448) round to it too
    assert res.correct and "Correct, rounded" in res.message and "weights alone" not in res.message
    res = check_answer(fc, "parameters", "102,760,448")  # the weights exactly: the weights' message
    assert res.correct and "weights alone (exactly)" in res.message


def test_the_question_gives_what_it_needs_and_not_the_answer():
    from core.quiz import givens

    alex = summarize("alexnet")
    conv1, fc6 = alex.layers[0], next(r for r in alex.layers if r.name == "fc6")
    text = givens(conv1)
    assert "96 filters 11x11, stride 4, padding 0" in text and "227x227x3" in text
    assert "55" not in text and "34,944" not in text                   # neither answer
    text = givens(fc6)
    assert "4,096 output units" in text and "9,216" in text and "37,752,832" not in text
    mb = summarize("mobilenet_v1")
    dw = next(r for r in mb.layers if r.type == "Conv2d" and (r.groups or 1) > 1)
    assert f"groups {dw.groups}" in givens(dw)


def test_quiz_counts_shared_weights_of_a_repeated_call():
    s = summarize("siamese")
    second = next(r for r in s.layers if r.name == "encoder.conv1 (call 2)")
    assert second.params == 0 and "parameters" in quiz_questions(second)
    n = sum(p.numel() for p in nn.Conv2d(1, 64, 10).parameters())
    res = check_answer(second, "parameters", str(n))
    assert res.correct and "counts them once" in res.message


# --- variant notes: their numbers are computed, and the slips quote the slide ------------------------

def _notes(name: str) -> list:
    return variant_notes(name)


def _text(name: str) -> str:
    return " ".join(n.text for n in _notes(name))


def test_lenet_note_adds_up_to_the_papers_60000():
    c1 = nn.Conv2d(1, 6, 5)
    # C3 (the paper's Table I): 6 maps read 3 of S2's maps, 9 read 4, 1 reads all 6.
    c3_partial = sum(maps * sum(p.numel() for p in nn.Conv2d(k, 1, 5).parameters())
                     for maps, k in ((6, 3), (9, 4), (1, 6)))
    f5, f6 = nn.Linear(400, 120), nn.Linear(120, 84)
    n = [sum(p.numel() for p in m.parameters()) for m in (c1, f5, f6)]
    expected = f"{n[0]:,} + 12 + {c3_partial:,} + 32 + {n[1]:,} + {n[2]:,} = 60,000"
    assert expected in _text("lenet5")
    slip = next(x for x in _notes("lenet5") if x.slip)
    assert "1989" in slip.text and "first-ever CNN (1998)" in slip.text


def test_inception_358m_has_two_readings_computed():
    macs = lambda conv: 28 * 28 * conv.weight.numel()        # noqa: E731 (no bias in MACs)
    rows = [nn.Conv2d(256, 64, 1), nn.Conv2d(256, 64, 1), nn.Conv2d(256, 128, 1), nn.Conv2d(64, 192, 3),
            nn.Conv2d(64, 96, 5), nn.Conv2d(256, 64, 1)]
    total = sum(macs(c) for c in rows)
    row3 = macs(rows[3])
    wide = macs(nn.Conv2d(128, 192, 3))
    assert total + row3 == total - row3 + wide == 358_055_936
    text = _text("inception_module")
    assert f"{total:,}" in text and text.count("358,055,936") == 2 and f"{wide:,}" in text
    assert "counted twice" in text and "128 input channels" in text and "does not say which" in text


def test_naive_inception_rows_flag_the_slides_missing_factors():
    notes = {n.layer: n for n in _notes("inception_module") if n.layer}
    for layer, k, c_out in (("branch3x3.conv", 3, 192), ("branch5x5.conv", 5, 96)):
        assert f"28×28×{c_out}×{k}×256," in notes[layer].text          # the slide's row, quoted
        macs = 28 * 28 * nn.Conv2d(256, c_out, k).weight.numel()
        assert notes[layer].slip and f"= {macs:,} MACs" in notes[layer].text


def test_vgg16_memory_note_gives_both_totals_and_the_bias_convention():
    # The slide's rows: the input, every CONV/POOL map (test_lecture_numbers' table) and the FCs.
    from tests.test_lecture_numbers import VGG16_ROWS
    rows = 224 * 224 * 3 + sum(h * h * c for h, c, _ in VGG16_ROWS) + 4096 + 4096 + 1000
    shapes = _input_shapes(_meta_model("vgg16"), (3, 224, 224), ["classifier.0"])
    pool_copy = shapes["classifier.0"][0]                    # torchvision's 7x7x512 avgpool output
    text = _text("vgg16")
    assert f"{rows * 4 / 1e6:.2f} MB" in text and f"{rows * 4 / 1e6:.2f}" == "60.95"
    assert f"{(rows + pool_copy) * 4 / 1e6:.2f} MB" in text
    assert f"{summarize('vgg16').totals.forward_bytes / 1e6:.2f} MB" in text   # what the page shows
    conv = nn.Conv2d(3, 64, 3)
    assert f"= {conv.weight.numel():,};" in text and f"= {sum(p.numel() for p in conv.parameters()):,} parameters" in text


def test_plain34_note_is_precise_about_shortcuts():
    from torchvision.models import resnet34
    with torch.device("meta"):
        res = resnet34()
    shortcuts = sum(p.numel() for n, p in res.named_parameters() if ".downsample." in n)
    text = _text("plain34")
    assert f"{shortcuts:,} fewer" in text and "option A" in text and "same count" in text
    assert "zero-padding" in _text("resnet34")
    slip = next(n for n in _notes("plain34") if "vanishing" in n.text)
    assert slip.slip and "unlikely" in slip.text


def test_resnet_weight_decay_slip():
    for name in ("resnet18", "resnet50", "plain34"):
        assert any(n.slip and "1e-4" in n.text for n in _notes(name))


def _gmacs_by_flop_counter(model: nn.Module) -> float:
    from torch.utils.flop_counter import FlopCounterMode
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model.eval()(torch.zeros(1, 3, 224, 224, device="meta"))
    return counter.get_total_flops() / 2 / 1e9


def test_googlenet_deviations_are_computed():
    from core.models.googlenet import googlenet_paper_layers
    tv = _meta_model("googlenet")
    with torch.device("meta"):
        paper = googlenet_paper_layers()
    # The largest path to the global pool: the stem, then per Inception module its widest branch.
    stem = [(7, 2), (3, 2), (1, 1), (3, 1), (3, 2)]
    def path(five: int, pool4: tuple[int, int]) -> list:
        return stem + [(five, 1)] * 2 + [(3, 2)] + [(five, 1)] * 5 + [pool4] + [(five, 1)] * 2
    rf_tv, _ = _rf_by_hand(path(3, (2, 2)))
    rf_paper, _ = _rf_by_hand(path(5, (3, 2)))
    text = _text("googlenet")
    assert (rf_tv, rf_paper) == (379, 715)
    assert f"from {rf_tv} to {rf_paper} pixels" in text
    assert f"from {_gmacs_by_flop_counter(tv):.2f} to {_gmacs_by_flop_counter(paper):.2f} GMACs" in text
    assert f"p = {tv.dropout.p:g}" in text and f"maxpool4 is {tv.maxpool4.kernel_size}x" in text


@pytest.mark.parametrize("name,paper_params", [("mobilenet_v2", 3.4e6), ("mobilenet_v3_large", 5.4e6),
                                               ("mobilenet_v3_small", 2.5e6)])
def test_mobilenet_notes_say_how_close_to_the_paper(name, paper_params):
    meta = get_model_weights(name).DEFAULT.meta["num_params"]
    text = _text(name)
    if round(meta / 1e6, 1) == paper_params / 1e6:
        assert f"{meta:,} parameters, which rounds to the paper's {paper_params / 1e6:g}M" in text
    else:
        assert f"{meta:,} parameters, within {abs(meta / paper_params - 1) * 100:.1f}%" in text
    assert "match" not in text


def test_autoencoder_second_listing_slip():
    tconv = nn.ConvTranspose2d(64, 32, 3)                    # Keras 'valid'
    h = tconv(torch.zeros(1, 64, 28, 28)).shape[-1]
    note = next(n for n in _notes("conv_autoencoder") if n.slip)
    assert note.layer == "tconv3" and f"{h}x{h}x32" in note.text and h == 30
    second = summarize("conv_autoencoder", options={"listing": "second"})
    assert [r.output_shape for r in second.layers if r.name in ("tconv3", "conv4")] == [[32, 30, 30], [1, 28, 28]]
    assert second.totals.params == summarize("conv_autoencoder").totals.params


@pytest.mark.parametrize("phrase", [
    "First-ever CNN (1998)", "vanishing gradient problem!", "Weight decay of 1e-5", "**Total: 358M ops**",
    "28 \\times 28 \\times 192 \\times 3 \\times 256", "28 \\times 28 \\times 96 \\times 5 \\times 256",
    "conv2d_transpose_10 (Conv2DTranspose)\t(None, 28, 28, 32)", "d = Conv2DTranspose(32, (3, 3), activation='relu')(d)",
    "24M \\* 4 bytes = 96MB/image", "params:  $(3 \\times 3 \\times 3) \\times 64 = 1,728$",
])
def test_the_flagged_slips_are_on_the_slides(phrase):
    """Each slip the notes flag is quoted from the lecture's text (skipped without the lecture)."""
    if not LECTURE.exists():
        pytest.skip("the lecture's text is not in this checkout")
    assert phrase in LECTURE.read_text()


def test_no_entry_claims_to_match_without_a_computed_note():
    from core.notes import NOTES, notes_of

    for name in registry.names():
        assert notes_of(name), name
    assert set(NOTES) <= set(registry.names())       # no notes for a name the registry lacks


# --- the audit: every equation printed is true --------------------------------------------------

_NUM = r"(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?[KMG]?(?![a-wyzA-Z_\d])"
_TERM = rf"[(⌊⌈]*{_NUM}[)⌋⌉]*"
_EXPR = rf"{_TERM}(?:\s*[×x*+\-/]\s*{_TERM})*"
_CHAIN = re.compile(rf"(?<![\w.,×*+/\-^]){_EXPR}(?:\s*=\s*{_EXPR})+")
_SUFFIX = {"K": 1e3, "M": 1e6, "G": 1e9}


def _value(token: str) -> float:
    token = token.replace(",", "")
    mult = _SUFFIX.get(token[-1], 1)
    return float(token.rstrip("KMG")) * mult


def _balance(side: str) -> str:
    """A side without the prose brackets the pattern caught: '(7×7×1' -> '7×7×1', '32)' -> '32'."""
    side = side.strip()
    opens, closes = "(⌊⌈", ")⌋⌉"
    while side and side[0] in opens and sum(side.count(c) for c in opens) > sum(side.count(c) for c in closes):
        side = side[1:].lstrip()
    while side and side[-1] in closes and sum(side.count(c) for c in closes) > sum(side.count(c) for c in opens):
        side = side[:-1].rstrip()
    return side


def _eval(expr: str) -> float:
    expr = _balance(expr)
    py = re.sub(_NUM, lambda m: repr(_value(m.group(0))), expr)
    py = py.replace("×", "*").replace("x", "*").replace("⌊", "math.floor(").replace("⌈", "math.ceil(")
    py = py.replace("⌋", ")").replace("⌉", ")")
    return eval(py, {"math": math})                         # noqa: S307 (our own text, digits only)


def _tolerance(side: str) -> float:
    """Half a unit of the last digit of a side that is one rounded number ('5.3M', '9.143')."""
    side = _balance(side)
    if not re.fullmatch(_NUM, side) or not ("." in side or side[-1] in _SUFFIX):
        return 0.0
    decimals = len(side.rstrip("KMG").partition(".")[2])
    return 0.5 * 10 ** -decimals * _SUFFIX.get(side[-1], 1)


def equations(text: str) -> list[str]:
    return [m.group(0) for m in _CHAIN.finditer(text.replace("**", ""))]


def false_equations(text: str) -> list[str]:
    """Every chain 'A = B = C' whose sides differ (beyond the rounding of a rounded side), or
    that says nothing ('4096 = 4,096')."""
    bad = []
    for chain in equations(text):
        sides = re.split(r"\s*=\s*", chain)
        values = [_eval(s) for s in sides]
        tol = max(_tolerance(s) for s in sides)
        if any(abs(v - values[0]) > tol + 1e-9 * abs(values[0]) for v in values):
            bad.append(chain)
        elif all(re.fullmatch(_NUM, _balance(s)) for s in sides):
            bad.append(chain + "  (a tautology)")
    return bad


def test_the_audit_catches_the_old_slips():
    assert false_equations("Input: 7x7x2048 = 7×7×2048 = 2,048 values")
    assert false_equations("Input: 6x6x256 = 6×6×256 = 4,096 values")
    assert false_equations("Memory: 4096 = 4,096 values")
    assert false_equations("(224 - 11)/4 + 1 = 55")
    assert not false_equations("⌊(224 - 7 + 2×3)/2⌋ + 1 = ⌊111.5⌋ + 1 = 112; 1.5M + 3.8M = 5.3M; 32×2/7 = 9.143")
    assert not false_equations("a weight decay of 0.0001 = 1e-4")


OPTION_VARIANTS = [("alexnet", None, {"two_towers": True, "lrn": False}), ("vgg16", (3, 64, 64), {}),
                   ("googlenet", None, {"aux_logits": True}), ("resnet50", None, {"stride_in": "1x1"}),
                   ("inception_module", None, {"reductions": True}), ("bottleneck_1x1", None, {"reduce": True}),
                   ("conv_autoencoder", None, {"listing": "second"}), ("resnet18", (3, 160, 200), {}),
                   ("mobilenet_v1", None, {"width_mult": 0.5})]


@pytest.mark.parametrize("name,size,options", [(n, None, {}) for n in registry.names()] + OPTION_VARIANTS)
def test_every_equation_on_every_card_holds(name, size, options):
    s = summarize(name, size, options)
    checked = 0
    for r in s.layers:
        title, steps = layer_card(s, r.index)
        text = title + "\n" + "\n".join(st.text for st in steps)
        assert false_equations(text) == [], (r.name, text)
        assert not re.search(r"(?<![×x\d,.])\b1 (pixels|values|neurons|biases|weights)\b", text), r.name
        checked += len(equations(text))
    assert checked >= len(s.layers)      # the audit did read something: at least one per layer


@pytest.mark.parametrize("name", every())
def test_every_equation_in_the_notes_and_descriptions_holds(name):
    spec = registry.get(name)
    for text in [spec.description] + [n.text for n in variant_notes(name)]:
        assert false_equations(text) == [], text
