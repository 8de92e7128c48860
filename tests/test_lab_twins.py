"""The Training Lab's twins and depths: the Siamese network's one-shot test against brute-force
baselines and chance, the glyphs, the new-employee gallery; the ResNet paper's CIFAR networks
against the paper's parameter counts, option A's shortcut, the 6n+2 rule; both command lines and
both pages with a tiny run."""

from __future__ import annotations

import io
import json
import math

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from core.lab import depth as dp
from core.lab import new_employee as ne
from core.lab import oneshot
from core.lab import siamese as sm
from core.lab.common import run_headless
from core.lab.glyphs import glyphs
from core.train.events import Epoch
from tests.conftest import SMALL_SIAMESE
from tests.test_pages import _lab_run, _page

TINY_DEPTH = dict(depths="8,14", width=4, data="shapes", per_class=20, size=8, epochs=1, batch_size=32)


def _numel(m: torch.nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


# --- glyphs and trials -----------------------------------------------------------------------------------

def test_glyphs_are_deterministic_and_each_character_is_drawn_by_every_hand():
    a, b = glyphs(6, 4, seed=3), glyphs(6, 4, seed=3)
    assert torch.equal(a.images, b.images) and a.images.shape == (24, 1, 28, 28) and a.images.dtype == torch.uint8
    assert not torch.equal(a.images, glyphs(6, 4, seed=4).images)
    assert a.labels.tolist() == [c for c in range(6) for _ in range(4)]
    assert a.drawers.tolist() == list(range(4)) * 6
    ink = a.images.float().mean((1, 2, 3)) / 255
    assert (ink > 0.03).all() and (ink < 0.5).all()        # every drawing has ink, none is a blot
    # two drawings of one character are closer than drawings of different characters, on average
    x = a.images.flatten(1).float()
    d = torch.cdist(x, x)
    same = a.labels[:, None] == a.labels[None]
    off = ~torch.eye(len(x), dtype=torch.bool)
    assert d[same & off].mean() < d[~same].mean()


def _trial_data(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = glyphs(12, 5, seed=seed)
    return g.images.float() / 255, g.labels, g.drawers


def test_trials_follow_lakes_protocol():
    x, y, hands = _trial_data()
    t = oneshot.make_trials(y, hands, 6, 300, seed=1)
    assert t.support.shape == (300, 6) and t.ways == 6
    for s, q, a in zip(t.support.tolist(), t.query.tolist(), t.answer.tolist()):
        classes = y[s].tolist()
        assert len(set(classes)) == 6                          # N different classes
        assert y[q] == classes[a]                              # the query's class is at the answer
        assert len(set(hands[s].tolist())) == 1                # the support set: one hand
        assert hands[q] != hands[s[a]] and q not in s          # the query: another hand, another image


def test_constant_scores_score_chance_and_the_answer_is_not_always_first():
    x, y, hands = _trial_data()
    for n in (2, 5, 10):
        t = oneshot.make_trials(y, hands, n, 2000, seed=n)
        acc = oneshot.accuracy(torch.zeros(2000, n), t)             # argmax of ties picks position 0
        sd = math.sqrt((1 / n) * (1 - 1 / n) / 2000)
        assert abs(acc - 1 / n) < 4 * sd, (n, acc)


def test_pixel_baseline_matches_a_brute_force_loop():
    x, y, hands = _trial_data(seed=5)
    t = oneshot.make_trials(y, hands, 5, 200, seed=2)
    fast = oneshot.trial_scores(x, t, oneshot.pixel_score)
    xs = x.numpy().astype(np.float64)
    right = 0
    for k in range(200):
        q = xs[int(t.query[k])]
        dist = [math.sqrt(float(((xs[int(s)] - q) ** 2).sum())) for s in t.support[k]]
        assert np.allclose(-fast[k].numpy(), dist, rtol=1e-4)
        right += int(np.argmin(dist) == int(t.answer[k]))
    assert oneshot.accuracy(fast, t) == pytest.approx(right / 200)


def test_pair_sampler_gives_another_image_of_the_class_and_an_image_of_another():
    labels = torch.tensor([0, 0, 0, 1, 1, 2, 2, 2, 2, 3, 3])[torch.randperm(11, generator=torch.Generator().manual_seed(0))]
    s = sm.PairSampler(labels, seed=0)
    idx = torch.arange(11).repeat(200)
    pos, neg = s(idx)
    assert (labels[pos] == labels[idx]).all() and (pos != idx).all()
    assert (labels[neg] != labels[idx]).all()
    assert set(neg.tolist()) == set(range(11))                 # every image can be a negative
    assert set(pos.tolist()) == set(range(11))


def test_contrastive_and_binary_losses_are_the_papers():
    torch.manual_seed(0)
    a, b = torch.randn(4, 8), torch.randn(4, 8)
    same = torch.tensor([1.0, 0.0, 1.0, 0.0])
    con = sm.Siamese(8, "contrastive")
    d = (a - b).norm(dim=1)
    expected = (same * d ** 2 + (1 - same) * torch.clamp(1.0 - d, min=0) ** 2).mean()
    assert float(con.pair_loss(a, b, same)) == pytest.approx(float(expected), rel=1e-5)
    binary = sm.Siamese(8, "binary").requires_grad_(False)
    logit = (a - b).abs() @ binary.head.weight[0] + binary.head.bias
    p = torch.sigmoid(logit)
    expected = -(same * torch.log(p) + (1 - same) * torch.log(1 - p)).mean()
    assert float(binary.pair_loss(a, b, same)) == pytest.approx(float(expected), rel=1e-5)
    # the encoder is shared: the twins are one module, called twice
    assert _numel(binary) == _numel(binary.encoder) + 8 + 1


@pytest.mark.parametrize("loss", ["binary", "contrastive"])
def test_the_batch_loss_is_every_different_pair_of_anchors_and_the_same_pairs_half_each(loss):
    torch.manual_seed(1)
    net = sm.Siamese(6, loss).requires_grad_(False)
    a, p = torch.randn(5, 6), torch.randn(5, 6)
    labels = torch.tensor([0, 1, 0, 2, 1])
    same = [float(net.pair_loss(a[i:i + 1], p[i:i + 1], torch.ones(1))) for i in range(5)]
    diff = [float(net.pair_loss(a[i:i + 1], a[j:j + 1], torch.zeros(1)))
            for i in range(5) for j in range(5) if labels[i] != labels[j]]
    assert len(diff) == 25 - 9                                         # 9 ordered pairs share a class
    assert float(net.batch_loss(a, p, labels)) == pytest.approx(0.5 * (np.mean(same) + np.mean(diff)), rel=1e-5)


def test_classify_finds_each_reference_in_itself():
    torch.manual_seed(0)
    net = sm.Siamese(16, "contrastive").eval()
    refs = (glyphs(5, 2).images[::2, 0].float() / 255).numpy()
    s = ne.classify(net, refs, refs)
    assert s.shape == (5, 5)
    assert np.allclose(np.diag(s), 0, atol=1e-5) and (s[~np.eye(5, dtype=bool)] < -1e-3).all()


def test_prepare_drawing_inverts_crops_and_centres_ink_on_paper():
    im = Image.new("RGB", (300, 160), "white")
    ImageDraw.Draw(im).line([(40, 30), (90, 130)], fill=(20, 20, 20), width=9)   # dark ink off-centre
    out = ne.prepare(np.asarray(im))
    assert out.shape == (28, 28) and out.dtype == np.float32
    assert out.max() == pytest.approx(1.0, abs=0.05) and out[0].max() == 0 and out[:, 0].max() == 0
    rows, cols = np.nonzero(out > 0.5)
    assert abs(rows.mean() - 13.5) < 2 and abs(cols.mean() - 13.5) < 2       # the ink is centred
    with pytest.raises(ValueError, match="No drawing"):
        ne.prepare(np.full((50, 50, 3), 255, np.uint8))


@pytest.mark.parametrize("kwargs,match", [
    (dict(ways="5,50"), "50-way one-shot needs 50 unseen classes but only 40"),
    (dict(data="digits"), "unseen must be a whole number from 2 to 8"),
    (dict(data="digits", unseen=5), "20-way one-shot needs 20 unseen classes but only 5"),
    (dict(ways="1"), "at least 2"),
    (dict(ways="five"), "whole numbers"),
    (dict(characters=20, unseen=19), "at least two classes to test on and two to train on"),
    (dict(loss="triplet"), "loss must be one of contrastive, binary"),
])
def test_siamese_config_refuses_with_a_sentence(kwargs, match):
    with pytest.raises(ValueError, match=match):
        sm.Config(**kwargs)


# small_siamese: one run for the session (tests/conftest.py), read by tests/test_lab_views.py too

def test_the_trained_network_beats_pixels_its_untrained_self_and_chance(small_siamese):
    final, _, events, _ = small_siamese
    for n in ("5", "20"):
        acc, chance = final["one_shot"][n], final["chance"][n]
        assert acc > final["baselines"]["pixels"][n] + 0.1 and acc > chance + 0.3, (n, final)
        assert 0.2 < final["baselines"]["classifier"][n] < 1
    # random convolutions already give a useful distance (far above chance): training must add to it
    assert final["untrained"]["5"] > 0.3 and final["one_shot"]["5"] > final["untrained"]["5"] + 0.08
    assert final["chance"] == {"5": 0.2, "20": 0.05}
    series = [e.series for e in events if isinstance(e, Epoch)]
    assert series == ["siamese"] * 8 + ["classifier"] * 8
    assert all(set(e.metrics) >= {"one_shot_5", "one_shot_20"} for e in events if isinstance(e, Epoch))


def test_the_pixel_baseline_of_a_run_is_recomputed_from_its_saved_images(small_siamese):
    final, res, _, _ = small_siamese
    a = res.arrays
    x = a["test_images"].astype(np.float64) / 255
    for n in (5, 20):
        t = oneshot.make_trials(torch.from_numpy(a["test_labels"]), torch.from_numpy(a["test_hands"]), n,
                           SMALL_SIAMESE["trials"], seed=0 + 2)   # the run's final trials: seed + 2
        assert np.array_equal(t.support[:sm.SHOW_TRIALS].numpy(), a[f"support_{n}"])
        right = sum(int(np.argmin([((x[s] - x[q]) ** 2).sum() for s in sup]) == ans)
                    for sup, q, ans in zip(t.support.tolist(), t.query.tolist(), t.answer.tolist()))
        assert final["baselines"]["pixels"][str(n)] == pytest.approx(right / len(t.query))


def test_a_new_employee_needs_one_example(small_siamese):
    _, res, _, _ = small_siamese
    gal = ne.new_employee(res, [0, 1, 2], 5)
    labels, hands = res.arrays["test_labels"], res.arrays["test_hands"]
    per_class = int((labels == labels[0]).sum())
    assert gal.references.shape == (4, 28, 28) and len(gal.queries) == 4 * (per_class - 1)
    assert gal.scores.shape == (len(gal.queries), 4)
    assert ((gal.scores <= 0) & (gal.scores >= -2)).all()      # minus distances between unit vectors
    assert sorted(set(gal.truth.tolist())) == [0, 1, 2, 3]
    # the newcomer's only reference is its class's drawing by hand 0
    newcomer = np.flatnonzero((labels == np.unique(labels)[5]) & (hands == 0))[0]
    assert np.allclose(gal.references[3], res.arrays["test_images"][newcomer] / 255)
    assert np.nanmean(gal.recall()) > 1 / 4                    # better than guessing among four
    drawn = gal.references[0]
    uploaded = ne.new_employee(res, [0, 1], drawn)             # an image as the newcomer
    assert uploaded.references.shape == (3, 28, 28) and set(uploaded.truth.tolist()) == {0, 1}


def test_the_siamese_cli_prints_the_final_json_line(capsys):
    from core.__main__ import main

    assert main(["lab", "siamese", "--characters", "24", "--drawers", "4", "--unseen", "10", "--ways", "5,10",
                 "--trials", "20", "--epochs", "1", "--json"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    final = json.loads(lines[-1])
    assert set(final["one_shot"]) == {"5", "10"}
    assert set(final["baselines"]) == {"pixels", "classifier"}
    assert all(set(v) == {"5", "10"} for v in final["baselines"].values())
    assert [json.loads(x)["series"] for x in lines[:-1]] == ["siamese", "classifier"]
    assert main(["lab", "siamese", "--data", "digits", "--unseen", "5"]) == 2
    assert "20-way one-shot needs 20 unseen classes" in capsys.readouterr().err


# --- plain vs residual -----------------------------------------------------------------------------------

@pytest.mark.parametrize("depth,paper", [(20, 0.27e6), (32, 0.46e6), (44, 0.66e6), (56, 0.85e6), (110, 1.7e6)])
def test_parameters_match_the_formula_numel_and_the_papers_table_6(depth, paper):
    res, plain = dp.CifarNet(depth, 16, True, 10), dp.CifarNet(depth, 16, False, 10)
    n = _numel(res)
    assert n == _numel(plain) == dp.param_formula(depth, 16, 10)   # option A adds no parameters
    assert float(f"{n:.2g}") == paper                               # the paper's rounding
    assert res.weighted_layers() == plain.weighted_layers() == depth
    assert dp.param_formula(depth, 8, 8) == _numel(dp.CifarNet(depth, 8, True, 8))


@pytest.mark.parametrize("text,match", [("20,21", "depth 21 is not 6n\\+2.*20 and 26"), ("56,52", "depth 52 is not 6n\\+2.*50 and 56"),
                                        ("2", "depth 2 is not 6n\\+2"), ("", "at least one depth"),
                                        ("20,x", "whole numbers"), ("20,20", "twice"), ("116", "110 at most")])
def test_depths_must_fit_6n_plus_2(text, match):
    with pytest.raises(ValueError, match=match):
        dp.Config(depths=text)
    assert dp.parse_depths("56, 20") == (20, 56) and dp.blocks_per_stage(8) == 1 and dp.blocks_per_stage(110) == 18


def test_option_a_shortcut_is_identity_or_subsample_and_pad():
    torch.manual_seed(0)
    x = torch.randn(2, 4, 8, 8)
    for stride, c_out in ((1, 4), (2, 8)):
        blk, plain = dp.Block(4, c_out, stride, True).eval(), dp.Block(4, c_out, stride, False).eval()
        for b in (blk, plain):
            torch.nn.init.zeros_(b.bn2.weight)                         # the residual branch F(x) = 0
        expected = torch.relu(torch.nn.functional.pad(x[:, :, ::stride, ::stride], (0, 0, 0, 0, 0, c_out - 4)))
        assert torch.allclose(blk(x), expected)
        assert (plain(x) == 0).all()                                   # a plain block has nothing to add back
        assert blk(x).shape == (2, c_out, 8 // stride, 8 // stride)


def test_precise_batchnorm_averages_the_batches_and_restores_the_model():
    torch.manual_seed(0)
    net = dp.CifarNet(8, 4, True, 3).eval()
    x = torch.randn(64, 3, 8, 8)
    dp.precise_batchnorm(net, x, batch=32)
    stem_out = net.stem[0](x)                                          # (64, 4, 8, 8), before the first BN
    halves = [stem_out[:32].mean((0, 2, 3)), stem_out[32:].mean((0, 2, 3))]
    assert torch.allclose(net.stem[1].running_mean, (halves[0] + halves[1]) / 2, atol=1e-5)
    assert not net.training and all(m.momentum == 0.1 for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d))


def test_degradation_needs_a_clear_difference():
    def runs(p20, p56, r20, r56):
        return {"plain20": {"train_error": p20}, "plain56": {"train_error": p56},
                "resnet20": {"train_error": r20}, "resnet56": {"train_error": r56}}

    assert dp.degradation(runs(0.05, 0.40, 0.02, 0.02), 512) == {"plain": True, "resnet": False}
    assert dp.degradation(runs(0.05, 0.06, 0.02, 0.015), 512) == {"plain": False, "resnet": False}  # noise
    assert dp.degradation(runs(0.40, 0.10, 0.30, 0.50), 512) == {"plain": False, "resnet": True}


def test_a_tiny_depth_run_measures_both_errors_for_every_network(tmp_path):
    from safetensors.torch import load_file

    from core.train.data import stratified_split

    events: list = []
    cfg = dp.Config(**TINY_DEPTH)
    final, res = run_headless(cfg, tmp_path, on_event=events.append)
    names = ["plain8", "resnet8", "plain14", "resnet14"]
    assert [str(n) for n in res.arrays["names"]] == names and res.arrays["errors"].shape == (4, 1, 2)
    epochs = [e for e in events if isinstance(e, Epoch)]
    assert [e.series for e in epochs] == names
    # Independently: the saved networks, standardised inputs computed here from the training split
    # alone, our own eval-mode loop over the training subset and the validation images.
    x, y, classes = dp.load_data(cfg)
    tr, va = stratified_split(y, 0.2, cfg.seed)
    sub, val = torch.from_numpy(res.arrays["train_subset"]), torch.from_numpy(res.arrays["val_idx"])
    assert torch.equal(val.sort().values, va.sort().values) and set(sub.tolist()) <= set(tr.tolist())
    mean = x[tr].mean((0, 2, 3), keepdim=True)
    std = x[tr].std((0, 2, 3), keepdim=True)
    xs = (x - mean) / std
    state = load_file(str(tmp_path / "models.safetensors"))
    for e, row in zip(epochs, res.arrays["errors"]):
        depth = int(e.series.removeprefix("plain").removeprefix("resnet"))
        net = dp.CifarNet(depth, cfg.width, e.series.startswith("resnet"), classes).eval()
        net.load_state_dict({k.split(".", 1)[1]: v for k, v in state.items() if k.startswith(e.series + ".")})
        with torch.no_grad():
            wrong_tr = sum(int(net(xs[i:i + 1]).argmax() != y[i]) for i in sub.tolist())
            wrong_va = sum(int(net(xs[i:i + 1]).argmax() != y[i]) for i in val.tolist())
        assert final[e.series]["train_error"] == pytest.approx(wrong_tr / len(sub)) == pytest.approx(row[0, 0])
        assert final[e.series]["val_error"] == pytest.approx(wrong_va / len(val)) == pytest.approx(row[0, 1])
        assert e.metrics["train_error"] == pytest.approx(row[0, 0])
    assert final["plain8"]["params"] == final["resnet8"]["params"] == dp.param_formula(8, 4, 8)


def test_the_depth_cli_prints_the_final_json_line_and_refuses_a_bad_depth(capsys):
    from core.__main__ import main

    args = [f"--{k.replace('_', '-')}={v}" for k, v in TINY_DEPTH.items()]
    assert main(["lab", "depth", *args, "--depths", "8", "--json"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    final = json.loads(lines[-1])
    assert set(final["plain8"]) >= {"train_error", "val_error"} and set(final["resnet8"]) >= {"train_error", "val_error"}
    assert [json.loads(x)["series"] for x in lines[:-1]] == ["plain8", "resnet8"]
    assert main(["lab", "depth", "--depths", "20,52"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: depth 52 is not 6n+2") and "50 and 56" in err


# --- the pages -------------------------------------------------------------------------------------------

def _lab(**params):
    return _page("pages/lab.py", **params)


def test_the_siamese_page_trains_a_tiny_run_and_shows_trials_and_the_newcomer():
    at = _lab(task="siamese", epochs="1", trials="100", drawers="4")
    assert not at.exception and at.slider(key="sia_drawers").value == 4
    at.number_input(key="sia_characters").set_value(30).run()
    at.number_input(key="sia_unseen").set_value(10).run()
    at.multiselect(key="sia_ways_10").set_value([5, 10]).run()
    assert not at.error, [e.value for e in at.error]
    _lab_run(at, 300)
    assert any(s.value.startswith("Done: one-shot on 10 unseen classes") for s in at.success), \
        [e.value for e in at.error]
    titles = [c.proto.spec for c in at.get("plotly_chart")]
    assert any("One-shot accuracy on 10 unseen classes" in t for t in titles)
    assert any(m.label == "Newcomer recognised" for m in at.metric)
    at.radio(key="sia_new_how").set_value("upload").run()        # no file yet: nothing breaks
    assert not at.exception
    # digits: the controls offer what ten classes allow (5 unseen, 5-way at most)
    at.radio(key="sia_data").set_value("digits").run()
    assert not at.exception and not at.error and at.slider(key="sia_unseen_d").value == 5, [e.value for e in at.error]
    assert at.multiselect(key="sia_ways_5").value == [5]


def test_the_depth_page_trains_a_tiny_run_beside_the_papers_table():
    at = _lab(task="depth", depths="8,14", width="4", data="shapes", per_class="20", size="8", epochs="1")
    assert not at.exception and at.multiselect(key="dp_depths").value == [8, 14]
    titles = [c.proto.spec for c in at.get("plotly_chart")]
    assert any("Table 2" in t for t in titles)
    _lab_run(at, 300)
    assert any(s.value.startswith("Done: plain8") for s in at.success), [e.value for e in at.error]
    titles = [c.proto.spec for c in at.get("plotly_chart")]
    assert any("Error per epoch" in t for t in titles) and any("After the last epoch" in t for t in titles)
    table = at.dataframe[-1].value
    assert list(table["network"]) == ["plain8", "resnet8", "plain14", "resnet14"]


def _upload_script() -> None:
    """The newcomer's upload helper of the Siamese view, under the real uploader (key "k")."""
    import streamlit as st

    from pages.lab_views import siamese as view

    got = view._upload("One example of the new class", "k")
    st.write("none" if got is None else f"image {got.shape}")


@pytest.mark.parametrize("kind", ["pdf", "blank", "drawing"])
def test_an_upload_that_is_not_a_drawing_is_refused_with_a_sentence(kind):
    from streamlit.testing.v1 import AppTest

    buf = io.BytesIO()
    if kind == "pdf":
        buf.write(b"%PDF-1.4 not a picture")
    else:
        im = Image.new("RGB", (120, 90), "white")
        if kind == "drawing":
            ImageDraw.Draw(im).line([(20, 20), (90, 70)], fill="black", width=6)
        im.save(buf, format="PNG")
    at = AppTest.from_function(_upload_script, default_timeout=60).run()
    assert "none" in [m.value for m in at.markdown]                   # nothing uploaded yet
    at.file_uploader(key="k").set_value(("drawing.png", buf.getvalue(), "application/octet-stream")).run()
    assert not at.exception
    said = [m.value for m in at.markdown]
    if kind == "drawing":
        assert not at.error and "image (28, 28)" in said
    else:
        assert "none" in said and len(at.error) == 1
        assert at.error[0].value.startswith("drawing.png: ")
        assert ("not an image" if kind == "pdf" else "No drawing found") in at.error[0].value
