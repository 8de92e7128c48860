"""Small in-memory datasets for transfer learning that work offline.

- `digits()`: scikit-learn's 1,797 real 8x8 handwritten digits (10 classes), upsampled.
- `shapes()`: procedurally generated shapes and textures, deterministic by seed.
- `from_zip()`: the user's own images, a zip of class folders (ImageFolder layout), unpacked
  safely in memory.
- `JpegFiles`: a folder of JPEGs that stays on disk; `FileBatches` reads and decodes each batch's
  files every epoch and crops and flips each image on the device (the end of this file).

Images are kept as uint8 tensors (N, 3, S, S) so a run can put the whole set on the device once.
"""

from __future__ import annotations

import contextlib
import io
import math
import os
import zipfile
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from core.formatting import plural
from core.images import ImageError, load_image


@dataclass
class ImageSet:
    """Images (N, 3, S, S) uint8, integer labels (N,), class names, and loading notes."""

    images: torch.Tensor
    labels: torch.Tensor
    classes: list[str]
    name: str
    notes: list[str] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        return {c: int((self.labels == i).sum()) for i, c in enumerate(self.classes)}



def digits(size: int = 32) -> ImageSet:
    """scikit-learn's handwritten digits (values 0..16 on 8x8), upsampled to size x size, grey as RGB."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.from_numpy(d.images).float().unsqueeze(1) / 16  # (N, 1, 8, 8)
    x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    x = (x.clamp(0, 1) * 255).round().to(torch.uint8).expand(-1, 3, -1, -1).contiguous()
    return ImageSet(x, torch.from_numpy(d.target).long(), [str(i) for i in range(10)], "digits")


SHAPE_CLASSES = ("circle", "square", "triangle", "ring", "stripes", "checker", "dots", "cross")


def _shape_image(kind: str, rng: np.random.Generator, size: int) -> np.ndarray:
    """One (size, size, 3) float image of a shape or texture at a random place, scale and colour."""
    y, x = np.mgrid[0:size, 0:size].astype(np.float64) + 0.5
    cx, cy = rng.uniform(0.35, 0.65, 2) * size
    r = rng.uniform(0.18, 0.32) * size
    angle = rng.uniform(0, math.pi)
    fg, bg = rng.uniform(0.5, 1.0, 3), rng.uniform(0.0, 0.35, 3)
    u = (x - cx) * math.cos(angle) + (y - cy) * math.sin(angle)
    v = -(x - cx) * math.sin(angle) + (y - cy) * math.cos(angle)
    period = rng.uniform(0.12, 0.25) * size
    if kind == "circle":
        m = u ** 2 + v ** 2 < r ** 2
    elif kind == "square":
        m = (abs(u) < r * 0.85) & (abs(v) < r * 0.85)
    elif kind == "triangle":
        m = (v < r * 0.6) & (v > -r + 1.7 * abs(u))
    elif kind == "ring":
        d = np.sqrt(u ** 2 + v ** 2)
        m = (d < r) & (d > 0.6 * r)
    elif kind == "stripes":
        m = np.sin(2 * math.pi * u / period) > 0
    elif kind == "checker":
        m = (np.floor(u / period) + np.floor(v / period)) % 2 == 0
    elif kind == "dots":
        m = (np.sin(2 * math.pi * u / period) * np.sin(2 * math.pi * v / period)) > 0.5
    elif kind == "cross":
        m = ((abs(u) < r * 0.25) & (abs(v) < r)) | ((abs(v) < r * 0.25) & (abs(u) < r))
    else:
        raise ValueError(f"unknown shape {kind!r}")
    img = np.where(m[..., None], fg, bg) + rng.normal(0, 0.03, (size, size, 3))
    return img.clip(0, 1)


def shapes(classes: int = 6, per_class: int = 100, seed: int = 0, size: int = 32) -> ImageSet:
    """Shapes and textures, `per_class` images of each of the first `classes` kinds; the same
    seed gives the same images."""
    if not 2 <= classes <= len(SHAPE_CLASSES):
        raise ValueError(f"classes must be between 2 and {len(SHAPE_CLASSES)}")
    if not 2 <= per_class <= 5000:
        raise ValueError("per_class must be between 2 and 5000")
    rng = np.random.default_rng(seed)
    imgs, labels = [], []
    for c in range(classes):
        for _ in range(per_class):
            imgs.append(_shape_image(SHAPE_CLASSES[c], rng, size))
            labels.append(c)
    x = torch.from_numpy((np.stack(imgs) * 255).round().astype(np.uint8)).permute(0, 3, 1, 2).contiguous()
    return ImageSet(x, torch.tensor(labels), list(SHAPE_CLASSES[:classes]), "shapes")


# --- user zips ---------------------------------------------------------------------------------

MAX_ZIP_ENTRIES = 5000
MAX_ZIP_UNCOMPRESSED = 300 * 1024 * 1024
MAX_ENTRY_BYTES = 20 * 1024 * 1024
MAX_IMAGE_PIXELS = 16_000_000      # per image in a dataset (a 16-megapixel photo)
MAX_TOTAL_PIXELS = 500_000_000     # all images of a zip together, decoded
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif")


class DatasetError(ValueError):
    """A dataset that cannot be used, with a message for the user."""


def _is_image_name(name: str) -> bool:
    return name.lower().endswith(IMAGE_SUFFIXES) and not name.startswith(".")


def from_zip(data: bytes, size: int = 64) -> ImageSet:
    """Reads a zip of class folders (`class_a/img1.jpg`, or one extra top folder around them).

    Refuses: too many entries, too much uncompressed data, absolute paths or `..` (path
    traversal), symbolic links, fewer than two classes, classes with fewer than two images.
    Skips and counts: non-image files and images that fail the safe loader.
    """
    try:
        zf = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile:
        raise DatasetError("This is not a zip file.") from None
    infos = [i for i in zf.infolist() if not i.is_dir()]
    if len(infos) > MAX_ZIP_ENTRIES:
        raise DatasetError(f"The zip has {len(infos):,} files; the limit is {MAX_ZIP_ENTRIES:,}.")
    total = sum(i.file_size for i in infos)
    if total > MAX_ZIP_UNCOMPRESSED:
        raise DatasetError(f"The zip unpacks to {total / 1e6:,.0f} MB; the limit is {MAX_ZIP_UNCOMPRESSED / 1e6:.0f} MB.")
    for i in infos:
        name = i.filename.replace("\\", "/")
        if name.startswith("/") or ".." in name.split("/") or (len(name) > 1 and name[1] == ":"):
            raise DatasetError(f"Refused: the zip contains an unsafe path ({i.filename!r}).")
        if (i.external_attr >> 16) & 0o170000 == 0o120000:
            raise DatasetError(f"Refused: the zip contains a symbolic link ({i.filename!r}).")
    parts = [i.filename.replace("\\", "/").split("/") for i in infos]
    parts = [p for p in parts if not any(seg.startswith((".", "__MACOSX")) for seg in p) and _is_image_name(p[-1])]
    depth = 1 if parts and all(len(p) >= 3 for p in parts) and len({p[0] for p in parts}) == 1 else 0
    by_class: dict[str, list[torch.Tensor]] = {}
    skipped_other, skipped_bad, decoded = 0, 0, 0
    for info, p in zip(infos, [i.filename.replace("\\", "/").split("/") for i in infos]):
        if any(seg.startswith((".", "__MACOSX")) for seg in p):
            continue
        if len(p) != depth + 2:
            skipped_other += 1
            continue
        if not _is_image_name(p[-1]):
            skipped_other += 1
            continue
        if info.file_size > MAX_ENTRY_BYTES:
            skipped_bad += 1
            continue
        try:
            loaded = load_image(zf.read(info), max_pixels=MAX_IMAGE_PIXELS)
        except ImageError:
            skipped_bad += 1
            continue
        except Exception:  # noqa: BLE001 - zlib.error, LZMAError, BadZipFile...: a broken entry
            skipped_bad += 1
            continue
        pixels = loaded.pixels
        decoded += pixels.shape[0] * pixels.shape[1]
        if decoded > MAX_TOTAL_PIXELS:
            raise DatasetError(f"The images in this zip add up to more than {MAX_TOTAL_PIXELS / 1e6:.0f} megapixels; "
                               "resize them (a few hundred pixels per side is plenty) or upload fewer.")
        t = torch.from_numpy(pixels).permute(2, 0, 1).float().unsqueeze(0)  # (1, 3, H, W)
        t = F.interpolate(t, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
        by_class.setdefault(p[depth], []).append(t[0].clamp(0, 255).round().to(torch.uint8))
    small = sorted(c for c, v in by_class.items() if len(v) < 2)
    if small:
        raise DatasetError(f"Every class needs at least two images; too few in: {', '.join(small)}.")
    if len(by_class) < 2:
        raise DatasetError("Need at least two class folders with images (ImageFolder layout: class/image.jpg).")
    classes = sorted(by_class)
    images = torch.stack([t for c in classes for t in by_class[c]])
    labels = torch.tensor([i for i, c in enumerate(classes) for _ in by_class[c]])
    notes = []
    if skipped_other:
        notes.append(f"skipped {plural(skipped_other, 'file')} that "
                     f"{'is not an image' if skipped_other == 1 else 'are not images'} in class folders")
    if skipped_bad:
        notes.append(f"skipped {plural(skipped_bad, 'corrupt or oversized image')}")
    return ImageSet(images, labels, classes, "your images", notes)


def files_to_zip(files: list[tuple[str, bytes]]) -> bytes:
    """Packs (relative path, bytes) pairs, e.g. a browser's folder upload, into a zip so that
    `from_zip` applies the same checks to them."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:
        for name, data in files:
            z.writestr(name, data)
    return buf.getvalue()


