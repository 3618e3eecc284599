"""Named toy problems: a prior mixture, a reward, α, and a schedule in one object.

`figure1` is the paper's Figure-1 setting in 2-D: most prior mass sits in modes
the reward dislikes, while the modes the reward favours hold little prior mass,
so SMC started from the prior rarely has particles there. `scaled(d)` embeds the
same modes in d dimensions (extra coordinates are N(0, 1) nuisance dimensions,
16 rewarded coordinates) for the high-dimensional pCNL/MALA comparison.

Two denoisers of the same prior: `tweedie`, the exact E[x0 | x] of a perfectly
trained model, and `distilled`, the exact probability-flow map Φ_σ(x) (the clean
sample the model's own ODE reaches from x), which is what a distilled few-step
model such as FLUX.1-schnell approximates. An exact flow map sends p_σ to p0, so
with ComfyUI's lcm kernel (x̂0 re-noised to σ') the chain keeps the model's
marginals and the tilted mixture stays the exact target. The distilled problem
starts from pure noise (flow σ = 1), where the Tweedie look-ahead is constant.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .. import validation
from ..families import FAMILIES, start_map
from ..names import ANCESTRAL, LCM
from .mixture import DiagonalMixture, GaussianReward, expected_reward, tilt

DIM_RANGE = (2, 16384)
REWARDED_DIMS = 16
DENOISERS = ("tweedie", "distilled")
FLOW_MAP_STEPS = 48


@dataclass(frozen=True)
class ToyProblem:
    prior: DiagonalMixture
    reward: GaussianReward
    alpha: float
    alpha_mcmc: float
    family: str
    sigmas: torch.Tensor  # float64, ends at 0
    denoiser_kind: str = "tweedie"

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

    @property
    def kernel(self) -> str:
        """The SMC's base kernel: ancestral steps for the Tweedie model, lcm for the distilled one."""
        return LCM if self.denoiser_kind == "distilled" else ANCESTRAL

    def tweedie(self, x: torch.Tensor, sigma: float) -> torch.Tensor:
        a, b = self.coefficients(sigma)
        return self.prior.denoise(x, a, b)

    def denoiser(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        """D(x, σ) in ComfyUI's calling convention (σ per row, all equal): Tweedie's
        E[x0 | x], or the flow map Φ_σ(x) for the distilled model."""
        s = float(sigma.reshape(-1)[0])
        if self.denoiser_kind == "distilled":
            return flow_map(self.tweedie, x, s)
        return self.tweedie(x, s)

    def start(self):
        return start_map(self.family, float(self.sigmas[0]), None, max_denoise=True)


def flow_map(tweedie, x: torch.Tensor, sigma: float, steps: int = FLOW_MAP_STEPS) -> torch.Tensor:
    """Φ_σ(x): the probability-flow ODE dx/dσ' = (x − E[x0 | x, σ'])/σ' from σ to 0.

    The same ODE holds in both families (eps: the velocity is ε̂; flow: ε̂ − x̂0).
    Heun steps (k-diffusion's sample_heun without churn) on a Karras grid from σ to
    σ·1e-4, then one Euler step to 0; float64, differentiable in x. `tweedie(x, σ')`
    is the exact denoiser.
    """
    if sigma <= 0:
        return x
    grid = _karras(sigma, sigma * 1e-4, steps)
    y = x.to(torch.float64)

    def velocity(state: torch.Tensor, s: float) -> torch.Tensor:
        return (state - tweedie(state, s)) / s

    for s, s_next in zip(grid[:-1].tolist(), grid[1:].tolist()):
        d = velocity(y, s)
        y_euler = y + (s_next - s) * d
        y = y + (s_next - s) * 0.5 * (d + velocity(y_euler, s_next))
    s = float(grid[-1])
    y = y - s * velocity(y, s)
    return y.to(x.dtype)


def _karras(s_max: float, s_min: float, num: int, rho: float = 7.0) -> torch.Tensor:
    """num σ values from s_max down to s_min, spaced as in Karras et al. (ρ = 7)."""
    ramp = torch.linspace(0, 1, num, dtype=torch.float64)
    return (s_max ** (1 / rho) + ramp * (s_min ** (1 / rho) - s_max ** (1 / rho))) ** rho


def schedule(family: str, steps: int, full_noise: bool = False) -> torch.Tensor:
    """Toy schedules: flow runs σ from 0.9 to 0 linearly (from 1 with `full_noise`, the
    start of a flow model at full denoise); eps uses a Karras schedule from 10 to 0.01, then 0."""
    validation.choice("family", family, FAMILIES)
    validation.integer_at_least("steps", steps, 1)
    if family == "flow":
        return torch.linspace(1.0 if full_noise else 0.9, 0.0, steps + 1, dtype=torch.float64)
    return torch.cat([_karras(10.0, 0.01, steps), torch.zeros(1, dtype=torch.float64)])


def figure1_modes() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(weights [5], means [5, 2], std [5]) of the 2-D prior."""
    weights = torch.tensor([0.35, 0.32, 0.30, 0.02, 0.01], dtype=torch.float64)
    means = torch.tensor([[-1.2, 0.9], [-1.3, -0.8], [0.1, -1.3], [1.3, 0.2], [0.9, 1.3]], dtype=torch.float64)
    std = torch.tensor([0.22, 0.22, 0.22, 0.16, 0.16], dtype=torch.float64)
    return weights, means, std


def figure1(family: str = "flow", steps: int = 25, dim: int = 2, denoiser: str = "tweedie") -> ToyProblem:
    """The Figure-1 problem, optionally embedded in `dim` dimensions, with the Tweedie
    or the distilled (flow-map) denoiser."""
    validation.choice("family", family, FAMILIES)
    validation.choice("denoiser", denoiser, DENOISERS)
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
        alpha=0.1, alpha_mcmc=0.1, family=family,
        sigmas=schedule(family, steps, full_noise=denoiser == "distilled"), denoiser_kind=denoiser,
    )


FEW_STEP_PROBLEMS = ("rare_mode", "far_tail", "figure1")


def rare_mode(steps: int = 4, denoiser: str = "distilled", family: str = "flow") -> ToyProblem:
    """A rare rewarded mode in 16-D: prior 0.98·N((−1, −1), 0.25²) + 0.02·N((1, 1), 0.25²) on
    the first two coordinates (N(0, 1) elsewhere), reward −0.5·|x_{1:2} − (1, 1)|²/2 on the small
    mode, α = 0.3: the target puts 0.895 of its mass on the mode the prior gives 0.02."""
    dim = 16
    weights = torch.tensor([0.98, 0.02], dtype=torch.float64)
    means = torch.zeros((2, dim), dtype=torch.float64)
    means[0, :2], means[1, :2] = -1.0, 1.0
    variances = torch.ones((2, dim), dtype=torch.float64)
    variances[:, :2] = 0.25 ** 2
    centre = torch.zeros(dim, dtype=torch.float64)
    centre[:2] = 1.0
    precision = torch.zeros(dim, dtype=torch.float64)
    precision[:2] = 0.5
    return ToyProblem(prior=DiagonalMixture(weights, means, variances), reward=GaussianReward(centre, precision),
                      alpha=0.3, alpha_mcmc=0.3, family=family,
                      sigmas=schedule(family, steps, full_noise=denoiser == "distilled"), denoiser_kind=denoiser)


def far_tail(steps: int = 4, denoiser: str = "distilled", family: str = "flow") -> ToyProblem:
    """A reward far in one tail of a 64-D standard normal: r = −(x_1 − 3)²/2, α = 0.1; the
    target is N(30/11, 1/11) on x_1 (N(0, 1) elsewhere), 2.7 prior standard deviations out."""
    dim = 64
    prior = DiagonalMixture(torch.ones(1, dtype=torch.float64), torch.zeros((1, dim), dtype=torch.float64),
                            torch.ones((1, dim), dtype=torch.float64))
    centre = torch.zeros(dim, dtype=torch.float64)
    centre[0] = 3.0
    precision = torch.zeros(dim, dtype=torch.float64)
    precision[0] = 1.0
    return ToyProblem(prior=prior, reward=GaussianReward(centre, precision), alpha=0.1, alpha_mcmc=0.1,
                      family=family, sigmas=schedule(family, steps, full_noise=denoiser == "distilled"),
                      denoiser_kind=denoiser)


def few_step_problem(name: str, steps: int, denoiser: str) -> ToyProblem:
    """One of FEW_STEP_PROBLEMS at `steps` steps with the `tweedie` or `distilled` denoiser."""
    validation.choice("problem", name, FEW_STEP_PROBLEMS)
    if name == "figure1":
        return figure1("flow", steps, denoiser=denoiser)
    return (rare_mode if name == "rare_mode" else far_tail)(steps, denoiser)
