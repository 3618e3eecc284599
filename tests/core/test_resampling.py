"""Resampling schemes: unbiased counts, exact totals, and the floor/ceil property.

Unbiasedness: over R independent draws the mean count of particle k must equal
num·w_k. Each scheme's own per-particle count variance is estimated from the draws,
so the standard error of a mean count is sd_k/√R; the test asks |mean − num·w_k| <
5 se for every k (where a count never varies, it must be exactly num·w_k's
integer). R = 3000 draws give se ≈ 0.006–0.009 per count.
"""

from __future__ import annotations

import math

import pytest
import torch

from psi_sampler.psi_core.resampling import DEFAULT_SCHEME, RESAMPLERS, resample
from psi_sampler.psi_core.rng import make_generator

DRAWS = 3000
# distinct fractional parts of K·w, one zero-weight particle in the middle and one at each end
WEIGHTS = torch.tensor([0.0, 0.31, 0.05, 0.0, 0.137, 0.2, 0.0013, 0.0997, 0.1, 0.09, 0.011, 0.0],
                       dtype=torch.float64)
WEIGHTS = WEIGHTS / WEIGHTS.sum()


def _counts(scheme: str, num: int, seed: int) -> torch.Tensor:
    generator = make_generator(seed)
    rows = [torch.bincount(resample(WEIGHTS, scheme, num, generator), minlength=WEIGHTS.numel())
            for _ in range(DRAWS)]
    return torch.stack(rows).double()


@pytest.mark.parametrize("num", [12, 7])
@pytest.mark.parametrize("scheme", sorted(RESAMPLERS))
def test_scheme_is_unbiased_and_keeps_the_total(scheme, num):
    counts = _counts(scheme, num, seed=100 + num)
    assert bool((counts.sum(1) == num).all()), f"{scheme}: counts do not sum to {num}"
    assert bool((counts[:, WEIGHTS == 0] == 0).all()), f"{scheme} picked a zero-weight particle"
    expected = num * WEIGHTS
    mean = counts.mean(0)
    sd = counts.std(0)
    fixed = sd == 0
    assert torch.allclose(mean[fixed], expected[fixed], atol=1e-9), (scheme, mean, expected)
    z = (mean[~fixed] - expected[~fixed]).abs() / (sd[~fixed] / math.sqrt(DRAWS))
    assert float(z.max()) < 5.0, f"{scheme}: mean counts {mean.tolist()} vs num·w {expected.tolist()}"


@pytest.mark.parametrize("scheme", ["systematic", "ssp"])
def test_low_variance_schemes_round_expected_counts(scheme):
    # systematic and SSP: N_k ∈ {⌊num·w_k⌋, ⌈num·w_k⌉}, i.e. |N_k − num·w_k| < 1
    for num in (12, 7, 100):
        generator = make_generator(num)
        expected = num * WEIGHTS
        for _ in range(100):
            counts = torch.bincount(resample(WEIGHTS, scheme, num, generator), minlength=WEIGHTS.numel()).double()
            assert float((counts - expected).abs().max()) < 1.0, (scheme, num, counts.tolist())


def test_residual_keeps_the_deterministic_part():
    generator = make_generator(5)
    floor = torch.floor(12 * WEIGHTS)
    for _ in range(100):
        counts = torch.bincount(resample(WEIGHTS, "residual", 12, generator), minlength=WEIGHTS.numel()).double()
        assert bool((counts >= floor).all()), counts.tolist()


def test_multinomial_count_variance_is_binomial():
    # the one scheme with a closed-form variance: Var N_k = num·w_k(1 − w_k)
    counts = _counts("multinomial", 12, seed=7)
    var = 12 * WEIGHTS * (1 - WEIGHTS)
    live = WEIGHTS > 0.01
    # relative se of a sample variance of R = 3000 draws ≈ √(2/R) ≈ 2.6%; allow 15%
    ratio = counts.var(0)[live] / var[live]
    assert float((ratio - 1).abs().max()) < 0.15, ratio


def test_resample_validates_and_is_deterministic():
    with pytest.raises(ValueError, match="scheme.*'bogus'"):
        resample(WEIGHTS, "bogus", 4, make_generator(0))
    with pytest.raises(ValueError, match="Generator"):
        resample(WEIGHTS, "systematic", 4, None)
    assert DEFAULT_SCHEME == "systematic"
    a = resample(WEIGHTS, "ssp", 50, make_generator(9))
    b = resample(WEIGHTS, "ssp", 50, make_generator(9))
    assert torch.equal(a, b) and a.dtype == torch.long


def test_resample_does_not_mutate_and_accepts_unnormalised_weights():
    w = (WEIGHTS * 3.7).clone()
    before = w.clone()
    for scheme in RESAMPLERS:
        idx = resample(w, scheme, 12, make_generator(1))
        assert idx.numel() == 12 and int(idx.max()) < w.numel()
    assert torch.equal(w, before)


def test_single_dominant_particle_is_always_chosen():
    w = torch.zeros(9, dtype=torch.float64)
    w[4] = 1.0
    for scheme in RESAMPLERS:
        assert torch.equal(resample(w, scheme, 9, make_generator(2)), torch.full((9,), 4)), scheme
