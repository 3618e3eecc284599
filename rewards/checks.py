"""Validation of user-given numbers: ValueError naming the value and what is allowed."""

from __future__ import annotations

import math
from typing import Any


def finite(value: Any, name: str) -> float:
    """`value` as a finite float (bools rejected)."""
    if isinstance(value, bool):
        raise ValueError(f"{name} must be a number, got {value!r}")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(number):
        raise ValueError(f"{name} must be finite, got {value!r}")
    return number


def positive(value: Any, name: str) -> float:
    """`value` as a finite float > 0."""
    number = finite(value, name)
    if number <= 0:
        raise ValueError(f"{name} must be > 0, got {value!r}")
    return number


def non_negative(value: Any, name: str) -> float:
    """`value` as a finite float >= 0."""
    number = finite(value, name)
    if number < 0:
        raise ValueError(f"{name} must be >= 0, got {value!r}")
    return number


def in_range(value: Any, name: str, low: float, high: float) -> float:
    """`value` as a finite float in [low, high]."""
    number = finite(value, name)
    if not low <= number <= high:
        raise ValueError(f"{name} must be within [{low:g}, {high:g}], got {value!r}")
    return number


def prompt_text(prompt: Any) -> str:
    """A non-empty prompt string (stripped)."""
    if not isinstance(prompt, str) or not prompt.strip():
        raise ValueError(f"prompt must be a non-empty string, got {prompt!r}")
    return prompt.strip()
