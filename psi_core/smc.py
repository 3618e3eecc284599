"""Reward-guided SMC over a ComfyUI sigma schedule (brief §1.2).

At each step σ → σ' the model's ancestral kernel p_θ(x' | x) = N(μ, s²I) is the
base transition. The guided proposal shifts its mean by the look-ahead gradient:

    q(x' | x) = N(μ + s²·v, s²I),   v = γ·∇_x r̂(x, σ)/α
    log w += [r̂(x', σ') − r̂(x, σ)]/α + log p_θ(x'|x) − log q(x'|x)
    log p_θ/q = −⟨x' − μ, v⟩ + s²|v|²/2

One look-ahead evaluation per particle per step: r̂(x', σ') and its gradient are
what the next step needs, so they are cached and index-selected on resampling.
The last step (σ' = 0) is deterministic, x' = x̂0, and r(x') = r̂(x, σ) exactly, so
its weight increment is zero and the final reward is the cached look-ahead of the
output itself. Gradient-free mode (FK-steering style) proposes from p_θ and
weights by reward differences, with forward passes only.

Resampling happens at the start of a step when ESS < τ·K, so the initial weights
(and every later one) are acted on before the particles move.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch

from . import validation
from .families import FAMILIES, KERNELS, kernel_coefficients
from .initial import InitialParticles
from .lookahead import Evaluation, Lookahead
from .resampling import RESAMPLERS, resample
from .rng import randn_like
from .trace import SMCRecord, Trace
from .weights import LogWeights

OUTPUTS = ("best", "all", "sample")
INITIAL_WEIGHTS = ("consistent", "reference")


@dataclass(frozen=True)
class SMCConfig:
    """alpha: reward temperature α of the target p0·exp(r/α).
    ess_threshold τ: resample when ESS < τ·K (0 never, 1 at every step with unequal weights).
    resampling: systematic | stratified | multinomial | residual | ssp.
    kernel: the model's stochastic step p_θ — ancestral (ComfyUI's euler_ancestral /
        euler_ancestral_RF) | lcm (ComfyUI's lcm: x̂0 re-noised to σ', for distilled models).
    eta: ancestral noise η of the base kernel (1 = full ancestral step; unused by lcm).
    guidance γ: scale of the gradient shift of the proposal mean.
    gradient_free: propose from p_θ, forward passes only (γ ignored).
    output: best (highest final reward) | all | sample (one drawn by final weight).
    initial_weights: consistent (r̂·(1/α − 1/α_mcmc) for tilted particles) |
        reference (r̂/α always, the reference code's double-counted tilt).
    record_x0_steps: step indices whose predicted clean latents the trace keeps.
    """

    alpha: float = 0.1
    ess_threshold: float = 0.5
    resampling: str = "systematic"
    eta: float = 1.0
    kernel: str = "ancestral"
    guidance: float = 1.0
    gradient_free: bool = False
    output: str = "best"
    initial_weights: str = "consistent"
    record_x0_steps: tuple[int, ...] = ()

    def validated(self) -> "SMCConfig":
        validation.positive_finite("alpha", self.alpha)
        validation.in_range("ess_threshold", self.ess_threshold, 0.0, 1.0)
        validation.choice("resampling", self.resampling, RESAMPLERS)
        validation.in_range("eta", self.eta, 0.0, 1.0)
        validation.choice("kernel", self.kernel, KERNELS)
        validation.in_range("guidance", self.guidance, 0.0, 1e6)
        validation.choice("output", self.output, OUTPUTS)
        validation.choice("initial_weights", self.initial_weights, INITIAL_WEIGHTS)
        return self

    @property
    def guided(self) -> bool:
        return not self.gradient_free and self.guidance > 0


@dataclass
class SMCState:
    x: torch.Tensor            # [K, ...] current states at sigma
    log_weights: LogWeights    # [K]
    evaluation: Evaluation     # look-ahead at x


@dataclass
class SMCResult:
    samples: torch.Tensor      # [n_out, ...] output latents (σ = 0)
    selected: list[int]        # indices of the output particles among the K
    particles: torch.Tensor    # [K, ...] all final latents
    final_reward: torch.Tensor  # [K] r at σ = 0
    log_weights: LogWeights    # final weights
    trace: Trace


def initial_log_weights(reward: torch.Tensor, alpha: float, alpha_mcmc: float | None, mode: str) -> torch.Tensor:
    """log w_0 (float64, [K]): r̂·(1/α − 1/α_mcmc) for particles from the α_mcmc tilt
    (zero when the temperatures agree), r̂/α for untilted ones or in reference mode."""
    r = reward.detach().to("cpu", torch.float64)
    factor = 1.0 / alpha if (alpha_mcmc is None or mode == "reference") else 1.0 / alpha - 1.0 / alpha_mcmc
    log_w = r * factor
    return torch.where(torch.isfinite(r), log_w, torch.full_like(r, -math.inf))


def smc_init(initial: InitialParticles, lookahead: Lookahead, config: SMCConfig, need_grad: bool) -> SMCState:
    """Weights and look-ahead at the start; reuses the initial sampler's evaluation."""
    evaluation = initial.evaluation
    if evaluation is None or (need_grad and evaluation.grad is None):
        evaluation = lookahead(initial.x, initial.sigma0, need_grad)
    log_w = initial_log_weights(evaluation.reward, config.alpha, initial.alpha_mcmc, config.initial_weights)
    return SMCState(x=initial.x, log_weights=LogWeights(log_w), evaluation=evaluation)


def smc_step(state: SMCState, step: int, sigma: float, sigma_next: float, lookahead: Lookahead,
             config: SMCConfig, family: str, generator: torch.Generator, need_grad_next: bool,
             record_x0: bool = False) -> tuple[SMCState, SMCRecord]:
    """Resample if ESS < τ·K, then move every particle σ → σ' and reweight."""
    k = state.x.shape[0]
    ess = state.log_weights.ess
    if config.ess_threshold > 0 and ess < config.ess_threshold * k:
        ancestors = resample(state.log_weights.normalized, config.resampling, k, generator)
        x = state.x[ancestors.to(state.x.device)]
        evaluation = state.evaluation.select(ancestors)
        log_weights = LogWeights.uniform(k)
        resampled = True
    else:
        ancestors = torch.arange(k)
        x, evaluation, log_weights, resampled = state.x, state.evaluation, state.log_weights, False

    if sigma_next == 0:
        x_new = evaluation.x0_hat
        new_eval = Evaluation(x0_hat=x_new, reward=evaluation.reward, grad=None)
        increment = torch.zeros(k, dtype=torch.float64)
    else:
        coeff = kernel_coefficients(config.kernel, family, sigma, sigma_next, config.eta)
        mean = coeff.mean(x, evaluation.x0_hat)
        noise = randn_like(x, generator) * coeff.s
        log_ratio = torch.zeros(k, dtype=torch.float64)
        if config.guided and coeff.s > 0:
            shift = evaluation.grad.to(x.device) * (config.guidance / config.alpha)
            x_new = mean + shift * coeff.s ** 2 + noise
            # log p_θ − log q with x' − μ = s²v + s·z
            diff = (x_new - mean).flatten(1).double()
            v = shift.flatten(1).double()
            log_ratio = (-(diff * v).sum(1) + coeff.s ** 2 * (v * v).sum(1) / 2.0).cpu()
            del shift, diff, v
        else:
            x_new = mean + noise
        # the proposal's temporaries (K latents each) must not live through the look-ahead,
        # whose gradient pass is the memory peak
        del mean, noise
        new_eval = lookahead(x_new, sigma_next, need_grad_next)
        delta = (new_eval.reward.double() - evaluation.reward.double()).cpu() / config.alpha
        increment = delta + log_ratio
    log_weights = log_weights.add(increment)
    record = SMCRecord(
        step=step, sigma=float(sigma), sigma_next=float(sigma_next), ess=ess, resampled=resampled,
        ancestors=ancestors.cpu(), log_weights=torch.log(log_weights.normalized),
        reward=new_eval.reward.detach().cpu(), ess_after=log_weights.ess,
        x0_hat=new_eval.x0_hat.detach().cpu() if record_x0 else None,
    )
    return SMCState(x=x_new, log_weights=log_weights, evaluation=new_eval), record


def run_smc(initial: InitialParticles, sigmas: torch.Tensor, lookahead: Lookahead, config: SMCConfig,
            family: str, generator: torch.Generator, on_step=None) -> SMCResult:
    """Run the SMC from `initial` over `sigmas` (σ_0 must equal initial.sigma0).

    `on_step(i, total, record, state)` is called after every step (progress bar,
    interrupt check, live events). `initial` is not modified: the result carries a
    new trace that starts with a copy of the initial sampler's records."""
    config = config.validated()
    validation.choice("family", family, FAMILIES)
    validation.sigmas(sigmas)
    schedule = [float(s) for s in sigmas.tolist()]
    if not math.isclose(schedule[0], float(initial.sigma0), rel_tol=1e-6, abs_tol=1e-9):
        raise ValueError(f"sigmas[0]={schedule[0]} does not match the initial particles' sigma {initial.sigma0}")
    steps = len(schedule) - 1
    # a fresh trace: the initial particles (and their trace) stay as the caller made them
    trace = dataclasses.replace(initial.trace, mcmc=list(initial.trace.mcmc), smc=[], selected=[], nfe={},
                                alpha=config.alpha)
    state = smc_init(initial, lookahead, config, need_grad=config.guided and steps > 1)
    trace.initial_reward = state.evaluation.reward.detach().cpu()
    trace.initial_log_weights = torch.log(state.log_weights.normalized)
    record_steps = set(config.record_x0_steps)
    if record_steps:
        trace.initial_x0_hat = state.evaluation.x0_hat.detach().cpu()
    for i in range(steps):
        need_grad_next = config.guided and i + 2 < steps  # the state after step i+1 moves stochastically
        state, record = smc_step(state, i, schedule[i], schedule[i + 1], lookahead, config, family,
                                 generator, need_grad_next, record_x0=i in record_steps)
        trace.smc.append(record)
        if on_step is not None:
            on_step(i + 1, steps, record, state)
    final_reward = state.evaluation.reward.detach().cpu()
    selected = select_output(config.output, final_reward, state.log_weights, generator)
    trace.selected = selected
    trace.invalid_particles = lookahead.invalid_count
    trace.nfe = lookahead.counter.as_dict()
    index = torch.tensor(selected, dtype=torch.long, device=state.x.device)
    return SMCResult(samples=state.x[index], selected=selected, particles=state.x, final_reward=final_reward,
                     log_weights=state.log_weights, trace=trace)


def select_output(mode: str, final_reward: torch.Tensor, log_weights: LogWeights,
                  generator: torch.Generator) -> list[int]:
    """Indices of the output particles: best final reward among particles with
    non-zero weight, all of them, or one drawn from the final weights."""
    if mode == "all":
        return list(range(final_reward.numel()))
    if mode == "sample":
        return [int(resample(log_weights.normalized, "multinomial", 1, generator)[0])]
    alive = log_weights.log_w > -math.inf
    reward = torch.where(alive, final_reward.double(), torch.full_like(final_reward, -math.inf, dtype=torch.float64))
    return [int(torch.argmax(reward))]
