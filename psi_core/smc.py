"""Reward-guided SMC over a ComfyUI sigma schedule: the SMC stage of Ψ-Sampler (Yoon et al.
2025, arXiv 2506.01320), a twisted SMC in the sense of TDS (Wu et al. 2023) and DAS (Kim et
al. 2025), an SMC sampler in the sense of Del Moral, Doucet & Jasra (2006).

Notation: K particles x [K, ...] at σ, the look-ahead r̂(x, σ) = r(x̂0(x, σ)) [K] and its
gradient ∇_x r̂ [K, ...] (lookahead.py), log-weights log w [K] (float64, weights.py).

Base kernel. At each step σ → σ' the model's stochastic step (families.py) is the Gaussian

    p_θ(x' | x) = N(x'; μ(x), s²I),   μ = a·x + b·x̂0(x, σ)   [K, ...],   s a scalar.

Targets. The intermediate targets are tempered twists (DAS):

    γ_t(x_{0:t}) ∝ p_θ(x_{0:t})·exp(λ_t·r̂(x_t, σ_t)/α),   0 ≤ λ_0 ≤ … ≤ λ_{N−1} = 1,

so the last target is the model's path law tilted by exp(r(x0)/α) whatever the λ path, and
the weighted particles at σ = 0 target p_θ(x0)·exp(r(x0)/α)/Z.

Guided proposal (`smc_step`, `controlled_shift`). The mean is shifted by the tempered
look-ahead gradient, scaled per particle so it cannot overshoot:

    v = λ_t·γ·∇_x r̂(x, σ)/α                                  [K, ...]
    v ← v·min(1, c/(s·rms(v)))   per particle (c = guidance_clip; rms over coordinates)
    q(x' | x) = N(x'; μ + s²·v, s²I)

The scaling is a deterministic function of x, so q is still Gaussian with a known mean.

Incremental weight [K] (the exact density ratio of the proposal actually used):

    log w ← log w + [λ_{t+1}·r̂(x', σ') − λ_t·r̂(x, σ)]/α + log p_θ(x'|x) − log q(x'|x)
    log p_θ(x'|x) − log q(x'|x) = −⟨x' − μ, v⟩ + s²|v|²/2

Consistent initial weight (`initial_log_weights`). Particles drawn from the initial
sampler's tilt π(ε) ∝ N(ε; 0, I)·exp(r̂/α_mcmc) (initial.py) enter the first target
exp(λ_0·r̂/α) with

    log w_0 = r̂·(λ_0/α − 1/α_mcmc)   [K]     (untilted particles: λ_0·r̂/α)

which is zero when λ_0 = α/α_mcmc: the chains already sampled the first target.

Tempering. λ_{t+1} ∈ [λ_t, 1] is the largest value whose conditional ESS of the
increments (Zhou, Johansen & Aston 2016) stays at the step's target (`step_ess_target`:
`tempering_ess`, loosened below 40 steps), found by bisection after the move, but at least
λ_t^((n−1)/n) with n steps left (a geometric path in log λ). By default (lambda_one_at
"final") σ = 0 counts as the last of those n steps: λ may stay below 1 at the last σ > 0
and the exact final increment below completes the tilt; with "last_noisy" λ reaches 1
at the last σ > 0.

One look-ahead evaluation per particle per step: r̂(x', σ') and its gradient are
what the next step needs, so they are cached and index-selected on resampling.
Gradient-free mode (as in FK steering, Singhal et al. 2025) proposes from p_θ and weights by (tempered)
reward differences, with forward passes only.

The last step (σ' = 0) is deterministic, x0 = x̂0(x, σ), and its target is the one
the run is for, p_θ(x_{0:N})·exp(r(x0)/α), with r the exact reward. Its increment
replaces the last twist by the exact reward (twisted SMC: Wu et al. 2023, TDS;
Chopin & Papaspiliopoulos 2020, ch. 10):

    log w += [r(x0) − λ·r̂(x, σ)]/α

Summed over the steps every intermediate λ_t·r̂_t/α cancels (each is added by the
step that reaches x_t and subtracted by the step that leaves it), so the final
weights are γ_N/q for any twist r̂: an approximate look-ahead (a cheaper decoder,
`Lookahead.final_reward`) changes the variance of the weights, never the target.
With the exact look-ahead r̂(x, σ) = r(x̂0) and the increment is (1 − λ)·r̂/α, zero
at λ = 1; with an approximate one the final particles are scored again with r
(forward only) and that is the final reward. The initial weights use the r̂ of the
first twist (see `initial_log_weights`), so the sum telescopes from the start.

Resampling happens at the start of a step when ESS < τ·K, so the initial weights (and
every later one) are acted on before the particles move (adaptive resampling, Chopin &
Papaspiliopoulos 2020, ch. 10).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch

from . import validation
from .families import FAMILIES, kernel_coefficients
from .initial import InitialParticles
from .lookahead import Evaluation, Lookahead
from .names import ANCESTRAL, BASE_KERNELS, DEFAULT_SCHEME, MULTINOMIAL
from .resampling import RESAMPLERS, resample
from .rng import randn_like
from .trace import SMCRecord, Trace
from .weights import LogWeights, ProposalDivergedError

OUTPUTS = ("best", "all", "sample")
INITIAL_WEIGHTS = ("consistent", "reference")
LAST_NOISY, FINAL = "last_noisy", "final"
LAMBDA_ONE_AT = (FINAL, LAST_NOISY)


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
    tempering: intermediate targets λ_t·r̂/α with λ chosen adaptively, rising to 1 by σ = 0
        (by the last σ > 0 with lambda_one_at last_noisy; off: λ = 1 throughout, the untempered
        twist of TDS).
    tempering_ess: conditional-ESS fraction each λ increment keeps, in (0, 1), at 40 steps or more;
        over N < 40 steps each increment keeps tempering_ess^((40/N)²) (`step_ess_target`;
        ess_by_steps False: tempering_ess at any step count, the rule before few-step models).
    lambda_one_at: final (λ's geometric floor counts σ = 0 as its last step; the exact final
        increment [r(x0) − λ·r̂]/α completes the tilt, so no noisy step takes the rest of it
        when there are few) | last_noisy (λ forced to 1 at the last σ > 0).
    full_tilt_guidance: shift the proposal by the full twist's gradient (λ = 1) while the weights
        follow the tempered targets (exact either way: log p_θ − log q corrects the proposal).
    guidance_clip c: the proposal shift s²·v is scaled down, per particle, until its
        RMS over coordinates is at most c·s (c noise standard deviations); 0 = off.
    """

    alpha: float = 0.1
    ess_threshold: float = 0.5
    resampling: str = DEFAULT_SCHEME
    eta: float = 1.0
    kernel: str = ANCESTRAL
    guidance: float = 1.0
    gradient_free: bool = False
    output: str = "best"
    initial_weights: str = "consistent"
    record_x0_steps: tuple[int, ...] = ()
    tempering: bool = True
    tempering_ess: float = 0.99
    lambda_one_at: str = "final"
    ess_by_steps: bool = True
    full_tilt_guidance: bool = False
    guidance_clip: float = 1.0

    def validated(self) -> "SMCConfig":
        validation.positive_finite("alpha", self.alpha)
        validation.in_range("ess_threshold", self.ess_threshold, 0.0, 1.0)
        validation.choice("resampling", self.resampling, RESAMPLERS)
        validation.in_range("eta", self.eta, 0.0, 1.0)
        validation.choice("kernel", self.kernel, BASE_KERNELS)
        validation.in_range("guidance", self.guidance, 0.0, 1e6)
        validation.choice("output", self.output, OUTPUTS)
        validation.choice("initial_weights", self.initial_weights, INITIAL_WEIGHTS)
        validation.in_range("tempering_ess", self.tempering_ess, 0.0, 1.0, low_open=True, high_open=True)
        validation.choice("lambda_one_at", self.lambda_one_at, LAMBDA_ONE_AT)
        validation.in_range("guidance_clip", self.guidance_clip, 0.0, 1e6)
        return self

    @property
    def guided(self) -> bool:
        return not self.gradient_free and self.guidance > 0


