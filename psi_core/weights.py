"""Log-space importance weights as one small value object.

Weights are kept as float64 log-weights on the CPU (K numbers), whatever the model
dtype or device; normalisation and the effective sample size (Kong, Liu & Wong 1994;
Chopin & Papaspiliopoulos 2020, ch. 8) are computed once on construction.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch


class AllParticlesInvalidError(RuntimeError):
    """Every particle has log-weight −inf (the reward was NaN/inf for all of them)."""


class ProposalDivergedError(RuntimeError):
    """A proposal produced non-finite states; the message names the option that controls it."""


@dataclass(frozen=True)
class LogWeights:
    """Unnormalised log-weights log w_k, shape [K].

    normalized:  w̃_k = exp(log w_k − logsumexp(log w))
    ess:         1 / Σ w̃_k²           (K for equal weights, 1 for one dominant particle)
    """

    log_w: torch.Tensor
    normalized: torch.Tensor = field(init=False, repr=False)
    ess: float = field(init=False)

    def __post_init__(self) -> None:
        log_w = self.log_w.detach().to("cpu", torch.float64).reshape(-1)
        log_w = torch.where(torch.isnan(log_w), torch.full_like(log_w, -math.inf), log_w)
        object.__setattr__(self, "log_w", log_w)
        total = torch.logsumexp(log_w, dim=0)
        if not math.isfinite(float(total)):
            if float(total) == -math.inf:
                raise AllParticlesInvalidError(
                    "every particle has zero weight: the reward was NaN or infinite for all "
                    f"{log_w.numel()} particles"
                )
            raise AllParticlesInvalidError(f"log-weights overflowed: {log_w.tolist()}")
        normalized = torch.exp(log_w - total)
        object.__setattr__(self, "normalized", normalized)
        object.__setattr__(self, "ess", float(1.0 / (normalized ** 2).sum()))

    @classmethod
    def uniform(cls, num: int) -> "LogWeights":
        return cls(torch.zeros(num, dtype=torch.float64))

    def __len__(self) -> int:
        return self.log_w.numel()

    def add(self, increment: torch.Tensor) -> "LogWeights":
        """log w + increment (increment is moved to CPU float64; NaN counts as −inf)."""
        inc = increment.detach().to("cpu", torch.float64).reshape(-1)
        return LogWeights(self.log_w + inc)

