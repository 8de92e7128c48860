"""Small in-memory datasets for transfer learning that work offline.

- `digits()`: scikit-learn's 1,797 real 8x8 handwritten digits (10 classes), upsampled.
- `shapes()`: procedurally generated shapes and textures, deterministic by seed.
- `from_zip()`: the user's own images, a zip of class folders (ImageFolder layout), unpacked
  safely in memory.

Images are kept as uint8 tensors (N, 3, S, S) so a run can put the whole set on the device once.
"""

from __future__ import annotations

import io
import math
import zipfile
from dataclasses import dataclass, field

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
