"""What a run did, recorded cheaply for the particle visualizer and for analysis.

All tensors are stored detached on the CPU; predicted clean latents are kept only
at the steps the caller asks for. `to_dict()` gives plain JSON-able data.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class MCMCRecord:
    """One MCMC iteration over C chains."""

    iteration: int
    step_size: float
    accepted: torch.Tensor     # [C] bool
    reward: torch.Tensor       # [C] r̂ of the chains' current states after the step
    burn_in: bool


@dataclass
class SMCRecord:
    """One SMC step σ → σ' (resampling, if any, happened before the move)."""

    step: int
    sigma: float
    sigma_next: float
    ess: float                 # ESS of the weights before this step's resampling decision
    resampled: bool
    ancestors: torch.Tensor    # [K] long: particle k now descends from ancestors[k] of the previous step
    log_weights: torch.Tensor  # [K] float64 normalised log-weights after the move
    reward: torch.Tensor       # [K] r̂ at the new states (final rewards at σ' = 0)
    ess_after: float           # ESS of the weights after the move
    x0_hat: torch.Tensor | None = None  # [K, ...] predicted clean latents at the new states
    lam: float = 1.0           # tempering λ of the target after this step (1 = untempered)
    clipped: float = 0.0       # fraction of particles whose guided shift was scaled down
    replaced_reward: torch.Tensor | None = None  # [K] at σ' = 0 with an approximate look-ahead: the
    #                            last twist r̂(x, σ) that the exact final reward replaced


@dataclass
class Trace:
    method: str
    mcmc: list[MCMCRecord] = field(default_factory=list)
    smc: list[SMCRecord] = field(default_factory=list)
    initial_reward: torch.Tensor | None = None       # [K] r̂ at the SMC start
    initial_log_weights: torch.Tensor | None = None  # [K] normalised
    initial_x0_hat: torch.Tensor | None = None       # [K, ...] at the start (kept with the x0 steps)
    selected: list[int] = field(default_factory=list)  # output particle indices
    invalid_particles: int = 0                       # reward evaluations that were NaN/inf
    nfe: dict[str, int] = field(default_factory=dict)
    alpha: float | None = None
    alpha_mcmc: float | None = None
    initial_lambda: float = 1.0                      # λ_0 of the first SMC target
    latent_format: str | None = None                 # the model's latent space, named by the host that ran it
    adaptation: str = "off"                          # δ tuning: off | burn_in | diminishing (no burn-in)
    distinct_initial: int | None = None              # distinct initial particles (None without MCMC)

    @property
    def lambdas(self) -> list[float]:
        """[λ_0, λ_1, …]: the tempering of the target at the start and after every step."""
        return [self.initial_lambda] + [r.lam for r in self.smc] if self.smc else []

    @property
    def final_step_size(self) -> float | None:
        """δ of the last MCMC iteration (after adaptation; None without MCMC)."""
        return self.mcmc[-1].step_size if self.mcmc else None

    @property
    def acceptance(self) -> float | None:
        """Mean acceptance over all post-burn-in iterations and chains (None without MCMC)."""
        rows = [r.accepted.float() for r in self.mcmc if not r.burn_in] or [r.accepted.float() for r in self.mcmc]
        if not rows:
            return None
        return float(torch.stack(rows).mean())

    @property
    def min_ess(self) -> float | None:
        """Smallest ESS over the run: the initial weights and every step, before and after its move."""
        values = [r.ess for r in self.smc] + [r.ess_after for r in self.smc]
        return min(values) if values else None

    def genealogy(self) -> torch.Tensor:
        """[S, K] ancestor indices, one row per SMC step."""
        if not self.smc:
            return torch.empty(0, 0, dtype=torch.long)
        return torch.stack([r.ancestors for r in self.smc])

    def to_dict(self) -> dict:
        def lst(t):
            return None if t is None else t.tolist()

        return {
            "method": self.method,
            "alpha": self.alpha,
            "alpha_mcmc": self.alpha_mcmc,
            "nfe": dict(self.nfe),
            "invalid_particles": self.invalid_particles,
            "acceptance": self.acceptance,
            "final_step_size": self.final_step_size,
            "min_ess": self.min_ess,
            "initial_lambda": self.initial_lambda,
            "adaptation": self.adaptation,
            "distinct_initial": self.distinct_initial,
            "latent_format": self.latent_format,
            "selected": list(self.selected),
            "initial_reward": lst(self.initial_reward),
            "initial_log_weights": lst(self.initial_log_weights),
            "mcmc": [
                {"iteration": r.iteration, "step_size": r.step_size, "burn_in": r.burn_in,
                 "accepted": lst(r.accepted), "reward": lst(r.reward)}
                for r in self.mcmc
            ],
            "smc": [
                {"step": r.step, "sigma": r.sigma, "sigma_next": r.sigma_next, "ess": r.ess,
                 "ess_after": r.ess_after, "resampled": r.resampled, "ancestors": lst(r.ancestors),
                 "log_weights": lst(r.log_weights), "reward": lst(r.reward), "lambda": r.lam,
                 "clipped": r.clipped, "replaced_reward": lst(r.replaced_reward)}
                for r in self.smc
            ],
        }
