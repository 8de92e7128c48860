"""Training from JPEG files (core.train.data, the end of the file): the files decode to what PIL
decodes, the on-device crop and resize matches torchvision's resized_crop where both are exact
bilinear and a 2x2 average where it halves, every image of a batch gets its own crop and flip drawn
as torchvision's RandomResizedCrop draws them, the prefetcher serves exactly the loop's batches,
and `fit` trains from the files."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torchvision.datasets import ImageFolder
from torchvision.transforms import RandomResizedCrop
from torchvision.transforms.v2 import functional as TF

from core.train import data as D
from core.train.events import RunInfo, Step
from core.train.loop import LoopConfig, Stepper, run_loop
from core.train.transfer import TrainConfig, fit, split_indices


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """36 shapes as JPEGs in class folders, plus a grey JPEG and one of another size."""
    root = tmp_path_factory.mktemp("jpegs")
    s = D.shapes(classes=3, per_class=12, seed=0, size=48)
    for i, (im, y) in enumerate(zip(s.images, s.labels)):
        (root / s.classes[int(y)]).mkdir(exist_ok=True)
        Image.fromarray(im.permute(1, 2, 0).numpy()).save(root / s.classes[int(y)] / f"{i:02d}.jpg", quality=90)
    Image.fromarray(s.images[0][0].numpy()).save(root / "circle" / "grey.jpg", quality=90)
    Image.fromarray(s.images[1].permute(1, 2, 0).numpy()).resize((40, 56)).save(root / "circle" / "tall.JPEG")
    return root


@pytest.fixture(scope="module")
def image():
    return D.shapes(classes=3, per_class=2, seed=3, size=64).images[2]          # (3, 64, 64) uint8


def test_files_are_listed_in_imagefolders_order_and_decode_as_pil_does(folder):
    files = D.JpegFiles.from_folder(folder)
    assert list(files.paths) == [p for p, _ in ImageFolder(str(folder)).samples]
    assert files.labels.tolist() == [y for _, y in ImageFolder(str(folder)).samples]
    decoded = D.decode_jpegs(files.read(list(range(len(files)))), torch.device("cpu"))
    shapes = set()
    for path, got in zip(files.paths, decoded):
        with Image.open(path) as im:
            ref = torch.from_numpy(np.array(im.convert("RGB"))).permute(2, 0, 1)
        diff = (got.int() - ref.int()).abs()
        assert got.shape == ref.shape and diff.max() <= 2 and diff.float().mean() < 0.05, path
        shapes.add(tuple(got.shape))
    assert shapes == {(3, 48, 48), (3, 56, 40)}                                   # the grey one came out RGB


def _edge_band(size: int, side: float) -> int:
    """Output rows next to a box's edge whose bilinear samples fall between the box's edge pixel
    and the pixel outside it: roi_align reads that neighbour, resized_crop repeats the edge pixel."""
    return math.ceil(0.5 * size / side) + 1


def test_enlarging_a_box_is_resized_crops_bilinear_inside_the_edge_band(image):
    boxes = D.random_boxes(torch.tensor([[64, 64]] * 12), torch.Generator().manual_seed(0))
    size = 96                                                                     # larger than any box
    ours = D.crop_resize(image[None].expand(12, -1, -1, -1), boxes, size)
    for out, (x0, y0, x1, y1) in zip(ours, boxes.int().tolist()):
        ref = TF.resized_crop(image.float(), y0, x0, y1 - y0, x1 - x0, [size, size], antialias=True)
        by, bx = _edge_band(size, y1 - y0), _edge_band(size, x1 - x0)
        assert torch.allclose(out[:, by:-by, bx:-bx], ref[:, by:-by, bx:-bx], atol=1e-3)
        assert (out - ref).abs().mean() < 4                                      # the band differs a little
    whole = D.crop_resize(image[None], torch.tensor([[0.0, 0, 64, 64]]), size)[0]
    assert torch.allclose(whole, TF.resize(image.float(), [size, size], antialias=True), atol=1e-3)


def test_halving_a_box_averages_each_2x2_block(image):
    half = D.crop_resize(image[None], torch.tensor([[0.0, 0, 64, 64], ]), 32)[0]
    assert torch.allclose(half, F.avg_pool2d(image[None].float(), 2)[0], atol=1e-3)
    part = D.crop_resize(image[None], torch.tensor([[8.0, 16, 48, 56]]), 20)[0]   # a 40x40 box to 20x20
    assert torch.allclose(part, F.avg_pool2d(image[None, :, 16:56, 8:48].float(), 2)[0], atol=1e-3)
    # torchvision's antialiased resize uses a wider (triangle) filter: close, not equal
    assert (half - TF.resize(image.float(), [32, 32], antialias=True)).abs().mean() < 6


def test_every_image_of_a_batch_gets_its_own_crop_and_flip(image):
    batch = image[None].expand(16, -1, -1, -1)
    out = D.crop_flip(batch, 32, torch.Generator().manual_seed(1))
    assert out.shape == (16, 3, 32, 32)
    assert all(not torch.equal(out[i], out[j]) for i in range(16) for j in range(i))
    # the same draws, redone by hand: the box from random_boxes, then the flip's coin
    g = torch.Generator().manual_seed(1)
    boxes = D.random_boxes(torch.tensor([[64, 64]] * 16), g)
    flips = torch.rand(16, generator=g) < 0.5
    assert 0 < int(flips.sum()) < 16
    for o, box, flip in zip(out, boxes, flips):
        ref = D.crop_resize(image[None], box[None], 32)[0]
        assert torch.allclose(o, ref.flip(-1) if flip else ref, atol=1e-4)


def test_boxes_are_drawn_as_torchvisions_random_resized_crop_draws_them():
    n = 4000
    boxes = D.random_boxes(torch.tensor([[60, 90]] * n), torch.Generator().manual_seed(2))
    w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    assert (boxes[:, :2] >= 0).all() and (boxes[:, 2] <= 90).all() and (boxes[:, 3] <= 60).all()
    assert (w * h >= 0.08 * 60 * 90 * 0.8).all() and (w / h).min() > 0.7 and (w / h).max() < 1.43
    torch.manual_seed(0)
    ref = torch.tensor([RandomResizedCrop.get_params(torch.zeros(3, 60, 90), [0.08, 1.0], [3 / 4, 4 / 3])
                        for _ in range(n)]).double()                               # (top, left, h, w)
    for ours, theirs in ((boxes[:, 1], ref[:, 0]), (boxes[:, 0], ref[:, 1]), (h, ref[:, 2]), (w, ref[:, 3])):
        se = math.sqrt(ours.var() / n + theirs.var() / n)
        assert abs(ours.mean() - theirs.mean()) < 5 * se
    # a strip no try fits: torchvision's central fallback crop, exactly
    top, left, hh, ww = RandomResizedCrop.get_params(torch.zeros(3, 1, 100), [0.08, 1.0], [3 / 4, 4 / 3])
    got = D.random_boxes(torch.tensor([[1, 100]]), torch.Generator().manual_seed(0))[0].tolist()
    assert got == [left, top, left + ww, top + hh]


def _crop_flip_24(g: torch.Generator):
    return lambda images, hw: D.crop_flip(images, 24, g, hw)


def test_the_prefetcher_serves_the_loops_batches_in_the_loops_order(folder):
    files = D.JpegFiles.from_folder(folder)
    files = files.subset(torch.arange(len(files) - 1))     # 37 files, two sizes: a last batch of one
    seen: list[torch.Tensor] = []
    p = torch.nn.Parameter(torch.zeros(1))
    stepper = Stepper(loss=lambda idx: seen.append(idx.clone()) or p.sum() * 0 + p.sum() ** 2,
                      evaluate=lambda: (0.0, {}), train_mode=lambda: None, n_train=len(files),
                      device=torch.device("cpu"))
    run_loop(stepper, torch.optim.SGD([p], lr=0.1), LoopConfig(epochs=2, batch_size=12, seed=7), lambda e: None)
    order = torch.Generator().manual_seed(7)
    planned = D.planned_batches(len(files), 12, order) + D.planned_batches(len(files), 12, order)
    assert [b.tolist() for b in planned] == [b.tolist() for b in seen]           # incl. the last batch of 1 rule
    served = {}
    for prefetch in (False, True):
        fb = D.FileBatches(files, torch.device("cpu"), _crop_flip_24(torch.Generator().manual_seed(5)), 12,
                           seed=7, prefetch=prefetch)
        out = []
        for epoch in range(2):
            fb.new_epoch()
            out += [fb(idx) for idx in seen[epoch * 4:(epoch + 1) * 4]]
        served[prefetch] = out
        assert (fb.prefetched, fb.loaded_at_once) == ((6, 2) if prefetch else (0, 8))
        assert fb.pool is None                                                    # no thread outlives an epoch
    for (xa, ya), (xb, yb), idx in zip(served[False], served[True], seen):
        assert torch.equal(xa, xb) and torch.equal(ya, yb) and torch.equal(ya, files.labels[idx])
    fb = D.FileBatches(files, torch.device("cpu"), lambda im, hw: im.float(), 12, seed=7, prefetch=True)
    fb.new_epoch()
    _, y = fb(torch.tensor([3, 1]))                                               # not the planned batch
    assert fb.loaded_at_once == 1 and fb.pending is None and torch.equal(y, files.labels[[3, 1]])


def test_fit_trains_from_the_files_and_validates_on_the_same_images_as_in_memory(folder):
    files = D.JpegFiles.from_folder(folder)
    files = files.subset(torch.arange(len(files) - 1))
    cfg = TrainConfig(dataset="shapes", weights="random", scenario="finetune", epochs=1, batch_size=8,
                      augment=True, augmentation="crop_flip", image_size=32, lr=1e-3, lr_body=1e-3)
    events = []
    res = fit(cfg, files, "cpu", on_event=events.append)
    info = next(e for e in events if isinstance(e, RunInfo))
    tr, va = split_indices(files.labels, cfg)
    assert (info.n_train, info.n_val) == (len(tr), len(va)) and res.val_idx == va.tolist()
    assert all(math.isfinite(e.loss) for e in events if isinstance(e, Step))
    cached = fit(cfg, D.decode_all(files, 32), "cpu")                            # the same split, decoded once
    assert cached.val_idx == res.val_idx and len(cached.val_pred) == len(res.val_pred)


def test_configs_name_their_augmentation_and_precision():
    with pytest.raises(ValueError, match="augmentation"):
        TrainConfig(augmentation="mixup")
    with pytest.raises(ValueError, match="precision"):
        TrainConfig(precision="fp16")
    assert (TrainConfig().augmentation, TrainConfig().precision) == ("shift", "auto")
