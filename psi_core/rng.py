"""Explicit randomness: every draw comes from a caller's `torch.Generator`.

Draws are made on the generator's device (the CPU for ComfyUI-style seeds) and
then moved, so the same seed gives the same numbers on any compute device.
"""

from __future__ import annotations

import torch


def make_generator(seed: int) -> torch.Generator:
    generator = torch.Generator(device="cpu")
    generator.manual_seed(int(seed))
    return generator


def randn(shape: tuple[int, ...], generator: torch.Generator, device: torch.device | str = "cpu") -> torch.Tensor:
    """N(0, I) float32 of `shape`."""
    return torch.randn(shape, generator=generator, dtype=torch.float32, device=generator.device).to(device)


def randn_like(t: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    return randn(tuple(t.shape), generator, t.device)


def uniform(num: int, generator: torch.Generator) -> torch.Tensor:
    """[num] float64 uniforms in [0, 1), on the CPU."""
    return torch.rand((num,), generator=generator, dtype=torch.float64, device=generator.device).cpu()