@dataclass
class SMCState:
    x: torch.Tensor            # [K, ...] current states at sigma
    log_weights: LogWeights    # [K]
    evaluation: Evaluation     # look-ahead at x
    lam: float = 1.0           # tempering λ_t of the current target


@dataclass
class SMCResult:
    samples: torch.Tensor      # [n_out, ...] output latents (σ = 0)
    selected: list[int]        # indices of the output particles among the K
    particles: torch.Tensor    # [K, ...] all final latents
    final_reward: torch.Tensor  # [K] r at σ = 0
    log_weights: LogWeights    # final weights
    trace: Trace

    def weighted_mean(self, values: torch.Tensor) -> torch.Tensor:
        """Σ_k w̃_k·values_k (float64, on the CPU): the SMC estimate of E[h(x0)] under the
        target for per-particle values [K, ...] (e.g. rewards [K] or the particles).
        Self-normalised importance estimate (Chopin & Papaspiliopoulos 2020, ch. 8)."""
        if values.shape[0] != len(self.log_weights):
            raise ValueError(f"values must have one row per particle ({len(self.log_weights)}); "
                             f"got shape {tuple(values.shape)}")
        w = self.log_weights.normalized
        return torch.tensordot(w, values.detach().to("cpu", torch.float64), dims=1)


