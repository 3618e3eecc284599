"""pCNL, MALA and ULA against closed-form Gaussian targets.

Every kernel is driven directly with a hand-written potential on a N(0, I) prior, so
the target π(ε) ∝ N(ε; 0, I)·exp(f(ε)) is a Gaussian known exactly. C chains run
as one batch from N(0, I); only the final state of each chain is used, so the C
samples are independent and the Monte-Carlo standard errors are the iid ones:

    mean_j:  se = √(Σ_jj / C)
    cov_ij:  se = √((Σ_ii Σ_jj + Σ_ij²) / C)      (Gaussian fourth moments)
    var_j:   se = v_j √(2 / C)

Assertions are |estimate − exact| < 5 se (max over all entries; for 16 means and
136 covariance entries, P(any > 5 se) < 1e-4 under the null) after enough
iterations that the chains forget their start (contraction checked below).
"""

from __future__ import annotations

import math

import pytest
import torch

from core_testing import DiagonalTilt, QuadraticTilt, chain_state, run_chains
from psi_sampler.psi_core.mcmc import mala_step, pcnl_rho, pcnl_step, rms_clip, ula_step
from psi_sampler.psi_core.rng import make_generator

DIM = 16
CHAINS = 4000
ITERATIONS = 60
Z_MAX = 5.0


def _quadratic_tilt() -> QuadraticTilt:
    """f(ε) = −|Aε − b|²/2 with a dense A: posterior covariance eigenvalues in
    about [0.2, 1], correlated coordinates, mean far from 0."""
    g = make_generator(3)
    a = torch.randn(DIM, DIM, generator=g, dtype=torch.float64) * (1.2 / math.sqrt(DIM))
    b = torch.randn(DIM, generator=g, dtype=torch.float64) * 1.5
    return QuadraticTilt(a, b)


def _check_gaussian(samples: torch.Tensor, mean: torch.Tensor, cov: torch.Tensor) -> None:
    n = samples.shape[0]
    var = cov.diag()
    z_mean = (samples.mean(0) - mean).abs() / (var / n).sqrt()
    emp_cov = torch.cov(samples.T)
    z_cov = (emp_cov - cov).abs() / ((var[:, None] * var[None, :] + cov ** 2) / n).sqrt()
    assert float(z_mean.max()) < Z_MAX, f"mean off by {float(z_mean.max()):.1f} se: {samples.mean(0) - mean}"
    assert float(z_cov.max()) < Z_MAX, f"covariance off by {float(z_cov.max()):.1f} se"


def test_quadratic_tilt_closed_form_is_right():
    # sanity of the helper: the tilt's mean is the argmax of log π = −|ε|²/2 + f
    tilt = _quadratic_tilt()
    eps = tilt.mean.float()[None]
    state = tilt(eps)
    assert torch.allclose(state.grad.double()[0] - tilt.mean, torch.zeros(DIM, dtype=torch.float64), atol=1e-4)
    assert float(tilt.cov.diag().min()) > 0.1


@pytest.mark.parametrize("step,delta,seed", [(pcnl_step, 0.5, 11), (mala_step, 0.3, 12)],
                         ids=["pcnl", "mala"])