# --- splits -------------------------------------------------------------------------------------

def stratified_split(labels: torch.Tensor, val_fraction: float = 0.2, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Train and validation indices with the same class proportions (at least one of each
    class in validation)."""
    g = torch.Generator().manual_seed(seed)
    train, val = [], []
    for c in labels.unique():
        idx = torch.nonzero(labels == c).flatten()
        idx = idx[torch.randperm(len(idx), generator=g)]
        n_val = max(1, round(len(idx) * val_fraction))
        val.append(idx[:n_val])
        train.append(idx[n_val:])
    return torch.cat(train), torch.cat(val)


def limit_per_class(idx: torch.Tensor, labels: torch.Tensor, k: int | None, seed: int = 0) -> torch.Tensor:
    """At most k training images per class (the lecture's "you don't need a lot of data")."""
    if not k:
        return idx
    g = torch.Generator().manual_seed(seed)
    out = []
    for c in labels[idx].unique():
        sel = idx[labels[idx] == c]
        out.append(sel[torch.randperm(len(sel), generator=g)[:k]])
    return torch.cat(out)


def split_sizes(labels: torch.Tensor, val_fraction: float, labels_per_class: int, seed: int = 0) -> tuple[int, int]:
    """(training, validation) image counts of the split a run will use, from the same two
    functions the run calls."""
    tr, va = stratified_split(labels, val_fraction, seed)
    return len(limit_per_class(tr, labels, labels_per_class, seed)), len(va)


# --- torchvision datasets (need a network the first time) -----------------------------------------

TORCHVISION_SETS = {"cifar10": "CIFAR-10", "flowers102": "Oxford Flowers-102", "pets": "Oxford-IIIT Pet"}


def data_root() -> str:
    """Where torchvision datasets are stored: $CONVNETLAB_DATA or ~/.cache/convnetlab/data."""
    import os

    return os.environ.get("CONVNETLAB_DATA", os.path.expanduser("~/.cache/convnetlab/data"))


def from_torchvision(name: str, root: str, size: int = 32, per_class: int = 100, download: bool = True) -> ImageSet:
    """A class-balanced subset (at most `per_class` images per class) of a torchvision dataset,
    from `root`, downloading it there first when allowed. Offline and not yet downloaded, this
    raises a DatasetError that says so."""
    from torchvision import datasets

    makers = {"cifar10": lambda d: datasets.CIFAR10(root, train=True, download=d),
              "flowers102": lambda d: datasets.Flowers102(root, split="train", download=d),
              "pets": lambda d: datasets.OxfordIIITPet(root, split="trainval", download=d)}
    if name not in makers:
        raise DatasetError(f"unknown dataset {name!r}; choose from {', '.join(TORCHVISION_SETS)}")
    try:
        try:
            ds = makers[name](False)
        except RuntimeError:
            if not download:
                raise
            ds = makers[name](True)
    except (RuntimeError, OSError) as e:
        raise DatasetError(f"{TORCHVISION_SETS[name]} is not on this machine and could not be downloaded "
                           f"(no network?): {str(e).splitlines()[0][:120]}. The built-in digits and shapes "
                           "work offline.") from None
    classes = list(getattr(ds, "classes", [])) or [str(i) for i in range(102)]
    taken: dict[int, int] = {}
    imgs, labels = [], []
    for i in range(len(ds)):
        img, y = ds[i]
        y = int(y)
        if taken.get(y, 0) >= per_class:
            continue
        taken[y] = taken.get(y, 0) + 1
        t = torch.from_numpy(np.asarray(img.convert("RGB"))).permute(2, 0, 1).float().unsqueeze(0)
        imgs.append(F.interpolate(t, size=(size, size), mode="bilinear", antialias=True)[0].round().to(torch.uint8))
        labels.append(y)
        if len(taken) == len(classes) and all(v >= per_class for v in taken.values()):
            break
    used = sorted(taken)
    remap = {c: i for i, c in enumerate(used)}
    return ImageSet(torch.stack(imgs), torch.tensor([remap[y] for y in labels]),
                    [classes[c] if c < len(classes) else str(c) for c in used], TORCHVISION_SETS[name])


# --- by name ---------------------------------------------------------------------------------------

BUILTIN_SETS = {"digits": "handwritten digits (scikit-learn)", "shapes": "generated shapes & textures",
                "zip": "my images (zip of class folders)"}


def load_dataset(name: str, image_size: int, *, shapes_classes: int = 6, shapes_per_class: int = 100,
                 seed: int = 0, zip_bytes: bytes | None = None, download: bool = True) -> ImageSet:
    """A dataset by name (see BUILTIN_SETS and TORCHVISION_SETS); "zip" reads `zip_bytes`.
    `download=False` never touches the network (the page's preview), leaving downloads to the
    training worker."""
    if name == "digits":
        return digits(image_size)
    if name == "shapes":
        return shapes(shapes_classes, shapes_per_class, seed, image_size)
    if name in TORCHVISION_SETS:
        return from_torchvision(name, data_root(), image_size, download=download)
    if name == "zip":
        if zip_bytes is None:
            raise DatasetError("the zip dataset needs the zip's bytes")
        return from_zip(zip_bytes, image_size)
    raise DatasetError(f"unknown dataset {name!r}; choose from {', '.join([*BUILTIN_SETS, *TORCHVISION_SETS])}")


# --- JPEG files, read from disk every epoch ------------------------------------------------------
#
# A `JpegFiles` names the JPEGs of an ImageFolder-style folder and their labels; nothing is decoded
# up front. Training (`FileBatches`) reads the bytes of each batch's files from disk, every epoch,
# and decodes them where it is fastest: nvJPEG on a CUDA device (batched, on the GPU's JPEG engines
# where it has them), libjpeg-turbo on the CPU. The augmentation is torchvision's ImageNet recipe,
# RandomResizedCrop then a horizontal flip, drawn for each image and applied to the whole batch at
# once: `torchvision.ops.roi_align` with one box per image crops and resizes every image in one
# kernel (bilinear at each output pixel's centre, as `F.interpolate(align_corners=False)`; when a
# box is larger than the output it averages ceil(box / size) samples per pixel and direction, an
# antialias filter close to torchvision's).

CROP_SCALE = (0.08, 1.0)      # share of an image's area a random crop keeps (torchvision's default)
CROP_RATIO = (3 / 4, 4 / 3)   # width / height of a random crop (torchvision's default)
CROP_ATTEMPTS = 10            # draws before falling back to a central crop (torchvision's rule)
JPEG_SUFFIXES = (".jpg", ".jpeg")


@dataclass(frozen=True)
class JpegFiles:
    """JPEG files (paths) and their integer labels (N,), in ImageFolder's order; read on demand."""

    paths: tuple[str, ...]
    labels: torch.Tensor
    classes: list[str]
    name: str = "JPEG files"

    def __len__(self) -> int:
        return len(self.paths)

    @classmethod
    def from_folder(cls, root: str | Path) -> JpegFiles:
        """The JPEGs of `root/<class>/...`, classes and files sorted as torchvision's ImageFolder
        sorts them, so that index i names the same file in both."""
        root = Path(root)
        classes = sorted(e.name for e in os.scandir(root) if e.is_dir())
        paths, labels = [], []
        for c, name in enumerate(classes):
            for folder, _, files in sorted(os.walk(root / name, followlinks=True)):
                for f in sorted(files):
                    if f.lower().endswith(JPEG_SUFFIXES):
                        paths.append(os.path.join(folder, f))
                        labels.append(c)
        if not paths:
            raise DatasetError(f"no JPEG files in class folders under {root}")
        return cls(tuple(paths), torch.tensor(labels), classes, root.name)

    def subset(self, idx: torch.Tensor) -> JpegFiles:
        """The files at `idx`, in that order."""
        return JpegFiles(tuple(self.paths[int(i)] for i in idx), self.labels[idx], self.classes, self.name)

    def read(self, idx: list[int]) -> list[torch.Tensor]:
        """The bytes of the files at `idx`, read now, as 1-D uint8 tensors."""
        return [torch.from_numpy(np.fromfile(self.paths[i], dtype=np.uint8)) for i in idx]


def decode_jpegs(data: list[torch.Tensor], device: torch.device) -> list[torch.Tensor]:
    """JPEG bytes -> (3, H, W) uint8 images on `device` (grey JPEGs as RGB): nvJPEG on CUDA, else
    libjpeg-turbo. On CUDA the current stream is synchronised first: torchvision's nvJPEG path
    writes into memory that the caching allocator hands out on that stream without waiting for
    the work queued there (pytorch/vision PR 9606), so nothing may be queued on it."""
    from torchvision.io import ImageReadMode, decode_jpeg

    if device.type == "cuda":
        torch.cuda.current_stream(device).synchronize()
        return decode_jpeg(data, mode=ImageReadMode.RGB, device=device)
    return decode_jpeg(data, mode=ImageReadMode.RGB)


def stack_images(images: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(3, H_i, W_i) images -> one (N, 3, H, W) batch and each image's (H_i, W_i) (N, 2), or None
    when all have one size. Smaller images sit top-left with their last row and column repeated
    once, so that sampling up to their edge (as `crop_resize` does) sees their own pixels."""
    if all(im.shape == images[0].shape for im in images):
        return torch.stack(images), None
    hw = torch.tensor([im.shape[-2:] for im in images])
    H, W = (int(v) for v in hw.max(0).values)
    out = images[0].new_zeros(len(images), images[0].shape[0], H, W)
    for i, im in enumerate(images):
        h, w = im.shape[-2:]
        out[i, :, :h, :w] = im
        if h < H:
            out[i, :, h, :w] = im[:, h - 1]
        if w < W:
            out[i, :, :min(h + 1, H), w] = out[i, :, :min(h + 1, H), w - 1]
    return out, hw


def decode_all(files: JpegFiles, size: int, batch: int = 256) -> ImageSet:
    """Every file decoded once on the CPU (libjpeg-turbo: the same pixels whatever device trains)
    into an ImageSet; at the stored size when all files share one, else each resized to size x size."""
    imgs: list[torch.Tensor] = []
    for i in range(0, len(files), batch):
        imgs += decode_jpegs(files.read(list(range(i, min(len(files), i + batch)))), torch.device("cpu"))
    if any(im.shape != imgs[0].shape for im in imgs):
        imgs = [F.interpolate(im[None].float(), size=(size, size), mode="bilinear", antialias=True,
                              align_corners=False)[0].round().clamp(0, 255).to(torch.uint8) for im in imgs]
    return ImageSet(torch.stack(imgs), files.labels.clone(), list(files.classes), files.name)


def random_boxes(hw: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """One RandomResizedCrop box per image, drawn as torchvision's `RandomResizedCrop.get_params`
    draws it (up to CROP_ATTEMPTS tries of area share and log-aspect, then a central crop), for
    images of sizes hw (N, 2) = (H, W). Returns (N, 4) whole-pixel boxes (x0, y0, x1, y1)."""
    n = len(hw)
    H, W = hw[:, 0].double(), hw[:, 1].double()                                   # (N,)
    share = CROP_SCALE[0] + (CROP_SCALE[1] - CROP_SCALE[0]) * torch.rand(n, CROP_ATTEMPTS, generator=g,
                                                                         dtype=torch.float64)
    lo, hi = math.log(CROP_RATIO[0]), math.log(CROP_RATIO[1])
    aspect = torch.exp(lo + (hi - lo) * torch.rand(n, CROP_ATTEMPTS, generator=g, dtype=torch.float64))
    area = (H * W)[:, None] * share                                               # (N, tries)
    w, h = torch.round(torch.sqrt(area * aspect)), torch.round(torch.sqrt(area / aspect))
    fits = (w > 0) & (w <= W[:, None]) & (h > 0) & (h <= H[:, None])
    first = fits.int().argmax(1, keepdim=True)                                   # first try that fits
    found = fits.any(1)
    w, h = w.gather(1, first)[:, 0], h.gather(1, first)[:, 0]
    # No try fitted: the largest central crop whose aspect is within CROP_RATIO.
    ratio = W / H
    fw = torch.where(ratio > CROP_RATIO[1], torch.round(H * CROP_RATIO[1]), W)
    fh = torch.where(ratio < CROP_RATIO[0], torch.round(W / CROP_RATIO[0]), H)
    w, h = torch.where(found, w, fw), torch.where(found, h, fh)
    u = torch.rand(n, 2, generator=g, dtype=torch.float64)
    top = torch.where(found, torch.floor(u[:, 0] * (H - h + 1)), torch.floor((H - h) / 2))
    left = torch.where(found, torch.floor(u[:, 1] * (W - w + 1)), torch.floor((W - w) / 2))
    return torch.stack([left, top, left + w, top + h], 1)


def crop_resize(images: torch.Tensor, boxes: torch.Tensor, size: int) -> torch.Tensor:
    """Each image's box (x0, y0, x1, y1 in pixels; (N, 4) on the images' device) resized to
    size x size, all in one roi_align call. (N, C, H, W) -> (N, C, size, size) float32, in the
    images' value range."""
    from torchvision.ops import roi_align

    rois = torch.cat([torch.arange(len(boxes), device=boxes.device, dtype=boxes.dtype)[:, None], boxes], 1)
    return roi_align(images.float(), rois.float(), output_size=(size, size), spatial_scale=1.0,
                     sampling_ratio=-1, aligned=True)


def _to(t: torch.Tensor, device: torch.device) -> torch.Tensor:
    """A small host tensor onto `device` without waiting for the device's queued work (pinned,
    asynchronous copy on CUDA; a plain `.to` from pageable memory synchronises the stream)."""
    return t.pin_memory().to(device, non_blocking=True) if device.type == "cuda" else t.to(device)


def crop_flip(images: torch.Tensor, size: int, g: torch.Generator, hw: torch.Tensor | None = None) -> torch.Tensor:
    """RandomResizedCrop (CROP_SCALE, CROP_RATIO) to size x size and a horizontal flip with
    probability 1/2, drawn independently for every image of the batch. images (N, 3, H, W) on any
    device; hw (N, 2) each image's own size when they differ (see `stack_images`). Returns
    (N, 3, size, size) float32 in the images' value range."""
    n = len(images)
    if hw is None:
        hw = torch.tensor([images.shape[-2:]]).expand(n, 2)
    boxes = random_boxes(hw, g)                                                   # (N, 4)
    flip = (torch.rand(n, generator=g) < 0.5).double()
    drawn = _to(torch.cat([boxes, flip[:, None]], 1).float(), images.device)      # (N, 5): one copy
    out = crop_resize(images, drawn[:, :4], size)                                 # (N, 3, S, S)
    return torch.where(drawn[:, 4].bool()[:, None, None, None], out.flip(-1), out)


def planned_batches(n: int, batch_size: int, g: torch.Generator) -> list[torch.Tensor]:
    """One epoch's batches of indices in the order `loop.run_loop` draws them from its seeded
    generator `g` (a last batch of one takes the last two indices instead)."""
    perm = torch.randperm(n, generator=g)
    out = [perm[i:i + batch_size] for i in range(0, n, batch_size)]
    if len(out[-1]) == 1 and n > 1:
        out[-1] = perm[-2:]
    return out


Prepare = Callable[[torch.Tensor, torch.Tensor | None], torch.Tensor]   # (images, hw) -> x


class FileBatches:
    """Training batches read from JPEG files: `batches(idx)` -> (x, y) on the device, where
    `prepare(images, hw)` (the task's augmentation and normalisation) turns the decoded uint8
    images into x. Indices are host tensors: they pick files.

    On CUDA the next batch of the epoch is read, decoded and prepared in a background thread, on
    a stream of its own, while the GPU trains on this one. Which batch comes next is known: the
    loop's order (`planned_batches` with the loop's seed), replayed at each `new_epoch()`. A batch
    that was not foreseen is loaded at once, so the order only decides what is prefetched, never
    what is returned. The prefetch stops at the end of an epoch (as a DataLoader's does).
    """

    def __init__(self, files: JpegFiles, device: torch.device, prepare: Prepare, batch_size: int, seed: int,
                 prefetch: bool | None = None) -> None:
        self.files, self.device, self.prepare, self.batch_size = files, device, prepare, batch_size
        self.order = torch.Generator().manual_seed(seed)   # replays run_loop's batch order
        self.prefetch = device.type == "cuda" if prefetch is None else prefetch
        self.stream = torch.cuda.Stream(device) if device.type == "cuda" else None
        self.plan: list[torch.Tensor] = []
        self.next = 0                                      # position in the plan of the next batch
        self.pending: tuple[torch.Tensor, Future] | None = None
        self.pool: ThreadPoolExecutor | None = None
        self.prefetched = self.loaded_at_once = 0          # batches served each way

    def new_epoch(self) -> None:
        self._settle()
        self.plan, self.next = planned_batches(len(self.files), self.batch_size, self.order), 0

    def __call__(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.pending is not None and torch.equal(self.pending[0], idx):
            x, y = self.pending[1].result()
            self.pending = None
            self.prefetched += 1
        else:
            self._settle()
            x, y = self._load(idx)
            self.loaded_at_once += 1
        foreseen = self.next < len(self.plan) and torch.equal(self.plan[self.next], idx)
        self.next = self.next + 1 if foreseen else len(self.plan)
        if self.prefetch and self.next < len(self.plan):
            self.pool = self.pool or ThreadPoolExecutor(1, thread_name_prefix="jpeg-prefetch")
            self.pending = (self.plan[self.next], self.pool.submit(self._load, self.plan[self.next]))
        elif self.pool is not None:
            self.pool.shutdown(wait=True)
            self.pool = None
        if self.stream is not None:
            # x and y were made on the loader's stream: the training stream waits for them, and
            # the allocator keeps their memory until the training stream is done with them.
            cur = torch.cuda.current_stream(self.device)
            cur.wait_stream(self.stream)
            x.record_stream(cur)
            y.record_stream(cur)
        return x, y

    def _settle(self) -> None:
        """Waits for (and drops) a prefetch that will not be used, so the next load runs alone."""
        if self.pending is not None:
            self.pending[1].result()
            self.pending = None

    @torch.no_grad()
    def _load(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        ctx = torch.cuda.stream(self.stream) if self.stream is not None else contextlib.nullcontext()
        with ctx:
            images, hw = stack_images(decode_jpegs(self.files.read(idx.tolist()), self.device))
            return self.prepare(images, hw), _to(self.files.labels[idx], self.device)


def resize_each(images: torch.Tensor, hw: torch.Tensor, size: int) -> torch.Tensor:
    """Each image of a `stack_images` batch, whole, resized to size x size: (N, 3, size, size)
    float32 in the images' value range."""
    boxes = torch.cat([torch.zeros(len(hw), 2), hw.flip(1).float()], 1)          # (N, 4): 0, 0, W, H
    return crop_resize(images, _to(boxes, images.device), size)