def initial_log_weights(reward: torch.Tensor, alpha: float, alpha_mcmc: float | None, mode: str,
                        lam: float = 1.0, tilt_reward: torch.Tensor | None = None) -> torch.Tensor:
    """log w_0 (float64, [K]) for the first target N(ε)·exp(λ_0·r̂/α), r̂ = `reward` [K] the first twist:

        consistent, particles from the α_mcmc tilt:  λ_0·r̂/α − r̂_tilt/α_mcmc
        untilted particles (alpha_mcmc None):         λ_0·r̂/α
        reference mode:                               λ_0·r̂/α whatever the particles' tilt

    r̂_tilt is `tilt_reward`, the look-ahead the chains targeted, or r̂ itself when the chains'
    evaluation is the first twist: then r̂·(λ_0/α − 1/α_mcmc), zero at λ_0 = α/α_mcmc. The
    consistent weight is the importance ratio of the first target to the law the particles
    were drawn from, N(ε)·exp(r̂_tilt/α_mcmc) (Ψ-Sampler's initial particles)."""
    r = reward.detach().to("cpu", torch.float64)
    if alpha_mcmc is None or mode == "reference":
        return _scaled(r, lam / alpha)
    if tilt_reward is None:
        return _scaled(r, lam / alpha - 1.0 / alpha_mcmc)
    return _scaled(r, lam / alpha) - _scaled(tilt_reward, 1.0 / alpha_mcmc)


def _scaled(reward: torch.Tensor, factor: float) -> torch.Tensor:
    """factor·reward with −inf kept for invalid rewards whatever the factor (0·−inf is not NaN)."""
    r = reward.detach().to("cpu", torch.float64)
    finite = torch.isfinite(r)
    return torch.where(finite, r * factor, torch.full_like(r, -math.inf))


def conditional_ess(log_w: torch.Tensor, log_u: torch.Tensor) -> float:
    """CESS fraction (Σ W·u)²/Σ W·u² ∈ (0, 1] of increments u under normalised weights W
    (Zhou, Johansen & Aston 2016); log-space, [K] float64; 0 when no particle survives."""
    a = log_w + log_u
    a = torch.where(torch.isnan(a), torch.full_like(a, -math.inf), a)
    num = 2 * torch.logsumexp(a, 0)
    den = torch.logsumexp(log_w + 2 * log_u, 0) + torch.logsumexp(log_w, 0)
    if not math.isfinite(float(num)):
        return 0.0
    return float(torch.exp(num - den))


