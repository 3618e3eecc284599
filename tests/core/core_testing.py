"""Helpers shared by the psi_core tests: hand-written potentials with closed-form
targets, instrumented denoisers, and small exact-target toy runs."""

from __future__ import annotations

from collections import Counter

import torch

from psi_sampler.psi_core import InitialConfig, Lookahead, NFECounter, SMCConfig, draw_initial, make_generator, run_smc
from psi_sampler.psi_core.lookahead import Evaluation
from psi_sampler.psi_core.mcmc import ChainState
from psi_sampler.psi_core.toy import figure1


def chain_state(eps: torch.Tensor, f: torch.Tensor, grad: torch.Tensor) -> ChainState:
    """A ChainState whose 'look-ahead' is the identity (x̂0 = ε, reward = f)."""
    f = f.float()
    grad = grad.float()
    return ChainState(eps=eps, f=f, grad=grad, evaluation=Evaluation(x0_hat=eps, reward=f, grad=grad))


class QuadraticTilt:
    """f(ε) = −|Aε − b|²/2 on a N(0, I) prior: the target π is N(m, Σ) with
    Σ = (I + AᵀA)⁻¹ and m = Σ·Aᵀb (computed in float64)."""

    def __init__(self, a: torch.Tensor, b: torch.Tensor):
        self.a = a.double()
        self.b = b.double()
        precision = torch.eye(a.shape[1], dtype=torch.float64) + self.a.T @ self.a
        self.cov = torch.linalg.inv(precision)
        self.mean = self.cov @ self.a.T @ self.b

    def __call__(self, eps: torch.Tensor) -> ChainState:
        resid = eps.double() @ self.a.T - self.b
        f = -0.5 * (resid * resid).sum(1)
        grad = -(resid @ self.a)
        return chain_state(eps, f, grad)


class DiagonalTilt:
    """f(ε) = −Σ_j λ_j(ε_j − b_j)²/2: π is N(λb/(1+λ), diag(1/(1+λ)))."""

    def __init__(self, lam: torch.Tensor, b: torch.Tensor):
        self.lam = lam.double()
        self.b = b.double()
        self.var = 1.0 / (1.0 + self.lam)
        self.mean = self.lam * self.b / (1.0 + self.lam)

    def __call__(self, eps: torch.Tensor) -> ChainState:
        diff = eps.double() - self.b
        f = -0.5 * (self.lam * diff * diff).sum(1)
        return chain_state(eps, f, -self.lam * diff)


def run_chains(step, potential, num_chains: int, dim: int, iterations: int, step_size: float, seed: int):
    """Run `iterations` steps of `step` from N(0, I); returns (final ε [C, d] float64,
    acceptance per iteration [iterations] float)."""
    generator = make_generator(seed)
    state = potential(torch.randn((num_chains, dim), generator=generator))
    rates = []
    for _ in range(iterations):
        state, info = step(state, potential, step_size, generator)
        rates.append(float(info.accepted.float().mean()))
    return state.eps.double(), torch.tensor(rates)


class RecordingDenoiser:
    """Wraps a denoiser: records the batch size of every call and how often each
    distinct (σ, row) was evaluated; `explode=True` fails the test if it is called."""

    def __init__(self, denoiser=None, explode: bool = False):
        self.denoiser = denoiser
        self.explode = explode
        self.batch_sizes: list[int] = []
        self.rows: Counter = Counter()

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        if self.explode:
            raise AssertionError("the model was called before the input was validated")
        self.batch_sizes.append(x.shape[0])
        s = float(sigma.reshape(-1)[0])
        for row in x.detach().reshape(x.shape[0], -1):
            self.rows[(s, row.numpy().tobytes())] += 1
        return self.denoiser(x, sigma)


def exploding_reward(x0: torch.Tensor) -> torch.Tensor:
    raise AssertionError("the reward was called before the input was validated")


def small_problem(kind: str = "flow", steps: int = 6, dim: int = 3):
    return figure1(kind, steps=steps, dim=dim)


def toy_run(problem, method: str = "pcnl", seed: int = 0, num_particles: int = 8, num_chains: int = 4,
            mcmc_steps: int = 6, burn_in: int = 2, grad_batch_size: int = 64, denoiser=None, reward=None,
            smc: SMCConfig | None = None, initial: dict | None = None):
    """Initial particles + SMC on a toy problem; returns (InitialParticles, SMCResult, NFECounter)."""
    counter = NFECounter()
    lookahead = Lookahead(denoiser or problem.denoiser, reward or problem.reward,
                          grad_batch_size=grad_batch_size, counter=counter)
    generator = make_generator(seed)
    config = InitialConfig(method=method, num_particles=num_particles, num_chains=num_chains,
                           mcmc_steps=mcmc_steps, burn_in=burn_in, alpha_mcmc=problem.alpha_mcmc,
                           **(initial or {}))
    start = problem.start()
    init = draw_initial(config, lookahead, start, (problem.dim,), float(problem.sigmas[0]), generator)
    result = run_smc(init, problem.sigmas, lookahead, smc or SMCConfig(alpha=problem.alpha, output="all"),
                     problem.family, generator)
    return init, result, counter


def weighted_mean(values: torch.Tensor, weights: torch.Tensor) -> float:
    w = weights.double() / weights.double().sum()
    return float((w * values.double()).sum())
