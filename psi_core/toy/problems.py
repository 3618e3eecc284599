"""Named toy problems: a prior mixture, a reward, α, and a schedule in one object.

`figure1` is the paper's Figure-1 setting in 2-D: most prior mass sits in modes
the reward dislikes, while the modes the reward favours hold little prior mass,
so SMC started from the prior rarely has particles there. `scaled(d)` embeds the
same modes in d dimensions (extra coordinates are N(0, 1) nuisance dimensions,
16 rewarded coordinates) for the high-dimensional pCNL/MALA comparison.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .. import validation
from ..families import FAMILIES, start_map
from .mixture import DiagonalMixture, GaussianReward, expected_reward, tilt

DIM_RANGE = (2, 16384)
REWARDED_DIMS = 16


@dataclass(frozen=True)
class ToyProblem:
    prior: DiagonalMixture
    reward: GaussianReward
    alpha: float
    alpha_mcmc: float
    family: str
    sigmas: torch.Tensor  # float64, ends at 0

    @property
    def dim(self) -> int:
        return self.prior.dim

    @property
    def target(self) -> DiagonalMixture:
        return tilt(self.prior, self.reward, self.alpha)

    @property
    def target_reward_mean(self) -> float:
        return expected_reward(self.target, self.reward)

    def coefficients(self, sigma: float) -> tuple[float, float]:
        """(a, b) with x = a·x0 + b·ε at noise level σ for this family."""
        return (1.0, sigma) if self.family == "eps" else (1.0 - sigma, sigma)

    def denoiser(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        """Exact Tweedie denoiser D(x, σ) in ComfyUI's calling convention (σ per row, all equal)."""
        a, b = self.coefficients(float(sigma.reshape(-1)[0]))
        return self.prior.denoise(x, a, b)

    def start(self):
        return start_map(self.family, float(self.sigmas[0]), None, max_denoise=True)


def schedule(family: str, steps: int) -> torch.Tensor:
    """Toy schedules: flow runs σ from 0.9 to 0 linearly (a shifted start, where the
    look-ahead is informative); eps uses a Karras schedule from 10 to 0.01, then 0."""
    validation.choice("family", family, FAMILIES)
    validation.integer_at_least("steps", steps, 1)
    if family == "flow":
        return torch.linspace(0.9, 0.0, steps + 1, dtype=torch.float64)
    rho, s_max, s_min = 7.0, 10.0, 0.01
    ramp = torch.linspace(0, 1, steps, dtype=torch.float64)
    body = (s_max ** (1 / rho) + ramp * (s_min ** (1 / rho) - s_max ** (1 / rho))) ** rho
    return torch.cat([body, torch.zeros(1, dtype=torch.float64)])


def figure1_modes() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(weights [5], means [5, 2], std [5]) of the 2-D prior."""
    weights = torch.tensor([0.35, 0.32, 0.30, 0.02, 0.01], dtype=torch.float64)
    means = torch.tensor([[-1.2, 0.9], [-1.3, -0.8], [0.1, -1.3], [1.3, 0.2], [0.9, 1.3]], dtype=torch.float64)
    std = torch.tensor([0.22, 0.22, 0.22, 0.16, 0.16], dtype=torch.float64)
    return weights, means, std


def figure1(family: str = "flow", steps: int = 25, dim: int = 2) -> ToyProblem:
    """The Figure-1 problem, optionally embedded in `dim` dimensions."""
    validation.choice("family", family, FAMILIES)
    lo, hi = DIM_RANGE
    dim = validation.integer_at_least("dim", dim, lo)
    if dim > hi:
        raise ValueError(f"dim must be in [{lo}, {hi}]; got {dim}")
    weights, means2, std = figure1_modes()
    m = weights.numel()
    means = torch.zeros((m, dim), dtype=torch.float64)
    means[:, :2] = means2
    variances = torch.ones((m, dim), dtype=torch.float64)
    variances[:, :2] = (std ** 2)[:, None]
    centre = torch.zeros(dim, dtype=torch.float64)
    # on the bisector of the two small modes, away from the large ones: the target
    # splits between the two modes that hold 3% of the prior mass
    centre[:2] = torch.tensor([1.66, 0.95], dtype=torch.float64)
    precision = torch.zeros(dim, dtype=torch.float64)
    precision[:2] = 1.0
    if dim > 2:
        rewarded = min(REWARDED_DIMS, dim)
        centre[2:rewarded] = 0.5
        precision[2:rewarded] = 1.0
    return ToyProblem(
        prior=DiagonalMixture(weights, means, variances),
        reward=GaussianReward(centre, precision),
        alpha=0.1, alpha_mcmc=0.1, family=family, sigmas=schedule(family, steps),
    )