def next_lambda(log_w: torch.Tensor, fixed: torch.Tensor, reward: torch.Tensor, lam: float, alpha: float,
                target: float, iterations: int = 40) -> float:
    """Largest λ' ∈ [λ, 1] with CESS(fixed + λ'·r/α) ≥ target (bisection; λ when even λ'
    = λ falls short, 1 when 1 passes). log_w [K] current log-weights, fixed [K] the part
    of the increment that does not depend on λ', reward [K] r̂ at the new states."""
    def cess(value: float) -> float:
        return conditional_ess(log_w, fixed + _scaled(reward, value / alpha))

    if lam >= 1.0:
        return 1.0
    live = reward[torch.isfinite(reward)]
    if live.numel() == 0 or float(live.max() - live.min()) == 0.0:
        return lam  # a flat look-ahead carries no information to temper against: λ waits
    if cess(1.0) >= target:
        return 1.0
    if cess(lam) < target:
        return lam
    low, high = lam, 1.0
    for _ in range(iterations):
        mid = 0.5 * (low + high)
        low, high = (mid, high) if cess(mid) >= target else (low, mid)
    return low


TEMPERING_REFERENCE_STEPS = 40


def step_ess_target(tempering_ess: float, num_steps: int) -> float:
    """The conditional-ESS fraction each λ increment keeps over `num_steps` sigma steps:
    tempering_ess^((40/N)²) for N < 40 (0.99 → 0.78 at 8 steps, 0.37 at 4), tempering_ess otherwise.

    A fixed target of 0.99 lets λ rise too slowly in a few steps: at 4 steps the geometric floor
    and the final increment then carry most of the tilt in one step (rare-mode and far-tail toy
    problems, docs/benchmarks.md); a fixed 0.5 or 0.965 biased the 40-step exact mixture problem
    by 4–5 s.e. The exponent was chosen from those measurements, not derived."""
    if num_steps >= TEMPERING_REFERENCE_STEPS:
        return tempering_ess
    return tempering_ess ** ((TEMPERING_REFERENCE_STEPS / num_steps) ** 2)


def lambda_floor(lam: float, remaining: int) -> float:
    """λ^((n−1)/n) for n = `remaining` steps: the geometric path from λ to 1 in log λ,
    so λ reaches 1 by the n-th step however long the conditional ESS holds it back
    (0 stays 0: a twist not yet started has no path)."""
    if lam <= 0.0:
        return 0.0
    return lam ** ((remaining - 1) / remaining)


def initial_lambda(reward: torch.Tensor, config: "SMCConfig", alpha_mcmc: float | None) -> float:
    """λ_0: 1 without tempering; for particles from the α_mcmc tilt the λ at which their
    weights are flat, min(1, α/α_mcmc); for untilted ones the largest λ whose weights
    λ·r̂/α keep ESS/K ≥ tempering_ess."""
    if not config.tempering:
        return 1.0
    if alpha_mcmc is not None and config.initial_weights == "consistent":
        return min(1.0, config.alpha / alpha_mcmc)
    k = reward.numel()
    uniform = torch.full((k,), -math.log(k), dtype=torch.float64)
    return next_lambda(uniform, torch.zeros(k, dtype=torch.float64), reward, 0.0, config.alpha,
                       config.tempering_ess)


def smc_init(initial: InitialParticles, lookahead: Lookahead, config: SMCConfig, need_grad: bool) -> SMCState:
    """Weights and look-ahead at the start; reuses the initial sampler's evaluation."""
    evaluation = initial.evaluation
    if evaluation is None or (need_grad and evaluation.grad is None):
        evaluation = lookahead(initial.x, initial.sigma0, need_grad)
    lam = initial_lambda(evaluation.reward, config, initial.alpha_mcmc)
    tilt = initial.tilt_reward if evaluation is not initial.evaluation else None
    log_w = initial_log_weights(evaluation.reward, config.alpha, initial.alpha_mcmc, config.initial_weights, lam,
                                tilt)
    return SMCState(x=initial.x, log_weights=LogWeights(log_w), evaluation=evaluation, lam=lam)


