"""The core takes latents of any rank: [K, C, H, W] image latents and [K, C, T, H, W] latents of 3-D
formats (Qwen-Image's Wan 2.1 latents, [K, 16, 1, H, W]) are the same computation on the same numbers.

A per-element denoiser and a reward of the flattened latent make the run depend on the values alone;
the core's draws (`randn((K, *shape))`) fill the same numbers in the same order for any shape of the same
size, so pCNL initial particles and guided SMC (ancestral and lcm kernels) on the 4-D and the 5-D
shape must give bitwise the same particles, weights and rewards.
"""

from __future__ import annotations

import pytest
import torch

from psi_sampler.psi_core import InitialConfig, Lookahead, SMCConfig, draw_initial, make_generator, run_smc
from psi_sampler.psi_core.families import start_map

TARGET = torch.linspace(-1.0, 1.0, 16)


def denoiser(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """x [B, ...], σ [B] -> x̂0 [B, ...]: a per-element flow-model prediction."""
    s = sigma.reshape(-1, *([1] * (x.ndim - 1)))
    return torch.tanh(x * (1.0 - s) + 0.3 * x)


def reward(x0: torch.Tensor) -> torch.Tensor:
    """x̂0 [B, ...] -> r [B]: closeness of the flattened latent to TARGET."""
    return -((x0.flatten(1) - TARGET) ** 2).mean(1)


def run(shape: tuple[int, ...], kernel: str):
    lookahead = Lookahead(denoiser, reward, grad_batch_size=2)
    sigmas = torch.linspace(1.0, 0.0, 5)
    config = InitialConfig(method="pcnl", num_particles=4, num_chains=2, mcmc_steps=4, burn_in=1, alpha_mcmc=0.5)
    initial = draw_initial(config, lookahead, start_map("flow", 1.0, None, True), shape, 1.0, make_generator(3))
    result = run_smc(initial, sigmas, lookahead, SMCConfig(alpha=0.5, kernel=kernel, output="all"), "flow",
                     make_generator(4))
    return initial, result


@pytest.mark.parametrize("kernel", ["ancestral", "lcm"])
def test_four_and_five_dimensional_latents_give_the_same_bits(kernel):
    image_initial, image = run((4, 2, 2), kernel)
    frame_initial, frame = run((4, 1, 2, 2), kernel)
    assert frame.particles.shape == (4, 4, 1, 2, 2) and image.particles.shape == (4, 4, 2, 2)
    assert torch.equal(frame_initial.noise.flatten(1), image_initial.noise.flatten(1))
    assert torch.equal(frame.particles.flatten(1), image.particles.flatten(1))
    assert torch.equal(frame.log_weights.normalized, image.log_weights.normalized)
    assert torch.equal(frame.trace.smc[-1].reward, image.trace.smc[-1].reward)
    assert image.trace.mcmc and any(r.accepted.any() for r in image.trace.mcmc)  # the chains did move
