"""ComfyUI's CLIP_VISION model as a differentiable image embedder (the aesthetic reward's
CLIP ViT-L/14 when it comes from a Load CLIP Vision node)."""

from __future__ import annotations

from typing import Any

import torch

from ..rewards.preprocess import CLIP_MEAN, CLIP_STD
from .compat import host_symbol
from .saved_activations import clone_saved_activations


class HostClipVision(torch.nn.Module):
    """ComfyUI's CLIP_VISION model (`comfy.clip_vision.ClipVisionModel`) as a vision callable:
    normalised pixels [B, 3, S, S] -> projected image embeddings [B, D] (float32).

    Calls the underlying `CLIPVisionModelProjection` directly (its output [2] is
    `image_embeds`), skipping ComfyUI's own preprocessing, which rounds pixels and so
    has no gradient. Its weights may be stored in float16 (ComfyUI's manual-cast
    layers cast them to the float32 input). Its transformer layers add residuals in
    place (`x += ...`), so under autograd the activations saved for backward are
    cloned (`saved_activations.clone_saved_activations`), which keeps the gradient exact.
    """

    def __init__(self, clip_vision: Any):
        super().__init__()
        self.model = clip_vision.model

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        param = next(self.model.parameters())
        pixels = pixels.to(param.device, torch.float32)
        if not (torch.is_grad_enabled() and pixels.requires_grad):
            return self.model(pixel_values=pixels)[2].float()
        with clone_saved_activations():
            return self.model(pixel_values=pixels)[2].float()


def host_clip_vision(clip_vision: Any, width: int) -> tuple[HostClipVision, int, tuple, tuple]:
    """(vision callable, input size, mean, std) of a CLIP_VISION whose embeddings have
    `width` values; ValueError where it is not such a CLIP vision model."""
    model = getattr(clip_vision, "model", None)
    if not isinstance(model, host_symbol("comfy.clip_model.CLIPVisionModelProjection")) or getattr(
            clip_vision, "return_all_hidden_states", False):
        raise ValueError(f"the clip_vision input is not a CLIP vision model ({type(model).__name__}); the "
                         "aesthetic head needs CLIP ViT-L/14 (load e.g. OpenAI's CLIP ViT-L/14 with Load CLIP "
                         "Vision)")
    projection = getattr(model, "visual_projection", None)
    out_features = getattr(projection, "out_features", None)
    if out_features != width:
        raise ValueError(f"the clip_vision model gives {out_features or 'unprojected'}-value image embeddings but "
                         f"the aesthetic head reads {width} (CLIP ViT-L/14); load a ViT-L/14 CLIP vision model "
                         "(not ViT-H/14, ViT-G or SigLIP)")
    size = int(getattr(clip_vision, "image_size", 224))
    mean = tuple(getattr(clip_vision, "image_mean", CLIP_MEAN))
    std = tuple(getattr(clip_vision, "image_std", CLIP_STD))
    return HostClipVision(clip_vision), size, mean, std
