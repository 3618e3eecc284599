"""Differentiable image preprocessing for the reward models.

Everything stays a torch op on float tensors: no rounding, no PIL, no clamp, so
gradients reach the input pixels. Resizing uses torch's antialiased
bilinear/bicubic interpolation (PIL-like kernels, differentiable).

All functions take and return float tensors of shape [B, C, H, W].
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def resize(images: torch.Tensor, size: tuple[int, int], mode: str = "bicubic") -> torch.Tensor:
    """[B, C, H, W] -> [B, C, size[0], size[1]] with PIL-like antialiased kernels.

    torch's antialiased bilinear/bicubic match PIL's resampling (bicubic a = -0.5) in
    both directions and are differentiable.
    """
    height, width = int(size[0]), int(size[1])
    if images.shape[-2:] == (height, width):
        return images
    return F.interpolate(images, size=(height, width), mode=mode, align_corners=False, antialias=True)


def shortest_side_size(height: int, width: int, shortest: int, longest: int | None = None) -> tuple[int, int]:
    """Output (h, w): shortest side `shortest`, aspect kept, longest side <= `longest`.

    Same integer arithmetic as transformers' CLIP and DETR-family processors (the long
    side is truncated), so crops line up pixel for pixel with theirs.
    """
    short, long = min(height, width), max(height, width)
    exact = float(shortest)
    if longest is not None and long / short * shortest > longest:
        exact = longest * short / long
        shortest = int(round(exact))
    if short == shortest:
        return height, width
    new_short, new_long = shortest, int(exact * long / short)
    return (new_short, new_long) if height <= width else (new_long, new_short)


def resize_shortest_side(
    images: torch.Tensor, shortest: int, longest: int | None = None, mode: str = "bicubic"
) -> torch.Tensor:
    """[B, C, H, W] -> [B, C, h, w] with min(h, w) == shortest (longest side capped)."""
    size = shortest_side_size(images.shape[-2], images.shape[-1], shortest, longest)
    return resize(images, size, mode=mode)


def center_crop(images: torch.Tensor, size: int) -> torch.Tensor:
    """[B, C, H, W] with H, W >= size -> [B, C, size, size] from the centre."""
    height, width = images.shape[-2:]
    top = (height - size) // 2
    left = (width - size) // 2
    return images[..., top : top + size, left : left + size]


def normalize(images: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """Per-channel (x - mean) / std for [B, 3, H, W]."""
    mean_t = torch.as_tensor(mean, dtype=images.dtype, device=images.device).view(1, -1, 1, 1)
    std_t = torch.as_tensor(std, dtype=images.dtype, device=images.device).view(1, -1, 1, 1)
    return (images - mean_t) / std_t


def clip_style(
    images: torch.Tensor,
    size: int = 224,
    mean: Sequence[float] = CLIP_MEAN,
    std: Sequence[float] = CLIP_STD,
    mode: str = "bicubic",
) -> torch.Tensor:
    """CLIP preprocessing: [B, 3, H, W] in [0, 1] -> [B, 3, size, size] normalised.

    Shortest side resized to `size` (bicubic, antialiased), centre
    crop, mean/std normalisation.
    """
    images = resize_shortest_side(images, size, mode=mode)
    return normalize(center_crop(images, size), mean, std)


def detector_style(
    images: torch.Tensor,
    shortest: int = 800,
    longest: int = 1333,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
) -> torch.Tensor:
    """DETR-style preprocessing: shortest side to `shortest` (longest <= `longest`),
    bilinear, no crop, ImageNet normalisation. [B, 3, H, W] -> [B, 3, h, w]."""
    images = resize_shortest_side(images, shortest, longest, mode="bilinear")
    return normalize(images, mean, std)


def to_model(images: torch.Tensor, module: torch.nn.Module) -> torch.Tensor:
    """Cast images to the device and floating dtype of `module`'s first parameter."""
    for p in module.parameters():
        return images.to(device=p.device, dtype=p.dtype)
    return images


def letterbox(images: torch.Tensor, size: int, mean: Sequence[float] = CLIP_MEAN,
              std: Sequence[float] = CLIP_STD) -> torch.Tensor:
    """HPS v2's fit: [B, 3, H, W] in [0, 1] -> [B, 3, size, size] normalised.

    Longest side resized to `size` (bicubic, antialiased; sides rounded as Python's round),
    then padded with black (0 before normalisation) to a centred square, as HPS v2's
    `ResizeMaxSize(size, fill=0)`. Differentiable.
    """
    height, width = images.shape[-2:]
    scale = size / float(max(height, width))
    new_height, new_width = round(height * scale), round(width * scale)
    images = resize(images, (new_height, new_width))
    pad_h, pad_w = size - new_height, size - new_width
    images = F.pad(images, (pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2), value=0.0)
    return normalize(images, mean, std)
