"""The lecture's "transfer learning is the norm": detection and captioning on the same pretrained
encoder. The generated scenes against what their pixels show, mAP and BLEU against hand
computations and pycocotools, the beam search against brute force, the two networks' shared new
layers, tiny runs through run_headless, the CLI and the page."""

from __future__ import annotations

import json
import math
from collections import Counter

import numpy as np
import pytest
import torch

from core.lab import caption as cp
from core.lab import detect as dt
from core.lab import scenes as sc
from core.lab.common import run_headless
from core.lab.reuse import TRAINS
from core.weights import STARTER
from tests.test_pages import _lab_run, _page

# --- scenes ---------------------------------------------------------------------------------------------


def _extent(t: sc.Thing) -> np.ndarray:
    """[x0, y0, x1, y1] of a shape from its geometry (corners, or the circle), not from pixels."""
    if t.shape in ("circle", "ring"):
        return np.array([t.cx - t.r, t.cy - t.r, t.cx + t.r, t.cy + t.r])
    r = t.r
    corners = {"square": [(-.85 * r, -.85 * r), (.85 * r, -.85 * r), (.85 * r, .85 * r), (-.85 * r, .85 * r)],
               "triangle": [(0, -r), (1.6 * r / 1.7, .6 * r), (-1.6 * r / 1.7, .6 * r)],
               "cross": [(a * r, b * r) for a, b in ((.25, 1), (-.25, 1), (.25, -1), (-.25, -1),
                                                     (1, .25), (-1, .25), (1, -.25), (-1, -.25))]}[t.shape]
    c, s = math.cos(t.angle), math.sin(t.angle)
    xy = np.array([(t.cx + u * c - v * s, t.cy + u * s + v * c) for u, v in corners])
    return np.array([*xy.min(0), *xy.max(0)])


def test_detection_boxes_are_what_the_pixels_show():
    d = sc.detection_scenes(60, 64, classes=5, max_objects=4, seed=3)
    again = sc.detection_scenes(60, 64, classes=5, max_objects=4, seed=3)
    assert torch.equal(d.images, again.images) and not torch.equal(d.images, sc.detection_scenes(60, 64, seed=4).images)
    img = d.images.permute(0, 2, 3, 1).numpy().astype(np.float64) / 255
    whole = 0
    for i, things in enumerate(d.things):
        assert len(d.boxes[i]) == len(d.labels[i]) == len(things) >= 1
        for k, t in enumerate(things):
            shows = d.instances[i] == k + 1
            alone = sc.shape_mask(t, 64)
            assert shows.sum() >= sc.MIN_VISIBLE * alone.sum() and not (shows & ~alone).any()
            ys, xs = np.nonzero(shows)                               # the box: the extremes of its visible pixels
            assert d.boxes[i][k].tolist() == [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]
            assert int(d.labels[i][k]) == sc.SHAPES.index(t.shape) + 1
            # its pixels have its colour (shading +-4% and noise)
            assert np.abs(img[i][shows].mean(0) - np.array(t.rgb)).max() < 0.05
            if shows.sum() == alone.sum():                           # not covered: the box is the shape's geometry
                whole += 1
                box, ext = d.boxes[i][k].numpy(), _extent(t)
                # a pixel counts when its centre is inside, so the box lies within half a pixel outside the
                # shape, and misses at most about a pixel of a corner (1.5 at a triangle's 60-degree tip)
                inward = np.array([1, 1, -1, -1]) * (box - ext)
                assert (inward >= -0.5).all() and (inward <= (1.5 if t.shape == "triangle" else 1.0)).all(), (t, box)
    assert whole > 60


