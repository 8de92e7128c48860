"""The Training Lab's encoder-decoders: the lecture's autoencoder at any bottleneck, the transposed
convolution by hand, U-Net vs the same network without its skips, the paper's U-Net in the
explorer, and the `python -m core lab` command."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from core.lab import autoencoder as ae
from core.lab import unet as un
from core.lab.common import run_headless


def _numel(m: torch.nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def test_the_bottleneck_49_model_is_the_lectures_and_other_widths_keep_the_rest():
    from core.models.encdec import conv_autoencoder

    lecture = conv_autoencoder("first")
    assert _numel(ae.Autoencoder(49)) == _numel(lecture) == 140_594     # + 256 BatchNorm buffers = Keras' 140,850
    x = torch.rand(3, 1, 28, 28)
    slide = {n: tuple(p.shape) for n, p in lecture.named_parameters() if not n.startswith("dense.")}
    for k in (2, 16, 128):
        m = ae.Autoencoder(k).eval()
        assert m.encoder(x).shape == (3, k) and m(x).shape == (3, 1, 28, 28)
        mine = {n.split(".", 1)[1]: tuple(p.shape) for n, p in m.named_parameters()}
        # every layer of the slide but its Dense(576 -> 49) is there with the same shape...
        assert {n: s for n, s in mine.items() if n in slide} == slide
        # ...and the only others are the code, Dense(576 -> k), and Dense(k -> 49) back to the slide's 7x7
        assert {n: s for n, s in mine.items() if n not in slide} == {
            "code.weight": (k, 576), "code.bias": (k,), "dense.weight": (49, k), "dense.bias": (49,)}
        # and the decoder sees the input only through the k numbers of the code
        codes = m.encoder(x)
        assert torch.allclose(m.decoder(codes), m(x))
    with pytest.raises(ValueError, match="bottleneck must be one of 1, 2, 4, 8, 16, 32, 49, 64, 128, 256, 576"):
        ae.Config(bottleneck=0)


@pytest.mark.parametrize("n,k,stride,pad", [(2, 3, 2, 0), (3, 3, 2, 1), (2, 2, 2, 0), (3, 4, 3, 1), (2, 3, 1, 0)])
def test_transposed_convolution_by_hand_matches_pytorch(n, k, stride, pad):
    g = torch.Generator().manual_seed(n * 10 + k)
    x, w = torch.randn(n, n, generator=g), torch.randn(k, k, generator=g)
    tc = ae.transposed_conv(x.numpy(), w.numpy(), stride, pad)
    ref = F.conv_transpose2d(x[None, None], w[None, None], stride=stride, padding=pad)[0, 0]
    assert np.allclose(tc.output, ref.numpy(), atol=1e-5)
    assert np.allclose(sum(p for _, _, p in tc.pieces), tc.output)
    assert tc.size_formula.endswith(f"= {ref.shape[0]}")
    if (n, k, stride, pad) == (2, 3, 2, 0):
        assert tc.output.shape == (5, 5)          # the slide's example: 2x2 in, 5x5 out


@pytest.fixture(scope="module")
def trained_ae(tmp_path_factory):
    # one epoch at batch 8 (135 steps): validation loss 0.49 (untrained 0.69), near two epochs at batch 64
    # (0.45), for half the time (8 s, not 16)
    return run_headless(ae.Config(bottleneck=2, epochs=1, batch_size=8), tmp_path_factory.mktemp("ae"))


def test_training_the_autoencoder_lowers_the_loss_and_keeps_its_pictures(trained_ae):
    final, res = trained_ae
    x, y = ae.digit_images()
    torch.manual_seed(0)
    untrained = F.binary_cross_entropy(ae.Autoencoder(2).eval()(x[:400]), x[:400]).item()
    assert final["val_loss"] < untrained - 0.05
    n_val = len(res.arrays["labels"])
    assert n_val == 359 and res.arrays["reconstructions"].shape == (n_val, 28, 28)
    # the 2-D picture of a 2-number code is the code itself: recompute it from the saved model
    model = ae.load_model(res)
    codes = model.encoder(torch.from_numpy(res.arrays["val_inputs"]).float().unsqueeze(1) / 255)
    assert np.allclose(res.arrays["latent_2d"], codes.detach().numpy(), atol=1e-4)
    assert sorted(np.unique(res.arrays["labels"])) == list(range(10))


def test_interpolation_ends_at_the_two_reconstructions(trained_ae):
    _, res = trained_ae
    strip = ae.interpolate(res, 3, 40, steps=6)
    model = ae.load_model(res)
    with torch.no_grad():
        both = model(torch.from_numpy(res.arrays["val_inputs"][[3, 40]]).float().unsqueeze(1) / 255)[:, 0]
    assert strip.shape == (6, 28, 28)
    assert np.allclose(strip[0], both[0].numpy(), atol=1e-5) and np.allclose(strip[-1], both[1].numpy(), atol=1e-5)


def test_projection_is_pca_beyond_two_numbers():
    codes = torch.randn(200, 5) * torch.tensor([5.0, 0.1, 3.0, 0.1, 0.1])
    xy, how = ae.project_2d(codes)
    from sklearn.decomposition import PCA

    ref = PCA(2).fit_transform(codes.numpy())
    assert "principal components" in how
    for i in range(2):   # the same axes up to sign
        assert abs(abs(np.corrcoef(xy[:, i], ref[:, i])[0, 1]) - 1) < 1e-4


# --- U-Net vs autoencoder ---------------------------------------------------------------------------

def test_the_two_segmentation_networks_differ_only_in_the_skips():
    a, u = un.SegNet(8, skips=False), un.SegNet(8, skips=True)
    assert _numel(a) == _numel(u)
    u.load_state_dict(a.state_dict())
    a.eval(), u.eval()
    x = torch.rand(2, 1, 32, 32)
    assert not torch.allclose(a(x), u(x))
    # without skips, the output depends on the input only through the 2x2 bottleneck:
    # an input whose bottleneck is the same gives the same output
    feats = {}
    a.c5.register_forward_hook(lambda m, i, o: feats.setdefault(len(feats), o))
    y1 = a(x)
    a.c5.register_forward_hook(lambda m, i, o: feats[0])   # replace the bottleneck by x's
    y2 = a(torch.rand(2, 1, 32, 32))
    assert torch.allclose(y1, y2)


def test_segmentation_data_is_deterministic_and_thin():
    x1, m1, t1 = un.thin_structures(6, 32, seed=4)
    x2, m2, t2 = un.thin_structures(6, 32, seed=4)
    assert torch.equal(x1, x2) and torch.equal(m1, m2) and not torch.equal(x1, un.thin_structures(6, 32, 5)[0])
    assert x1.shape == (6, 1, 32, 32) and 0 <= x1.min() and x1.max() <= 1
    assert (t1 <= m1).all() and t1.any()
    # thin: eroding the curves with a 3x3 window leaves (almost) nothing of them
    eroded = -F.max_pool2d(-t1.float(), 3, 1, 1)
    assert eroded.sum() <= 0.02 * t1.sum()


def test_mask_scores_match_scikit_learn():
    from sklearn.metrics import f1_score, jaccard_score

    g = torch.Generator().manual_seed(0)
    truth = torch.rand(3, 1, 16, 16, generator=g) > 0.7
    pred = truth ^ (torch.rand(3, 1, 16, 16, generator=g) > 0.85)
    thin = truth & (torch.rand(3, 1, 16, 16, generator=g) > 0.5)
    s = un.mask_scores(pred, truth, thin)
    assert s["iou"] == pytest.approx(jaccard_score(truth.flatten(), pred.flatten()))
    assert s["dice"] == pytest.approx(f1_score(truth.flatten(), pred.flatten()))
    keep = ~(truth & ~thin)   # the blobs' pixels left out
    assert s["thin_iou"] == pytest.approx(jaccard_score(thin[keep], pred[keep]))
    keep = ~thin              # the thin curves' pixels left out
    assert s["blob_iou"] == pytest.approx(jaccard_score((truth & ~thin)[keep], pred[keep]))


def test_the_autoencoder_finds_the_blobs_and_loses_the_thin_curves(tmp_path):
    final, res = run_headless(un.Config(images=240, size=32, epochs=6, batch_size=16, lr=5e-3), tmp_path)
    u, a = final["unet"], final["autoencoder"]
    # a short run (the default run's margins are far larger: bench/README.md)
    assert u["thin_iou"] > 2 * a["thin_iou"] and u["thin_iou"] > a["thin_iou"] + 0.15
    assert a["blob_iou"] > 2 * a["thin_iou"]          # the coarse structure passes the bottleneck
    assert res.arrays["unet"].shape == res.arrays["truth"].shape == (12, 32, 32)


def test_sizes_the_networks_cannot_take_are_refused():
    with pytest.raises(ValueError, match="size must be a multiple of 16.*try 32"):
        un.Config(size=30)


# --- the paper's U-Net in the explorer -------------------------------------------------------------------

def test_the_papers_unet_exactly():
    from core.analysis import AnalysisError, summarize
    from core.models.encdec import PaperUNet

    s = summarize("unet", (1, 572, 572), {"padding": "valid"})
    with torch.device("meta"):
        assert s.totals.params == _numel(PaperUNet()) == 31_030_658
    assert s.layers[-1].output_shape == [2, 388, 388]
    crops = [r for r in s.layers if r.type == "CenterCrop"]
    assert [(r.input_shapes[0][1], r.output_shape[1]) for r in crops] == [(64, 56), (136, 104), (280, 200), (568, 392)]
    assert not any(r.type.startswith("BatchNorm") for r in s.layers)
    # a real forward pass at the smallest sizes the rule admits agrees with the engine
    small = PaperUNet(n_filters=2).eval()
    out = small(torch.zeros(1, 1, 188, 188))
    assert list(out.shape[1:]) == summarize("unet", (1, 188, 188), {"padding": "valid"}).layers[-1].output_shape == [2, 4, 4]
    with pytest.raises(AnalysisError, match="570 does not work, 572 does"):
        summarize("unet", (1, 570, 570), {"padding": "valid"})
    with pytest.raises(AnalysisError, match="divisible by 16.*100 does not work, 96 does"):
        summarize("unet", (1, 100, 100))


# --- the command line ---------------------------------------------------------------------------------------

def test_the_lab_cli_ends_with_the_final_metrics(capsys):
    from core.__main__ import main

    assert main(["lab", "unet", "--images", "40", "--size", "16", "--epochs", "1", "--json"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    final = json.loads(lines[-1])
    assert set(final) >= {"unet", "autoencoder"}
    assert set(final["unet"]) >= {"iou", "dice", "blob_iou", "thin_iou"} <= set(final["autoencoder"])
    assert [json.loads(x)["series"] for x in lines[:-1]] == ["autoencoder", "unet"]


@pytest.mark.parametrize("args,match", [(["autoencoder", "--bottleneck", "0"], "bottleneck"),
                                        (["unet", "--size", "20"], "multiple of 16"),
                                        (["autoencoder", "--epochs", "-1"], "epochs")])
def test_the_lab_cli_refuses_bad_values(args, match, capsys):
    from core.__main__ import main

    assert main(["lab", *args]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and match in err


def test_the_cli_refuses_a_gpu_this_machine_does_not_have(capsys):
    from core.__main__ import main

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU: --device cuda is valid here")
    for cmd in (["lab", "autoencoder"], ["train"]):
        assert main([*cmd, "--device", "cuda"]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: --device cuda") and "no CUDA GPU" in err and "\n" not in err


def test_the_papers_size_rule_agrees_with_a_forward_pass():
    """Every side from 150 to 300: the rule admits it exactly when the network runs (meta device)."""
    from core.models.encdec import PaperUNet, valid_unet_side_ok

    with torch.device("meta"):
        net = PaperUNet(n_filters=1)
    for side in range(150, 301):
        try:
            net(torch.empty(1, 1, side, side, device="meta"))
            runs = True
        except RuntimeError:
            runs = False
        # the network also runs when a pooling floors an odd size; the rule asks for even sizes,
        # where the crop-and-copy stays centred as in the paper
        assert valid_unet_side_ok(side) <= runs, side
        if runs and side % 16 == 12:
            assert valid_unet_side_ok(side), side
