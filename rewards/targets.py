"""Per-prompt targets of the layout and quantity rewards, validated when built.

Every check runs at construction time (before any sampling) and raises a
ValueError that names the offending value and what is allowed.

LayoutTarget: phrases [P] and boxes [P, 4] as normalised xyxy in [0, 1]
(x to the right, y downwards, origin top-left). Boxes may be given in pixels
together with the image size (width, height).

CountTarget: object phrases [K] and target counts [K] (finite, >= 0).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from ..psi_core.validation import choice, finite, non_negative

BOX_UNITS = ("auto", "normalized", "pixels")

#: limits of a JSON target (boxes, counts): a few hundred entries fit easily
MAX_JSON_CHARS = 20_000
MAX_JSON_DEPTH = 4


def parse_json_target(name: str, text: Any, example: str) -> list:
    """A non-empty JSON list typed into a target widget, parsed within limits: at most
    MAX_JSON_CHARS characters, nesting at most MAX_JSON_DEPTH deep (checked before parsing,
    so deep nesting cannot exhaust the parser's recursion), every number finite (NaN,
    Infinity and overflowing literals such as 1e400 refused). Every failure is a ValueError
    that starts with `name` and shows `example`."""
    if not isinstance(text, str):
        raise ValueError(f"{name} must be a JSON string like {example}; got {type(text).__name__}")
    if len(text) > MAX_JSON_CHARS:
        raise ValueError(f"{name} is {len(text)} characters long; at most {MAX_JSON_CHARS} are accepted")
    depth = _nesting_depth(text)
    if depth > MAX_JSON_DEPTH:
        raise ValueError(f"{name} is nested {depth} levels deep; at most {MAX_JSON_DEPTH} are accepted "
                         f"(expected e.g. {example})")

    def finite_float(literal: str) -> float:
        value = float(literal)
        if not math.isfinite(value):
            raise ValueError(f"{name} holds the number {literal[:40]}, which is not finite")
        return value

    def no_constant(literal: str):
        raise ValueError(f"{name} holds {literal}, which is not a finite number")

    try:
        data = json.loads(text, parse_float=finite_float, parse_constant=no_constant)
    except json.JSONDecodeError as err:
        raise ValueError(f"{name} is not valid JSON ({err}); expected e.g. {example}") from None
    if not isinstance(data, list) or not data:
        raise ValueError(f"{name} must be a non-empty JSON list like {example}; got {text.strip()[:80]!r}")
    return data


def _nesting_depth(text: str) -> int:
    """The deepest nesting of [ and { outside JSON strings."""
    depth = deepest = 0
    in_string = escaped = False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth -= 1
    return deepest


def clean_phrase(phrase: Any, what: str) -> str:
    """Strip and lowercase a phrase; reject non-strings, empty phrases and '.' (the separator)."""
    if not isinstance(phrase, str):
        raise ValueError(f"{what} must be a string, got {phrase!r} ({type(phrase).__name__})")
    cleaned = " ".join(phrase.strip().lower().split())
    cleaned = cleaned.rstrip(".").strip()
    if not cleaned:
        raise ValueError(f"{what} is empty ({phrase!r}); give a non-empty object phrase such as 'a cat'")
    if "." in cleaned:
        raise ValueError(
            f"{what} {phrase!r} contains '.', which Grounding DINO uses to separate phrases; "
            "remove it"
        )
    return cleaned


def _image_size(image_size: Any) -> tuple[float, float]:
    if not isinstance(image_size, Sequence) or len(image_size) != 2:
        raise ValueError(f"image_size must be (width, height), got {image_size!r}")
    width = finite("image_size width", image_size[0])
    height = finite("image_size height", image_size[1])
    if width <= 0 or height <= 0:
        raise ValueError(f"image_size must be positive (width, height), got {image_size!r}")
    return width, height


@dataclass(frozen=True)
class LayoutTarget:
    """Phrases and their target boxes.

    phrases: P cleaned phrases (lowercase; duplicates allowed: one box each)
    boxes: float32 tensor [P, 4], normalised xyxy, 0 <= x1 < x2 <= 1, 0 <= y1 < y2 <= 1
    """

    phrases: tuple[str, ...]
    boxes: torch.Tensor

    @classmethod
    def build(
        cls,
        phrases: Sequence[str],
        boxes: Sequence[Sequence[float]],
        units: str = "auto",
        image_size: Sequence[float] | None = None,
    ) -> LayoutTarget:
        """Validate and normalise. `units`: "normalized" ([0, 1]), "pixels" (needs
        image_size=(width, height)), or "auto" (pixels where any coordinate > 1)."""
        if isinstance(phrases, str) or not isinstance(phrases, Sequence) or len(phrases) == 0:
            raise ValueError(f"phrases must be a non-empty list of strings, got {phrases!r}")
        cleaned = tuple(clean_phrase(p, f"phrase {i}") for i, p in enumerate(phrases))
        if isinstance(boxes, torch.Tensor):
            boxes = boxes.tolist()
        if not isinstance(boxes, Sequence) or len(boxes) != len(cleaned):
            count = len(boxes) if isinstance(boxes, Sequence) else boxes
            raise ValueError(
                f"got {len(cleaned)} phrases but {count} boxes; give exactly one [x1, y1, x2, y2] "
                "box per phrase"
            )
        rows = []
        for i, box in enumerate(boxes):
            if not isinstance(box, Sequence) or len(box) != 4:
                raise ValueError(f"box {i} ({cleaned[i]!r}) must be [x1, y1, x2, y2], got {box!r}")
            rows.append([finite(f"box {i} ({cleaned[i]!r}) coordinate", v) for v in box])
        choice("units", units, BOX_UNITS)
        if units == "auto":
            units = "pixels" if any(v > 1.0 for row in rows for v in row) else "normalized"
        if units == "pixels":
            if image_size is None:
                raise ValueError(
                    "boxes are in pixel coordinates (a value > 1) but no image_size (width, height) "
                    "was given to normalise them"
                )
            width, height = _image_size(image_size)
            rows = [[r[0] / width, r[1] / height, r[2] / width, r[3] / height] for r in rows]
            limit = f"[0, {width:g}] x [0, {height:g}] pixels"
        else:
            limit = "[0, 1] (normalised)"
        eps = 1e-6
        for i, (x1, y1, x2, y2) in enumerate(rows):
            name = f"box {i} ({cleaned[i]!r}) {boxes[i]!r}"
            if min(x1, y1) < -eps or max(x2, y2) > 1 + eps:
                raise ValueError(f"{name} lies outside the image; coordinates must be within {limit}")
            if not (x1 < x2 and y1 < y2):
                raise ValueError(f"{name} is empty or flipped; need x1 < x2 and y1 < y2 (xyxy)")
        tensor = torch.tensor(rows, dtype=torch.float32).clamp(0.0, 1.0)
        return cls(phrases=cleaned, boxes=tensor)

    @classmethod
    def from_record(cls, record: Mapping[str, Any], image_size: Sequence[float] | None = None) -> LayoutTarget:
        """From the paper's layout JSON record {"phrases": [...], "bboxes": [[x1, y1, x2, y2], ...]}.

        The paper's boxes are in pixels of a 512 x 512 image; pass image_size where different.
        """
        if not isinstance(record, Mapping) or "phrases" not in record or "bboxes" not in record:
            raise ValueError("a layout record needs the keys 'phrases' and 'bboxes'")
        return cls.build(record["phrases"], record["bboxes"], "auto", image_size or (512, 512))

    @property
    def unique_phrases(self) -> tuple[str, ...]:
        """Distinct phrases in first-seen order (the text given to the detector)."""
        return tuple(dict.fromkeys(self.phrases))

    @property
    def phrase_index(self) -> torch.Tensor:
        """Long tensor [P]: for each target box, the index of its phrase in `unique_phrases`."""
        order = {p: i for i, p in enumerate(self.unique_phrases)}
        return torch.tensor([order[p] for p in self.phrases], dtype=torch.long)

    def describe(self) -> str:
        parts = [
            f"{p} @ [{', '.join(f'{v:.3f}' for v in box)}]"
            for p, box in zip(self.phrases, self.boxes.tolist())
        ]
        return "; ".join(parts)


@dataclass(frozen=True)
class CountTarget:
    """Objects to count and their target counts.

    objects: K distinct cleaned phrases
    counts: float32 tensor [K], finite, >= 0
    """

    objects: tuple[str, ...]
    counts: torch.Tensor

    @classmethod
    def build(cls, objects: Sequence[str], counts: Sequence[float]) -> CountTarget:
        if isinstance(objects, str) or not isinstance(objects, Sequence) or len(objects) == 0:
            raise ValueError(f"objects must be a non-empty list of strings, got {objects!r}")
        cleaned = tuple(clean_phrase(p, f"object {i}") for i, p in enumerate(objects))
        duplicates = sorted({p for p in cleaned if cleaned.count(p) > 1})
        if duplicates:
            raise ValueError(f"objects must be distinct; repeated: {duplicates}")
        if isinstance(counts, torch.Tensor):
            counts = counts.tolist()
        if isinstance(counts, (str, bytes)) or not isinstance(counts, Sequence) or len(counts) != len(cleaned):
            raise ValueError(
                f"got {len(cleaned)} objects but counts {counts!r}; give one count per object"
            )
        values = []
        for i, c in enumerate(counts):
            values.append(non_negative(f"count {i} ({cleaned[i]!r})", c))
        return cls(objects=cleaned, counts=torch.tensor(values, dtype=torch.float32))

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> CountTarget:
        """From the paper's quantity JSON record {"items": [{"prompt": str, "count": int}, ...]}."""
        items = record.get("items") if isinstance(record, Mapping) else None
        if not isinstance(items, Sequence) or not items or not all(isinstance(i, Mapping) for i in items):
            raise ValueError("a quantity record needs 'items': [{'prompt': ..., 'count': ...}, ...]")
        return cls.build([i.get("prompt") for i in items], [i.get("count") for i in items])

    def describe(self) -> str:
        return ", ".join(f"{c:g} x {p}" for p, c in zip(self.objects, self.counts.tolist()))
