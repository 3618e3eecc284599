"""Held-out scorers (prompt-image preference models), used to judge, not to steer.

* PickScore: transformers CLIPModel (ViT-H/14) + tokenizer;
      score = logit_scale.exp() * cos(image_embedding, text_embedding)     (differentiable)
* HPSv2: an open_clip ViT-H-14 with the HPS v2 weights; score = cos(image, text)
  (differentiable; needs the optional package open_clip_torch). Images are fitted the
  way HPS v2 scores them: longest side to 224, padded with black to a square.
* ImageReward: BLIP ViT + BLIP text encoder + MLP on transformers' BLIP classes, in
  rewards/image_reward.py (re-exported here); no optional package needed.

The optional package (open_clip_torch) is not a dependency of this pack. Where it is
missing, the HPSv2 loader raises RewardUnavailableError saying what is needed and why.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from .base import Reward
from .clip import ClipImageEmbedder, ImageEmbedFn, clip_text_embedding, unit
from ..psi_core.validation import prompt_text
from .loading import (
    RewardLoadError,
    WeightsSource,
    check_model_folder,
    freeze,
    from_pretrained_local,
    import_optional,
    load_state_dict,
    read_json,
)
from .preprocess import CLIP_MEAN, CLIP_STD, clip_style, letterbox, to_model

PICKSCORE_SOURCE = WeightsSource(
    what="PickScore model",
    expected="a transformers CLIPModel folder: config.json + model.safetensors",
    origin="Hugging Face repo yuvalkirstain/PickScore_v1",
)
PICKSCORE_PROCESSOR_SOURCE = WeightsSource(
    what="PickScore processor (tokenizer + preprocessor config)",
    expected="tokenizer files (tokenizer.json or vocab.json + merges.txt) [+ preprocessor_config.json]",
    origin="Hugging Face repo laion/CLIP-ViT-H-14-laion2B-s32B-b79K",
)
HPSV2_SOURCE = WeightsSource(
    what="HPS v2 weights",
    expected="HPS_v2.1_compressed.pt (or HPS_v2_compressed.pt): an open_clip ViT-H-14 state dict",
    origin="Hugging Face repo xswu/HPSv2",
)
OPEN_CLIP_HINT = (
    "Install open_clip_torch (an optional extra, not in this pack's requirements; on ComfyUI 0.3.64 "
    "with torch 2.13 it adds timm, ftfy and wcwidth and changes no installed package)."
)
FITS = ("crop", "pad")


class PromptSimilarityReward(Reward):
    """scale * cos(image embedding, fixed prompt embedding): [B, 3, H, W] in [0, 1] -> [B].

    vision: normalised pixels [B, 3, size, size] -> embeddings [B, D]
    text_embedding: [D] embedding of the prompt (computed once, when built)
    fit: "crop" (shortest side to size, centre crop: CLIP, PickScore) or "pad" (longest
         side to size, black padding: HPS v2)
    """

    differentiable = True

    def __init__(
        self,
        name: str,
        vision: ImageEmbedFn,
        text_embedding: torch.Tensor,
        prompt: str,
        scale: float = 1.0,
        modules: Sequence[torch.nn.Module] = (),
        image_size: int = 224,
        mean: Sequence[float] = CLIP_MEAN,
        std: Sequence[float] = CLIP_STD,
        fit: str = "crop",
    ) -> None:
        if fit not in FITS:
            raise ValueError(f"fit must be one of {FITS}, got {fit!r}")
        self.name = name
        self.vision = vision
        self.text_embedding = unit(text_embedding.detach().float().cpu().reshape(-1))
        self.prompt = prompt
        self.scale = float(scale)
        self._modules = list(modules)
        self.image_size = int(image_size)
        self.mean, self.std = tuple(mean), tuple(std)
        self.fit = fit

    def modules(self) -> list[torch.nn.Module]:
        return list(self._modules)

    def score(self, images: torch.Tensor) -> torch.Tensor:
        images = images.to(self.device, torch.float32)
        if self.fit == "pad":
            pixels = letterbox(images, self.image_size, self.mean, self.std)
        else:
            pixels = clip_style(images, self.image_size, self.mean, self.std)
        embeds = unit(self.vision(pixels).float())
        return self.scale * (embeds @ self.text_embedding.to(embeds.device))

    def describe(self) -> str:
        return f"{self.name} for prompt {self.prompt!r}"


def pickscore_reward(model: torch.nn.Module, tokenizer: Any, prompt: str,
                     image_size: int = 224, mean: Sequence[float] = CLIP_MEAN,
                     std: Sequence[float] = CLIP_STD) -> PromptSimilarityReward:
    """PickScore from a built transformers CLIPModel and its tokenizer."""
    prompt = prompt_text(prompt)
    freeze(model)
    max_length = min(77, int(model.config.text_config.max_position_embeddings))
    text = clip_text_embedding(model, tokenizer, prompt, max_length)
    scale = float(model.logit_scale.detach().exp())
    return PromptSimilarityReward(
        "pickscore", ClipImageEmbedder(model), text, prompt, scale, [model], image_size, mean, std
    )


def load_pickscore(
    model_folder: str | Path,
    prompt: str,
    processor_folder: str | Path | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
) -> PromptSimilarityReward:
    """PickScore from yuvalkirstain/PickScore_v1 (model) and the laion CLIP-ViT-H-14 processor
    folder (tokenizer, preprocessing); `processor_folder` defaults to `model_folder`."""
    from transformers import AutoTokenizer, CLIPModel

    model_folder = check_model_folder(model_folder, PICKSCORE_SOURCE)
    processor_folder = Path(processor_folder) if processor_folder is not None else model_folder
    has_tokenizer = (processor_folder / "tokenizer.json").is_file() or (
        (processor_folder / "vocab.json").is_file() and (processor_folder / "merges.txt").is_file()
    )
    if not has_tokenizer:
        raise RewardLoadError(PICKSCORE_PROCESSOR_SOURCE.message("no tokenizer files", processor_folder))
    model = from_pretrained_local(CLIPModel, model_folder, PICKSCORE_SOURCE)
    tokenizer = from_pretrained_local(AutoTokenizer, processor_folder, PICKSCORE_PROCESSOR_SOURCE)
    if device is not None or dtype is not None:
        model.to(device=device, dtype=dtype)
    prep = read_json(processor_folder / "preprocessor_config.json") or {}
    crop = prep.get("crop_size")
    size = crop.get("height", 224) if isinstance(crop, dict) else (crop or 224)
    return pickscore_reward(
        model, tokenizer, prompt, int(size),
        tuple(prep.get("image_mean", CLIP_MEAN)), tuple(prep.get("image_std", CLIP_STD)),
    )


class OpenClipImageEmbedder(torch.nn.Module):
    """Normalised pixels [B, 3, S, S] -> float32 image embeddings [B, D] of an open_clip model."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.model.encode_image(to_model(pixels, self.model)).float()


