"""The PSI_REWARD contract shared by the reward loaders, the host bridge and the samplers.

A reward scores a batch of decoded images:

    images: float32 tensor, shape [B, 3, H, W], values in [0, 1], any H and W
    returns: float32 tensor, shape [B], one score per image (higher is better)

Scores of a batch equal the scores of its images taken one at a time. Where
`differentiable` is True the score is differentiable with respect to `images`
(the samplers take gradients through it); the reward itself never asks for
gradients of its own weights. Per-prompt targets (phrases and boxes, objects and
counts, colours) are fixed when the reward is built and travel with the object.

The host bridge moves a reward's weights with ComfyUI's model management: it asks
`modules()` for the torch modules that hold weights and calls `to()`; a weight-free
reward returns no modules.
"""

from __future__ import annotations

import abc

import torch


class Reward(abc.ABC):
    """Base class of every reward (see the module docstring for the contract)."""

    #: short name shown in traces and on nodes, e.g. "aesthetic"
    name: str = "reward"
    #: True where `score` is differentiable with respect to the images
    differentiable: bool = True

    @abc.abstractmethod
    def score(self, images: torch.Tensor) -> torch.Tensor:
        """[B, 3, H, W] float32 in [0, 1] -> [B] float32."""

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        check_images(images)
        scores = self.score(images)
        return scores.reshape(images.shape[0]).to(torch.float32)

    def modules(self) -> list[torch.nn.Module]:
        """Torch modules holding this reward's weights (empty for weight-free rewards)."""
        return []

    def to(self, device: torch.device | str, dtype: torch.dtype | None = None) -> "Reward":
        """Move the weights in place; returns self."""
        for module in self.modules():
            module.to(device=device, dtype=dtype)
        return self

    @property
    def device(self) -> torch.device:
        for module in self.modules():
            for p in module.parameters():
                return p.device
        return torch.device("cpu")

    def memory_bytes(self) -> int:
        """Bytes held by the weights (for the host's memory planning)."""
        total = 0
        for module in self.modules():
            for t in list(module.parameters()) + list(module.buffers()):
                total += t.numel() * t.element_size()
        return total

    def describe(self) -> str:
        return self.name


def check_images(images: torch.Tensor) -> None:
    """Raise a clear error unless `images` is a [B, 3, H, W] floating tensor."""
    if not isinstance(images, torch.Tensor):
        raise TypeError(f"images must be a torch.Tensor, got {type(images).__name__}")
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(
            f"images must have shape [B, 3, H, W]; got {tuple(images.shape)}"
        )
    if not images.is_floating_point():
        raise TypeError(f"images must be floating point in [0, 1], got dtype {images.dtype}")
