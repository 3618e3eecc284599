"""The Ψ NOISE: the initial particles' noise for SamplerCustomAdvanced.

A NOISE is any object with `.seed` and `generate_noise(latent_dict)` returning a
CPU tensor. This one returns the K starting noises ε the Ψ initial sampler drew,
so core SamplerCustomAdvanced (with any SAMPLER) starts from the Ψ particles;
`PsiSMCSamplerCustom` also reads `.particles` to reuse their look-ahead and weight
them consistently.
"""

from __future__ import annotations

import torch

from .particles import PsiParticles


class PsiNoise:
    """NOISE made of the K Ψ initial particles (seed: the initial sampler's seed)."""

    def __init__(self, particles: PsiParticles, seed: int):
        self.particles = particles
        self.seed = int(seed)

    def generate_noise(self, input_latent: dict) -> torch.Tensor:
        """ε [K, C, H, W] (CPU) for a latent of batch 1 or K with the same [C, H, W]."""
        samples = input_latent["samples"]
        eps = self.particles.eps
        if tuple(samples.shape[1:]) != tuple(eps.shape[1:]):
            raise ValueError(
                f"the Ψ noise has latent shape {tuple(eps.shape[1:])} but the latent is {tuple(samples.shape[1:])}: "
                "use the same latent (size and model) as the Ψ initial sampler")
        if samples.shape[0] not in (1, eps.shape[0]):
            raise ValueError(
                f"the Ψ noise holds {eps.shape[0]} particles but the latent has a batch of {samples.shape[0]}: "
                "use a batch of 1 or the Ψ initial sampler's LATENT")
        return eps.to(dtype=samples.dtype).clone()
