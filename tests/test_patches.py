"""What excites a channel: the top patches over a fixed image set, cropped by the receptive field
the analysis engine predicts, and each unit's deconvnet projection, which must be zero outside
that field (an independent check of the receptive-field arithmetic too)."""

from __future__ import annotations

import numpy as np
import torch

from core import registry
from core.analysis import summarize
from core.features import capture
from core.images import PATTERNS, SAMPLES, sample_batch
from core.patches import box_of, crop, field_of, top_patches


def _setup(arch: str, path: str):
    torch.manual_seed(0)
    model = registry.get(arch).builder().eval()
    x, crops = sample_batch(112, SAMPLES + PATTERNS)              # 7 fixed images
    return model, summarize(arch, (3, 112, 112)), x, crops


def test_top_patches_are_the_strongest_units_cropped_by_their_field():
    model, summary, x, crops = _setup("alexnet_torchvision", "features.3")
    rec = field_of(summary, "features.3")
    assert (rec.rf, rec.jump) == (51, 8)                          # conv2's field: 51 pixels, jump 8
    got = top_patches(model, summary, "features.3", 5, x, crops, k=9)
    act = capture(model, x, ["features.3"])[0]["features.3"][:, 5]
    assert len(got) == 9 and [p.value for p in got] == sorted((p.value for p in got), reverse=True)
    assert got[0].value == float(act.max())                       # the strongest unit of all
    for p in got:
        assert p.value == float(act[p.image, p.row, p.col])
        assert p.box == box_of(rec, p.row, p.col) and p.pixels.shape == (51, 51, 3) and p.projection.shape == (51, 51)
        top, left, side = p.box
        assert top == round(rec.start + p.row * 8 - 25) and left == round(rec.start + p.col * 8 - 25)
        inside = crops[p.image][max(0, top):top + side, max(0, left):left + side]
        assert (p.pixels[max(0, -top):max(0, -top) + inside.shape[0], max(0, -left):max(0, -left) + inside.shape[1]]
                == inside).all()                                  # the picture under the field
    assert max(sum(p.image == n for p in got) for n in range(7)) <= 2     # ceil(9 / 7) per image
    # no two kept units of one image closer than half a field
    for a in got:
        for b in got:
            if a is not b and a.image == b.image:
                assert max(abs(a.row - b.row), abs(a.col - b.col)) * 8 >= 51 / 2


def test_a_units_deconvnet_projection_stays_inside_its_receptive_field():
    from core.patches import deconv_unit

    model, summary, x, _ = _setup("alexnet_torchvision", "features.3")
    rec = field_of(summary, "features.3")
    full = deconv_unit(model, x[:1], "features.3", 5, 6, 6).numpy()
    top, left, side = box_of(rec, 6, 6)
    mask = np.zeros_like(full, dtype=bool)
    mask[max(0, top):top + side, max(0, left):left + side] = True
    assert full[mask].max() > 0 and full[~mask].max() == 0        # nothing outside the predicted field


def test_crop_pads_outside_the_image():
    a = np.arange(16, dtype=np.uint8).reshape(4, 4)
    c = crop(a, (-1, 2, 3), 99)
    assert c.tolist() == [[99, 99, 99], [2, 3, 99], [6, 7, 99]]


def test_guided_backprop_of_a_unit_is_deconvnet_masked_by_the_forward_pass():
    """Guided backprop passes a ReLU only where deconvnet does and where the ReLU's input was
    positive: on a conv-ReLU-conv net its map is deconvnet's with the inactive inputs' paths
    removed, and both stay inside the unit's field."""
    from torch import nn

    from core.patches import deconv_unit, strongest_unit

    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 2, 3, padding=1))
    x = torch.randn(1, 3, 12, 12)
    i, j, v = strongest_unit(net, x, "2", 1)
    out = net(x)[0, 1]
    assert v == float(out.max()) and (i, j) == divmod(int(out.argmax()), 12)
    deconv = deconv_unit(net, x, "2", 1, i, j)
    guided = deconv_unit(net, x, "2", 1, i, j, guided=True)
    # by hand: the second conv's kernel for channel 1, through the ReLU rules, then the first conv
    w2 = net[2].weight[1].detach()                               # (4, 3, 3) onto the ReLU's outputs
    z = net[0](x)[0].detach()                                    # the ReLU's inputs
    g = torch.zeros(4, 12, 12)
    for di in range(3):
        for dj in range(3):
            r, c = i + di - 1, j + dj - 1
            if 0 <= r < 12 and 0 <= c < 12:
                g[:, r, c] = w2[:, di, dj]
    for mask, got in ((g > 0, deconv), ((g > 0) & (z > 0), guided)):
        gx = torch.nn.grad.conv2d_input((1, 3, 12, 12), net[0].weight.detach(), (g * mask)[None], padding=1)
        assert torch.allclose(got, gx[0].abs().amax(0), atol=1e-5)
    assert (guided[:max(0, i - 2)].abs().sum() == 0) and (deconv[i + 3:].abs().sum() == 0)   # a 5x5 field


