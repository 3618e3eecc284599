"""A diagonal Gaussian mixture with everything in closed form (Tweedie denoiser, tilted target).

p0 = Σ_k π_k N(m_k, diag(v_k)) in d dimensions. For a state x = a·x0 + b·ε:

    p(x)       = Σ_k π_k N(x; a·m_k, a²v_k + b²)
    E[x0 | x]  = Σ_k γ_k(x) [m_k + a·v_k/(a²v_k + b²)·(x − a·m_k)]

(Tweedie's denoiser, differentiable in x). With the log-Gaussian reward
r(x0) = −Σ_j λ_j (x0_j − c_j)²/2 (λ_j = 1/ℓ² on the rewarded coordinates, 0
elsewhere), the tilted target p0·exp(r/α) is again a mixture: per coordinate,
precision 1/v + λ/α, mean v'·(m/v + λc/α), and component weights
π_k·Π_j (1 + v_jλ_j/α)^(-1/2)·exp(−λ_j/α·(m_j − c_j)²/(2(1 + v_jλ_j/α))).
Arithmetic is float64.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class DiagonalMixture:
    """weights [M] (sum 1), means [M, d], variances [M, d]; float64."""

    weights: torch.Tensor
    means: torch.Tensor
    variances: torch.Tensor

    @property
    def dim(self) -> int:
        return self.means.shape[1]

    @property
    def num_components(self) -> int:
        return self.weights.numel()

    def component_log_prob(self, x: torch.Tensor, a: float = 1.0, b: float = 0.0) -> torch.Tensor:
        """[N, M] log π_k + log N(x; a·m_k, a²v_k + b²)."""
        x = x.to(torch.float64)
        var = a * a * self.variances + b * b                       # [M, d]
        diff = x[:, None, :] - a * self.means[None]                 # [N, M, d]
        quad = (diff * diff / var[None]).sum(-1)                    # [N, M]
        log_det = torch.log(var).sum(-1)                            # [M]
        return torch.log(self.weights)[None] - 0.5 * (quad + log_det[None] + self.dim * math.log(2 * math.pi))

    def denoise(self, x: torch.Tensor, a: float, b: float) -> torch.Tensor:
        """E[x0 | a·x0 + b·ε = x] for x [N, d] (keeps x's dtype; differentiable)."""
        x64 = x.to(torch.float64)
        var = a * a * self.variances + b * b
        gamma = torch.softmax(self.component_log_prob(x64, a, b), dim=1)           # [N, M]
        gain = a * self.variances / var                                            # [M, d]
        posterior = self.means[None] + gain[None] * (x64[:, None, :] - a * self.means[None])
        return (gamma[:, :, None] * posterior).sum(1).to(x.dtype)

    def sample(self, num: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """num exact samples [num, d] and their component labels [num]."""
        labels = torch.multinomial(self.weights, num, replacement=True, generator=generator)
        noise = torch.randn((num, self.dim), generator=generator, dtype=torch.float64)
        return self.means[labels] + noise * self.variances[labels].sqrt(), labels


@dataclass(frozen=True)
class GaussianReward:
    """r(x0) = −Σ_j λ_j (x0_j − c_j)²/2, centre c [d], precision λ [d] (0 = unrewarded)."""

    centre: torch.Tensor
    precision: torch.Tensor

    def __call__(self, x0: torch.Tensor) -> torch.Tensor:
        flat = x0.reshape(x0.shape[0], -1)
        diff = flat - self.centre.to(flat)
        return -0.5 * (self.precision.to(flat) * diff * diff).sum(1)


def tilt(prior: DiagonalMixture, reward: GaussianReward, alpha: float) -> DiagonalMixture:
    """The exact target p0·exp(r/α)/Z as a mixture."""
    beta = reward.precision[None] / alpha                                          # [1, d]
    v, m, c = prior.variances, prior.means, reward.centre[None]
    precision = 1.0 / v + beta
    variances = 1.0 / precision
    means = variances * (m / v + beta * c)
    spread = 1.0 + v * beta
    log_mass = (-0.5 * torch.log(spread) - beta * (m - c) ** 2 / (2.0 * spread)).sum(1)
    log_weights = torch.log(prior.weights) + log_mass
    return DiagonalMixture(torch.softmax(log_weights, 0), means, variances)


def expected_reward(mixture: DiagonalMixture, reward: GaussianReward) -> float:
    """E[r(x0)] under `mixture`, exactly."""
    second = (mixture.means - reward.centre[None]) ** 2 + mixture.variances        # [M, d]
    per_component = -0.5 * (reward.precision[None] * second).sum(1)
    return float((mixture.weights * per_component).sum())
