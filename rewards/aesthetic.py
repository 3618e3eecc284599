"""Aesthetic reward (the paper's): LAION improved aesthetic predictor on CLIP ViT-L/14.

score = head(unit(vision(preprocess(images))))

  preprocess: shortest side -> 224 (bicubic, antialiased), centre crop 224, CLIP mean/std
  vision: any callable, normalised pixels [B, 3, 224, 224] -> embeddings [B, 768]
          (transformers CLIPVisionModelWithProjection `.image_embeds`, or the host's
          CLIP vision model wrapped by the node layer)
  head: MLP 768 -> 1024 -> 128 -> 64 -> 16 -> 1 (no activations; dropout in training only)
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from .base import Reward
from .clip import ClipImageEmbedder, ImageEmbedFn, unit
from .loading import (
    WeightsSource,
    check_model_folder,
    check_state_dict_shapes,
    freeze,
    from_pretrained_local,
    load_state_dict,
)
from .preprocess import CLIP_MEAN, CLIP_STD, clip_style

HEAD_FILE = "sac+logos+ava1-l14-linearMSE.pth"
HEAD_SOURCE = WeightsSource(
    what="Aesthetic head (LAION improved aesthetic predictor)",
    expected=f"{HEAD_FILE} (state dict with layers.0/2/4/6/7 .weight/.bias; 768-d input)",
    origin=(
        f"{HEAD_FILE} from the LAION aesthetic predictor (github.com/christophschuhmann/"
        "improved-aesthetic-predictor, the file the Psi-Sampler authors used)"
    ),
)
CLIP_L14_SOURCE = WeightsSource(
    what="CLIP ViT-L/14 vision model for the aesthetic reward",
    expected="a transformers folder: config.json + model.safetensors (CLIPModel or "
    "CLIPVisionModelWithProjection, projection_dim 768)",
    origin="Hugging Face repo openai/clip-vit-large-patch14",
)

_HEAD_WIDTHS = (768, 1024, 128, 64, 16, 1)
_HEAD_LINEAR_INDICES = (0, 2, 4, 6, 7)
_HEAD_DROPOUTS = (0.2, 0.2, 0.1)


class AestheticHead(torch.nn.Module):
    """Embeddings [B, 768] (L2-normalised) -> scores [B]. Keys `layers.{0,2,4,6,7}`."""

    def __init__(self) -> None:
        super().__init__()
        blocks: list[torch.nn.Module] = []
        for i, (fan_in, fan_out) in enumerate(zip(_HEAD_WIDTHS[:-1], _HEAD_WIDTHS[1:])):
            blocks.append(torch.nn.Linear(fan_in, fan_out))
            if i < len(_HEAD_DROPOUTS):
                blocks.append(torch.nn.Dropout(_HEAD_DROPOUTS[i]))
        self.layers = torch.nn.Sequential(*blocks)

    def forward(self, embeds: torch.Tensor) -> torch.Tensor:
        return self.layers(embeds).squeeze(-1)

    @staticmethod
    def expected_shapes() -> dict[str, tuple[int, ...]]:
        shapes: dict[str, tuple[int, ...]] = {}
        for index, fan_in, fan_out in zip(_HEAD_LINEAR_INDICES, _HEAD_WIDTHS[:-1], _HEAD_WIDTHS[1:]):
            shapes[f"layers.{index}.weight"] = (fan_out, fan_in)
            shapes[f"layers.{index}.bias"] = (fan_out,)
        return shapes


def load_aesthetic_head(path: str | Path) -> AestheticHead:
    """Load the head from `path` (.pth weights-only pickle or .safetensors), frozen, float32."""
    state = load_state_dict(path, HEAD_SOURCE)
    check_state_dict_shapes(state, AestheticHead.expected_shapes(), path, HEAD_SOURCE)
    head = AestheticHead()
    head.load_state_dict({k: v.float() for k, v in state.items()})
    return freeze(head)


class AestheticReward(Reward):
    """LAION aesthetic score of each image: [B, 3, H, W] in [0, 1] -> [B] (about 1..10).

    vision: callable, normalised pixels [B, 3, size, size] -> [B, 768] projected CLIP
        embeddings (not yet normalised). If it is a torch module it is listed in
        `modules()`; pass any other weight-holding modules in `vision_modules`.
    head: an AestheticHead or a path to the head file.
    """

    name = "aesthetic"
    differentiable = True

    def __init__(
        self,
        vision: ImageEmbedFn,
        head: AestheticHead | str | Path,
        vision_modules: Sequence[torch.nn.Module] = (),
        image_size: int = 224,
        mean: Sequence[float] = CLIP_MEAN,
        std: Sequence[float] = CLIP_STD,
    ) -> None:
        if not callable(vision):
            raise TypeError(f"vision must be callable (pixels -> embeddings), got {type(vision).__name__}")
        self.vision = vision
        self.head = head if isinstance(head, AestheticHead) else load_aesthetic_head(head)
        own = [vision] if isinstance(vision, torch.nn.Module) else []
        self._vision_modules = own + [m for m in vision_modules if m is not vision]
        self.image_size = int(image_size)
        self.mean, self.std = tuple(mean), tuple(std)

    def modules(self) -> list[torch.nn.Module]:
        return [*self._vision_modules, self.head]

    def score(self, images: torch.Tensor) -> torch.Tensor:
        head_param = self.head.layers[0].weight
        pixels = clip_style(images.to(head_param.device, torch.float32), self.image_size, self.mean, self.std)
        embeds = self.vision(pixels)
        if embeds.ndim != 2 or embeds.shape[-1] != _HEAD_WIDTHS[0]:
            raise ValueError(
                f"the vision tower must return [B, {_HEAD_WIDTHS[0]}] embeddings, got {tuple(embeds.shape)}"
            )
        embeds = unit(embeds.to(head_param.device, head_param.dtype))
        return self.head(embeds)

    def describe(self) -> str:
        return f"aesthetic (LAION improved predictor on CLIP ViT-L/14, {self.image_size}px)"


def load_clip_vision(folder: str | Path, device: torch.device | str | None = None,
                     dtype: torch.dtype | None = None) -> ClipImageEmbedder:
    """A frozen transformers CLIPVisionModelWithProjection from `folder` (a CLIPModel
    folder works too), wrapped as pixels -> embeddings."""
    from transformers import CLIPVisionModelWithProjection

    folder = check_model_folder(folder, CLIP_L14_SOURCE)
    model = from_pretrained_local(CLIPVisionModelWithProjection, folder, CLIP_L14_SOURCE)
    freeze(model)
    if device is not None or dtype is not None:
        model.to(device=device, dtype=dtype)
    return ClipImageEmbedder(model)


def load_aesthetic_reward(
    clip_folder: str | Path,
    head_path: str | Path,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
) -> AestheticReward:
    """The paper's aesthetic reward from a CLIP ViT-L/14 transformers folder and the head file."""
    head = load_aesthetic_head(head_path)
    vision = load_clip_vision(clip_folder, device, dtype)
    reward = AestheticReward(vision, head)
    if device is not None:
        head.to(device)
    return reward
