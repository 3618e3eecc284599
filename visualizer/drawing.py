"""Small Pillow drawing helpers shared by the grid and the curves: fonts, text, ticks, lines.

Text is plain ASCII only: Pillow's built-in font (the scalable one when FreeType
is present, else the fixed bitmap one) has no Greek letters, so labels say
"sigma", "alpha", "Psi".
"""

from __future__ import annotations

import math
from functools import lru_cache

from PIL import ImageDraw, ImageFont

WHITE = (255, 255, 255)
BLACK = (0, 0, 0)
GREY = (110, 110, 110)
LIGHT_GREY = (200, 200, 200)
FAINT = (236, 236, 236)
BLUE = (31, 100, 200)
LIGHT_BLUE = (190, 212, 240)
RED = (205, 40, 40)
GREEN = (30, 140, 60)
ORANGE = (240, 140, 0)
PALETTE = ((31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
           (140, 86, 75), (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207))


@lru_cache(maxsize=16)
def font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    """Pillow's built-in font at `size` pixels; the fixed bitmap font (about 11 px)
    where this Pillow has no FreeType (`load_default(size=...)` needs it, Pillow >= 10.1)."""
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, ImportError, OSError, AttributeError):
        return ImageFont.load_default()


def text_width(draw: ImageDraw.ImageDraw, text: str, size: int) -> int:
    left, _, right, _ = draw.textbbox((0, 0), text, font=font(size))
    return math.ceil(right - left)


def fit_text(draw: ImageDraw.ImageDraw, text: str, size: int, width: int) -> str:
    """`text` cut (with a trailing '.') until it fits in `width` pixels."""
    if text_width(draw, text, size) <= width:
        return text
    while len(text) > 1 and text_width(draw, text + ".", size) > width:
        text = text[:-1]
    return text + "."


def put_text(draw: ImageDraw.ImageDraw, xy: tuple[float, float], text: str, size: int,
             fill=BLACK, width: int | None = None, anchor: str = "la") -> None:
    """Draw one line of ASCII text, cut to `width`. `anchor` is two letters as in Pillow:
    horizontal l/m/r (left, middle, right) and vertical a/m/d (top, middle, bottom) of `xy`;
    applied here because the bitmap fallback font ignores Pillow's own anchors."""
    if width is not None:
        text = fit_text(draw, text, size, width)
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font(size))
    x, y = xy
    x -= {"l": 0, "m": (left + right) / 2, "r": right}[anchor[0]]
    y -= {"a": 0, "m": (top + bottom) / 2, "d": bottom}[anchor[1]]
    draw.text((round(x), round(y)), text, fill=fill, font=font(size))


def fmt(value: float, digits: int = 3) -> str:
    """Short number: 3 significant digits, 'n/a' for None, 'inf'/'nan' spelled out."""
    if value is None:
        return "n/a"
    if not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    text = f"{value:.{digits}g}"
    return "0" if text == "-0" else text


def nice_ticks(lo: float, hi: float, count: int = 5, integer: bool = False) -> list[float]:
    """About `count` round tick values (1, 2 or 5 times a power of ten) covering [lo, hi]."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return []
    if hi <= lo:
        return [lo]
    raw = (hi - lo) / max(count, 1)
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    if integer:
        step = max(1.0, float(round(step)))
    first = math.ceil(lo / step - 1e-9) * step
    ticks = []
    value = first
    while value <= hi + step * 1e-9:
        ticks.append(0.0 if abs(value) < step * 1e-9 else value)
        value = first + len(ticks) * step
    return ticks


def padded_range(values: list[float], pad: float = 0.06) -> tuple[float, float]:
    """(lo, hi) of the finite `values`, widened by `pad` of the span (or ±0.5 for a constant)."""
    finite = [v for v in values if v is not None and math.isfinite(v)]
    if not finite:
        return 0.0, 1.0
    lo, hi = min(finite), max(finite)
    if hi - lo < 1e-12:
        half = max(abs(lo) * 0.05, 0.5)
        return lo - half, hi + half
    span = hi - lo
    return lo - pad * span, hi + pad * span


def dashed_line(draw: ImageDraw.ImageDraw, start: tuple[float, float], end: tuple[float, float],
                fill, width: int = 1, dash: int = 5, gap: int = 4) -> None:
    (x0, y0), (x1, y1) = start, end
    length = math.hypot(x1 - x0, y1 - y0)
    if length == 0:
        return
    ux, uy = (x1 - x0) / length, (y1 - y0) / length
    pos = 0.0
    while pos < length:
        stop = min(pos + dash, length)
        draw.line([(x0 + ux * pos, y0 + uy * pos), (x0 + ux * stop, y0 + uy * stop)], fill=fill, width=width)
        pos = stop + gap