def test_kernel_recovers_tilted_gaussian_mean_and_covariance(step, delta, seed):
    tilt = _quadratic_tilt()
    eps, acceptance = run_chains(step, tilt, CHAINS, DIM, ITERATIONS, delta, seed=seed)
    assert 0.3 < float(acceptance[ITERATIONS // 2:].mean()) < 1.0
    _check_gaussian(eps, tilt.mean, tilt.cov)


def test_pcnl_linear_tilt_gives_shifted_standard_gaussian():
    # f(ε) = ⟨c, ε⟩  ⇒  π = N(c, I). The pCN proposal alone is centred at ≈0.79·c
    # (δ = 0.5), so only a correct MH correction lands on c.
    c = torch.linspace(-1.5, 1.5, DIM, dtype=torch.float64)

    def potential(eps):
        return chain_state(eps, eps.double() @ c, c.expand(eps.shape[0], DIM).clone())

    eps, _ = run_chains(pcnl_step, potential, CHAINS, DIM, ITERATIONS, 0.5, seed=13)
    _check_gaussian(eps, c, torch.eye(DIM, dtype=torch.float64))


def test_pcnl_with_gradient_clipping_stays_exact():
    # RMS clipping changes the proposal, not the target, as long as the clipped
    # gradient is used in both directions of the MH ratio. Here the gradient
    # −(ε − 2) has RMS ≈ 2 at the start and ≈ 1.2 at the target, so a clip at 0.7
    # binds for every chain, by a state-dependent factor. (Measured: using the
    # unclipped gradient of the proposal in the ratio moves the mean by ≈ 12 se.)
    tilt = DiagonalTilt(torch.ones(DIM, dtype=torch.float64), torch.full((DIM,), 2.0, dtype=torch.float64))
    generator = make_generator(14)
    state = tilt(torch.randn((CHAINS, DIM), generator=generator))
    accepted = []
    for _ in range(80):
        state, info = pcnl_step(state, tilt, 0.5, generator, grad_clip=0.7)
        accepted.append(float(info.accepted.float().mean()))
    assert sum(accepted[40:]) / 40 < 0.8  # the clipped proposal is visibly worse
    _check_gaussian(state.eps.double(), tilt.mean, torch.diag(tilt.var))


def test_rms_clip_bounds_each_chain_and_keeps_small_gradients():
    grad = torch.stack([torch.full((8,), 3.0), torch.full((8,), 0.1)])
    clipped = rms_clip(grad, 1.0)
    rms = clipped.pow(2).mean(1).sqrt()
    assert torch.allclose(rms, torch.tensor([1.0, 0.1]), atol=1e-6)
    assert torch.equal(rms_clip(grad, None), grad)


def test_ula_has_its_closed_form_stationary_bias():
    # ULA on N(m, s²): u' = u − (δ/2s²)(u − m) + √δ z has stationary mean m and
    # variance s²/(1 − δ/(4s²)), not s². λ_j ∈ [0.5, 3] gives s² = 1/(1+λ) and a
    # biased/exact variance ratio between 1.23 and 2 at δ = 0.5.
    delta = 0.5
    lam = torch.linspace(0.5, 3.0, DIM, dtype=torch.float64)
    b = torch.linspace(-2.0, 2.0, DIM, dtype=torch.float64)
    tilt = DiagonalTilt(lam, b)
    biased = tilt.var / (1.0 - delta / (4.0 * tilt.var))
    # contraction per step is |1 − δ(1+λ)/2| <= 0.875: 60 steps leave < 1e-3 of the start
    eps, acceptance = run_chains(ula_step, tilt, CHAINS, DIM, ITERATIONS, delta, seed=15)
    assert bool((acceptance == 1.0).all())
    n = eps.shape[0]
    var_hat = eps.var(0)
    z_mean = (eps.mean(0) - tilt.mean).abs() / (biased / n).sqrt()
    z_biased = (var_hat - biased).abs() / (biased * math.sqrt(2.0 / n))
    z_exact = (var_hat - tilt.var).abs() / (biased * math.sqrt(2.0 / n))
    assert float(z_mean.max()) < Z_MAX
    assert float(z_biased.max()) < Z_MAX, f"ULA variance {var_hat} is not the biased {biased}"
    assert float(z_exact.min()) > Z_MAX, "ULA matched the exact variance: is it secretly corrected?"
    assert float((var_hat / tilt.var).mean()) > 1.3  # exact mean ratio of the biased variances: 1.56


def test_mala_does_not_have_the_ula_bias():
    delta = 0.5
    lam = torch.linspace(0.5, 3.0, DIM, dtype=torch.float64)
    tilt = DiagonalTilt(lam, torch.zeros(DIM, dtype=torch.float64))
    eps, _ = run_chains(mala_step, tilt, CHAINS, DIM, ITERATIONS, delta, seed=16)
    z = (eps.var(0) - tilt.var).abs() / (tilt.var * math.sqrt(2.0 / eps.shape[0]))
    assert float(z.max()) < Z_MAX


def _acceptance(step, dim: int, seed: int) -> float:
    # standard Gaussian tilted in 16 coordinates: f = −Σ_{j<16} 0.5·(ε_j − 1)²/2
    lam = torch.zeros(dim, dtype=torch.float64)
    lam[:16] = 0.5
    b = torch.zeros(dim, dtype=torch.float64)
    b[:16] = 1.0
    _, rates = run_chains(step, DiagonalTilt(lam, b), 32, dim, 20, 0.5, seed=seed)
    return float(rates[4:].mean())  # 512 accept/reject decisions: se ≈ 0.015


def test_pcnl_acceptance_does_not_collapse_in_high_dimension_while_malas_does():
    pcnl_64, pcnl_4096 = _acceptance(pcnl_step, 64, 21), _acceptance(pcnl_step, 4096, 21)
    mala_64, mala_4096 = _acceptance(mala_step, 64, 22), _acceptance(mala_step, 4096, 22)
    # measured: pCNL ≈ 0.92 at both sizes; MALA ≈ 0.6 at d = 64 and ≈ 0.01 at d = 4096
    assert pcnl_4096 > 0.8 and pcnl_64 > 0.8, (pcnl_64, pcnl_4096)
    assert abs(pcnl_4096 - pcnl_64) < 0.08, (pcnl_64, pcnl_4096)
    assert mala_4096 < 0.1, mala_4096
    assert mala_64 > 0.4, mala_64


def test_pcnl_rho_and_proposal_preserve_the_prior_without_tilt():
    # with f = 0 the pCN move is an exact AR(1) on N(0, I): always accepted
    assert math.isclose(pcnl_rho(0.5), 0.875 / 1.125)

    def flat(eps):
        return chain_state(eps, torch.zeros(eps.shape[0]), torch.zeros_like(eps))

    eps, acceptance = run_chains(pcnl_step, flat, 2000, 8, 5, 1.3, seed=23)
    assert bool((acceptance == 1.0).all())
    _check_gaussian(eps, torch.zeros(8, dtype=torch.float64), torch.eye(8, dtype=torch.float64))


def test_invalid_proposals_are_rejected_and_chains_never_enter_them():
    # f is NaN (invalid reward) for ε_0 > 0.5: no chain may move there
    c = torch.zeros(4, dtype=torch.float64)

    def potential(eps):
        f = torch.where(eps[:, 0] > 0.5, torch.full((eps.shape[0],), float("nan"), dtype=torch.float64),
                        eps.double() @ c)
        f = torch.where(torch.isfinite(f), f, torch.full_like(f, -math.inf))
        return chain_state(eps, f, torch.zeros_like(eps))

    generator = make_generator(24)
    start = -torch.rand((256, 4), generator=generator)  # every chain starts valid (ε_0 ≤ 0)
    for step in (pcnl_step, mala_step, ula_step):
        state = potential(start.clone())
        rejected = 0
        for _ in range(10):
            state, info = step(state, potential, 0.5, generator)
            rejected += int((~info.accepted).sum())
        assert bool((state.eps[:, 0] <= 0.5).all()), step.__name__
        assert bool(torch.isfinite(state.f).all()), step.__name__
        assert rejected > 0, step.__name__