def test_captions_follow_from_the_pixels():
    from scipy import ndimage

    c = sc.caption_scenes(80, 64, seed=5)
    img = c.images.permute(0, 2, 3, 1).numpy().astype(np.float64) / 255
    area_per_r2 = {"circle": math.pi, "ring": math.pi * 0.64, "square": 1.7 ** 2, "triangle": 1.6 * 1.6 / 1.7,
                   "cross": 1.75}
    names = list(sc.COLOURS)
    palette = np.array(list(sc.COLOURS.values()))
    vocab = sc.vocabulary()
    for i, caption in enumerate(c.captions):
        assert set(caption.split()) <= set(vocab)
        blobs, n = ndimage.label(img[i].max(-1) > 0.6, np.ones((3, 3)))   # objects are bright, the background not
        assert n == 2, caption
        found = []
        for b in (1, 2):
            m = blobs == b
            colour = names[int(np.argmin(np.abs(palette - img[i][m].mean(0)).sum(1)))]
            ys, xs = np.nonzero(m)
            found.append((m.sum(), colour, xs.mean(), ys.mean()))
        words = caption.split()
        rel = "above" if words[4] == "above" else "to the left of"
        first, second = words[:4], words[-4:]
        for w in (first, second):
            assert w[0] == "a" and w[1] in sc.SIZES and w[2] in sc.COLOURS and w[3] in sc.SHAPES
        # which blob is which: the one named first is higher up (above) or further left
        pos = [(y if rel == "above" else x) for _, _, x, y in found]
        order = np.argsort(pos)
        for w, (area, colour, x, y) in zip((first, second), [found[j] for j in order]):
            assert colour == w[2], (caption, colour)
            r = math.sqrt(area / area_per_r2[w[3]]) / 64             # the radius its pixel count implies
            assert (r < 0.13) == (w[1] == "small"), (caption, r)
        # and the named axis separates them more than the other
        (_, _, x0, y0), (_, _, x1, y1) = found
        assert (abs(y1 - y0) > abs(x1 - x0)) == (rel == "above"), caption


def test_encode_and_decode_round_trip():
    vocab = sc.vocabulary()
    caps = ["a small red circle above a large blue ring", "a large white cross to the left of a small cyan square"]
    ids = sc.encode(caps, vocab)
    assert ids.shape == (2, 14) and ids[0, 0] == sc.BOS and ids[0, 10] == sc.EOS and ids[0, 11] == sc.PAD
    assert [sc.decode(r, vocab) for r in ids] == caps
    assert len(vocab) == 24


# --- metrics ----------------------------------------------------------------------------------------------

def _hand_case() -> tuple[list[dict], list[dict]]:
    t = torch.tensor
    truths = [{"boxes": t([[0., 0, 10, 10]]), "labels": t([1])},
              {"boxes": t([[0., 0, 10, 10], [10, 10, 20, 20]]), "labels": t([1, 2])}]
    preds = [{"boxes": t([[0., 0, 10, 10], [20, 20, 30, 30]]), "scores": t([0.9, 0.8]), "labels": t([1, 1])},
             {"boxes": t([[0., 0, 10, 8.2], [10, 10, 20, 16.2]]), "scores": t([0.7, 0.6]), "labels": t([1, 2])}]
    return preds, truths


def _coco_ap(hits: list[bool], n_truth: int) -> float:
    """COCO's 101-point interpolated AP of detections sorted by score (True = matched)."""
    tp = np.cumsum(hits)
    recall, precision = tp / n_truth, tp / np.arange(1, len(hits) + 1)
    precision = np.maximum.accumulate(precision[::-1])[::-1]         # the best precision at this recall or more
    idx = np.searchsorted(recall, np.linspace(0, 1, 101), side="left")
    return float(np.mean([precision[i] if i < len(hits) else 0 for i in idx]))


