"""Grounding DINO as a differentiable phrase detector, plus the box maths.

A detector turns images and a fixed list of phrases into, per image and query,
one logit per phrase and one box:

    images [B, 3, H, W] in [0, 1]  ->  Detections(phrase_logits [B, Q, P], boxes [B, Q, 4])

phrase_logits are the raw (pre-sigmoid) token logits, max over each phrase's
tokens (Grounding DINO's own post-processing also takes the max over tokens).
Boxes are normalised xyxy in [0, 1] of the input image (the resize keeps the
aspect ratio and does not crop, so normalised coordinates carry over).

The text is "phrase one. phrase two." (lowercase, '.'-separated, as Grounding DINO
was trained), tokenised phrase by phrase so each phrase's token positions are
known exactly.

This module holds the detector contract (`PhraseDetector`, `Detections`, the phrase
tokenisation and box maths), `DetectorReward`, and the transformers backend
(`GroundingDinoForObjectDetection`, transformers 4.57 and 5.x). The optional
`groundingdino-py` backend builds on this contract in `grounding_py` (this module
never imports it).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch

from .base import Reward
from .loading import (
    WeightsSource,
    check_model_folder,
    freeze,
    from_pretrained_local,
    read_json,
)
from .preprocess import IMAGENET_MEAN, IMAGENET_STD, detector_style, to_model

GROUNDING_DINO_SOURCE = WeightsSource(
    what="Grounding DINO (transformers format)",
    expected="a transformers folder: config.json + model.safetensors + tokenizer files "
    "(vocab.txt or tokenizer.json) [+ preprocessor_config.json]",
    origin="Hugging Face repo IDEA-Research/grounding-dino-base (the Psi-Sampler authors' detector)",
)


# ---------------------------------------------------------------------------
# box maths (all boxes xyxy unless named otherwise)


def cxcywh_to_xyxy(boxes: torch.Tensor) -> torch.Tensor:
    """[..., 4] (cx, cy, w, h) -> [..., 4] (x1, y1, x2, y2)."""
    cx, cy, w, h = boxes.unbind(-1)
    return torch.stack([cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w, cy + 0.5 * h], dim=-1)


def box_iou(a: torch.Tensor, b: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """Elementwise IoU of xyxy boxes with broadcasting: [..., 4], [..., 4] -> [...].

    Degenerate (flipped) boxes count as zero area; differentiable almost everywhere.
    """
    a, b = torch.broadcast_tensors(a, b)
    inter_w = (torch.minimum(a[..., 2], b[..., 2]) - torch.maximum(a[..., 0], b[..., 0])).clamp_min(0)
    inter_h = (torch.minimum(a[..., 3], b[..., 3]) - torch.maximum(a[..., 1], b[..., 1])).clamp_min(0)
    inter = inter_w * inter_h
    area_a = (a[..., 2] - a[..., 0]).clamp_min(0) * (a[..., 3] - a[..., 1]).clamp_min(0)
    area_b = (b[..., 2] - b[..., 0]).clamp_min(0) * (b[..., 3] - b[..., 1]).clamp_min(0)
    return inter / (area_a + area_b - inter + eps)


def pairwise_iou(pred: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """pred [B, Q, 4], targets [N, 4] -> IoU [B, Q, N]."""
    return box_iou(pred[:, :, None, :], targets.to(pred)[None, None, :, :])


# ---------------------------------------------------------------------------
# text side


@dataclass(frozen=True)
class PhraseText:
    """Tokenised phrase prompt.

    phrases: P phrases
    input_ids: long [1, T] ([CLS] p1 . p2 . ... [SEP])
    token_mask: bool [P, T], True at the tokens of each phrase
    """

    phrases: tuple[str, ...]
    input_ids: torch.Tensor
    token_mask: torch.Tensor


def tokenize_phrases(tokenizer: Any, phrases: tuple[str, ...], max_len: int) -> PhraseText:
    """Build "p1. p2." token by token so every phrase's token positions are exact.

    Raises ValueError where a phrase has no tokens or the text exceeds `max_len` tokens.
    """
    if not phrases:
        raise ValueError("at least one phrase is needed")
    dot = tokenizer(".", add_special_tokens=False)["input_ids"]
    ids: list[int] = [tokenizer.cls_token_id]
    spans: list[tuple[int, int]] = []
    for phrase in phrases:
        tokens = tokenizer(phrase, add_special_tokens=False)["input_ids"]
        if not tokens:
            raise ValueError(f"phrase {phrase!r} has no tokens for the detector's tokenizer")
        spans.append((len(ids), len(ids) + len(tokens)))
        ids += list(tokens) + list(dot)
    ids.append(tokenizer.sep_token_id)
    if len(ids) > max_len:
        raise ValueError(
            f"the phrases {list(phrases)} take {len(ids)} tokens; the detector reads at most "
            f"{max_len}. Use fewer or shorter phrases"
        )
    mask = torch.zeros(len(phrases), len(ids), dtype=torch.bool)
    for i, (start, stop) in enumerate(spans):
        mask[i, start:stop] = True
    return PhraseText(tuple(phrases), torch.tensor([ids], dtype=torch.long), mask)


def phrase_logits(token_logits: torch.Tensor, token_mask: torch.Tensor) -> torch.Tensor:
    """Max over each phrase's tokens: [B, Q, >=T] logits, bool [P, T] -> [B, Q, P]."""
    logits = token_logits[..., : token_mask.shape[1]]
    masked = logits[:, :, None, :].masked_fill(~token_mask.to(logits.device), float("-inf"))
    return masked.amax(dim=-1)


