"""The safe image loader: every bad case gets a clear ImageError, every mode becomes RGB."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from core.images import ImageError, load_image, pattern, preprocess, sample_image


def _save(im: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **kw)
    return buf.getvalue()


def _png_claiming(width: int, height: int) -> bytes:
    """A tiny valid PNG whose header claims another size (a decompression bomb's calling card)."""
    data = bytearray(_save(Image.new("L", (4, 4)), "PNG"))
    ihdr = data[12:29]  # b"IHDR" + 13 bytes
    ihdr[4:12] = struct.pack(">II", width, height)
    data[12:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(ihdr)) & 0xFFFFFFFF)
    return bytes(data)


@pytest.mark.parametrize("data,match", [
    (b"", "empty"),
    (b"this is not an image at all", "not an image"),
    (b"%PDF-1.4 something", "not an image"),
])
def test_non_images_are_refused(data, match):
    with pytest.raises(ImageError, match=match):
        load_image(data)


def test_decompression_bomb_is_refused_before_decoding():
    with pytest.raises(ImageError, match="megapixels"):
        load_image(_png_claiming(8_000, 8_000))         # 64 MP: above our limit, below Pillow's
    with pytest.raises(ImageError, match="decompression bomb"):
        load_image(_png_claiming(60_000, 60_000))       # above Pillow's own hard limit too


def test_too_many_bytes_is_refused():
    with pytest.raises(ImageError, match="limit"):
        load_image(b"x" * 100, max_bytes=10)


def test_truncated_jpeg_is_explained():
    data = _save(Image.fromarray(pattern("checkerboard")), "JPEG")
    with pytest.raises(ImageError, match="truncated|corrupt"):
        load_image(data[: len(data) // 2])


def test_unsupported_format_is_named():
    data = _save(Image.new("RGB", (16, 16)), "ICO")
    with pytest.raises(ImageError, match="ICO files are not supported"):
        load_image(data)


def test_exif_orientation_is_applied():
    im = Image.new("RGB", (40, 20), (255, 0, 0))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    out = load_image(_save(im, "JPEG", exif=exif.tobytes()))
    assert out.pixels.shape == (40, 20, 3)
    assert any("EXIF" in n for n in out.notes)


def test_modes_become_rgb():
    # L
    assert load_image(_save(Image.new("L", (8, 8), 77), "PNG")).pixels[0, 0].tolist() == [77, 77, 77]
    # RGBA: a fully transparent pixel composites to white, an opaque one keeps its colour
    rgba = Image.new("RGBA", (2, 1))
    rgba.putpixel((0, 0), (10, 20, 30, 0))
    rgba.putpixel((1, 0), (10, 20, 30, 255))
    out = load_image(_save(rgba, "PNG"))
    assert out.pixels[0, 0].tolist() == [255, 255, 255] and out.pixels[0, 1].tolist() == [10, 20, 30]
    # LA half transparent black on white -> mid grey
    assert load_image(_save(Image.new("LA", (2, 2), (0, 128)), "PNG")).pixels[0, 0].tolist() == [127, 127, 127]
    # P with a transparent palette entry
    p = Image.new("P", (2, 1))
    p.putpalette([0, 0, 0, 200, 0, 0] + [0] * 762)
    p.putpixel((0, 0), 0)
    p.putpixel((1, 0), 1)
    out = load_image(_save(p, "PNG", transparency=0))
    assert out.pixels[0, 0].tolist() == [255, 255, 255] and out.pixels[0, 1].tolist() == [200, 0, 0]
    # CMYK (JPEG)
    out = load_image(_save(Image.new("CMYK", (8, 8), (0, 255, 255, 0)), "JPEG"))
    r, g, b = out.pixels[4, 4].tolist()
    assert r > 200 and g < 60 and b < 60 and out.original_mode == "CMYK"


def test_sixteen_bit_png_keeps_its_contrast():
    a = np.linspace(1000, 3000, 64 * 64).reshape(64, 64).astype(np.uint16)  # a 12-bit-ish range
    out = load_image(_save(Image.fromarray(a), "PNG"))
    g = out.pixels[..., 0]
    assert g.min() == 0 and g.max() == 255          # stretched, not clipped to white
    assert len(np.unique(g)) > 200                  # the gradient survives
    assert any("stretched" in n for n in out.notes)


def test_animated_gif_uses_the_first_frame():
    frames = [Image.new("RGB", (8, 8), c) for c in ((255, 0, 0), (0, 0, 255))]
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:])
    out = load_image(buf.getvalue())
    r, g, b = out.pixels[0, 0].tolist()
    assert r > 200 and b < 50 and any("first of 2 frames" in n for n in out.notes)


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP", "BMP", "TIFF", "GIF"])
def test_every_allowed_format_loads(fmt):
    out = load_image(_save(Image.fromarray(pattern("blob", 64)), fmt))
    assert out.pixels.shape == (64, 64, 3) and out.format == fmt


def test_samples_and_preprocessing():
    for name in ("astronaut", "gratings", "checkerboard"):
        assert sample_image(name).dtype == np.uint8
    pre = preprocess(sample_image("coffee"), 256, 224)
    assert pre.crop.shape == (224, 224, 3) and tuple(pre.tensor.shape) == (1, 3, 224, 224)
    # the normalisation is (x/255 - mean)/std, checked on one pixel
    v = pre.crop[0, 0, 0] / 255
    assert abs(float(pre.tensor[0, 0, 0, 0]) - (v - 0.485) / 0.229) < 1e-5
