"""Counting function evaluations and splitting an NFE budget between stages.

One NFE is one particle passed through the denoiser, the decoder and the reward,
with or without the backward pass; Ψ-Sampler's comparisons (arXiv 2506.01320) give
every method the same number of such evaluations, about half of them to the initial
MCMC. Forward-only passes (Top-K, gradient-free SMC, the last look-ahead before σ = 0)
are counted apart because they cost about a third as much.

    SMC over S sigma steps:  K·(S − 1) (+ K for the start when no initial sampler evaluated it)
    C chains of T iterations: C·(T + 1)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from . import validation
from .names import BON, MCMC_KERNELS, METHODS, PRIOR, TOPK


@dataclass
class NFECounter:
    grad: int = 0      # particles evaluated with forward + backward
    forward: int = 0   # particles evaluated forward only

    @property
    def total(self) -> int:
        return self.grad + self.forward

    def add(self, count: int, with_grad: bool) -> None:
        if with_grad:
            self.grad += count
        else:
            self.forward += count

    def as_dict(self) -> dict[str, int]:
        return {"nfe": self.total, "nfe_grad": self.grad, "nfe_forward": self.forward}


def smc_nfe(num_particles: int, num_steps: int, has_initial_evaluation: bool) -> int:
    """Evaluations of an SMC run over `num_steps` sigma steps (the last lands on σ = 0).

    The start needs K evaluations unless the initial sampler already made them;
    each of the first num_steps−1 steps evaluates the K new states; the last step
    (x' = x̂0) needs none.
    """
    return num_particles * (num_steps - 1) + (0 if has_initial_evaluation else num_particles)


def mcmc_nfe(num_chains: int, mcmc_steps: int) -> int:
    """C chains: one evaluation at the start and one per iteration."""
    return num_chains * (mcmc_steps + 1)


@dataclass(frozen=True)
class BudgetPlan:
    """How many particles and MCMC iterations an NFE budget buys."""

    num_particles: int
    mcmc_steps: int       # 0 for methods without MCMC
    topk_candidates: int  # 0 unless method == "topk"
    nfe_initial: int
    nfe_smc: int

    @property
    def nfe(self) -> int:
        return self.nfe_initial + self.nfe_smc


def plan_budget(method: str, nfe: int, num_steps: int, num_chains: int = 1,
                initial_fraction: float = 0.5) -> BudgetPlan:
    """Split `nfe` evaluations for `method` at `num_steps` SMC steps.

    prior: all of it to SMC, K = ⌊nfe / num_steps⌋.
    pcnl, mala, ula: `initial_fraction` (½ in the paper) to C chains of MCMC, the
        rest to SMC whose K particles come with their evaluation from the chains.
    topk: the same split; the initial part is N forward-only candidates.
    bon (Best-of-N, no SMC weighting): N = ⌊nfe / num_steps⌋ independent samples.
    """
    validation.integer_at_least("nfe", nfe, 1)
    validation.integer_at_least("num_steps", num_steps, 1)
    validation.integer_at_least("num_chains", num_chains, 1)
    validation.in_range("initial_fraction", initial_fraction, 0.0, 1.0, low_open=True, high_open=True)
    if method in (PRIOR, BON):
        k = nfe // num_steps
        _enough(method, nfe, k)
        return BudgetPlan(k, 0, 0, 0, smc_nfe(k, num_steps, False))
    initial = int(round(nfe * initial_fraction))
    if method == TOPK:
        # the K kept candidates are re-evaluated with a gradient at the SMC start
        k = (nfe - initial) // num_steps
        _enough(method, nfe, k)
        return BudgetPlan(k, 0, initial, initial, smc_nfe(k, num_steps, False))
    if method in MCMC_KERNELS:
        steps = initial // num_chains - 1
        k = (nfe - initial) // max(num_steps - 1, 1)
        _enough(method, nfe, min(k, steps))
        return BudgetPlan(k, steps, 0, mcmc_nfe(num_chains, steps), smc_nfe(k, num_steps, True))
    raise ValueError(f"method must be one of {', '.join(METHODS)}; got {method!r}")


def _enough(method: str, nfe: int, count: int) -> None:
    if count < 1:
        raise ValueError(f"nfe={nfe} is too small for method {method!r} at this number of steps and chains")


def distinct_chains(num_particles: int, initial_nfe: int, min_chains: int = 1, burn_in_fraction: float = 0.5,
                    acceptance: float = 0.3, distinct: float = 0.9) -> int:
    """Fewest chains C ≥ min(`min_chains`, K) (the most iterations each) whose thinned states leave at least a
    `distinct` fraction of the K = `num_particles` initial particles distinct at the given
    acceptance.

    With T = ⌊I/C⌋ − 1 iterations, B = ⌊f·T⌋ of them burn-in, each chain gives m = ⌈K/C⌉
    states g = ⌊(T − B)/m⌋ apart; two states g iterations apart are copies only if all g
    moves were rejected, so the expected fraction of copies is (m − 1)/m·(1 − a)^g. One
    state per chain (C = K) is always distinct; C is capped there. Where no C reaches the
    fraction, the one with the fewest expected copies among those that give K states.
    """
    validation.integer_at_least("num_particles", num_particles, 1)
    validation.integer_at_least("initial_nfe", initial_nfe, 2)
    best, best_copies = min(min_chains, num_particles), math.inf
    for chains in range(min(min_chains, num_particles), num_particles + 1):
        steps = initial_nfe // chains - 1
        if steps < 1:
            break
        kept = steps - int(steps * burn_in_fraction)
        per_chain = -(-num_particles // chains)
        gap = kept // per_chain
        if gap < 1:
            continue
        copies = (per_chain - 1) / per_chain * (1.0 - acceptance) ** gap
        if copies <= 1.0 - distinct:
            return chains
        if copies < best_copies:
            best, best_copies = chains, copies
    return best
