"""Weight-free image statistics as rewards, all differentiable.

Each statistic maps images [B, 3, H, W] in [0, 1] to [B]:

  brightness    mean luma, luma = 0.299 R + 0.587 G + 0.114 B (Rec. 601)   in [0, 1]
  contrast      RMS contrast: standard deviation of luma over pixels        in [0, 0.5]
  saturation    mean HSV saturation (max - min) / max                        in [0, 1]
  colorfulness  Hasler & Suesstrunk (2003): std_rgyb + 0.3 mean_rgyb         >= 0
  sharpness     mean squared 4-neighbour Laplacian of luma (interior pixels) >= 0
  color         closeness to a target colour c: 1 - mean ||rgb - c||^2 / 3   in [0, 1]

A reward uses one statistic with a goal: "maximize" (score = stat), "minimize"
(score = -stat) or "target" (score = -|stat - target|).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

from .base import Reward
from ..psi_core.validation import choice, finite, in_range

_LUMA = (0.299, 0.587, 0.114)
_EPS = 1e-8
_SQRT_EPS = 1e-12  # keeps sqrt differentiable at 0; adds at most 1.3e-6 to colorfulness


def luma(images: torch.Tensor) -> torch.Tensor:
    """[B, 3, H, W] -> [B, H, W] Rec. 601 luma."""
    weights = torch.tensor(_LUMA, dtype=images.dtype, device=images.device).view(1, 3, 1, 1)
    return (images * weights).sum(dim=1)


def brightness(images: torch.Tensor) -> torch.Tensor:
    """Mean luma: [B, 3, H, W] -> [B]."""
    return luma(images).flatten(1).mean(dim=1)


def contrast(images: torch.Tensor) -> torch.Tensor:
    """RMS contrast (population std of luma): [B, 3, H, W] -> [B]."""
    return luma(images).flatten(1).std(dim=1, correction=0)


def saturation(images: torch.Tensor) -> torch.Tensor:
    """Mean HSV saturation: [B, 3, H, W] -> [B]."""
    high = images.amax(dim=1)
    low = images.amin(dim=1)
    return ((high - low) / (high + _EPS)).flatten(1).mean(dim=1)


def colorfulness(images: torch.Tensor) -> torch.Tensor:
    """Hasler & Suesstrunk colourfulness on [0, 1] RGB: [B, 3, H, W] -> [B]."""
    r, g, b = images.unbind(dim=1)
    rg = (r - g).flatten(1)
    yb = (0.5 * (r + g) - b).flatten(1)
    spread = torch.sqrt(rg.var(dim=1, correction=0) + yb.var(dim=1, correction=0) + _SQRT_EPS)
    centre = torch.sqrt(rg.mean(dim=1) ** 2 + yb.mean(dim=1) ** 2 + _SQRT_EPS)
    return spread + 0.3 * centre


def sharpness(images: torch.Tensor) -> torch.Tensor:
    """Mean squared Laplacian of luma over interior pixels: [B, 3, H, W] -> [B]."""
    kernel = torch.tensor(
        [[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]], dtype=images.dtype, device=images.device
    ).view(1, 1, 3, 3)
    lap = F.conv2d(luma(images)[:, None], kernel)
    return lap.square().flatten(1).mean(dim=1)


def color_closeness(images: torch.Tensor, color: Sequence[float]) -> torch.Tensor:
    """1 - mean squared RGB distance to `color` / 3: [B, 3, H, W] -> [B] in [0, 1]."""
    target = torch.as_tensor(color, dtype=images.dtype, device=images.device).view(1, 3, 1, 1)
    return 1.0 - (images - target).square().sum(dim=1).flatten(1).mean(dim=1) / 3.0


STATISTICS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "brightness": brightness,
    "contrast": contrast,
    "saturation": saturation,
    "colorfulness": colorfulness,
    "sharpness": sharpness,
}
STATISTIC_NAMES = (*STATISTICS, "color")
GOALS = ("maximize", "minimize", "target")


def parse_color(color: str | Sequence[float]) -> tuple[float, float, float]:
    """'#rrggbb' / 'rrggbb' or three numbers in [0, 1] -> (r, g, b) in [0, 1]."""
    if isinstance(color, str):
        text = color.strip().lstrip("#")
        if len(text) != 6 or any(ch not in "0123456789abcdefABCDEF" for ch in text):
            raise ValueError(f"color {color!r} must be '#rrggbb' hex or three numbers in [0, 1]")
        return tuple(int(text[i : i + 2], 16) / 255.0 for i in (0, 2, 4))  # type: ignore[return-value]
    if not isinstance(color, Sequence) or len(color) != 3:
        raise ValueError(f"color {color!r} must be '#rrggbb' hex or three numbers in [0, 1]")
    return tuple(in_range(f"color component {i}", v, 0.0, 1.0) for i, v in enumerate(color))  # type: ignore[return-value]


class ImageStatReward(Reward):
    """One image statistic with a goal: [B, 3, H, W] in [0, 1] -> [B]."""

    differentiable = True

    def __init__(
        self,
        statistic: str,
        goal: str = "maximize",
        target: float | None = None,
        color: str | Sequence[float] | None = None,
    ) -> None:
        choice("statistic", statistic, STATISTIC_NAMES)
        choice("goal", goal, GOALS)
        if goal == "target":
            if target is None:
                raise ValueError(f"goal 'target' needs a target value for {statistic}")
            self.target: float | None = finite("target", target)
        else:
            self.target = None
        if statistic == "color":
            if color is None:
                raise ValueError("statistic 'color' needs a color ('#rrggbb' or three numbers in [0, 1])")
            self.color: tuple[float, float, float] | None = parse_color(color)
        else:
            self.color = None
        self.statistic = statistic
        self.goal = goal
        self.name = statistic

    def value(self, images: torch.Tensor) -> torch.Tensor:
        """The raw statistic: [B, 3, H, W] -> [B]."""
        images = images.float()
        if self.color is not None:
            return color_closeness(images, self.color)
        return STATISTICS[self.statistic](images)

    def score(self, images: torch.Tensor) -> torch.Tensor:
        stat = self.value(images)
        if self.goal == "minimize":
            return -stat
        if self.goal == "target":
            return -(stat - self.target).abs()
        return stat

    def describe(self) -> str:
        what = self.statistic if self.color is None else f"closeness to colour {self.color}"
        if self.goal == "target":
            return f"{what}: target {self.target:g} (score -|value - target|)"
        return f"{what}: {self.goal}"
