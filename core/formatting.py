"""Units, separators and shapes: the one place where raw numbers become text.

Sizes in bytes use decimal units (1 MB = 10^6 bytes), as the slides do: VGG-16's
138M parameters x 4 bytes = 553 MB.
"""

from __future__ import annotations

from typing import Sequence


def fmt_int(n: float) -> str:
    """34944 -> '34,944'."""
    return f"{int(round(n)):,}"


def fmt_num(x: float) -> str:
    """A whole number with separators, else up to three decimals without trailing zeros."""
    if float(x).is_integer():
        return fmt_int(x)
    return f"{x:,.3f}".rstrip("0").rstrip(".")


def plural(n: int, word: str, many: str | None = None) -> str:
    """'1 image', '2 images', '1,797 images'; `many` for irregular plurals ('class', 'classes')."""
    return f"{fmt_int(n)} {word if n == 1 else (many or word + 's')}"


def plural_units(n: float, word: str) -> str:
    """'1 pixel', '11 pixels', '2.5 pixels', '2 passes'."""
    return f"{fmt_num(n)} {word}" + ("" if n == 1 else "es" if word.endswith("s") else "s")


def fmt_count(n: float, digits: int = 1) -> str:
    """Short count with K/M/G suffixes as on the slides: 112_896_000 -> '112.9M'."""
    for div, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "K")):
        if abs(n) >= div:
            return f"{n / div:.{digits}f}{suffix}"
    return fmt_int(n)


def fmt_bytes(n: float) -> str:
    """Decimal byte units: 249_513_376 -> '249.5 MB'."""
    for div, suffix in ((1e12, "TB"), (1e9, "GB"), (1e6, "MB"), (1e3, "KB")):
        if abs(n) >= div:
            return f"{n / div:.1f} {suffix}"
    return f"{int(n)} B"


def fmt_shape(shape: Sequence[int]) -> str:
    """The slides' H x W x C order for a (C, H, W) shape: [96, 55, 55] -> '55x55x96';
    vectors stay as they are: [4096] -> '4096'."""
    s = list(shape)
    if len(s) == 3:
        s = [s[1], s[2], s[0]]
    return "x".join(str(v) for v in s)


def fmt_macs(macs: float) -> str:
    """MACs with the convention named: '1.81 GMACs'."""
    for div, suffix in ((1e9, "GMACs"), (1e6, "MMACs"), (1e3, "KMACs")):
        if macs >= div:
            return f"{macs / div:.2f} {suffix}"
    return f"{int(macs)} MACs"