def test_mean_ap_matches_a_hand_computation_and_pycocotools():
    preds, truths = _hand_case()
    m = dt.mean_ap(preds, truths, ("circle", "square"))
    # class 1: IoUs 1 (0.9), 0 (0.8), 0.82 (0.7); class 2: IoU 0.62 (0.6)
    thresholds = np.linspace(0.5, 0.95, 10)
    ap1 = [_coco_ap([True, False, 0.82 >= t], 2) for t in thresholds]
    ap2 = [_coco_ap([0.62 >= t], 1) for t in thresholds]
    assert m["per_class"]["circle"]["ap50"] == pytest.approx(ap1[0]) == pytest.approx((51 + 50 * 2 / 3) / 101)
    assert m["per_class"]["square"]["ap50"] == pytest.approx(1.0)
    assert m["per_class"]["circle"]["ap"] == pytest.approx(np.mean(ap1))
    assert m["per_class"]["square"]["ap"] == pytest.approx(0.3)
    assert m["map50"] == pytest.approx((ap1[0] + ap2[0]) / 2) and m["map"] == pytest.approx((np.mean(ap1) + 0.3) / 2)
    # pycocotools itself, on the same case written as COCO json
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    gt, dets, k = COCO(), [], 0
    gt.dataset = {"images": [{"id": i} for i in range(2)], "categories": [{"id": 1}, {"id": 2}], "annotations": []}
    for i, (p, t) in enumerate(zip(preds, truths)):
        for b, lab in zip(t["boxes"].tolist(), t["labels"].tolist()):
            k += 1
            gt.dataset["annotations"].append({"id": k, "image_id": i, "category_id": lab, "iscrowd": 0,
                                              "bbox": [b[0], b[1], b[2] - b[0], b[3] - b[1]],
                                              "area": (b[2] - b[0]) * (b[3] - b[1])})
        for b, s, lab in zip(p["boxes"].tolist(), p["scores"].tolist(), p["labels"].tolist()):
            dets.append({"image_id": i, "category_id": lab, "score": s, "bbox": [b[0], b[1], b[2] - b[0], b[3] - b[1]]})
    gt.createIndex()
    ev = COCOeval(gt, gt.loadRes(dets), "bbox")
    ev.evaluate(), ev.accumulate(), ev.summarize()
    assert m["map"] == pytest.approx(ev.stats[0]) and m["map50"] == pytest.approx(ev.stats[1])


def _bleu(hyps: list[str], refs: list[str], n: int) -> float:
    """Corpus BLEU-n by the definition: clipped n-gram precisions over the corpus, their geometric
    mean with equal weights, times the brevity penalty."""
    logs = []
    for k in range(1, n + 1):
        hit = total = 0
        for h, r in zip(hyps, refs):
            hw, rw = h.split(), r.split()
            hc = Counter(tuple(hw[i:i + k]) for i in range(len(hw) - k + 1))
            rc = Counter(tuple(rw[i:i + k]) for i in range(len(rw) - k + 1))
            hit += sum(min(c, rc[g]) for g, c in hc.items())
            total += sum(hc.values())
        if hit == 0:
            return 0.0
        logs.append(math.log(hit / total))
    c, r = sum(len(h.split()) for h in hyps), sum(len(x.split()) for x in refs)
    return (1.0 if c > r else math.exp(1 - r / c)) * math.exp(sum(logs) / n)


def test_bleu_matches_a_hand_computation():
    refs = ["a small red circle above a large blue ring", "a large white cross to the left of a small cyan square",
            "a small green triangle above a small green square"]
    hyps = ["a small red circle above a large blue square", "a large white cross to the left of a small cyan square",
            "a small green triangle above a square"]                 # one wrong word, one exact, one short
    b = cp.bleu(hyps, refs)
    for n in range(1, 5):
        assert b[f"bleu{n}"] == pytest.approx(_bleu(hyps, refs, n), abs=1e-6)
    assert b["bleu4"] < b["bleu1"] < 1 and b["exact"] == pytest.approx(1 / 3)
    assert cp.bleu(refs, refs)["bleu4"] == pytest.approx(1.0)


# --- the networks -------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny_captioner():
    torch.manual_seed(0)
    model, _ = cp.build(cp.Config(size=32, hidden=32), "random", len(sc.vocabulary()))
    return model.eval()


