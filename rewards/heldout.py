"""Held-out scorers (prompt-image preference models), used to judge, not to steer.

* PickScore: transformers CLIPModel (ViT-H/14) + tokenizer;
      score = logit_scale.exp() * cos(image_embedding, text_embedding)     (differentiable)
* HPSv2: an open_clip ViT-H/14 with the HPS v2 weights; score = cos(image, text)
  (differentiable; needs the optional package open_clip_torch)
* ImageReward: BLIP + MLP from the optional package `image-reward` (scored through
  the package's own PIL path, so not differentiable)

The optional packages are not dependencies of this pack: installing them may
downgrade the host's packages. Where they are missing the loaders raise
RewardUnavailableError saying what to install and why it is optional.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from .base import Reward
from .clip import ClipImageEmbedder, ImageEmbedFn, clip_text_embedding, unit
from .checks import prompt_text
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
from .preprocess import CLIP_MEAN, CLIP_STD, clip_style

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
IMAGE_REWARD_SOURCE = WeightsSource(
    what="ImageReward weights",
    expected="ImageReward.pt and med_config.json",
    origin="Hugging Face repo THUDM/ImageReward",
)
OPTIONAL_HINT = "install {pkg} (optional extra; it may downgrade packages the host relies on)"


class PromptSimilarityReward(Reward):
    """scale * cos(image embedding, fixed prompt embedding): [B, 3, H, W] in [0, 1] -> [B].

    vision: normalised pixels [B, 3, size, size] -> embeddings [B, D]
    text_embedding: [D] embedding of the prompt (computed once, when built)
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
    ) -> None:
        self.name = name
        self.vision = vision
        self.text_embedding = unit(text_embedding.detach().float().cpu().reshape(-1))
        self.prompt = prompt
        self.scale = float(scale)
        self._modules = list(modules)
        self.image_size = int(image_size)
        self.mean, self.std = tuple(mean), tuple(std)

    def modules(self) -> list[torch.nn.Module]:
        return list(self._modules)

    def score(self, images: torch.Tensor) -> torch.Tensor:
        pixels = clip_style(images.to(self.device, torch.float32), self.image_size, self.mean, self.std)
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


def load_hpsv2(checkpoint: str | Path, prompt: str,
               device: torch.device | str | None = None) -> PromptSimilarityReward:
    """HPS v2 (open_clip ViT-H-14 + HPS weights from `checkpoint`); needs open_clip_torch."""
    open_clip = import_optional(
        "open_clip", OPTIONAL_HINT.format(pkg="open_clip_torch"), purpose="The HPSv2 scorer"
    )
    prompt = prompt_text(prompt)
    state = load_state_dict(checkpoint, HPSV2_SOURCE)
    model = open_clip.create_model("ViT-H-14", pretrained=None)
    model.load_state_dict(state)
    freeze(model)
    if device is not None:
        model.to(device)
    tokens = open_clip.get_tokenizer("ViT-H-14")([prompt]).to(next(model.parameters()).device)
    with torch.no_grad():
        text = model.encode_text(tokens)[0]
    return PromptSimilarityReward("hpsv2", model.encode_image, text, prompt, 1.0, [model])


class PackageScorer(Reward):
    """Wraps a package's own `score(prompt, PIL image) -> float`, image by image (no gradient)."""

    differentiable = False

    def __init__(self, name: str, model: torch.nn.Module, prompt: str) -> None:
        self.name = name
        self.model = model
        self.prompt = prompt

    def modules(self) -> list[torch.nn.Module]:
        return [self.model]

    @torch.no_grad()
    def score(self, images: torch.Tensor) -> torch.Tensor:
        from PIL import Image

        pixels = (images.detach().float().clamp(0, 1) * 255).round().to(torch.uint8)
        pil = [Image.fromarray(p.permute(1, 2, 0).cpu().numpy()) for p in pixels]
        values = [float(self.model.score(self.prompt, image)) for image in pil]
        return torch.tensor(values, dtype=torch.float32, device=images.device)

    def describe(self) -> str:
        return f"{self.name} for prompt {self.prompt!r} (not differentiable)"


def load_image_reward(checkpoint: str | Path, med_config: str | Path, prompt: str,
                      device: torch.device | str = "cpu") -> PackageScorer:
    """ImageReward from `checkpoint` (ImageReward.pt) and `med_config` (med_config.json);
    needs the optional package image-reward (import name ImageReward)."""
    import_optional(
        "ImageReward", OPTIONAL_HINT.format(pkg="image-reward") + " (it pins old transformers and timm)",
        purpose="The ImageReward scorer",
    )
    prompt = prompt_text(prompt)
    state = load_state_dict(checkpoint, IMAGE_REWARD_SOURCE)
    if not Path(med_config).is_file():
        raise RewardLoadError(IMAGE_REWARD_SOURCE.message("med_config.json not found", med_config))
    network = importlib.import_module("ImageReward.ImageReward").ImageReward
    model = network(med_config=str(med_config), device=device)
    model.load_state_dict(state, strict=False)
    return PackageScorer("imagereward", freeze(model.to(device)), prompt)
