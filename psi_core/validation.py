"""Input checks shared by every public entry of the core and of the rewards.

Every check takes `(name, value, ...)`, returns the cleaned value and raises, naming
the parameter, the value received and what is allowed, so a node can show the
message as it is:

    TypeError   the value has the wrong type (a string where a number belongs, a bool);
    ValueError  the type is right but the value is outside what is allowed.

All checks run before any model evaluation.
"""

from __future__ import annotations

import math
from typing import Iterable

import torch


def finite(name: str, value: float) -> float:
    """A finite number (weights, targets, coordinates)."""
    number = _real(name, value)
    if not math.isfinite(number):
        raise ValueError(f"{name} must be a finite number; got {value!r}")
    return number


def positive_finite(name: str, value: float) -> float:
    """A finite number > 0 (α, temperatures, scales)."""
    number = _real(name, value)
    if not math.isfinite(number) or number <= 0:
        raise ValueError(f"{name} must be a finite number > 0; got {value!r}")
    return number


def non_negative(name: str, value: float) -> float:
    """A finite number >= 0 (counts, weights of a penalty)."""
    number = _real(name, value)
    if not math.isfinite(number) or number < 0:
        raise ValueError(f"{name} must be a finite number >= 0; got {value!r}")
    return number


def in_range(name: str, value: float, low: float, high: float, *, low_open: bool = False,
             high_open: bool = False) -> float:
    """A finite number in [low, high] (brackets opened as asked)."""
    number = _real(name, value)
    too_low = number <= low if low_open else number < low
    too_high = number >= high if high_open else number > high
    if not math.isfinite(number) or too_low or too_high:
        left = "(" if low_open else "["
        right = ")" if high_open else "]"
        raise ValueError(f"{name} must be in {left}{low}, {high}{right}; got {value!r}")
    return number


def integer_at_least(name: str, value: int, minimum: int) -> int:
    """A Python int >= minimum (bools refused: they are not counts)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an integer >= {minimum}; got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}; got {value}")
    return value


def choice(name: str, value: str, allowed: Iterable[str]) -> str:
    """One of the allowed strings."""
    allowed = list(allowed)
    if value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(allowed)}; got {value!r}")
    return value


def non_empty_text(name: str, value: str) -> str:
    """A string with something besides white space, stripped."""
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a non-empty string; got {value!r}")
    if not value.strip():
        raise ValueError(f"{name} must be a non-empty string; got {value!r}")
    return value.strip()


def prompt_text(value: str) -> str:
    """The generation prompt a prompt-conditioned scorer compares images with."""
    return non_empty_text("prompt", value)


def sigmas(values: torch.Tensor) -> torch.Tensor:
    """A 1-D schedule σ_0 > σ_1 > … > σ_N = 0 with at least one step."""
    if not isinstance(values, torch.Tensor):
        raise TypeError(f"sigmas must be a 1-D torch.Tensor; got {type(values).__name__}")
    if values.ndim != 1 or values.numel() < 2:
        raise ValueError(f"sigmas must be 1-D with at least 2 entries; got shape {tuple(values.shape)}")
    s = values.detach().to("cpu", torch.float64)
    if not torch.isfinite(s).all():
        raise ValueError(f"sigmas must be finite; got {s.tolist()}")
    if s[-1] != 0:
        raise ValueError(f"sigmas must end at 0; the last is {float(s[-1])}")
    if not (s[1:] < s[:-1]).all():
        raise ValueError(f"sigmas must be strictly decreasing; got {s.tolist()}")
    return values


def _real(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        if isinstance(value, torch.Tensor) and value.numel() == 1:
            return float(value)
        raise TypeError(f"{name} must be a number; got {value!r}")
    return float(value)
