"""The particle grid: predicted clean images over SMC steps (rows) x particles (columns).

Every tile carries its reward r and normalised weight w as text, and a weight bar whose
length is w / (largest w in the row) of the tile width, with a tick at w = 1/K; the band
between two rows draws the genealogy (a line from each particle to its ancestor in
the row above; blue where resampling happened in between); the output particle and
its ancestors are framed in orange.

Layout (all sizes in pixels; K particles, R rows, input images H x W):

    tile_w = tile_width or clamp(TARGET_WIDTH // K, MIN_TILE, MAX_TILE)
    tile_h = max(1, round(tile_w * H / W))
    text   = 12 if tile_w >= 96 else 10             (font size of the tile annotation)
    annot  = 2 * (text + 4) + 14                     (two text lines and the weight bar)
    width  = 2 * MARGIN + LABEL_W + K * tile_w + (K - 1) * GUTTER
    height = 2 * MARGIN + HEADER + R * (tile_h + annot) + (R - 1) * LINK + LEGEND

with TARGET_WIDTH 1536, MIN_TILE 64, MAX_TILE 256, MARGIN 12, LABEL_W 104 (row labels),
GUTTER 6, LINK 30 (genealogy band), HEADER 56 and LEGEND 48; e.g. 3 rows of 48 x 48
images: 1 particle 384 x 1094, 4 particles 1170 x 1094, 32 particles 2362 x 506.
`grid_layout` computes it and the box of every tile and annotation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from PIL import Image, ImageDraw

from .convert import INITIAL, as_rgb
from .drawing import BLACK, BLUE, FAINT, GREY, LIGHT_GREY, ORANGE, RED, WHITE, fmt, put_text

TARGET_WIDTH = 1536
MIN_TILE = 64
MAX_TILE = 256
MARGIN = 12
LABEL_W = 104
GUTTER = 6
LINK = 30
HEADER = 56
LEGEND = 48
BAR_H = 6
FRAME = 3          # orange frame drawn outside the tile and annotation boxes (fits in GUTTER / 2)


@dataclass(frozen=True)
class GridLayout:
    """Geometry of a grid with `particles` columns and `rows` rows (see the module docstring)."""

    particles: int
    rows: int
    tile_w: int
    tile_h: int
    text: int

    @property
    def line(self) -> int:
        return self.text + 4

    @property
    def annot(self) -> int:
        return 2 * self.line + 14

    @property
    def row_h(self) -> int:
        return self.tile_h + self.annot

    @property
    def width(self) -> int:
        return 2 * MARGIN + LABEL_W + self.particles * self.tile_w + (self.particles - 1) * GUTTER

    @property
    def height(self) -> int:
        return 2 * MARGIN + HEADER + self.rows * self.row_h + (self.rows - 1) * LINK + LEGEND

    def column_x(self, col: int) -> int:
        return MARGIN + LABEL_W + col * (self.tile_w + GUTTER)

    def row_y(self, row: int) -> int:
        return MARGIN + HEADER + row * (self.row_h + LINK)

    def tile_box(self, row: int, col: int) -> tuple[int, int, int, int]:
        """(left, top, right, bottom), right/bottom exclusive, of the image of particle `col` in `row`."""
        x, y = self.column_x(col), self.row_y(row)
        return x, y, x + self.tile_w, y + self.tile_h

    def annotation_box(self, row: int, col: int) -> tuple[int, int, int, int]:
        """(left, top, right, bottom), right/bottom exclusive, of the reward/weight annotation under a tile."""
        x, y = self.column_x(col), self.row_y(row) + self.tile_h
        return x, y, x + self.tile_w, y + self.annot

    def link_band(self, row: int) -> tuple[int, int]:
        """(top, bottom) of the genealogy band between `row - 1` and `row` (row >= 1)."""
        bottom = self.row_y(row)
        return bottom - LINK, bottom


def grid_layout(particles: int, rows: int, image_size: tuple[int, int], tile_width: int | None = None) -> GridLayout:
    """The layout for `particles` columns, `rows` rows and input images of `image_size` = (H, W)."""
    for name, value in (("particles", particles), ("rows", rows)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be an integer >= 1; got {value!r}")
    height, width = image_size
    if height < 1 or width < 1:
        raise ValueError(f"image_size must be positive (H, W); got {image_size}")
    if tile_width is None:
        tile_w = min(MAX_TILE, max(MIN_TILE, TARGET_WIDTH // particles))
    elif isinstance(tile_width, bool) or not isinstance(tile_width, int) or not 16 <= tile_width <= 1024:
        raise ValueError(f"tile_width must be an integer in [16, 1024] or None; got {tile_width!r}")
    else:
        tile_w = tile_width
    tile_h = max(1, round(tile_w * height / width))
    return GridLayout(particles, rows, tile_w, tile_h, 12 if tile_w >= 96 else 10)


@dataclass(frozen=True)
class _Row:
    key: int                      # INITIAL or SMC step index
    images: torch.Tensor          # [K, H, W, 3] float32 CPU in [0, 1]
    reward: list[float] | None
    weight: list[float] | None
    label: list[str]
    resampled_at: list[int]       # steps in (previous row, this row] that resampled


def render_particle_grid(images: dict[int, torch.Tensor], trace, tile_width: int | None = None,
                         title: str | None = None) -> Image.Image:
    """Grid of decoded predicted clean images: rows = the keys of `images` in step order,
    columns = particles.

    images: {step: [K, H, W, C] float in [0, 1]}; step is an SMC step index i (the
    particles after `trace.smc[i]`) or INITIAL (-1, the starting particles). Not modified.
    trace: a psi_core Trace; annotations come from its records, the genealogy from
    `trace.smc[i].ancestors`, the highlighted output from `trace.selected`.
    Returns an RGB Pillow image of the size `grid_layout` gives (pil_to_tensor for IMAGE)."""
    rows = _rows(images, trace)
    k = rows[0].images.shape[0]
    layout = grid_layout(k, len(rows), tuple(rows[0].images.shape[1:3]), tile_width)
    canvas = Image.new("RGB", (layout.width, layout.height), WHITE)
    draw = ImageDraw.Draw(canvas)
    lineage = _lineage(trace, rows, k)
    _draw_header(draw, layout, trace, rows, title)
    for r, row in enumerate(rows):
        if r > 0:
            _draw_links(draw, layout, r, _parents(trace, rows[r - 1].key, row.key, k),
                        bool(row.resampled_at), lineage[r - 1], lineage[r])
        _draw_row(canvas, draw, layout, r, row, lineage[r])
    _draw_legend(draw, layout)
    return canvas


def _rows(images: dict[int, torch.Tensor], trace) -> list[_Row]:
    if not isinstance(images, dict) or not images:
        raise ValueError("images must be a non-empty dict {step: [K, H, W, 3] tensor}")
    steps = len(trace.smc)
    keys = sorted(images)
    for key in keys:
        if isinstance(key, bool) or not isinstance(key, int) or not (key == INITIAL or 0 <= key < steps):
            raise ValueError(f"image keys must be INITIAL (-1) or SMC step indices in [0, {steps}); got {key!r}")
    sizes = {tuple(images[key].shape[:1]) for key in keys}
    if len(sizes) != 1:
        raise ValueError(f"every step needs the same number of particles; got {sorted(sizes)}")
    rows, previous = [], None
    for key in keys:
        batch = as_rgb(images[key])
        reward, weight, label = _row_numbers(trace, key, batch.shape[0])
        resampled = [r.step for r in trace.smc if (previous if previous is not None else INITIAL) < r.step <= key
                     and r.resampled]
        if resampled:
            label.append(f"resampled x{len(resampled)}")
        rows.append(_Row(key, batch, reward, weight, label, resampled))
        previous = key
    return rows


def _row_numbers(trace, key: int, k: int) -> tuple[list[float] | None, list[float] | None, list[str]]:
    steps = len(trace.smc)
    if key == INITIAL:
        reward, log_w = trace.initial_reward, trace.initial_log_weights
        sigma = trace.smc[0].sigma if trace.smc else None
        label = ["start", f"sigma {fmt(sigma)}"]
    else:
        record = trace.smc[key]
        reward, log_w = record.reward, record.log_weights
        label = [f"step {key + 1}/{steps}", f"sigma {fmt(record.sigma_next)}", f"ESS {record.ess_after:.1f}/{k}"]
    rewards = None if reward is None else [float(v) for v in reward.detach().double().cpu().tolist()]
    weights = None if log_w is None else [float(v) for v in log_w.detach().double().cpu().exp().tolist()]
    for name, values in (("reward", rewards), ("log_weights", weights)):
        if values is not None and len(values) != k:
            raise ValueError(f"trace {name} at step {key} has {len(values)} particles, images have {k}")
    if key == INITIAL and weights is not None:
        label.append(f"ESS {_ess(weights):.1f}/{k}")
    return rewards, weights, label


def _ess(weights: list[float]) -> float:
    total = sum(w * w for w in weights if math.isfinite(w))
    return 1.0 / total if total > 0 else 0.0


def _parents(trace, upper: int, lower: int, k: int) -> list[int]:
    """For each particle of step `lower`, its ancestor at step `upper` (< lower)."""
    index = torch.arange(k)
    for step in range(lower, upper, -1):
        index = trace.smc[step].ancestors.detach().cpu().long()[index]
    return index.tolist()


def _lineage(trace, rows: list[_Row], k: int) -> list[set[int]]:
    """Per row: the particles that are the output particles or their ancestors."""
    if not trace.selected or not trace.smc:
        return [set() for _ in rows]
    last = len(trace.smc) - 1
    out = []
    for row in rows:
        index = torch.tensor(list(trace.selected), dtype=torch.long)
        for step in range(last, row.key, -1):
            index = trace.smc[step].ancestors.detach().cpu().long()[index]
        out.append({int(i) for i in index.tolist() if 0 <= i < k})
    return out


def _draw_header(draw: ImageDraw.ImageDraw, layout: GridLayout, trace, rows: list[_Row], title: str | None) -> None:
    width = layout.width - 2 * MARGIN
    if title is None:
        nfe = trace.nfe.get("nfe") if trace.nfe else None
        title = (f"Psi-Sampler particles | {trace.method} | K={layout.particles} | alpha {fmt(trace.alpha)}"
                 + (f" | NFE {nfe}" if nfe is not None else ""))
    put_text(draw, (MARGIN, MARGIN), title, 13, width=width)
    resampled = [r.step + 1 for r in trace.smc if r.resampled]
    steps = ("resampled before steps " + ", ".join(map(str, resampled))) if resampled else "no resampling"
    output = f"output #{', #'.join(map(str, trace.selected))} | " if trace.selected else ""
    put_text(draw, (MARGIN, MARGIN + 19), output + steps, 11, fill=GREY, width=width)
    y = MARGIN + HEADER - layout.line - 2
    for col in range(layout.particles):
        x = layout.column_x(col) + layout.tile_w / 2
        put_text(draw, (x, y), f"#{col}", layout.text, fill=GREY, anchor="ma")


def _draw_row(canvas: Image.Image, draw: ImageDraw.ImageDraw, layout: GridLayout, r: int, row: _Row,
              lineage: set[int]) -> None:
    y = layout.row_y(r)
    for i, text in enumerate(row.label):
        colour = RED if text.startswith("resampled") else BLACK if i == 0 else GREY
        put_text(draw, (MARGIN, y + i * layout.line), text, layout.text, fill=colour, width=LABEL_W - 2 * FRAME - 4)
    pixels = (row.images * 255.0).round().to(torch.uint8).numpy()
    finite = [w for w in (row.weight or []) if math.isfinite(w)]
    top_weight = max(finite) if finite else 0.0
    for col in range(layout.particles):
        left, top, _, _ = layout.tile_box(r, col)
        tile = Image.fromarray(pixels[col], "RGB")
        if tile.size != (layout.tile_w, layout.tile_h):
            tile = tile.resize((layout.tile_w, layout.tile_h), Image.Resampling.BICUBIC, reducing_gap=2.0)
        canvas.paste(tile, (left, top))
        reward = None if row.reward is None else row.reward[col]
        weight = None if row.weight is None else row.weight[col]
        _draw_annotation(draw, layout, layout.annotation_box(r, col), reward, weight, top_weight)
        if col in lineage:
            _, _, note_right, note_bottom = layout.annotation_box(r, col)
            draw.rectangle([left - FRAME, top - FRAME, note_right + FRAME - 1, note_bottom + FRAME - 1],
                           outline=ORANGE, width=FRAME)


def _draw_annotation(draw: ImageDraw.ImageDraw, layout: GridLayout, box: tuple[int, int, int, int],
                     reward: float | None, weight: float | None, top_weight: float) -> None:
    left, top, right, _ = box
    text_w = right - left - 4
    valid = reward is None or math.isfinite(reward)
    put_text(draw, (left + 2, top + 4), f"r {fmt(reward)}" if valid else "r invalid", layout.text,
             fill=BLACK if valid else RED, width=text_w)
    put_text(draw, (left + 2, top + 4 + layout.line), f"w {_fmt_weight(weight)}", layout.text, fill=GREY,
             width=text_w)
    bar_top = top + 4 + 2 * layout.line + 2
    bar = [left + 2, bar_top, right - 3, bar_top + BAR_H - 1]
    draw.rectangle(bar, fill=FAINT)
    if weight is None or not math.isfinite(weight) or top_weight <= 0:
        return
    span = bar[2] - bar[0] + 1
    length = round(span * min(max(weight / top_weight, 0.0), 1.0))
    if length > 0:
        draw.rectangle([bar[0], bar[1], bar[0] + length - 1, bar[3]], fill=BLUE)
    uniform = bar[0] + round(span * min(1.0 / (layout.particles * top_weight), 1.0)) - 1
    draw.line([(uniform, bar[1] - 2), (uniform, bar[3] + 1)], fill=BLACK, width=1)


def _fmt_weight(weight: float | None) -> str:
    if weight is None or not math.isfinite(weight):
        return fmt(weight)
    if weight == 0:
        return "0"
    return f"{weight:.2f}" if weight >= 0.01 else f"{weight:.0e}"


def _draw_links(draw: ImageDraw.ImageDraw, layout: GridLayout, r: int, parents: list[int], resampled: bool,
                upper_lineage: set[int], lower_lineage: set[int]) -> None:
    """Genealogy between rows r-1 and r as a dendrogram: a stub down from each parent to a
    horizontal bar spanning its children, stubs down into the children. Bars of families
    whose spans overlap get different heights in the band."""
    top, bottom = layout.link_band(r)
    y_top, y_bottom = top + FRAME + 1, bottom - FRAME - 2
    if not resampled:
        for child, parent in enumerate(parents):
            x = layout.column_x(child) + layout.tile_w // 2
            colour = ORANGE if child in lower_lineage else LIGHT_GREY
            draw.line([(x, y_top), (x, y_bottom)], fill=colour, width=3 if colour == ORANGE else 1)
        return
    families: dict[int, list[int]] = {}
    for child, parent in enumerate(parents):
        families.setdefault(parent, []).append(child)
    centre = {col: layout.column_x(col) + layout.tile_w // 2 for col in range(layout.particles)}
    spans = sorted((min(centre[c] for c in [p, *kids]), max(centre[c] for c in [p, *kids]), p)
                   for p, kids in families.items())
    level_end: list[float] = []
    level_of: dict[int, int] = {}
    for lo, hi, parent in spans:  # greedy interval colouring: overlapping bars get distinct levels
        free = next((i for i, end in enumerate(level_end) if end < lo - GUTTER), None)
        if free is None:
            level_end.append(hi)
            free = len(level_end) - 1
        level_end[free] = hi
        level_of[parent] = free
    usable = max(y_bottom - y_top - 8, 1)
    width = 2 if layout.particles <= 8 else 1
    lineage_paths = []
    for lo, hi, parent in spans:
        y = y_top + 4 + round((level_of[parent] + 0.5) * usable / len(level_end))
        draw.line([(centre[parent], y_top), (centre[parent], y)], fill=BLUE, width=width)
        draw.line([(lo, y), (hi, y)], fill=BLUE, width=width)
        for child in families[parent]:
            draw.line([(centre[child], y), (centre[child], y_bottom)], fill=BLUE, width=width)
            if child in lower_lineage and parent in upper_lineage:
                lineage_paths.append([(centre[parent], y_top), (centre[parent], y), (centre[child], y),
                                      (centre[child], y_bottom)])
    for path in lineage_paths:
        draw.line(path, fill=ORANGE, width=3)


def _draw_legend(draw: ImageDraw.ImageDraw, layout: GridLayout) -> None:
    width = layout.width - 2 * MARGIN
    y = layout.height - MARGIN - LEGEND + 6
    lines = ("r: reward   w: normalised weight (bar, tick = 1/K)",
             "lines: genealogy, blue where resampled",
             "orange: output particle and its ancestors")
    for i, text in enumerate(lines):
        put_text(draw, (MARGIN, y + i * 14), text, 11, fill=GREY, width=width)
