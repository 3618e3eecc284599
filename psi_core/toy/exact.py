"""Exact problems at strong rewards: the law the sampler itself targets, in closed form.

A reward-aligned SMC over the model's own stochastic kernel targets the path law of
the untilted sampler reweighted by exp(r(x_N)/α) (Ψ-Sampler, arXiv 2506.01320, its
SMC stage; TDS, Wu et al. 2023). Its marginal at σ = 0 is p_model(x0)·exp(r(x0)/α)/Z, where
p_model is the law the sampler produces *without* a reward: the discretised chain's
own output, not the continuous-time prior. These problems give that law exactly:

* ``gaussian``: a non-isotropic 8-D Gaussian prior N(0, diag(v)). The Tweedie
  denoiser is linear and the ancestral kernels are Gaussian, so p_model is a
  Gaussian whose mean and (diagonal) covariance are propagated step by step
  (`base_law`), and the tilt by a linear-Gaussian reward is Gaussian again.
* ``mixture``: a 2-component mixture with unequal diagonal covariances. The
  denoiser is non-linear, so the reference is a float64 importance-weighted run
  of the untilted chain with many particles (`reference_sampler`), whose
  standard error is known; on the Gaussian it is checked against the closed form.

The reward is r(x0) = −|A·x0 − b|²/(2ℓ²) on 3 orthonormal directions (rows of A)
of the 8 (ℓ = 0.5): under the prior E[r] ≈ −16 ± 16, log-weights spread over tens
of nats at α ≤ 1, as image rewards do at the paper's temperatures.

bench/toy_exact_bench.py prints, for every problem, family and α, E[r] and the posterior
mean of prior-initialised guided SMC against these exact values.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
from dataclasses import dataclass

import torch

from .. import validation
from ..budget import NFECounter
from ..families import FAMILIES, kernel_coefficients, start_map
from ..initial import InitialConfig, draw_initial
from ..lookahead import Lookahead
from ..names import ANCESTRAL, PRIOR
from ..rng import make_generator
from ..smc import SMCConfig, run_smc
from .mixture import DiagonalMixture
from .problems import schedule

EXACT_PROBLEMS = ("gaussian", "mixture")
DIM = 8
REWARDED = 3
LENGTH_SCALE = 0.5
OFFSET = 1.2  # b − A·E[x0] along each rewarded direction


@dataclass(frozen=True)
class LinearReward:
    """r(x0) = −|A·x0 − b|²/(2ℓ²) for x0 [N, d]; A [m, d], b [m]; returns [N]."""

    a: torch.Tensor
    b: torch.Tensor
    length_scale: float

    def __call__(self, x0: torch.Tensor) -> torch.Tensor:
        flat = x0.reshape(x0.shape[0], -1)
        resid = flat @ self.a.to(flat).T - self.b.to(flat)
        return -(resid * resid).sum(1) / (2.0 * self.length_scale ** 2)


@dataclass(frozen=True)
class Gaussian:
    """N(mean [d], cov [d, d]), float64."""

    mean: torch.Tensor
    cov: torch.Tensor

    def tilt(self, reward: LinearReward, alpha: float) -> "Gaussian":
        """N(m, C)·exp(r/α) normalised: precision C⁻¹ + AᵀA/(αℓ²), mean
        C'(C⁻¹m + Aᵀb/(αℓ²))."""
        beta = 1.0 / (alpha * reward.length_scale ** 2)
        inv = torch.linalg.inv(self.cov)
        cov = torch.linalg.inv(inv + beta * reward.a.T @ reward.a)
        mean = cov @ (inv @ self.mean + beta * reward.a.T @ reward.b)
        return Gaussian(mean, (cov + cov.T) / 2)

    def log_mass(self, reward: LinearReward, alpha: float) -> float:
        """log ∫ N(x; m, C)·exp(r(x)/α) dx = log N(b; Am, ACAᵀ + αℓ²I) + (m/2)·log(2παℓ²)."""
        var = alpha * reward.length_scale ** 2
        m = reward.a.shape[0]
        cov = reward.a @ self.cov @ reward.a.T + var * torch.eye(m, dtype=torch.float64)
        resid = reward.b - reward.a @ self.mean
        _, logdet = torch.linalg.slogdet(cov)
        log_normal = -0.5 * (resid @ torch.linalg.solve(cov, resid) + float(logdet) + m * math.log(2 * math.pi))
        return float(log_normal) + 0.5 * m * math.log(2 * math.pi * var)


@dataclass(frozen=True)
class Moments:
    """E[r] and E[x0] [d] of a law (exact, or estimates with standard errors)."""

    reward: float
    mean: torch.Tensor
    reward_se: float = 0.0
    mean_se: torch.Tensor | None = None