def controlled_shift(grad: torch.Tensor, scale: float, s: float, clip: float) -> tuple[torch.Tensor, torch.Tensor]:
    """v = scale·grad [K, ...], scaled per particle so that the mean shift s²·v has RMS over
    coordinates at most clip·s (clip 0 = off). Returns (v, [K] bool: which were scaled)."""
    v = grad * scale
    if clip <= 0:
        return v, torch.zeros(v.shape[0], dtype=torch.bool)
    rms = v.flatten(1).double().pow(2).mean(1).sqrt() * s
    factor = torch.clamp(clip / rms.clamp_min(1e-300), max=1.0)
    shape = (-1, *([1] * (v.ndim - 1)))
    return v * factor.to(v).reshape(shape), (factor < 1.0).cpu()


def smc_step(state: SMCState, step: int, sigma: float, sigma_next: float, lookahead: Lookahead,
             config: SMCConfig, family: str, generator: torch.Generator, need_grad_next: bool,
             record_x0: bool = False, remaining: int = 1) -> tuple[SMCState, SMCRecord]:
    """Resample if ESS < τ·K, then move every particle σ → σ', choose λ_{t+1} and reweight.

    `remaining`: stochastic steps left including this one (1: σ' is the last σ > 0); λ rises at
    least geometrically towards 1, λ' ≥ λ^((n−1)/n), with n = remaining + 1 when σ = 0 completes
    the tilt (lambda_one_at "final") and n = remaining when λ must reach 1 at the last σ > 0."""
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

    lam = state.lam
    clipped = 0.0
    if sigma_next == 0:
        x_new = evaluation.x0_hat
        # the exact r(x0) replaces the last twist λ·r̂(x, σ); r(x0) = r̂(x, σ) for an exact look-ahead
        final = lookahead.exact_reward(x_new) if lookahead.approximate else evaluation.reward
        new_eval = Evaluation(x0_hat=x_new, reward=final, grad=None)
        increment = _scaled(final, 1.0 / config.alpha) - _scaled(evaluation.reward, lam / config.alpha)
        lam_next = 1.0
    else:
        coeff = kernel_coefficients(config.kernel, family, sigma, sigma_next, config.eta)
        mean = coeff.mean(x, evaluation.x0_hat)
        noise = randn_like(x, generator) * coeff.s
        log_ratio = torch.zeros(k, dtype=torch.float64)
        guide_lam = 1.0 if config.full_tilt_guidance else lam
        if config.guided and coeff.s > 0 and guide_lam > 0:
            v, was_clipped = controlled_shift(evaluation.grad.to(x.device), guide_lam * config.guidance / config.alpha,
                                              coeff.s, config.guidance_clip)
            clipped = float(was_clipped.float().mean())
            x_new = mean + v * coeff.s ** 2 + noise
            # log p_θ − log q with x' − μ = s²v + s·z
            diff = (x_new - mean).flatten(1).double()
            v64 = v.flatten(1).double()
            log_ratio = (-(diff * v64).sum(1) + coeff.s ** 2 * (v64 * v64).sum(1) / 2.0).cpu()
            del v, diff, v64
        else:
            x_new = mean + noise
        _check_finite(x_new, evaluation, step, sigma, sigma_next, config)
        # the proposal's temporaries (K latents each) must not live through the look-ahead,
        # whose gradient pass is the memory peak
        del mean, noise
        new_eval = lookahead(x_new, sigma_next, need_grad_next)
        if config.guided and not bool(new_eval.valid.any()) and bool(evaluation.valid.any()):
            _diverged(f"the reward of all {k} proposed states is not finite (|x| up to "
                      f"{float(x_new.abs().max()):.3g})", evaluation, step, sigma, sigma_next, config)
        fixed = log_ratio - _scaled(evaluation.reward, lam / config.alpha)
        # "final": σ = 0 counts as one more step of the geometric floor and λ need not reach 1
        # before it; the final increment [r(x0) − λ·r̂]/α then completes the tilt exactly
        left = remaining + (1 if config.lambda_one_at == FINAL else 0)
        if not config.tempering or left <= 1:
            lam_next = 1.0
        else:
            lam_next = max(next_lambda(torch.log(log_weights.normalized), fixed, new_eval.reward, lam,
                                       config.alpha, config.tempering_ess),
                           lambda_floor(lam, left))
        increment = fixed + _scaled(new_eval.reward, lam_next / config.alpha)
    log_weights = log_weights.add(increment)
    record = SMCRecord(
        step=step, sigma=float(sigma), sigma_next=float(sigma_next), ess=ess, resampled=resampled,
        ancestors=ancestors.cpu(), log_weights=torch.log(log_weights.normalized),
        reward=new_eval.reward.detach().cpu(), ess_after=log_weights.ess,
        x0_hat=new_eval.x0_hat.detach().cpu() if record_x0 else None, lam=lam_next, clipped=clipped,
        replaced_reward=evaluation.reward.detach().cpu() if sigma_next == 0 and lookahead.approximate else None,
    )
    return SMCState(x=x_new, log_weights=log_weights, evaluation=new_eval, lam=lam_next), record