def test_beam_search_finds_the_likeliest_sentence(tiny_captioner):
    """Two words at most: a beam as wide as the vocabulary keeps every first word, so it must find the
    likeliest of all V^2 two-word sentences (one that ends at <eos> stops scoring); width 1 is the
    greedy choice, word by word."""
    m, v = tiny_captioner, len(sc.vocabulary())
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        f = m.features(x)
        state = m.start(f)
        l1, s1 = m.step(torch.full((3,), sc.BOS), state, f)
        lp1 = torch.log_softmax(l1, 1)                                # (3, V)
        lp2 = torch.stack([torch.log_softmax(m.step(torch.full((3,), w), s1, f)[0], 1) for w in range(v)], 1)
        # lp2: (3, V, V), the second word's log-probabilities after each first word
    total = lp1[:, :, None] + torch.where((torch.arange(v) == sc.EOS)[:, None], 0.0, lp2)   # (3, V, V)
    wide = cp.generate(m, x, beam=v, max_words=1)
    greedy = cp.generate(m, x, beam=1, max_words=1)
    for i in range(3):
        pair = divmod(int(total[i].flatten().argmax()), v)
        assert wide[i, 1:].tolist()[:1] == [pair[0]]
        if pair[0] != sc.EOS:
            assert wide[i, 1:].tolist() == list(pair)
        g1 = int(lp1[i].argmax())
        assert greedy[i, 1] == g1
        if g1 != sc.EOS:
            assert greedy[i, 2] == int(lp2[i, g1].argmax())


def test_teacher_forcing_is_the_step_by_step_decoder(tiny_captioner):
    m = tiny_captioner
    x, y = torch.randn(2, 3, 32, 32), sc.encode(["a small red circle above a large blue ring"] * 2, sc.vocabulary())
    with torch.no_grad():
        logits = m(x, y)                                              # (2, T - 1, V)
        f = m.features(x)
        state = m.start(f)
        for t in range(y.shape[1] - 1):
            out, state = m.step(y[:, t], state, f)
            assert torch.allclose(out, logits[:, t], atol=1e-5)


@pytest.mark.parametrize("task", ["detect", "caption"])
def test_both_networks_start_the_same_but_for_the_encoder(task):
    """Same seed, same new layers; the pretrained encoder is the starter file's, the other random;
    the frozen stages get no gradients."""
    from safetensors.torch import load_file

    cfg = dt.Config(backbone="top") if task == "detect" else cp.Config(backbone="top")
    build = (lambda k: dt.build(cfg, k)) if task == "detect" else (lambda k: cp.build(cfg, k, 24))
    torch.manual_seed(1)
    pre, used = build("starter")
    torch.manual_seed(1)
    scratch, _ = build("random")
    assert used.kind == "starter"
    enc = (lambda m: m.backbone.body) if task == "detect" else (lambda m: m.encoder)
    new = lambda m: {k: v for k, v in m.state_dict().items() if not k.startswith(("backbone.body.", "encoder."))}  # noqa: E731
    a, b = new(pre), new(scratch)
    assert a.keys() == b.keys() and len(a) > 4 and all(torch.equal(a[k], b[k]) for k in a)
    starter = load_file(str(STARTER))
    mine = enc(pre).state_dict()
    assert torch.allclose(mine["layer1.0.conv1.weight"], starter["layer1.0.conv1.weight"].float())
    assert not torch.allclose(enc(scratch).state_dict()["layer1.0.conv1.weight"], mine["layer1.0.conv1.weight"])
    grads = {n.split(".")[0]: p.requires_grad for n, p in enc(pre).named_parameters()}
    assert {n for n, g in grads.items() if g} == set(TRAINS["top"]) & set(grads)   # the captioner stops at layer3
    assert set(grads) == ({"conv1", "bn1", "layer1", "layer2", "layer3"} | ({"layer4"} if task == "detect" else set()))
    assert all(p.requires_grad for p in enc(scratch).parameters())


# --- tiny runs --------------------------------------------------------------------------------------------------

TINY_DETECT = dict(scenes=8, val_scenes=4, size=32, classes=2, max_objects=2, epochs=1, batch_size=4)
TINY_CAPTION = dict(scenes=16, val_scenes=4, size=32, hidden=32, epochs=1, batch_size=8, beam=2)


