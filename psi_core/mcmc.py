"""MCMC kernels over the starting noise ε for π(ε) ∝ N(ε; 0, I)·exp(f(ε)).

f(ε) = r̂(x_0(ε), σ_0)/α_mcmc is the tilt of Ψ-Sampler's initial particles (Yoon et al.
2025, arXiv 2506.01320: the reward-aware posterior over the initial noise, sampled by
pCNL). Every kernel is a pure step `(state, potential, step_size, generator) -> (state,
info)` over a batch of C independent chains: ε, z, g [C, ...], f and log a [C]. All
Metropolis–Hastings arithmetic is float32 (float64 for the per-chain sums), whatever the
model dtype. g(u) = ∇_u f(u) [C, ...]; z ~ N(0, I) [C, ...]; δ = step_size.

pcnl  preconditioned Crank–Nicolson Langevin (Cotter, Roberts, Stuart & White 2013, the
      pCNL variant of their pCN; Ψ-Sampler's initial sampler). With ρ = (1 − δ/4)/(1 + δ/4):

        proposal    ε' = ρ·ε + √(1−ρ²)·(z + (√δ/2)·g(ε))
        acceptance  log a = J(ε', ε) − J(ε, ε'),
                    J(u', u) = f(u') − (δ/8)|g(u')|² + (√δ/2)/√(1−ρ²)·⟨u − ρu', g(u')⟩

      The N(0, I) prior is preserved by the Crank–Nicolson move and cancels from a, which
      depends on f and g only, so acceptance does not degrade with the dimension.
mala  Metropolis-adjusted Langevin (Roberts & Tweedie 1996) on log π(u) = f(u) − |u|²/2:

        proposal    u' = m(u) + √δ·z,   m(u) = u + (δ/2)·(g(u) − u)
        acceptance  log a = log π(u') − log π(u) + log q(u | u') − log q(u' | u),
                    log q(a | b) = −|a − m(b)|²/(2δ)
ula   the unadjusted Langevin algorithm (Roberts & Tweedie 1996): MALA's proposal, always
      accepted (biased; a baseline).

A proposal whose reward is not finite is rejected. g may be RMS-clipped per chain
(`grad_clip`); the clipped g is the one used in the proposal and in the acceptance ratio.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch

from .lookahead import Evaluation
from .names import MALA, PCNL, ULA
from .rng import randn_like, uniform


@dataclass
class ChainState:
    """C chains: position ε [C, ...], tilt f(ε) [C], ∇_ε f [C, ...] (float32) and the
    look-ahead evaluation at x_0(ε) that produced them (carried to the SMC)."""

    eps: torch.Tensor
    f: torch.Tensor
    grad: torch.Tensor
    evaluation: Evaluation

    def where(self, accept: torch.Tensor, other: "ChainState") -> "ChainState":
        """Rows of `other` where `accept`, else rows of self."""
        def pick(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
            mask = accept.to(a.device).reshape(-1, *([1] * (a.ndim - 1)))
            return torch.where(mask, b, a)

        ev, ov = self.evaluation, other.evaluation
        grad = None if ev.grad is None or ov.grad is None else pick(ev.grad, ov.grad)
        return ChainState(
            eps=pick(self.eps, other.eps), f=pick(self.f, other.f), grad=pick(self.grad, other.grad),
            evaluation=Evaluation(pick(ev.x0_hat, ov.x0_hat), pick(ev.reward, ov.reward), grad),
        )


@dataclass
class StepInfo:
    accepted: torch.Tensor        # [C] bool
    log_accept_ratio: torch.Tensor  # [C] float32 (clamped at 0 above)


Potential = Callable[[torch.Tensor], ChainState]


def rms_clip(grad: torch.Tensor, max_rms: float | None) -> torch.Tensor:
    """Scale each chain's gradient so its root-mean-square is at most `max_rms`."""
    if max_rms is None:
        return grad
    rms = grad.flatten(1).pow(2).mean(dim=1).sqrt()
    factor = torch.clamp(max_rms / rms.clamp_min(1e-30), max=1.0)
    return grad * factor.reshape(-1, *([1] * (grad.ndim - 1)))


def _dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a.flatten(1).double() * b.flatten(1).double()).sum(dim=1)


def _sq(a: torch.Tensor) -> torch.Tensor:
    return _dot(a, a)


