"""Scatter panels drawn with Pillow (no plotting library needed)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from PIL import Image, ImageDraw

PANEL = 300
MARGIN = 24
BOUNDS = (-2.2, 2.2)


@dataclass
class Panel:
    title: str
    points: torch.Tensor          # [N, 2]
    weights: torch.Tensor | None  # [N] or None (equal)
    colour: tuple[int, int, int]


def _to_pixel(points: torch.Tensor) -> list[tuple[float, float]]:
    lo, hi = BOUNDS
    span = PANEL - 2 * MARGIN
    xy = (points[:, :2].double() - lo) / (hi - lo) * span + MARGIN
    return [(float(x), float(PANEL - y)) for x, y in xy.tolist()]


def draw_panels(panels: list[Panel], contours: torch.Tensor | None = None) -> Image.Image:
    """One row of square panels; point radius grows with weight; optional
    [G, G] background image (e.g. the reward) drawn in grey."""
    image = Image.new("RGB", (PANEL * len(panels), PANEL + 20), "white")
    draw = ImageDraw.Draw(image)
    for i, panel in enumerate(panels):
        ox = i * PANEL
        if contours is not None:
            shade = (contours - contours.min()) / (contours.max() - contours.min() + 1e-12)
            grey = Image.fromarray((255 - 40 * shade.flip(0)).clamp(0, 255).byte().numpy(), "L")
            image.paste(grey.resize((PANEL - 2 * MARGIN, PANEL - 2 * MARGIN)).convert("RGB"), (ox + MARGIN, 20 + MARGIN))
        draw.rectangle([ox + MARGIN, 20 + MARGIN, ox + PANEL - MARGIN, 20 + PANEL - MARGIN], outline=(160, 160, 160))
        draw.text((ox + MARGIN, 4), panel.title, fill=(0, 0, 0))
        w = panel.weights if panel.weights is not None else torch.ones(panel.points.shape[0])
        w = w.double() / w.max().clamp_min(1e-300)
        for (x, y), wi in zip(_to_pixel(panel.points), w.tolist()):
            if wi <= 1e-4:
                continue
            r = 1.5 + 3.5 * wi ** 0.5
            draw.ellipse([ox + x - r, 20 + y - r, ox + x + r, 20 + y + r], fill=panel.colour)
    return image
