"""Images in: one safe loader for uploads, bundled sample photos and generated test patterns.

`load_image` is the only way user bytes become pixels. It refuses what it cannot handle with an
`ImageError` whose message is meant for the user, and it never changes Pillow's global settings
(a hosted copy serves many users from one process).
"""

from __future__ import annotations

import functools
import io
import math
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps, UnidentifiedImageError
from torchvision.transforms import v2

SAMPLES = ("astronaut", "chelsea", "coffee", "rocket")
PATTERNS = ("gratings", "checkerboard", "blob")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@functools.lru_cache(maxsize=8)
def _mean_std(device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """ImageNet's mean and std as (1, 3, 1, 1) tensors on `device`, made once: building them on a
    GPU every step would copy from the host and wait for the GPU each time."""
    return (torch.tensor(IMAGENET_MEAN, device=device).view(1, 3, 1, 1),
            torch.tensor(IMAGENET_STD, device=device).view(1, 3, 1, 1))


def normalise(x_uint8: torch.Tensor, size: int) -> torch.Tensor:
    """(N, 3, H, W) uint8 -> float, resized to size x size, ImageNet-normalised."""
    x = x_uint8.float() / 255
    if x.shape[-1] != size:
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    mean, std = _mean_std(x.device)
    return (x - mean) / std


MAX_BYTES = 20 * 1024 * 1024       # per image; its uploaders refuse larger files first (max_upload_size)
MAX_PIXELS = 40_000_000            # well below Pillow's 89M default: a 40-megapixel photo still fits
ALLOWED_FORMATS = {"JPEG", "PNG", "WEBP", "BMP", "TIFF", "GIF", "MPO"}


class ImageError(ValueError):
    """An image that cannot be used, with a message for the user."""


@dataclass
class LoadedImage:
    """An RGB uint8 image (H, W, 3) and what the loader did to get it."""

    pixels: np.ndarray
    format: str
    original_mode: str
    notes: list[str] = field(default_factory=list)


def _to_rgb(im: Image.Image, notes: list[str]) -> np.ndarray:
    """Every Pillow mode to RGB uint8: transparency composited on white, CMYK converted,
    16- and 32-bit images stretched to 0..255 (not clipped, which would turn them white)."""
    mode = im.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        a = np.asarray(im, dtype=np.float64)
        lo, hi = float(a.min()), float(a.max())
        notes.append(f"{mode} image with values {lo:g}..{hi:g} stretched to 0..255")
        a = (a - lo) / (hi - lo) * 255 if hi > lo else np.zeros_like(a)
        g = a.round().astype(np.uint8)
        return np.stack([g, g, g], axis=-1)
    if mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
    elif mode in ("LA", "La", "PA"):
        im = im.convert("RGBA")
    if im.mode in ("RGBA", "RGBa"):
        a = np.asarray(im.convert("RGBA"), dtype=np.float64)
        if (a[..., 3] < 255).any():
            notes.append("transparent pixels composited on white")
        alpha = a[..., 3:] / 255
        rgb = a[..., :3] * alpha + 255 * (1 - alpha)
        return rgb.round().astype(np.uint8)
    if im.mode == "CMYK":
        notes.append("CMYK converted to RGB")
    if im.mode != "RGB":
        im = im.convert("RGB")
    return np.asarray(im, dtype=np.uint8).copy()


def load_image(data: bytes, max_pixels: int = MAX_PIXELS, max_bytes: int = MAX_BYTES) -> LoadedImage:
    """Decodes uploaded bytes safely into RGB.

    Raises:
        ImageError: empty, too large (bytes or pixels), not an image, an unsupported format,
            truncated or corrupt data.
    """
    if not data:
        raise ImageError("The file is empty.")
    if len(data) > max_bytes:
        raise ImageError(f"The file is {len(data) / 1e6:.1f} MB; the limit is {max_bytes / 1e6:.0f} MB.")
    notes: list[str] = []
    try:
        # Pillow warns above 89M pixels and refuses above 179M; we refuse above `max_pixels`
        # (from the header, before decoding) so its warning never fires for what we accept.
        im = Image.open(io.BytesIO(data))  # reads the header only
        fmt = im.format or "unknown"
        if fmt not in ALLOWED_FORMATS:
            raise ImageError(f"{fmt} files are not supported; use JPEG, PNG, WebP, BMP, TIFF or GIF.")
        w, h = im.size
        if w * h > max_pixels:
            raise ImageError(f"The image is {w:,} x {h:,} pixels ({w * h / 1e6:.0f} megapixels); the limit "
                             f"is {max_pixels / 1e6:.0f} megapixels. Resize it first.")
        mode, size = im.mode, im.size
        frames = getattr(im, "n_frames", 1)
        if frames > 1:
            im.seek(0)
            notes.append(f"animated image: using the first of {frames} frames")
        im.load()
        im = ImageOps.exif_transpose(im) or im
        if im.size != size:
            notes.append("rotated according to its EXIF orientation")
        pixels = _to_rgb(im, notes)
    except ImageError:
        raise
    except Image.DecompressionBombError:
        raise ImageError(f"The image claims to be far larger than the {max_pixels / 1e6:.0f}-megapixel limit "
                         "(a decompression bomb?); refused without decoding it.") from None
    except UnidentifiedImageError:
        raise ImageError("This file is not an image we can read.") from None
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        msg = str(e)
        if "truncated" in msg.lower():
            raise ImageError("The image file is truncated: part of it is missing. Try saving it again.") from None
        raise ImageError(f"The image is corrupt and cannot be decoded ({msg[:120]}).") from None
    return LoadedImage(pixels, fmt, mode, notes)


def sample_image(name: str) -> np.ndarray:
    """One bundled photo (scikit-image) or generated pattern as an (H, W, 3) uint8 array."""
    if name in PATTERNS:
        return pattern(name)
    import skimage.data

    if name not in SAMPLES:
        raise ValueError(f"unknown sample {name!r}; choose from {', '.join(SAMPLES + PATTERNS)}")
    return getattr(skimage.data, name)()


def pattern(name: str, size: int = 256) -> np.ndarray:
    """Test images whose responses are easy to read in early filters.

    gratings: four quadrants of sinusoidal stripes at 0, 45, 90 and 135 degrees;
    checkerboard: 16-pixel squares; blob: a Gaussian spot, red on a blue background.
    """
    y, x = np.mgrid[0:size, 0:size].astype(np.float64)
    if name == "gratings":
        img = np.zeros((size, size))
        half = size // 2
        for q, angle in enumerate((0, 45, 90, 135)):
            t = math.radians(angle)
            wave = 0.5 + 0.5 * np.sin(2 * math.pi * (x * math.cos(t) + y * math.sin(t)) / 16)
            r, c = divmod(q, 2)
            img[r * half:(r + 1) * half, c * half:(c + 1) * half] = wave[r * half:(r + 1) * half, c * half:(c + 1) * half]
        g = (img * 255).astype(np.uint8)
        return np.stack([g, g, g], axis=-1)
    if name == "checkerboard":
        g = (((x // 16 + y // 16) % 2) * 255).astype(np.uint8)
        return np.stack([g, g, g], axis=-1)
    if name == "blob":
        d = np.exp(-((x - size / 2) ** 2 + (y - size / 2) ** 2) / (2 * (size / 8) ** 2))
        return np.stack([d * 255, np.zeros_like(d) + 40, (1 - d) * 200], axis=-1).astype(np.uint8)
    raise ValueError(f"unknown pattern {name!r}; choose from {', '.join(PATTERNS)}")


def sample_batch(size: int = 224, names: tuple[str, ...] = SAMPLES) -> tuple[torch.Tensor, np.ndarray]:
    """The samples resized (short side) and centre-cropped to size x size.

    Returns:
        The ImageNet-normalised batch (N, 3, size, size) and the cropped uint8 images (N, size, size, 3).
    """
    tf = v2.Compose([v2.Resize(size, antialias=True), v2.CenterCrop(size)])
    crops = [tf(torch.from_numpy(sample_image(n)).permute(2, 0, 1)) for n in names]  # (3, size, size) uint8
    batch = torch.stack(crops).float() / 255  # (N, 3, size, size)
    norm = v2.Normalize(IMAGENET_MEAN, IMAGENET_STD)(batch)
    return norm, torch.stack(crops).permute(0, 2, 3, 1).numpy()


@dataclass
class Preprocessed:
    """An image on its way into a network: the cropped picture and the normalised tensor."""

    crop: np.ndarray        # (S, S, 3) uint8, what the network sees before normalisation
    tensor: torch.Tensor    # (1, 3, S, S) float, normalised
    resize: int
    crop_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]


def preprocess(pixels: np.ndarray, resize: int = 256, crop: int = 224,
               mean: tuple[float, ...] = IMAGENET_MEAN, std: tuple[float, ...] = IMAGENET_STD) -> Preprocessed:
    """torchvision's ImageClassification steps, made visible: resize the short side, centre-crop,
    scale to 0..1, normalise with the weights' mean and std."""
    t = torch.from_numpy(np.ascontiguousarray(pixels)).permute(2, 0, 1)  # (3, H, W) uint8
    t = v2.CenterCrop(crop)(v2.Resize(resize, antialias=True)(t))
    x = v2.Normalize(list(mean), list(std))(t.float() / 255).unsqueeze(0)  # (1, 3, crop, crop)
    return Preprocessed(t.permute(1, 2, 0).numpy(), x, resize, crop, tuple(mean), tuple(std))


def prepare_drawing(pixels: np.ndarray, side: int) -> np.ndarray:
    """An uploaded photo or scan of a drawing -> (side, side) floats 0..1, bright ink on black
    like the training images: grey, inverted when the background is light (ink on paper), cropped
    to the ink, padded to a square and resized with a margin."""
    grey = np.asarray(pixels, np.float32)[..., :3].mean(-1) / 255                 # (H, W)
    border = np.concatenate([grey[0], grey[-1], grey[:, 0], grey[:, -1]])
    if np.median(border) > 0.5:
        grey = 1 - grey
    lo, hi = np.percentile(grey, 5), grey.max()
    ink = np.clip((grey - lo) / max(hi - lo, 1e-6), 0, 1)
    ink[ink < 0.2] = 0
    rows, cols = np.nonzero(ink)
    if len(rows) == 0:
        raise ValueError("No drawing found in the image: it is all one shade.")
    ink = ink[rows.min():rows.max() + 1, cols.min():cols.max() + 1]
    h, w = ink.shape
    pad = max(h, w)
    square = np.zeros((pad, pad), np.float32)
    square[(pad - h) // 2:(pad - h) // 2 + h, (pad - w) // 2:(pad - w) // 2 + w] = ink
    inner = round(side * 0.75)                                                      # the glyphs keep a margin
    t = F.interpolate(torch.from_numpy(square)[None, None], size=(inner, inner), mode="bilinear",
                      antialias=True, align_corners=False)[0, 0]
    out = np.zeros((side, side), np.float32)
    o = (side - inner) // 2
    out[o:o + inner, o:o + inner] = t.clamp(0, 1).numpy()
    return out
