"""LogWeights: normalisation, ESS edge cases, −inf/NaN handling and the all-invalid error."""

from __future__ import annotations

import math

import pytest
import torch

from psi_sampler.psi_core.weights import AllParticlesInvalidError, LogWeights


def test_equal_weights_have_ess_k_at_any_offset():
    for offset in (0.0, -1e4, 700.0):
        w = LogWeights(torch.full((17,), offset, dtype=torch.float64))
        assert math.isclose(w.ess, 17.0, rel_tol=1e-12)
        assert torch.allclose(w.normalized, torch.full((17,), 1 / 17, dtype=torch.float64))
    assert math.isclose(LogWeights.uniform(5).ess, 5.0)


def test_one_dominant_particle_has_ess_one():
    w = LogWeights(torch.tensor([-math.inf, 0.0, -math.inf, -math.inf], dtype=torch.float64))
    assert w.ess == 1.0
    assert w.normalized.tolist() == [0.0, 1.0, 0.0, 0.0]
    # dominant by 1000 nats: not exactly one, but 1 to machine precision
    w = LogWeights(torch.tensor([0.0, 1000.0, 0.0], dtype=torch.float64))
    assert math.isclose(w.ess, 1.0, rel_tol=1e-12)


def test_ess_matches_the_closed_form_for_random_weights():
    log_w = torch.tensor([0.3, -1.2, 2.0, 0.0, -0.7], dtype=torch.float64)
    p = torch.exp(log_w) / torch.exp(log_w).sum()
    w = LogWeights(log_w)
    assert torch.allclose(w.normalized, p, rtol=1e-12)
    assert math.isclose(w.ess, float(1 / (p ** 2).sum()), rel_tol=1e-12)
    assert 1.0 <= w.ess <= 5.0


def test_minus_inf_and_nan_particles_get_zero_weight():
    w = LogWeights(torch.tensor([0.0, -math.inf, float("nan"), 0.0], dtype=torch.float64))
    assert w.normalized.tolist() == [0.5, 0.0, 0.0, 0.5]
    assert w.ess == 2.0
    assert float(w.log_w[2]) == -math.inf  # NaN is stored as −inf
    # a NaN increment kills the particle, others keep their relative weights
    w2 = w.add(torch.tensor([0.0, 0.0, 0.0, float("nan")]))
    assert w2.normalized.tolist() == [1.0, 0.0, 0.0, 0.0]


def test_all_minus_inf_raises_a_clear_error():
    with pytest.raises(AllParticlesInvalidError, match="every particle"):
        LogWeights(torch.full((3,), -math.inf, dtype=torch.float64))
    with pytest.raises(AllParticlesInvalidError):
        LogWeights(torch.full((3,), float("nan"), dtype=torch.float64))
    with pytest.raises(AllParticlesInvalidError):
        LogWeights(torch.zeros(2, dtype=torch.float64)).add(torch.tensor([-math.inf, float("nan")]))
    with pytest.raises(AllParticlesInvalidError, match="overflow"):
        LogWeights(torch.tensor([0.0, math.inf], dtype=torch.float64))
    assert issubclass(AllParticlesInvalidError, RuntimeError)


def test_add_returns_new_weights_and_input_not_mutated():
    raw = torch.tensor([0.5, 1.5, -0.5], dtype=torch.float32)
    before = raw.clone()
    w = LogWeights(raw)
    assert w.log_w.dtype == torch.float64 and len(w) == 3
    w2 = w.add(torch.tensor([1.0, -1.0, 0.0]))
    assert torch.allclose(w2.log_w, torch.tensor([1.5, 0.5, -0.5], dtype=torch.float64))
    assert torch.allclose(w.log_w, before.double())  # add returns a new object
    assert torch.equal(raw, before)