def _accept(state: ChainState, proposal: ChainState, log_ratio: torch.Tensor,
            generator: torch.Generator) -> tuple[ChainState, StepInfo]:
    """MH test; a proposal with invalid reward is always rejected, a valid proposal
    from an invalid state always accepted."""
    new_ok = torch.isfinite(proposal.f).cpu()
    old_ok = torch.isfinite(state.f).cpu()
    log_ratio = log_ratio.cpu()
    log_ratio = torch.where(torch.isnan(log_ratio), torch.full_like(log_ratio, -math.inf), log_ratio)
    log_ratio = torch.where(new_ok & ~old_ok, torch.zeros_like(log_ratio), log_ratio)
    log_ratio = torch.where(new_ok, log_ratio, torch.full_like(log_ratio, -math.inf))
    log_ratio = log_ratio.clamp(max=0.0)
    accept = torch.log(uniform(log_ratio.numel(), generator)) < log_ratio
    return state.where(accept, proposal), StepInfo(accepted=accept, log_accept_ratio=log_ratio.float())


def pcnl_rho(step_size: float) -> float:
    """ρ = (1 − δ/4)/(1 + δ/4), the Crank–Nicolson contraction of the pCNL proposal."""
    return (1.0 - step_size / 4.0) / (1.0 + step_size / 4.0)


def pcnl_step(state: ChainState, potential: Potential, step_size: float, generator: torch.Generator,
              grad_clip: float | None = None) -> tuple[ChainState, StepInfo]:
    """One pCNL iteration for every chain (one gradient evaluation per chain): the proposal
    ε' [C, ...] and log a = J(ε', ε) − J(ε, ε') [C] of the module docstring."""
    delta = float(step_size)
    rho = pcnl_rho(delta)
    root = math.sqrt(1.0 - rho * rho)
    half_sqrt_delta = math.sqrt(delta) / 2.0
    g = rms_clip(state.grad, grad_clip)
    z = randn_like(state.eps, generator)
    eps_new = rho * state.eps + root * (z + half_sqrt_delta * g)
    proposal = potential(eps_new)
    g_new = rms_clip(proposal.grad, grad_clip)

    def J(u_to: torch.Tensor, f_to: torch.Tensor, g_to: torch.Tensor, u_from: torch.Tensor) -> torch.Tensor:
        return (f_to.double().cpu() - (delta / 8.0) * _sq(g_to).cpu()
                + (half_sqrt_delta / root) * _dot(u_from - rho * u_to, g_to).cpu())

    log_ratio = J(eps_new, proposal.f, g_new, state.eps) - J(state.eps, state.f, g, eps_new)
    return _accept(state, proposal, log_ratio, generator)


def _langevin_mean(eps: torch.Tensor, g: torch.Tensor, delta: float) -> torch.Tensor:
    """u + (δ/2)·∇log π(u) with ∇log π = g − u."""
    return eps + (delta / 2.0) * (g - eps)


def mala_step(state: ChainState, potential: Potential, step_size: float, generator: torch.Generator,
              grad_clip: float | None = None, metropolis: bool = True) -> tuple[ChainState, StepInfo]:
    """One MALA (or, with metropolis=False, ULA) iteration for every chain: u' = m(u) + √δ·z
    [C, ...] and the Metropolis–Hastings log a [C] of the module docstring."""
    delta = float(step_size)
    g = rms_clip(state.grad, grad_clip)
    z = randn_like(state.eps, generator)
    eps_new = _langevin_mean(state.eps, g, delta) + math.sqrt(delta) * z
    proposal = potential(eps_new)
    if not metropolis:
        accept = torch.isfinite(proposal.f).cpu()  # ULA keeps every move with a finite reward
        return state.where(accept, proposal), StepInfo(accepted=accept, log_accept_ratio=torch.zeros(accept.numel()))
    g_new = rms_clip(proposal.grad, grad_clip)

    def log_pi(u: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
        return f.double().cpu() - 0.5 * _sq(u).cpu()

    def log_q(u_to: torch.Tensor, u_from: torch.Tensor, g_from: torch.Tensor) -> torch.Tensor:
        return -_sq(u_to - _langevin_mean(u_from, g_from, delta)).cpu() / (2.0 * delta)

    log_ratio = (log_pi(eps_new, proposal.f) + log_q(state.eps, eps_new, g_new)
                 - log_pi(state.eps, state.f) - log_q(eps_new, state.eps, g))
    return _accept(state, proposal, log_ratio, generator)


def ula_step(state: ChainState, potential: Potential, step_size: float, generator: torch.Generator,
             grad_clip: float | None = None) -> tuple[ChainState, StepInfo]:
    return mala_step(state, potential, step_size, generator, grad_clip, metropolis=False)


STEPS = {PCNL: pcnl_step, MALA: mala_step, ULA: ula_step}