def test_stretch_clips_the_brightest_percent_and_lifts_the_faint_parts():
    """A unit's projection is a few bright pixels over a faint field: divided by its maximum the
    field is black. 1,000 values 1..1000 and one of 1e6: the 99% quantile of the 1,001 positive
    values is the 991st smallest, 991 (numpy's linear rule lands on an index exactly)."""
    from core.patches import stretch

    a = np.concatenate([[0.0], np.arange(1, 1001, dtype=np.float64), [1e6]])
    s = stretch(a)
    assert s[0] == 0 and s[-1] == 1 and s[991] == 1                     # zero stays zero; the top 1% clip at 1
    assert abs(s[500] - (500 / 991) ** 0.5) < 1e-6                     # 0.71, where 500 / max is 0.0005
    assert (np.diff(s) >= 0).all()                                     # order kept
    assert not stretch(np.zeros((3, 3))).any()


def test_sheets_put_each_patch_and_its_projection_in_the_same_place():
    from core.patches import Patch, sheets

    rng = np.random.default_rng(0)
    found = [Patch(n, 0, 0, 1.0, (0, 0, 40), rng.integers(0, 256, (40, 40, 3), dtype=np.uint8),
                   rng.random((40, 40)).astype(np.float32)) for n in range(7)]
    patches, projections = sheets(found, cols=3, min_tile=96, gap=2)
    t = 40 * 3                                                         # 96 / 40 rounded up: 3 times as large
    assert patches.shape == projections.shape == (3 * t + 4, 3 * t + 4, 3)
    for n, p in enumerate(found):
        r, c = divmod(n, 3)
        tile = (slice(r * (t + 2), r * (t + 2) + t), slice(c * (t + 2), c * (t + 2) + t))
        assert (patches[tile] == p.pixels.repeat(3, 0).repeat(3, 1)).all()
        grey = np.round(p.projection * 255).astype(np.uint8).repeat(3, 0).repeat(3, 1)
        assert all((projections[tile][..., k] == grey).all() for k in range(3))
    assert (patches[2 * (t + 2):, t + 2:] == 255).all()                # two empty places of the last row: white


def test_a_units_view_shows_its_field_beside_projections_that_are_clearly_visible():
    """The strongest unit of a channel, the picture under its field (the analysis engine's box, outlined
    on the photo) and both projections over that field, stretched: on ResNet-18's starter weights at
    three depths, at least a fifth of the pixels a projection reaches show at a quarter of full
    brightness or more, and three times as many as when divided by the maximum (the old view)."""
    from core.images import preprocess, sample_image
    from core.patches import deconv_unit, unit_view
    from core.weights import build_with

    model, _ = build_with("resnet18", "starter")
    summary = summarize("resnet18", (3, 224, 224))
    pre = preprocess(sample_image("astronaut"), 256, 224)
    for path, ch in (("layer1.0", 7), ("layer2.0.bn2", 0), ("layer3.0", 3)):
        uv = unit_view(model, summary, pre.tensor, pre.crop, path, ch)
        act = capture(model, pre.tensor, [path])[0][path][0, ch]
        assert uv.value == float(act.max()) and act[uv.row, uv.col] == act.max()
        assert uv.box == box_of(field_of(summary, path), uv.row, uv.col)
        top, left, side = uv.box
        assert (uv.field == crop(pre.crop, uv.box, 128)).all() and uv.field.shape == (side, side, 3)
        changed = (uv.photo != pre.crop).any(-1)
        assert changed.any() and not changed[max(0, top) + 3:top + side - 3, max(0, left) + 3:left + side - 3].any()
        assert [name for name, _, _ in uv.projections] == ["deconvnet", "guided backprop"]
        for name, proj, secs in uv.projections:
            raw = crop(deconv_unit(model, pre.tensor, path, ch, uv.row, uv.col, guided=name != "deconvnet").numpy(),
                       uv.box, 0.0)
            reached = raw > 0
            assert proj.shape == (side, side) and ((proj > 0) == reached).all() and proj.max() == 1 and secs > 0
            shown, by_max = (proj[reached] >= 0.25).mean(), (raw[reached] / raw.max() >= 0.25).mean()
            assert shown >= 0.2 and shown >= 3 * by_max, (path, name, shown, by_max)
