"""Resampling schemes behind one signature (Chopin & Papaspiliopoulos 2020, ch. 9; SSP:
Gerber, Chopin & Whiteley 2019; the names are defined in names.py).

Every scheme maps normalised weights w̃ (shape [K], summing to 1) to `num` ancestor
indices whose counts N_k satisfy E[N_k] = num·w̃_k (unbiasedness). Randomness comes
only from the explicit `generator` (a CPU `torch.Generator`). Systematic is the
default: lowest variance among the simple schemes and one uniform draw.
"""

from __future__ import annotations

from typing import Callable

import torch

from .names import DEFAULT_SCHEME, MULTINOMIAL, RESIDUAL, SSP, STRATIFIED, SYSTEMATIC
from .rng import uniform

Resampler = Callable[[torch.Tensor, int, torch.Generator], torch.Tensor]


def _inverse_cdf(weights: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """Indices k with cumsum(w̃)_{k-1} <= u < cumsum(w̃)_k for sorted points u in [0, 1)."""
    cdf = torch.cumsum(weights, dim=0)
    cdf[-1] = 1.0 + 1e-12  # guard against rounding below the last point
    return torch.searchsorted(cdf, points, right=True).clamp_(max=weights.numel() - 1)


def multinomial(weights: torch.Tensor, num: int, generator: torch.Generator) -> torch.Tensor:
    """Independent draws from Categorical(w̃)."""
    points, _ = torch.sort(uniform(num, generator))
    return _inverse_cdf(weights, points)


def stratified(weights: torch.Tensor, num: int, generator: torch.Generator) -> torch.Tensor:
    """One uniform in each stratum [i/num, (i+1)/num)."""
    points = (torch.arange(num, dtype=torch.float64) + uniform(num, generator)) / num
    return _inverse_cdf(weights, points)


def systematic(weights: torch.Tensor, num: int, generator: torch.Generator) -> torch.Tensor:
    """One shared uniform offset: u_i = (i + U)/num."""
    points = (torch.arange(num, dtype=torch.float64) + uniform(1, generator)) / num
    return _inverse_cdf(weights, points)


def residual(weights: torch.Tensor, num: int, generator: torch.Generator) -> torch.Tensor:
    """⌊num·w̃_k⌋ copies of each particle, the rest multinomial on the residual weights."""
    scaled = weights * num
    counts = torch.floor(scaled).to(torch.long)
    remaining = num - int(counts.sum())
    if remaining > 0:
        rest = scaled - counts
        extra = multinomial(rest / rest.sum(), remaining, generator)
        counts += torch.bincount(extra, minlength=weights.numel())
    return _counts_to_indices(counts)


def ssp(weights: torch.Tensor, num: int, generator: torch.Generator) -> torch.Tensor:
    """Srinivasan sampling process (Gerber, Chopin & Whiteley 2019).

    Rounds the expected counts num·w̃_k to integers by pairing fractional parts: each
    pairing moves mass between two particles so that one fractional part hits 0 or 1
    and both expectations are kept. Counts differ from num·w̃_k by less than 1.
    """
    scaled = (weights * num).tolist()
    counts = [int(v) for v in scaled]
    fractions = [v - c for v, c in zip(scaled, counts)]
    draws = uniform(len(scaled), generator).tolist()
    held = None  # index of the particle whose fractional part is still open
    for k, frac in enumerate(fractions):
        if frac <= 1e-12:
            continue
        if held is None:
            held = k
            continue
        p, q = fractions[held], frac
        up_held = min(1.0 - p, q)   # move mass from k to held
        up_k = min(p, 1.0 - q)      # move mass from held to k
        if draws[k] < up_k / (up_held + up_k):
            p, q = p + up_held, q - up_held
        else:
            p, q = p - up_k, q + up_k
        fractions[held], fractions[k] = p, q
        for idx in (held, k):
            if fractions[idx] >= 1.0 - 1e-12:
                counts[idx] += 1
                fractions[idx] = 0.0
            elif fractions[idx] <= 1e-12:
                fractions[idx] = 0.0
        held = held if fractions[held] > 0 else (k if fractions[k] > 0 else None)
    total = sum(counts)
    if total < num and held is not None:  # rounding leftovers from float arithmetic
        counts[held] += num - total
    return _counts_to_indices(torch.tensor(counts, dtype=torch.long))


def _counts_to_indices(counts: torch.Tensor) -> torch.Tensor:
    return torch.repeat_interleave(torch.arange(counts.numel()), counts)


RESAMPLERS: dict[str, Resampler] = {
    SYSTEMATIC: systematic,
    STRATIFIED: stratified,
    MULTINOMIAL: multinomial,
    RESIDUAL: residual,
    SSP: ssp,
}


def resample(weights: torch.Tensor, scheme: str = DEFAULT_SCHEME, num: int | None = None,
             generator: torch.Generator | None = None) -> torch.Tensor:
    """Ancestor indices A [num] (LongTensor, CPU) drawn with the named scheme from weights w̃ [K]:
    particle k is copied N_k = #{i: A_i = k} times, E[N_k] = num·w̃_k."""
    if scheme not in RESAMPLERS:
        raise ValueError(f"resampling scheme must be one of {', '.join(RESAMPLERS)}; got {scheme!r}")
    if generator is None:
        raise ValueError("resample needs an explicit torch.Generator (no global randomness)")
    w = weights.detach().to("cpu", torch.float64).reshape(-1)
    w = w / w.sum()
    num = w.numel() if num is None else num
    indices = RESAMPLERS[scheme](w, num, generator)
    if indices.numel() != num:
        raise RuntimeError(f"{scheme} resampling returned {indices.numel()} indices, expected {num}")
    return indices
