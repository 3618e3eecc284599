"""One toy run of a method at a given NFE budget, with its metrics against the exact target."""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from .. import validation
from ..budget import NFECounter, distinct_chains, plan_budget
from ..initial import InitialConfig, draw_initial
from ..lookahead import Lookahead
from ..names import BON, DEFAULT_SCHEME, METHODS, PCNL, PRIOR
from ..rng import make_generator
from ..smc import SMCConfig, run_smc
from .metrics import energy_distance, merge_duplicates, mode_report
from .problems import ToyProblem


@dataclass(frozen=True)
class ToySettings:
    """Knobs of a toy run (defaults follow the paper's ratios)."""

    method: str = PCNL
    nfe: int = 500
    seed: int = 0
    step_size: float = 0.5
    num_chains: int = 10
    distinct_chains: bool = False  # budget.distinct_chains: at least num_chains, more where copies would pile up
    burn_in_fraction: float = 0.5
    initial_fraction: float = 0.5
    alpha_mcmc_factor: float = 1.0  # α_mcmc = factor × the problem's α_mcmc (= α for every toy problem)
    target_samples: int = 2000
    gradient_free: bool = False
    ess_threshold: float = 0.5
    resampling: str = DEFAULT_SCHEME
    adapt_step_size: bool = True
    tempering: bool = True
    lambda_one_at: str = "final"
    full_tilt_guidance: bool = False
    tempering_ess: float = SMCConfig.tempering_ess
    ess_by_steps: bool = True
    guidance_clip: float = 1.0


@dataclass
class ToySample:
    """The weighted output of one toy run of `method`: samples [n, d], weights [n] (normalised), rewards [n],
    MCMC acceptance (None without MCMC), the run's trace (None for Best-of-N), its NFE
    counter, particle count and wall time."""

    method: str
    samples: torch.Tensor
    weights: torch.Tensor
    reward: torch.Tensor
    acceptance: float | None
    trace: object
    counter: NFECounter
    particles: int
    wall_s: float


def sample_toy(problem: ToyProblem, settings: ToySettings) -> ToySample:
    """Run `settings.method` on `problem` at `settings.nfe` evaluations."""
    validation.choice("method", settings.method, METHODS)
    steps = problem.sigmas.numel() - 1
    chains = settings.num_chains
    if settings.distinct_chains and settings.method != BON:
        particles = plan_budget(settings.method, settings.nfe, steps, chains, settings.initial_fraction).num_particles
        chains = distinct_chains(particles, int(round(settings.nfe * settings.initial_fraction)), chains,
                                 settings.burn_in_fraction)
    plan = plan_budget(settings.method, settings.nfe, steps, chains, settings.initial_fraction)
    generator = make_generator(settings.seed)
    counter = NFECounter()
    lookahead = Lookahead(problem.denoiser, problem.reward, grad_batch_size=64, forward_batch_size=256,
                          counter=counter)
    start = problem.start()
    started = time.perf_counter()
    trace = None
    if settings.method == BON:
        samples, weights, reward, acceptance = _best_of_n(problem, plan.num_particles, lookahead, generator)
    else:
        burn_in = int(plan.mcmc_steps * settings.burn_in_fraction)
        config = InitialConfig(
            method=settings.method, num_particles=plan.num_particles, num_chains=chains,
            mcmc_steps=max(plan.mcmc_steps, 1), burn_in=burn_in, step_size=settings.step_size,
            alpha_mcmc=problem.alpha_mcmc * settings.alpha_mcmc_factor, topk_candidates=plan.topk_candidates,
            adapt_step_size=settings.adapt_step_size)
        initial = draw_initial(config, lookahead, start, (problem.dim,), float(problem.sigmas[0]), generator)
        result = run_smc(initial, problem.sigmas, lookahead,
                         SMCConfig(alpha=problem.alpha, kernel=problem.kernel, gradient_free=settings.gradient_free,
                                   ess_threshold=settings.ess_threshold, resampling=settings.resampling,
                                   tempering=settings.tempering, lambda_one_at=settings.lambda_one_at,
                                   full_tilt_guidance=settings.full_tilt_guidance, tempering_ess=settings.tempering_ess,
                                   ess_by_steps=settings.ess_by_steps,
                                   guidance_clip=settings.guidance_clip,
                                   output="all"),
                         problem.family, generator)
        samples = result.particles
        weights = result.log_weights.normalized
        reward = problem.reward(samples)
        acceptance = result.trace.acceptance
        trace = result.trace
    return ToySample(settings.method, samples, weights, reward, acceptance, trace, counter, plan.num_particles,
                     time.perf_counter() - started)


def run_toy(problem: ToyProblem, settings: ToySettings) -> dict:
    """Run `settings.method` on `problem`; returns the metrics dict of the CLI."""
    return toy_metrics(problem, sample_toy(problem, settings), settings.seed, settings.target_samples,
                       settings.method)


def toy_metrics(problem: ToyProblem, run: ToySample, seed: int, target_samples: int = 2000,
                method: str | None = None) -> dict:
    """The CLI's metrics of one run against `target_samples` exact target samples (drawn from seed
    10000 + seed)."""
    samples, weights, reward, trace = run.samples, run.weights, run.reward, run.trace
    exact, _ = problem.target.sample(target_samples, make_generator(10_000 + seed))
    report = {
        "method": method or run.method, "kind": problem.family, "dim": problem.dim, "denoiser": problem.denoiser_kind,
        **run.counter.as_dict(),
        "particles": run.particles,
        "reward_mean": float((weights.double() * reward.double().cpu()).sum()),
        "target_reward_mean": problem.target_reward_mean,
        "energy_distance": energy_distance(samples.cpu(), weights, exact),
        "energy_distance_plugin": energy_distance(samples.cpu(), weights, exact, unbiased=False),
        **mode_report(samples.cpu(), weights, problem.target),
        "distinct_final": int(merge_duplicates(samples.cpu(), weights)[0].shape[0]),
        "distinct_initial": None if trace is None else trace.distinct_initial,
        "adaptation": None if trace is None else trace.adaptation,
        "acceptance": run.acceptance,
        "final_step_size": None if trace is None else trace.final_step_size,
        "min_ess": None if trace is None else trace.min_ess,
        "ess": None if trace is None else float(1.0 / (weights.double() ** 2).sum()),
        "wall_s": run.wall_s,
    }
    report["reward_gap"] = abs(report["reward_mean"] - report["target_reward_mean"])
    return report


def _best_of_n(problem: ToyProblem, n: int, lookahead: Lookahead, generator):
    """Best-of-N: N plain ancestral samples (no reward in the loop), keep the best."""
    prior = draw_initial(InitialConfig(method=PRIOR, num_particles=n), lookahead, problem.start(),
                         (problem.dim,), float(problem.sigmas[0]), generator)
    plain = run_smc(prior, problem.sigmas, lookahead,
                    SMCConfig(alpha=1e30, kernel=problem.kernel, gradient_free=True, ess_threshold=0.0, output="all"),
                    problem.family, generator)
    reward = problem.reward(plain.particles)
    best = int(torch.argmax(reward))
    return plain.particles[best:best + 1], torch.ones(1, dtype=torch.float64), reward[best:best + 1], None
