"""CLIP embedding helpers shared by the aesthetic and prompt-similarity rewards.

Works with transformers' `CLIPModel` and `CLIPVisionModelWithProjection` alike:
both expose `vision_model` and `visual_projection`, and the projected pooled
output is the image embedding (`get_image_features` changed its return type in
transformers 5, so it is not used).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from .preprocess import to_model

#: a vision tower: normalised pixels [B, 3, S, S] -> projected embeddings [B, D]
ImageEmbedFn = Callable[[torch.Tensor], torch.Tensor]


class ClipImageEmbedder(torch.nn.Module):
    """Normalised pixels [B, 3, S, S] -> float32 projected image embeddings [B, D].

    `model` is a transformers CLIPModel or CLIPVisionModelWithProjection; pixels are
    cast to the model's device and dtype.
    """

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        if not (hasattr(model, "vision_model") and hasattr(model, "visual_projection")):
            raise TypeError(
                "expected a transformers CLIPModel or CLIPVisionModelWithProjection "
                f"(with vision_model and visual_projection), got {type(model).__name__}"
            )
        self.model = model

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        out = self.model.vision_model(pixel_values=to_model(pixels, self.model), return_dict=True)
        return self.model.visual_projection(out.pooler_output).float()


@torch.no_grad()
def clip_text_embedding(model: torch.nn.Module, tokenizer: Any, prompt: str, max_length: int = 77) -> torch.Tensor:
    """Projected text embedding [D] (float32, not normalised) of `prompt` with a CLIPModel."""
    tokens = tokenizer(
        [prompt], padding="max_length", truncation=True, max_length=max_length, return_tensors="pt"
    )
    device = next(model.parameters()).device
    out = model.text_model(
        input_ids=tokens["input_ids"].to(device),
        attention_mask=tokens["attention_mask"].to(device),
        return_dict=True,
    )
    return model.text_projection(out.pooler_output)[0].float()


def unit(x: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """L2-normalise along the last dimension."""
    return x / x.norm(dim=-1, keepdim=True).clamp_min(eps)
