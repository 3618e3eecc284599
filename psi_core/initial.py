"""Initial particles for the SMC: the Ψ-Sampler posterior over the starting noise
and the baselines it is compared with (Yoon et al. 2025, Ψ-Sampler, arXiv 2506.01320:
initial particles from the reward-aware posterior instead of the Gaussian prior).

The starting state is x_0(ε) = scale·ε + offset (families.StartMap, ComfyUI's noise
scaling), ε [K, ...] standard noise. The reward-aware posterior over ε is

    π(ε) ∝ N(ε; 0, I)·exp(r̂(x_0(ε), σ_0)/α_mcmc),   ∇_ε log-tilt = scale·∇_x r̂/α_mcmc

    pcnl, mala, ula  C chains on π (mcmc.py), run as one batch; after `burn_in`
                     iterations K states are taken, spread over chains and time
                     (thinning); δ is tuned during burn-in by Robbins–Monro on log δ
                     towards `target_acceptance`, then frozen (without burn-in: tuned
                     throughout with a diminishing gain).
    prior            ε ~ N(0, I)  (prior-initialised SMC, the TDS / DAS baseline)
    topk             N prior draws scored forward-only; the K best are kept.

Chain states carry their look-ahead evaluation (x̂0, r̂, ∇_x r̂), so the SMC starts
from them without evaluating again; smc.initial_log_weights weights them against the
SMC's first target.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from . import validation
from .families import StartMap
from .lookahead import Evaluation, Lookahead
from .mcmc import STEPS, ChainState
from .names import ADAPTIVE_KERNELS, INITIAL_METHODS, MALA, MCMC_KERNELS, PCNL, PRIOR, TOPK, ULA
from .rng import randn
from .trace import MCMCRecord, Trace

MAX_STEP_SIZE = {PCNL: 4.0, MALA: 10.0, ULA: 10.0}


@dataclass(frozen=True)
class InitialConfig:
    """Options of the initial-particle stage.

    num_particles K, num_chains C, mcmc_steps T (iterations per chain, burn-in
    included), burn_in B, step_size δ, alpha_mcmc (temperature of the tilt),
    grad_clip (max RMS of ∇_ε f; None = off), adapt_step_size (tune δ during
    burn-in towards target_acceptance, starting from step_size — the paper's δ = 0.5 —
    and frozen after it; with burn_in = 0, over every iteration with a diminishing gain;
    on by default because a fixed δ can stop the chains moving under strong tilts;
    nothing to tune for ULA, which has no acceptance test), topk_candidates N (topk only; 0 = 4·K).
    """

    method: str = PCNL
    num_particles: int = 4
    num_chains: int = 4
    mcmc_steps: int = 20
    burn_in: int = 10
    step_size: float = 0.5
    alpha_mcmc: float = 0.1
    grad_clip: float | None = None
    adapt_step_size: bool = True
    target_acceptance: float = 0.6
    topk_candidates: int = 0

    def validated(self) -> "InitialConfig":
        validation.choice("method", self.method, INITIAL_METHODS)
        validation.integer_at_least("num_particles", self.num_particles, 1)
        if self.method in MCMC_KERNELS:
            validation.integer_at_least("num_chains", self.num_chains, 1)
            validation.integer_at_least("mcmc_steps", self.mcmc_steps, 1)
            validation.integer_at_least("burn_in", self.burn_in, 0)
            if self.burn_in >= self.mcmc_steps:
                raise ValueError(f"burn_in must be smaller than mcmc_steps ({self.mcmc_steps}); got {self.burn_in}")
            available = self.num_chains * (self.mcmc_steps - self.burn_in)
            if self.num_particles > available:
                raise ValueError(
                    f"num_particles={self.num_particles} is more than the {available} chain states after burn-in "
                    f"(num_chains {self.num_chains} × (mcmc_steps {self.mcmc_steps} − burn_in {self.burn_in})); "
                    "add chains or iterations, or ask for fewer particles")
            validation.in_range("step_size", self.step_size, 0.0, MAX_STEP_SIZE[self.method], low_open=True)
            validation.positive_finite("alpha_mcmc", self.alpha_mcmc)
            if self.grad_clip is not None:
                validation.positive_finite("grad_clip", self.grad_clip)
            if self.adapt_step_size:
                validation.in_range("target_acceptance", self.target_acceptance, 0.0, 1.0, low_open=True, high_open=True)
        if self.method == TOPK:
            validation.integer_at_least("topk_candidates", self.topk_candidates, 0)
            if self.topk_candidates and self.topk_candidates < self.num_particles:
                raise ValueError(f"topk_candidates must be >= num_particles ({self.num_particles}); "
                                 f"got {self.topk_candidates}")
        return self

    @property
    def candidates(self) -> int:
        return self.topk_candidates or 4 * self.num_particles


@dataclass
class InitialParticles:
    """K starting particles.

    noise: [K, ...] the standard noise ε of each particle
    x: [K, ...] the starting states x_0(ε) = scale·ε + offset
    evaluation: look-ahead at x (None where none was made: prior); made by the look-ahead the SMC uses
    alpha_mcmc: temperature of the tilt the particles follow (None: untilted)
    tilt_reward: [K] the r̂ the chains targeted, kept where `evaluation` was dropped (another
        model, reward or decoder evaluates the SMC's first twist): the initial weights then
        correct N·exp(r̂_tilt/α_mcmc) to the first twist exactly (None: evaluation.reward)
    """

    method: str
    noise: torch.Tensor
    x: torch.Tensor
    sigma0: float
    evaluation: Evaluation | None = None
    alpha_mcmc: float | None = None
    trace: Trace = field(default_factory=lambda: Trace(method=PRIOR))
    tilt_reward: torch.Tensor | None = None


def thinning_schedule(num_particles: int, num_chains: int, mcmc_steps: int, burn_in: int) -> list[tuple[int, int]]:
    """(iteration, chain) pairs of the kept states: K spread over chains first, then
    evenly over each chain's post-burn-in iterations, latest first."""
    picks = []
    for chain in range(num_chains):
        count = num_particles // num_chains + (1 if chain < num_particles % num_chains else 0)
        if count == 0:
            continue
        gap = (mcmc_steps - burn_in) // count
        picks.extend((mcmc_steps - 1 - j * gap, chain) for j in range(count))
    return sorted(picks)


def draw_initial(config: InitialConfig, lookahead: Lookahead, start: StartMap, shape: tuple[int, ...],
                 sigma0: float, generator: torch.Generator, device: torch.device | str = "cpu",
                 on_iteration=None) -> InitialParticles:
    """Draw K initial particles of latent `shape` ([C, H, W] or any per-particle shape).

    `on_iteration(i, total, record)` is called after every MCMC iteration (progress,
    interrupts, live events)."""
    config = config.validated()
    check_start_shape(start, shape)
    k = config.num_particles
    if config.method == PRIOR:
        eps = randn((k, *shape), generator, device)
        return InitialParticles(PRIOR, eps, start(eps), float(sigma0), trace=Trace(method=PRIOR))
    if config.method == TOPK:
        return _top_k(config, lookahead, start, shape, sigma0, generator, device)
    return _mcmc(config, lookahead, start, shape, sigma0, generator, device, on_iteration)


def check_start_shape(start: StartMap, shape: tuple[int, ...]) -> None:
    """The start map's latent (img2img or a non-empty latent) must be one latent of
    the particles' shape: [1, *shape]."""
    if start.offset is None:
        return
    offset = tuple(start.offset.shape)
    if offset != (1, *tuple(shape)):
        raise ValueError(f"the latent has shape {offset} but the particles have shape {tuple(shape)}; "
                         f"the latent must be one latent of that shape, {(1, *tuple(shape))}")


def _top_k(config, lookahead, start, shape, sigma0, generator, device) -> InitialParticles:
    eps = randn((config.candidates, *shape), generator, device)
    x = start(eps)
    evaluation = lookahead(x, sigma0, need_grad=False)
    # invalid candidates have reward −inf and sort last
    best = torch.argsort(evaluation.reward.cpu(), descending=True, stable=True)[: config.num_particles]
    trace = Trace(method=TOPK)
    return InitialParticles(TOPK, eps[best.to(eps.device)], x[best.to(x.device)], float(sigma0),
                            evaluation.select(best), None, trace)


def make_potential(lookahead: Lookahead, start: StartMap, sigma0: float, alpha_mcmc: float):
    """ε [C, ...] ↦ ChainState with f = r̂(x_0(ε), σ_0)/α_mcmc [C] and ∇_ε f = scale·∇_x r̂/α_mcmc
    [C, ...] (the chain rule through x_0(ε) = scale·ε + offset)."""
    def potential(eps: torch.Tensor) -> ChainState:
        evaluation = lookahead(start(eps), sigma0, need_grad=True)
        f = evaluation.reward / alpha_mcmc
        grad = evaluation.grad * (start.scale / alpha_mcmc)
        return ChainState(eps=eps, f=f, grad=grad, evaluation=evaluation)

    return potential


def _mcmc(config, lookahead, start, shape, sigma0, generator, device, on_iteration) -> InitialParticles:
    potential = make_potential(lookahead, start, float(sigma0), config.alpha_mcmc)
    step = STEPS[config.method]
    trace = Trace(method=config.method, alpha_mcmc=config.alpha_mcmc)
    state = potential(randn((config.num_chains, *shape), generator, device))
    schedule = thinning_schedule(config.num_particles, config.num_chains, config.mcmc_steps, config.burn_in)
    wanted: dict[int, list[int]] = {}
    for iteration, chain in schedule:
        wanted.setdefault(iteration, []).append(chain)
    kept: list[ChainState] = []
    step_size = float(config.step_size)
    log_step = math.log(step_size)
    adapting = config.adapt_step_size and config.method in ADAPTIVE_KERNELS
    trace.adaptation = ("off" if not adapting else "burn_in" if config.burn_in > 0 else "diminishing")
    for i in range(config.mcmc_steps):
        state, info = step(state, potential, step_size, generator, config.grad_clip)
        burn = i < config.burn_in
        record = MCMCRecord(iteration=i, step_size=step_size, accepted=info.accepted.cpu(),
                            reward=state.evaluation.reward.detach().cpu(), burn_in=burn)
        trace.mcmc.append(record)
        if adapting and (burn or config.burn_in == 0):
            # Robbins–Monro on log δ; frozen after burn-in so kept states come from a fixed kernel.
            # Without burn-in the gain (i+1)^−0.6 → 0 is diminishing adaptation (Roberts & Rosenthal
            # 2007), which keeps the chains' limit law. ULA accepts every finite move, so adapting its
            # δ to an acceptance would only grow it
            gain = 1.0 / (i + 1) ** 0.6
            log_step += gain * (float(info.accepted.float().mean()) - config.target_acceptance)
            step_size = min(math.exp(log_step), MAX_STEP_SIZE[config.method] * 0.999)
            log_step = math.log(step_size)
        if i in wanted:
            idx = torch.tensor(wanted[i], dtype=torch.long)
            kept.append(_select(state, idx))
        if on_iteration is not None:
            on_iteration(i + 1, config.mcmc_steps, record)
    chains = _concat(kept)
    trace.distinct_initial = distinct_count(chains.eps)
    return InitialParticles(config.method, chains.eps, start(chains.eps), float(sigma0),
                            chains.evaluation, config.alpha_mcmc, trace)


def distinct_count(x: torch.Tensor) -> int:
    """Number of distinct rows of x [K, ...] (a rejected MCMC move repeats its state exactly)."""
    return int(torch.unique(x.reshape(x.shape[0], -1).cpu(), dim=0).shape[0])


def _select(state: ChainState, idx: torch.Tensor) -> ChainState:
    dev = state.eps.device
    return ChainState(eps=state.eps[idx.to(dev)], f=state.f[idx.to(state.f.device)],
                      grad=state.grad[idx.to(state.grad.device)], evaluation=state.evaluation.select(idx))


def _concat(parts: list[ChainState]) -> ChainState:
    return ChainState(eps=torch.cat([p.eps for p in parts]), f=torch.cat([p.f for p in parts]),
                      grad=torch.cat([p.grad for p in parts]),
                      evaluation=Evaluation.concat([p.evaluation for p in parts]))