def gaussian_moments(law: Gaussian, reward: LinearReward) -> Moments:
    """E[r] = −(tr(ACAᵀ) + |Am − b|²)/(2ℓ²) and E[x0] = m under N(m, C)."""
    resid = reward.a @ law.mean - reward.b
    second = torch.trace(reward.a @ law.cov @ reward.a.T) + resid @ resid
    return Moments(float(-second / (2 * reward.length_scale ** 2)), law.mean.clone())


@dataclass(frozen=True)
class ExactProblem:
    """A prior, a linear-Gaussian reward, a family and a 40-step schedule (ancestral kernel, η = 1)."""

    name: str
    prior: DiagonalMixture
    reward: LinearReward
    family: str
    sigmas: torch.Tensor

    @property
    def dim(self) -> int:
        return self.prior.dim

    def coefficients(self, sigma: float) -> tuple[float, float]:
        return (1.0, sigma) if self.family == "eps" else (1.0 - sigma, sigma)

    def denoiser(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        """Tweedie's E[x0 | x] in ComfyUI's calling convention (σ per row, all equal)."""
        a, b = self.coefficients(float(sigma.reshape(-1)[0]))
        return self.prior.denoise(x, a, b)

    def start(self):
        return start_map(self.family, float(self.sigmas[0]), None, max_denoise=True)


def exact_problem(name: str, family: str, steps: int = 40) -> ExactProblem:
    """The 8-D `gaussian` or `mixture` problem (fixed, seed-independent construction)."""
    validation.choice("problem", name, EXACT_PROBLEMS)
    validation.choice("family", family, FAMILIES)
    variances = torch.tensor([0.3, 0.5, 0.8, 1.0, 1.3, 1.6, 2.0, 2.5], dtype=torch.float64)
    if name == "gaussian":
        prior = DiagonalMixture(torch.ones(1, dtype=torch.float64), torch.zeros(1, DIM, dtype=torch.float64),
                                variances[None])
    else:
        u = torch.tensor([1.0, -1.0] * (DIM // 2), dtype=torch.float64) / math.sqrt(DIM)
        means = torch.stack([0.8 * u, -1.2 * u])  # weights 0.6, 0.4: mean zero
        prior = DiagonalMixture(torch.tensor([0.6, 0.4], dtype=torch.float64), means,
                                torch.stack([variances, variances.flip(0)]))
    rotation, _ = torch.linalg.qr(torch.randn(DIM, DIM, generator=make_generator(8), dtype=torch.float64))
    a = rotation[:REWARDED]
    reward = LinearReward(a, torch.full((REWARDED,), OFFSET, dtype=torch.float64), LENGTH_SCALE)
    # flow starts at σ = 1 (pure noise), eps at σ = 10 with ComfyUI's √(1+σ²) scaling
    return ExactProblem(name, prior, reward, family, schedule(family, steps, full_noise=True))


def base_law(problem: ExactProblem, eta: float = 1.0) -> Gaussian:
    """The exact output law of the untilted ancestral sampler for a Gaussian prior.

    Per coordinate (everything is diagonal): x̂0 = m + g·(x − a·m) with
    g = a·v/(a²v + b²); the step x' = k_a·x + k_b·x̂0 + s·z is affine in x, so the
    mean and variance of x propagate exactly; the last step returns x̂0.
    """
    if problem.prior.num_components != 1:
        raise ValueError(f"base_law needs a Gaussian prior (one component); got {problem.prior.num_components}")
    m, v = problem.prior.means[0], problem.prior.variances[0]
    mean = torch.zeros_like(m)
    var = torch.full_like(v, problem.start().scale ** 2)
    sigmas = problem.sigmas.tolist()
    for sigma, sigma_next in zip(sigmas[:-1], sigmas[1:]):
        a, b = problem.coefficients(sigma)
        gain = a * v / (a * a * v + b * b)
        if sigma_next == 0:
            mean, var = m + gain * (mean - a * m), gain * gain * var
            break
        k = kernel_coefficients(ANCESTRAL, problem.family, sigma, sigma_next, eta)
        slope = k.a + k.b * gain
        mean = slope * mean + k.b * (m - gain * a * m)
        var = slope * slope * var + k.s ** 2
    return Gaussian(mean, torch.diag(var))


def exact_moments(problem: ExactProblem, alpha: float) -> Moments:
    """E[r] and E[x0] under the sampler's own tilted law (Gaussian prior only)."""
    return gaussian_moments(base_law(problem).tilt(problem.reward, alpha), problem.reward)


def reference_sampler(problem: ExactProblem, alphas: list[float], num: int, seed: int = 0,
                      chunk: int = 250_000) -> dict[float, Moments]:
    """Self-normalised importance estimates of E[r] and E[x0] under the tilted law for
    each α: `num` float64 runs of the untilted ancestral chain, weights exp(r(x_N)/α).
    Standard errors by the delta method, √(Σ w̃²(h − ĥ)²)."""
    generator = make_generator(seed)
    scale = problem.start().scale
    sigmas = problem.sigmas.tolist()
    finals = []
    for start in range(0, num, chunk):
        n = min(chunk, num - start)
        x = torch.randn((n, problem.dim), generator=generator, dtype=torch.float64) * scale
        for sigma, sigma_next in zip(sigmas[:-1], sigmas[1:]):
            a, b = problem.coefficients(sigma)
            x0_hat = problem.prior.denoise(x, a, b)
            if sigma_next == 0:
                x = x0_hat
                break
            k = kernel_coefficients(ANCESTRAL, problem.family, sigma, sigma_next, 1.0)
            x = k.a * x + k.b * x0_hat + k.s * torch.randn(x.shape, generator=generator, dtype=torch.float64)
        finals.append(x)
    x = torch.cat(finals)
    r = problem.reward(x)
    out = {}
    for alpha in alphas:
        w = torch.softmax(r / alpha, 0)
        reward = float((w * r).sum())
        mean = w @ x
        reward_se = float(((w * (r - reward)) ** 2).sum().sqrt())
        mean_se = ((w[:, None] * (x - mean)) ** 2).sum(0).sqrt()
        out[alpha] = Moments(reward, mean, reward_se, mean_se)
    return out


@dataclass(frozen=True)
class SMCRun:
    """One seed: weighted estimates of E[r] and E[x0], the smallest ESS over the run,
    and what the run recorded (tempering and guidance, None where not used)."""

    reward: float
    mean: torch.Tensor
    min_ess: float
    trace: object


def perturbed_decode_reward(problem: ExactProblem, scale: float = 0.85, shift: float = 0.3) -> LinearReward:
    """r̂(x0) = r(scale·x0 + shift·1): the reward of a mis-scaled, shifted "decode", a stand-in
    for a cheap approximate decoder (TAESD) in the look-ahead. It is linear-Gaussian again,
    A' = scale·A, b' = b − A·shift·1, so the law an SMC targets when it never corrects r̂ to r
    is known in closed form too (`base_law(problem).tilt(r̂, α)`)."""
    c = torch.full((problem.dim,), float(shift), dtype=torch.float64)
    reward = problem.reward
    return LinearReward(scale * reward.a, reward.b - reward.a @ c, reward.length_scale)


def smc_estimate(problem: ExactProblem, config: SMCConfig, num_particles: int, seed: int,
                 lookahead_reward=None, final_correction: bool = True,
                 initial: InitialConfig | None = None) -> SMCRun:
    """SMC (float32 states) on `problem` with `config`, prior-initialised unless `initial` says
    otherwise (its num_particles is replaced by `num_particles`).

    lookahead_reward: an approximate r̂(x0) for the twist potentials and the chains' tilt (None:
    the exact r). With `final_correction` the final particles are scored with the exact r (the
    target stays p·exp(r/α)); without it r̂ is taken as the reward (the target becomes p·exp(r̂/α))."""
    twist = problem.reward if lookahead_reward is None else lookahead_reward
    final = problem.reward if lookahead_reward is not None and final_correction else None
    lookahead = Lookahead(problem.denoiser, twist, grad_batch_size=num_particles, counter=NFECounter(),
                          final_reward=final)
    generator = make_generator(seed)
    start_config = dataclasses.replace(initial or InitialConfig(method=PRIOR), num_particles=num_particles)
    initial = draw_initial(start_config, lookahead, problem.start(), (problem.dim,), float(problem.sigmas[0]),
                           generator)
    result = run_smc(initial, problem.sigmas, lookahead, config, problem.family, generator)
    reward = problem.reward(result.particles.double())
    return SMCRun(float(result.weighted_mean(reward)), result.weighted_mean(result.particles.double()),
                  result.trace.min_ess, result.trace)


def over_seeds(runs: list[SMCRun]) -> Moments:
    """Mean over seeds, with the standard error sd/√S."""
    s = len(runs)
    rewards = [r.reward for r in runs]
    means = torch.stack([r.mean for r in runs])
    return Moments(statistics.mean(rewards), means.mean(0), statistics.stdev(rewards) / math.sqrt(s),
                   means.std(0) / math.sqrt(s))


def z_scores(estimate: Moments, exact: Moments) -> tuple[float, torch.Tensor]:
    """(z of E[r], z per coordinate of E[x0]) with the two standard errors combined."""
    mean_se = estimate.mean_se if exact.mean_se is None else (estimate.mean_se ** 2 + exact.mean_se ** 2).sqrt()
    return ((estimate.reward - exact.reward) / math.hypot(estimate.reward_se, exact.reward_se),
            (estimate.mean - exact.mean) / mean_se)


def exact_reference(problem: ExactProblem, alphas: list[float], num: int) -> dict[float, Moments]:
    """Closed form for the Gaussian, the importance-weighted reference for the mixture."""
    if problem.name == "gaussian":
        return {alpha: exact_moments(problem, alpha) for alpha in alphas}
    return reference_sampler(problem, alphas, num)
