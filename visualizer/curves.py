"""Run diagnostics as one Pillow image of four panels (no plotting library):

    ESS (and tempering λ)     | reward over SMC steps (mean, max, min-max band)
    MCMC acceptance (running) | MCMC reward per chain

SMC panels put the starting particles at x = 0 and the particles after step i at
x = i + 1. Step i's resampling decision is made at x = i on the ESS there (red dot and
dashed line where it resampled: the ESS jumps back to K), its move gives the ESS at
x = i + 1. Where the run tempered its twist, λ (the target λ·r̂/α at each x, rising to 1)
is drawn on the same axis scaled by K. MCMC panels shade the burn-in iterations.
Image size: (2 * panel_w, TITLE_H + 2 * panel_h).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import accumulate

import torch
from PIL import Image, ImageDraw

from .drawing import (
    BLACK,
    BLUE,
    FAINT,
    GREEN,
    GREY,
    LIGHT_BLUE,
    LIGHT_GREY,
    PALETTE,
    RED,
    WHITE,
    dashed_line,
    fmt,
    nice_ticks,
    padded_range,
    put_text,
    text_width,
)

TITLE_H = 28
PANEL_SIZE = (480, 300)
_LEFT, _RIGHT, _TOP, _BOTTOM = 54, 14, 42, 40
_BURN_IN = (228, 228, 228)


@dataclass(frozen=True)
class _Axes:
    """A plot box inside a panel and the data ranges it shows."""

    draw: ImageDraw.ImageDraw
    box: tuple[int, int, int, int]       # left, top, right, bottom of the plot area
    x_range: tuple[float, float]
    y_range: tuple[float, float]

    def px(self, x: float, y: float) -> tuple[float, float]:
        left, top, right, bottom = self.box
        (x0, x1), (y0, y1) = self.x_range, self.y_range
        return (left + (x - x0) / (x1 - x0) * (right - left),
                bottom - (y - y0) / (y1 - y0) * (bottom - top))

    def frame(self, x_label: str, integer_x: bool = True) -> None:
        left, top, right, bottom = self.box
        draw = self.draw
        for y in nice_ticks(*self.y_range):
            _, py = self.px(self.x_range[0], y)
            draw.line([(left, py), (right, py)], fill=FAINT)
            draw.line([(left - 4, py), (left, py)], fill=BLACK)
            put_text(draw, (left - 6, py), fmt(y), 10, anchor="rm")
        for x in nice_ticks(*self.x_range, count=6, integer=integer_x):
            px, _ = self.px(x, self.y_range[0])
            draw.line([(px, bottom), (px, bottom + 4)], fill=BLACK)
            put_text(draw, (px, bottom + 6), fmt(x), 10, anchor="ma")
        draw.rectangle([left, top, right, bottom], outline=BLACK)
        put_text(draw, ((left + right) / 2, bottom + 22), x_label, 11, fill=GREY, anchor="ma")

    def polyline(self, xs: list[float], ys: list[float], fill, width: int = 1, dots: bool = False) -> None:
        """Line through the finite points (broken at non-finite values), optionally with dots."""
        segment: list[tuple[float, float]] = []
        for x, y in zip(xs, ys):
            if y is None or not math.isfinite(y):
                self._stroke(segment, fill, width)
                segment = []
                continue
            segment.append(self.px(x, y))
        self._stroke(segment, fill, width)
        if dots:
            for x, y in zip(xs, ys):
                if y is not None and math.isfinite(y):
                    cx, cy = self.px(x, y)
                    self.draw.ellipse([cx - 2, cy - 2, cx + 2, cy + 2], fill=fill)

    def _stroke(self, points: list[tuple[float, float]], fill, width: int) -> None:
        if len(points) > 1:
            self.draw.line(points, fill=fill, width=width, joint="curve")
        elif len(points) == 1:
            x, y = points[0]
            self.draw.ellipse([x - 1, y - 1, x + 1, y + 1], fill=fill)

    def band(self, xs: list[float], lows: list[float], highs: list[float], fill) -> None:
        points = [(x, lo, hi) for x, lo, hi in zip(xs, lows, highs) if math.isfinite(lo) and math.isfinite(hi)]
        if len(points) > 1:
            outline = [self.px(x, hi) for x, _, hi in points] + [self.px(x, lo) for x, lo, _ in reversed(points)]
            self.draw.polygon(outline, fill=fill)

    def vertical(self, x: float, fill, dashed: bool = True) -> None:
        top, bottom = self.box[1], self.box[3]
        px, _ = self.px(x, self.y_range[0])
        if dashed:
            dashed_line(self.draw, (px, bottom), (px, top), fill)
        else:
            self.draw.line([(px, bottom), (px, top)], fill=fill)

    def shade(self, x0: float, x1: float, fill) -> None:
        left, _ = self.px(x0, self.y_range[0])
        right, _ = self.px(x1, self.y_range[0])
        self.draw.rectangle([left, self.box[1], right, self.box[3]], fill=fill)


def render_curves(trace, panel_size: tuple[int, int] = PANEL_SIZE, title: str | None = None) -> Image.Image:
    """Four diagnostic panels of `trace` (a psi_core Trace; not modified) as an RGB Pillow
    image of size (2 * panel_w, TITLE_H + 2 * panel_h). Panels without data say so."""
    pw, ph = _panel_size(panel_size)
    canvas = Image.new("RGB", (2 * pw, TITLE_H + 2 * ph), WHITE)
    draw = ImageDraw.Draw(canvas)
    if title is None:
        title = f"Psi-Sampler diagnostics | {trace.method} | alpha {fmt(trace.alpha)}"
        if trace.alpha_mcmc is not None:
            title += f" | alpha_mcmc {fmt(trace.alpha_mcmc)}"
        if trace.nfe:
            title += " | " + ", ".join(f"{k} {v}" for k, v in trace.nfe.items())
    put_text(draw, (10, 7), title, 13, width=2 * pw - 20)
    origins = [(0, TITLE_H), (pw, TITLE_H), (0, TITLE_H + ph), (pw, TITLE_H + ph)]
    for (ox, oy), panel in zip(origins, (_ess_panel, _reward_panel, _acceptance_panel, _mcmc_reward_panel)):
        panel(draw, (ox, oy, ox + pw, oy + ph), trace)
    draw.line([(pw, TITLE_H), (pw, TITLE_H + 2 * ph)], fill=LIGHT_GREY)
    draw.line([(0, TITLE_H + ph), (2 * pw, TITLE_H + ph)], fill=LIGHT_GREY)
    return canvas


def _panel_size(panel_size) -> tuple[int, int]:
    try:
        pw, ph = (int(v) for v in panel_size)
    except (TypeError, ValueError):
        raise ValueError(f"panel_size must be (width, height); got {panel_size!r}") from None
    if pw < 240 or ph < 160:
        raise ValueError(f"panel_size must be at least (240, 160); got {panel_size!r}")
    return pw, ph


def _axes(draw, panel, x_range, y_range) -> _Axes:
    left, top, right, bottom = panel
    return _Axes(draw, (left + _LEFT, top + _TOP, right - _RIGHT, bottom - _BOTTOM), x_range, y_range)


def _heading(draw, panel, title: str, legend: list[tuple[str, tuple[int, int, int], str]]) -> None:
    """Panel title and a one-line legend of (label, colour, mark); mark: 'line', 'dash', 'box' or 'none'."""
    left, top, right, _ = panel
    put_text(draw, (left + 10, top + 6), title, 12, width=right - left - 20)
    x, y = left + _LEFT, top + 24
    for label, colour, mark in legend:
        if x > right - _RIGHT - 40:
            break
        if mark != "none":
            if mark == "box":
                draw.rectangle([x, y + 1, x + 14, y + 9], fill=colour)
            elif mark == "dash":
                dashed_line(draw, (x, y + 5), (x + 16, y + 5), colour, dash=4, gap=3)
            else:
                draw.line([(x, y + 5), (x + 16, y + 5)], fill=colour, width=2)
            x += 20
        put_text(draw, (x, y), label, 10, fill=colour if mark == "none" else GREY, width=right - _RIGHT - x)
        x += text_width(draw, label, 10) + 12


def _empty(draw, panel, title: str, message: str) -> None:
    left, top, right, bottom = panel
    put_text(draw, (left + 10, top + 6), title, 12, width=right - left - 20)
    put_text(draw, ((left + right) / 2, (top + bottom) / 2), message, 11, fill=GREY, anchor="mm")


def _floats(t: torch.Tensor | None) -> list[float]:
    return [] if t is None else [float(v) for v in t.detach().double().cpu().reshape(-1).tolist()]


def _ess_panel(draw, panel, trace) -> None:
    """ESS as a sawtooth: the value before step i's resampling decision at x = i (red marker where
    it resampled, after which the ESS is K), the value after the move at x = i + 1; with a
    tempered twist, λ·K at x = 0 (λ_0) and x = i + 1 (after step i)."""
    title = "ESS over SMC steps"
    if not trace.smc:
        _empty(draw, panel, title, "no SMC steps in this trace")
        return
    k = trace.smc[0].ancestors.numel()
    ax = _axes(draw, panel, (0.0, float(len(trace.smc))), (0.0, k * 1.05))
    lambdas = trace.lambdas
    tempered = any(lam < 1.0 for lam in lambdas)
    legend = [("ESS", BLUE, "line"), ("resampled (ESS reset to K)", RED, "dash")]
    _heading(draw, panel, f"{title} (K = {k})", legend + ([("λ × K", GREEN, "line")] if tempered else []))
    ax.frame("SMC step (0 = start)")
    if tempered:
        ax.polyline([float(i) for i in range(len(lambdas))], [lam * k for lam in lambdas], GREEN, 2)
    xs, ys = [], []
    for r in trace.smc:
        xs.append(float(r.step))
        ys.append(r.ess)
        if r.resampled:
            ax.vertical(r.step, RED)
            xs.append(float(r.step))
            ys.append(float(k))
        xs.append(r.step + 1.0)
        ys.append(r.ess_after)
    ax.polyline(xs, ys, BLUE, 2)
    for r in trace.smc:
        cx, cy = ax.px(r.step, r.ess)
        colour = RED if r.resampled else BLUE
        draw.ellipse([cx - 3, cy - 3, cx + 3, cy + 3], fill=colour)
    last = trace.smc[-1]
    cx, cy = ax.px(last.step + 1, last.ess_after)
    draw.ellipse([cx - 3, cy - 3, cx + 3, cy + 3], fill=BLUE)


def _reward_panel(draw, panel, trace) -> None:
    title = "Reward over SMC steps"
    if not trace.smc:
        _empty(draw, panel, title, "no SMC steps in this trace")
        return
    columns = ([(0, _floats(trace.initial_reward))] if trace.initial_reward is not None else [])
    columns += [(r.step + 1, _floats(r.reward)) for r in trace.smc]
    xs, lows, means, highs = [], [], [], []
    for x, values in columns:
        finite = [v for v in values if math.isfinite(v)]
        xs.append(float(x))
        lows.append(min(finite) if finite else math.nan)
        highs.append(max(finite) if finite else math.nan)
        means.append(sum(finite) / len(finite) if finite else math.nan)
    ax = _axes(draw, panel, (0.0, float(max(len(trace.smc), 1))), padded_range(lows + highs))
    _heading(draw, panel, title, [("mean", BLUE, "line"), ("max", GREEN, "line"), ("min-max", LIGHT_BLUE, "box"),
                                  ("resampled", RED, "dash")])
    ax.band(xs, lows, highs, LIGHT_BLUE)
    ax.frame("SMC step (0 = start)")
    for r in trace.smc:
        if r.resampled:
            ax.vertical(r.step, RED)
    ax.polyline(xs, highs, GREEN, 1)
    ax.polyline(xs, means, BLUE, 2, dots=True)


def _mcmc_rows(draw, panel, trace, title: str, field: str) -> list[list[float]] | None:
    """[T][C] floats of an MCMC record field, or None (and a note in the panel) without MCMC."""
    if not trace.mcmc:
        _empty(draw, panel, title, f"no MCMC stage (initial particles: {trace.method})")
        return None
    return [_floats(getattr(r, field).float() if field == "accepted" else getattr(r, field)) for r in trace.mcmc]


def _mcmc_frame(ax: _Axes, trace) -> None:
    """Burn-in shading (iterations 1..B) and the axes of an MCMC panel."""
    burn = sum(1 for r in trace.mcmc if r.burn_in)
    if burn:
        ax.shade(0.5, burn + 0.5, _BURN_IN)
        left, bottom = ax.px(0.5, ax.y_range[0])
        put_text(ax.draw, (left + 4, bottom - 4), "burn-in", 10, fill=GREY, anchor="ld")
    ax.frame("MCMC iteration")


def _step_sizes(trace) -> str:
    sizes = [r.step_size for r in trace.mcmc]
    lo, hi = min(sizes), max(sizes)
    return f"step {fmt(lo)}" if math.isclose(lo, hi) else f"step {fmt(sizes[0])} -> {fmt(sizes[-1])}"


def _chain_lines(draw, panel, trace, heading: str, legend, per_chain: list[list[float]], y_range) -> _Axes:
    """An MCMC panel: burn-in shading, axes over iterations 1..T, one coloured line per chain."""
    iterations = list(range(1, len(per_chain[0]) + 1))
    ax = _axes(draw, panel, (0.5, len(iterations) + 0.5), y_range)
    _heading(draw, panel, heading, legend)
    _mcmc_frame(ax, trace)
    for c, values in enumerate(per_chain):
        ax.polyline(iterations, values, PALETTE[c % len(PALETTE)], 1)
    return ax


def _acceptance_panel(draw, panel, trace) -> None:
    title = "MCMC acceptance (running mean)"
    accepted = _mcmc_rows(draw, panel, trace, title, "accepted")
    if accepted is None:
        return
    chains = len(accepted[0])
    running = [[total / t for t, total in enumerate(accumulate(col), start=1)] for col in zip(*accepted)]
    legend = [("all chains", BLACK, "line"), ("per chain", PALETTE[0], "line"), ("burn-in", _BURN_IN, "box"),
              (f"mean after burn-in {fmt(trace.acceptance, 2)}", BLACK, "none")]
    ax = _chain_lines(draw, panel, trace, f"{title} | {chains} chains | {_step_sizes(trace)}", legend, running,
                      (0.0, 1.05))
    ax.polyline(list(range(1, len(accepted) + 1)), [sum(col) / chains for col in zip(*running)], BLACK, 2)


def _mcmc_reward_panel(draw, panel, trace) -> None:
    title = "MCMC reward per chain"
    rewards = _mcmc_rows(draw, panel, trace, title, "reward")
    if rewards is None:
        return
    per_chain = [list(col) for col in zip(*rewards)]
    _chain_lines(draw, panel, trace, f"{title} ({len(per_chain)} chains)",
                 [("one line per chain", PALETTE[0], "line"), ("burn-in", _BURN_IN, "box")], per_chain,
                 padded_range([v for row in rewards for v in row]))
