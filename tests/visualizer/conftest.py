"""Real traces from the exact-target toy (psi_core) and toy "decoded" images of their latents.

The toy's latents are 2-D points; `toy_images` draws each as a dot on a small picture of
the plane (the reward shown as a green glow), standing in for the VAE decode of the node.
"""

from __future__ import annotations

import pytest
import torch
from psi_sampler.visualizer import recorded_latents

from psi_sampler.psi_core.budget import NFECounter
from psi_sampler.psi_core.initial import InitialConfig, draw_initial
from psi_sampler.psi_core.lookahead import Lookahead
from psi_sampler.psi_core.rng import make_generator
from psi_sampler.psi_core.smc import SMCConfig, run_smc
from psi_sampler.psi_core.toy.problems import figure1


def toy_trace(particles: int, steps: int = 10, method: str = "pcnl", record=None, seed: int = 0):
    problem = figure1("flow", steps=steps, dim=2)
    generator = make_generator(seed)
    lookahead = Lookahead(problem.denoiser, problem.reward, grad_batch_size=64, counter=NFECounter())
    config = InitialConfig(method=method, num_particles=particles, num_chains=4, mcmc_steps=20, burn_in=10,
                           alpha_mcmc=problem.alpha_mcmc)
    initial = draw_initial(config, lookahead, problem.start(), (problem.dim,), float(problem.sigmas[0]), generator)
    record = tuple(range(steps)) if record is None else tuple(record)
    result = run_smc(initial, problem.sigmas, lookahead,
                     SMCConfig(alpha=problem.alpha, output="best", record_x0_steps=record), problem.family, generator)
    return result.trace


def toy_images(points: torch.Tensor, size: int = 48) -> torch.Tensor:
    """[K, 2] points -> [K, size, size, 3] pictures of the plane [-2.2, 2.2]^2 with each point as a red dot."""
    axis = torch.linspace(-2.2, 2.2, size, dtype=torch.float64)
    yy, xx = torch.meshgrid(axis.flip(0), axis, indexing="ij")
    glow = torch.exp(-((xx - 1.66) ** 2 + (yy - 0.95) ** 2))
    base = torch.stack([0.92 - 0.25 * glow, 0.92 + 0.06 * glow, 0.92 - 0.25 * glow], dim=-1)
    out = base.expand(points.shape[0], size, size, 3).clone()
    dist = (xx[None] - points[:, 0, None, None].double()) ** 2 + (yy[None] - points[:, 1, None, None].double()) ** 2
    dot = dist < 0.2 ** 2
    out[dot] = torch.tensor([0.85, 0.1, 0.1], dtype=torch.float64)
    return out.float()


def toy_grid_images(trace) -> dict[int, torch.Tensor]:
    return {key: toy_images(latents) for key, latents in recorded_latents(trace).items()}


@pytest.fixture(scope="session")
def trace8():
    """K = 8, 10 steps, latents kept at the start and steps 0, 2, 3, 4, 9 (resamples in between)."""
    return toy_trace(8, steps=10, record=(0, 2, 3, 4, 9))


@pytest.fixture(scope="session")
def make_trace():
    """Factory: make_trace(particles, steps=10, method="pcnl", record=None, seed=0) -> Trace."""
    return toy_trace


@pytest.fixture(scope="session")
def grid_images():
    """Factory: grid_images(trace) -> {step: [K, 48, 48, 3]} toy pictures of the recorded latents."""
    return toy_grid_images