# ---------------------------------------------------------------------------
# detectors


@dataclass(frozen=True)
class Detections:
    """phrase_logits [B, Q, P] raw logits; boxes [B, Q, 4] normalised xyxy."""

    phrase_logits: torch.Tensor
    boxes: torch.Tensor


class PhraseDetector(Protocol):
    """What the layout and quantity rewards need from a detector."""

    def encode(self, phrases: tuple[str, ...]) -> PhraseText: ...

    def detect(self, images: torch.Tensor, text: PhraseText) -> Detections: ...

    def modules(self) -> list[torch.nn.Module]: ...

    def describe(self) -> str: ...


class TransformersGroundingDino:
    """transformers GroundingDinoForObjectDetection + its tokenizer, own image preprocessing.

    Images are resized (bilinear, antialiased) so the shortest side is
    `shortest` and the longest at most `longest`, then ImageNet-normalised.
    """

    backend = "transformers"

    def __init__(
        self,
        model: torch.nn.Module,
        tokenizer: Any,
        shortest: int = 800,
        longest: int = 1333,
        mean: tuple[float, ...] = IMAGENET_MEAN,
        std: tuple[float, ...] = IMAGENET_STD,
    ) -> None:
        self.model = freeze(model)
        self.tokenizer = tokenizer
        self.shortest, self.longest = int(shortest), int(longest)
        self.mean, self.std = tuple(mean), tuple(std)
        self.max_text_len = int(getattr(model.config, "max_text_len", 256))

    def modules(self) -> list[torch.nn.Module]:
        return [self.model]

    def encode(self, phrases: tuple[str, ...]) -> PhraseText:
        return tokenize_phrases(self.tokenizer, phrases, self.max_text_len)

    def detect(self, images: torch.Tensor, text: PhraseText) -> Detections:
        """images [B, 3, H, W] in [0, 1] -> Detections for the phrases of `text`."""
        pixels = to_model(
            detector_style(images.float(), self.shortest, self.longest, self.mean, self.std), self.model
        )
        batch = pixels.shape[0]
        ids = text.input_ids.to(pixels.device).expand(batch, -1)
        out = self.model(
            pixel_values=pixels,
            input_ids=ids,
            attention_mask=torch.ones_like(ids),
            token_type_ids=torch.zeros_like(ids),
            return_dict=True,
        )
        logits = phrase_logits(out.logits.float(), text.token_mask)
        return Detections(logits, cxcywh_to_xyxy(out.pred_boxes.float()))

    def describe(self) -> str:
        return f"Grounding DINO (transformers, shortest side {self.shortest}px)"


def load_grounding_dino(
    folder: str | Path,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
    shortest: int | None = None,
    longest: int | None = None,
) -> TransformersGroundingDino:
    """Grounding DINO from a transformers folder (IDEA-Research/grounding-dino-base layout).

    The resize defaults come from the folder's preprocessor_config.json where present
    (shortest 800 / longest 1333 otherwise).
    """
    from transformers import AutoTokenizer, GroundingDinoForObjectDetection

    folder = check_model_folder(folder, GROUNDING_DINO_SOURCE, need=("vocab.txt|tokenizer.json",))
    model = from_pretrained_local(GroundingDinoForObjectDetection, folder, GROUNDING_DINO_SOURCE)
    tokenizer = from_pretrained_local(AutoTokenizer, folder, GROUNDING_DINO_SOURCE)
    if device is not None or dtype is not None:
        model.to(device=device, dtype=dtype)
    prep = read_json(folder / "preprocessor_config.json") or {}
    size = prep.get("size") if isinstance(prep.get("size"), dict) else {}
    return TransformersGroundingDino(
        model,
        tokenizer,
        shortest=shortest or int(size.get("shortest_edge", 800)),
        longest=longest or int(size.get("longest_edge", 1333)),
        mean=tuple(prep.get("image_mean", IMAGENET_MEAN)),
        std=tuple(prep.get("image_std", IMAGENET_STD)),
    )


class DetectorReward(Reward):
    """Base of the rewards that read a phrase detector (layout, quantity).

    The phrases are tokenised once, at construction; `detect` runs the detector on
    images [B, 3, H, W] moved to the detector's device.
    """

    def __init__(self, detector: PhraseDetector, phrases: tuple[str, ...]) -> None:
        for method in ("encode", "detect", "modules"):
            if not callable(getattr(detector, method, None)):
                raise TypeError(
                    f"detector must provide encode/detect/modules (e.g. load_grounding_dino(...)); "
                    f"{type(detector).__name__} has no {method}()"
                )
        self.detector = detector
        self.text = detector.encode(tuple(phrases))

    def modules(self) -> list[torch.nn.Module]:
        return list(self.detector.modules())

    def detect(self, images: torch.Tensor) -> Detections:
        return self.detector.detect(images.to(self.device), self.text)