def _square_size(size: Any, what: str) -> int:
    """An int image size from an int or a square (h, w) pair."""
    if isinstance(size, (tuple, list)):
        if len(size) != 2 or int(size[0]) != int(size[1]):
            raise ValueError(f"{what} must be square, got image size {tuple(size)}")
        size = size[0]
    return int(size)


def load_hpsv2(checkpoint: str | Path, prompt: str, device: torch.device | str | None = None,
               architecture: str = "ViT-H-14") -> PromptSimilarityReward:
    """HPS v2: open_clip `architecture` (ViT-H-14 for the released weights) with the state dict
    in `checkpoint` (HPS_v2.1_compressed.pt; loaded weights-only); needs open_clip_torch.

    score = cos(image embedding, prompt embedding), the diagonal of HPS v2's
    `image_features @ text_features.T`, differentiable through `letterbox`.
    """
    open_clip = import_optional("open_clip", OPEN_CLIP_HINT, purpose="The HPSv2 scorer")
    prompt = prompt_text(prompt)
    known = open_clip.list_models()
    if architecture not in known:
        raise ValueError(
            f"architecture must be an open_clip model config name (HPS v2 uses 'ViT-H-14'; "
            f"{len(known)} are registered), got {architecture!r}"
        )
    state = load_state_dict(checkpoint, HPSV2_SOURCE)
    model = open_clip.create_model(architecture, pretrained=None)
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        first = str(err).strip().splitlines()
        detail = " ".join(line.strip() for line in first[:3])[:400]
        raise RewardLoadError(
            HPSV2_SOURCE.message(f"the state dict does not fit open_clip {architecture} ({detail})", checkpoint)
        ) from err
    freeze(model)
    if device is not None:
        model.to(device)
    cfg = open_clip.get_model_preprocess_cfg(model)
    size = _square_size(cfg.get("size", 224), f"open_clip {architecture}")
    mean, std = tuple(cfg.get("mean", CLIP_MEAN)), tuple(cfg.get("std", CLIP_STD))
    tokens = open_clip.get_tokenizer(architecture)([prompt]).to(next(model.parameters()).device)
    with torch.no_grad():
        text = model.encode_text(tokens)[0].float()
    return PromptSimilarityReward(
        "hpsv2", OpenClipImageEmbedder(model), text, prompt, 1.0, [model], size, mean, std, fit="pad"
    )