def test_a_tiny_detection_run_end_to_end(tmp_path):
    events = []
    final, res = run_headless(dt.Config(**TINY_DETECT), tmp_path, on_event=events.append)
    for s in ("pretrained", "scratch"):
        assert {"map50", "map"} <= final[s].keys() and 0 <= final[s]["map"] <= final[s]["map50"] <= 1
    assert final["pretrained"]["weights"] == "starter" and final["scratch"]["weights"] == "random"
    snaps = [e for e in events if e.kind == "snapshot"]
    assert [e.series for e in snaps] == ["pretrained", "scratch"]
    assert snaps[0].arrays["losses"].shape == (2, 4) and snaps[0].arrays["images"].shape == (4, 32, 32, 3)
    assert res.arrays["pretrained_boxes"].shape == (4, dt.MAX_DETECTIONS, 4)
    assert json.loads((tmp_path / "final.json").read_text())["task"] == "detect"


def test_a_tiny_caption_run_end_to_end(tmp_path):
    events = []
    final, res = run_headless(cp.Config(**TINY_CAPTION), tmp_path, on_event=events.append)
    for s in ("pretrained", "scratch"):
        assert {"bleu4", "exact", "bleu1"} <= final[s].keys() and 0 <= final[s]["bleu4"] <= 1
    epochs = [e for e in events if e.kind == "epoch"]
    assert [e.series for e in epochs] == ["pretrained", "scratch"] and "bleu4" in epochs[0].metrics
    snap = next(e for e in events if e.kind == "snapshot")
    assert snap.arrays["captions"].shape == (4,) and snap.arrays["images"].shape == (4, 32, 32, 3)
    assert list(res.arrays["truth"]) == sc.caption_scenes(4, 32, 1_000_003).captions


@pytest.mark.parametrize("task,args,keys", [
    ("detect", ["--scenes", "8", "--val-scenes", "4", "--size", "32", "--classes", "2", "--max-objects", "2",
                "--batch-size", "4"], {"map50", "map"}),
    ("caption", ["--scenes", "8", "--val-scenes", "4", "--size", "32", "--hidden", "16", "--batch-size", "8"],
     {"bleu4", "exact"})])
def test_the_cli_prints_the_final_json(task, args, keys, capsys):
    from core.__main__ import main

    assert main(["lab", task, *args, "--epochs", "1", "--json"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    final = json.loads(lines[-1])
    assert keys <= final["pretrained"].keys() and keys <= final["scratch"].keys()
    assert sum(json.loads(x)["type"] == "epoch" for x in lines[:-1]) == 2
    assert main(["lab", task, "--classes" if task == "detect" else "--beam", "99"]) == 2   # the Config refuses it
    assert "must be a whole number from 1 to" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        main(["lab", task, "--backbone", "half"])                   # not a choice: argparse refuses it
    assert e.value.code == 2


# --- the page ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("task,params,said,metric", [
    ("detect", {k: str(v) for k, v in TINY_DETECT.items() if k != "batch_size"}, "Done: mAP@0.5",
     "mAP@0.5 (pretrained vs scratch)"),
    ("caption", {k: str(v) for k, v in TINY_CAPTION.items() if k != "batch_size"}, "Done: BLEU-4",
     "BLEU-4 (pretrained vs scratch)")])
def test_the_page_trains_a_tiny_run_from_a_link(task, params, said, metric):
    at = _page("pages/lab.py", task=task, **params)
    assert not at.exception and not any("Ignored from the link" in w.value for w in at.warning)
    _lab_run(at, 300)
    assert any(s.value.startswith(said) for s in at.success), [e.value for e in at.error]
    assert metric in [m.label for m in at.metric]
    assert any(("claim" in m.value) for m in [*at.success, *at.warning])   # the verdict, either way
    assert at.query_params["task"] == task and at.query_params["epochs"] == "1"