def _check_finite(x_new: torch.Tensor, evaluation: Evaluation, step: int, sigma: float, sigma_next: float,
                  config: SMCConfig) -> None:
    """Raise ProposalDivergedError when a proposed state is not finite."""
    bad = ~torch.isfinite(x_new.flatten(1)).all(1)
    if bool(bad.any()):
        what = f"{int(bad.sum())} of {x_new.shape[0]} proposed states are not finite"
        _diverged(what, evaluation, step, sigma, sigma_next, config)


def _diverged(what: str, evaluation: Evaluation, step: int, sigma: float, sigma_next: float,
              config: SMCConfig) -> None:
    """ProposalDivergedError naming the option that controls the proposal."""
    where = f"step {step} (σ {sigma:.4g} → {sigma_next:.4g}): {what}"
    if not bool(torch.isfinite(evaluation.x0_hat.flatten(1)).all()) and step == 0:
        raise ProposalDivergedError(f"{where}; the starting particles' prediction x̂0 was already not finite: "
                                    "the initial sampler diverged (lower its step_size or set grad_clip)")
    if not bool(torch.isfinite(evaluation.x0_hat.flatten(1)).all()):
        raise ProposalDivergedError(f"{where}; the model's prediction x̂0 was already not finite")
    if config.guided and config.guidance_clip <= 0:
        raise ProposalDivergedError(
            f"{where}: the guided proposal diverged; its shift is unbounded because guidance_clip is 0 — set "
            f"guidance_clip > 0 (1.0 keeps each shift within one noise standard deviation) or lower guidance "
            f"(now {config.guidance:g}) or raise alpha (now {config.alpha:g})")
    raise ProposalDivergedError(
        f"{where}; the proposal diverged: lower guidance (now {config.guidance:g}) or guidance_clip "
        f"(now {config.guidance_clip:g})")


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
    if config.ess_by_steps:
        config = dataclasses.replace(config, tempering_ess=step_ess_target(config.tempering_ess, steps))
    # a fresh trace: the initial particles (and their trace) stay as the caller made them
    trace = dataclasses.replace(initial.trace, mcmc=list(initial.trace.mcmc), smc=[], selected=[], nfe={},
                                alpha=config.alpha)
    state = smc_init(initial, lookahead, config, need_grad=config.guided and steps > 1)
    trace.initial_reward = state.evaluation.reward.detach().cpu()
    trace.initial_log_weights = torch.log(state.log_weights.normalized)
    trace.initial_lambda = state.lam
    record_steps = set(config.record_x0_steps)
    if record_steps:
        trace.initial_x0_hat = state.evaluation.x0_hat.detach().cpu()
    for i in range(steps):
        need_grad_next = config.guided and i + 2 < steps  # the state after step i+1 moves stochastically
        state, record = smc_step(state, i, schedule[i], schedule[i + 1], lookahead, config, family,
                                 generator, need_grad_next, record_x0=i in record_steps,
                                 remaining=steps - 1 - i)
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
        return [int(resample(log_weights.normalized, MULTINOMIAL, 1, generator)[0])]
    alive = log_weights.log_w > -math.inf
    reward = torch.where(alive, final_reward.double(), torch.full_like(final_reward, -math.inf, dtype=torch.float64))
    return [int(torch.argmax(reward))]
