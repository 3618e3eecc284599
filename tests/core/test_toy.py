"""The exact-target toy's closed forms against Monte Carlo and numerical integration,
its metrics, and its runner's budget accounting."""

from __future__ import annotations

import math

import pytest
import torch

from psi_sampler.psi_core import make_generator
from psi_sampler.psi_core.budget import plan_budget
from psi_sampler.psi_core.names import MCMC_KERNELS
from psi_sampler.psi_core.toy import DiagonalMixture, GaussianReward, ToySettings, expected_reward, figure1, run_toy, tilt
from psi_sampler.psi_core.toy.metrics import energy_distance, merge_duplicates, mode_masses, mode_report
from psi_sampler.psi_core.toy.problems import DIM_RANGE, REWARDED_DIMS, flow_map, schedule

LEVELS = {"eps": [0.3, 1.0, 3.0], "flow": [0.3, 0.6, 0.9]}


@pytest.mark.parametrize("family", ["eps", "flow"])
def test_tweedie_denoiser_equals_monte_carlo_posterior_mean(family):
    # E[x0 | x] by self-normalised importance sampling of 200k prior draws with
    # weights N(x; a·x0, b²I); se from the IS variance Σ w̃²(x0 − est)².
    problem = figure1(family)
    prior = problem.prior
    x0, _ = prior.sample(200_000, make_generator(1))
    g = make_generator(2)
    for sigma in LEVELS[family]:
        a, b = problem.coefficients(sigma)
        clean, _ = prior.sample(4, g)
        x = a * clean + b * torch.randn(clean.shape, generator=g, dtype=torch.float64)
        exact = problem.denoiser(x, torch.full((4,), sigma))
        for i in range(4):
            log_w = -((x[i] - a * x0) ** 2).sum(1) / (2 * b * b)
            w = torch.softmax(log_w, 0)
            est = (w[:, None] * x0).sum(0)
            se = ((w[:, None] ** 2) * (x0 - est) ** 2).sum(0).sqrt()
            assert float(1 / (w ** 2).sum()) > 100  # enough effective samples for the se to mean something
            assert bool(((exact[i] - est).abs() < 5 * se + 1e-9).all()), (family, sigma, exact[i], est, se)


@pytest.mark.parametrize("family", ["eps", "flow"])
def test_tweedie_denoiser_satisfies_tweedies_formula(family):
    # E[x0 | x] = (x + b²∇log p(x))/a with p(x) = Σ π_k N(a m_k, a²v_k + b²)
    problem = figure1(family, dim=5)
    x = torch.randn(16, 5, generator=make_generator(3), dtype=torch.float64).requires_grad_(True)
    for sigma in LEVELS[family]:
        a, b = problem.coefficients(sigma)
        log_p = torch.logsumexp(problem.prior.component_log_prob(x, a, b), dim=1)
        (score,) = torch.autograd.grad(log_p.sum(), x)
        expected = (x.detach() + b * b * score) / a
        got = problem.prior.denoise(x.detach(), a, b)
        assert torch.allclose(got, expected, rtol=1e-10, atol=1e-10)


def test_denoiser_keeps_dtype_and_is_differentiable():
    problem = figure1("flow")
    x = torch.randn(3, 2, requires_grad=True)
    out = problem.denoiser(x, torch.full((3,), 0.5))
    assert out.dtype == torch.float32
    out.sum().backward()
    assert x.grad is not None and bool(torch.isfinite(x.grad).all())


def _integrate_tilt_1d(prior: DiagonalMixture, reward: GaussianReward, alpha: float):
    grid = torch.linspace(-12, 12, 240_001, dtype=torch.float64)[:, None]
    h = float(grid[1] - grid[0])
    comp = torch.exp(prior.component_log_prob(grid)) * torch.exp(reward(grid) / alpha)[:, None]  # [G, M]
    mass = comp.sum(0) * h
    mean = (comp * grid).sum(0) * h / mass
    var = (comp * (grid - mean) ** 2).sum(0) * h / mass
    return mass / mass.sum(), mean, var


@pytest.mark.parametrize("family", ["eps", "flow"])
def test_distilled_denoiser_transports_the_first_marginal_onto_the_prior(family):
    # Exact draws of p_σ0 (flow σ0 = 1: pure noise; eps σ0 = 10) pushed through the flow
    # map land on p0 with its mode masses (0.35, 0.32, 0.30, 0.02, 0.01). Measured with
    # 20k draws: within 0.007 per mode, energy distance 5e-4, coordinate sds within 0.01;
    # Tweedie's E[x0 | x] at σ0 instead stays within 0.1 sd of the prior mean.
    problem = figure1(family, denoiser="distilled")
    sigma0 = float(problem.sigmas[0])
    a, b = problem.coefficients(sigma0)
    clean0, _ = problem.prior.sample(20_000, make_generator(3))
    x = a * clean0 + b * torch.randn(clean0.shape, generator=make_generator(4), dtype=torch.float64)
    clean = problem.denoiser(x, torch.full((20_000,), sigma0))
    masses = mode_masses(clean, torch.ones(20_000, dtype=torch.float64), problem.prior)
    assert torch.allclose(masses, problem.prior.weights, atol=0.015), masses
    exact, _ = problem.prior.sample(4000, make_generator(1))
    assert abs(energy_distance(clean[:4000], torch.ones(4000, dtype=torch.float64), exact)) < 0.005
    assert torch.allclose(clean.std(0), exact.std(0), atol=0.03)
    assert float(problem.tweedie(x, sigma0).std(0).max()) < 0.15


def test_flow_map_is_differentiable_and_the_identity_at_sigma_zero():
    problem = figure1("flow", denoiser="distilled")
    x = torch.randn(4, 2, generator=make_generator(5), dtype=torch.float64, requires_grad=True)
    (grad,) = torch.autograd.grad(problem.reward(problem.denoiser(x, torch.full((4,), 0.7))).sum(), x)
    h = 1e-6
    for i in range(2):
        step = torch.zeros_like(x)
        step[:, i] = h
        with torch.no_grad():
            fd = (problem.reward(problem.denoiser(x + step, torch.full((4,), 0.7)))
                  - problem.reward(problem.denoiser(x - step, torch.full((4,), 0.7)))) / (2 * h)
        assert torch.allclose(grad[:, i], fd, rtol=1e-5, atol=1e-7)
    assert torch.equal(flow_map(problem.tweedie, x.detach(), 0.0), x.detach())


def test_tilt_matches_numerical_integration_in_1d():
    prior = DiagonalMixture(torch.tensor([0.5, 0.3, 0.2], dtype=torch.float64),
                            torch.tensor([[-2.0], [0.5], [3.0]], dtype=torch.float64),
                            torch.tensor([[0.3], [1.5], [0.05]], dtype=torch.float64))
    reward = GaussianReward(torch.tensor([1.5], dtype=torch.float64), torch.tensor([2.0], dtype=torch.float64))
    for alpha in (0.2, 1.0, 5.0):
        exact = tilt(prior, reward, alpha)
        weights, mean, var = _integrate_tilt_1d(prior, reward, alpha)
        assert torch.allclose(exact.weights, weights, rtol=1e-8, atol=1e-12), alpha
        assert torch.allclose(exact.means[:, 0], mean, rtol=1e-8, atol=1e-10), alpha
        assert torch.allclose(exact.variances[:, 0], var, rtol=1e-7), alpha


def test_tilt_matches_numerical_integration_in_2d_figure1():
    problem = figure1("flow")
    axis = torch.linspace(-4, 4, 801, dtype=torch.float64)
    h = float(axis[1] - axis[0])
    xx, yy = torch.meshgrid(axis, axis, indexing="ij")
    grid = torch.stack([xx.reshape(-1), yy.reshape(-1)], 1)
    comp = torch.exp(problem.prior.component_log_prob(grid) + (problem.reward(grid) / problem.alpha)[:, None])
    mass = comp.sum(0) * h * h
    mean = (comp[:, :, None] * grid[:, None, :]).sum(0) * h * h / mass[:, None]
    target = problem.target
    weights = mass / mass.sum()
    assert torch.allclose(target.weights, weights, rtol=1e-6, atol=1e-12)
    heavy = target.weights > 1e-6  # the three big modes carry ~1e-9 of the tilted mass
    assert torch.allclose(target.means[heavy], mean[heavy], atol=1e-6)
    # the exact expected reward by the same quadrature
    r_grid = problem.reward(grid)
    z = comp.sum(1)
    assert math.isclose(problem.target_reward_mean, float((z * r_grid).sum() / z.sum()), rel_tol=1e-6)
    # the Figure-1 design: the target lives in the two modes holding 3% of the prior
    assert float(target.weights[3:].sum()) > 0.99 and float(problem.prior.weights[3:].sum()) == pytest.approx(0.03)


@pytest.mark.parametrize("which", ["prior", "target"])
def test_expected_reward_matches_monte_carlo(which):
    problem = figure1("flow", dim=20)
    mixture = problem.prior if which == "prior" else problem.target
    samples, _ = mixture.sample(200_000, make_generator(4))
    r = problem.reward(samples)
    se = float(r.std()) / math.sqrt(r.numel())
    assert abs(float(r.mean()) - expected_reward(mixture, problem.reward)) < 5 * se


def test_mixture_sampling_matches_component_weights_and_moments():
    problem = figure1("eps")
    samples, labels = problem.prior.sample(100_000, make_generator(5))
    freq = torch.bincount(labels, minlength=5).double() / 1e5
    w = problem.prior.weights
    assert bool(((freq - w).abs() < 5 * (w * (1 - w) / 1e5).sqrt()).all())
    for k in range(5):
        pts = samples[labels == k]
        n = pts.shape[0]
        sd = problem.prior.variances[k].sqrt()
        assert bool(((pts.mean(0) - problem.prior.means[k]).abs() < 5 * sd / math.sqrt(n)).all())


def test_figure1_embedding_and_dimension_range():
    p = figure1("flow", dim=40)
    assert p.dim == 40
    assert int((p.reward.precision > 0).sum()) == REWARDED_DIMS
    assert torch.equal(p.prior.means[:, 2:], torch.zeros(5, 38, dtype=torch.float64))
    assert torch.equal(p.prior.variances[:, 2:], torch.ones(5, 38, dtype=torch.float64))
    lo, hi = DIM_RANGE
    with pytest.raises(ValueError, match="dim"):
        figure1("flow", dim=lo - 1)
    with pytest.raises(ValueError, match="dim"):
        figure1("flow", dim=hi + 1)
    with pytest.raises(ValueError, match="family"):
        figure1("vpred")


@pytest.mark.parametrize("family", ["eps", "flow"])
def test_schedules_are_valid_sigmas(family):
    s = schedule(family, 25)
    assert s.numel() == 26 and float(s[-1]) == 0.0
    assert bool((s[1:] < s[:-1]).all())
    if family == "flow":
        assert float(s[0]) < 1.0
        assert float(schedule(family, 25, full_noise=True)[0]) == 1.0
    with pytest.raises(ValueError, match="denoiser.*'exact'"):
        figure1(family, denoiser="exact")


def test_unbiased_energy_distance_does_not_depend_on_the_number_of_particles():
    """Few particles drawn from the target itself: the default estimate averages to ~0 for
    K = 5 and K = 40 alike, while the plug-in one sits at about E|X−X'|/K above it."""
    problem = figure1("flow")
    y, _ = problem.target.sample(400, make_generator(11))
    generator = make_generator(12)
    for k in (5, 40):
        unbiased, plugin = [], []
        for _ in range(200):
            x, _ = problem.target.sample(k, generator)
            equal = torch.ones(k, dtype=torch.float64)
            unbiased.append(energy_distance(x, equal, y))
            plugin.append(energy_distance(x, equal, y, unbiased=False))
        mean_u, mean_p = sum(unbiased) / 200, sum(plugin) / 200
        spread = float(torch.tensor(unbiased).std()) / 200 ** 0.5
        assert abs(mean_u) < 4 * spread + 2e-3, (k, mean_u, spread)
        within = float(torch.cdist(y, y).mean())
        assert mean_p - mean_u == pytest.approx(within / k, rel=0.35), (k, mean_p, mean_u, within)


def test_energy_distance_merges_duplicates_so_resampling_does_not_change_it():
    problem = figure1("flow")
    y, _ = problem.target.sample(400, make_generator(8))
    x, _ = problem.prior.sample(30, make_generator(9))
    weights = torch.rand(30, generator=make_generator(10), dtype=torch.float64)
    # the same weighted law written with copies: particle i repeated c_i times, weight split evenly
    counts = torch.randint(1, 5, (30,), generator=make_generator(11))
    repeated = x.repeat_interleave(counts, dim=0)
    split = (weights / counts).repeat_interleave(counts)
    assert math.isclose(energy_distance(repeated, split, y), energy_distance(x, weights, y), rel_tol=1e-9)
    rows, merged = merge_duplicates(repeated, split)
    assert rows.shape[0] == 30 and math.isclose(float(merged.sum()), 1.0)


def test_energy_distance_and_mode_report():
    problem = figure1("flow")
    y, _ = problem.target.sample(500, make_generator(6))
    equal = torch.ones(500, dtype=torch.float64)
    assert abs(energy_distance(y, equal, y, unbiased=False)) < 1e-12
    assert abs(energy_distance(y, equal, y)) < 1e-2
    shifted = energy_distance(y + 1.0, equal, y)
    assert shifted > 0.5
    prior_samples, _ = problem.prior.sample(500, make_generator(7))
    assert energy_distance(prior_samples, equal, y) > 0.5
    report = mode_report(y, equal, problem.target)
    assert report["modes_total"] == 2 and report["modes_covered"] == 2
    assert report["mode_mass_error"] < 0.1
    masses = mode_masses(prior_samples, equal, problem.target)
    assert math.isclose(float(masses.sum()), 1.0)


@pytest.mark.parametrize("method", ["prior", "topk", "ula", "mala", "pcnl", "bon"])
def test_run_toy_spends_the_planned_budget(method):
    problem = figure1("flow", steps=10)
    report = run_toy(problem, ToySettings(method=method, nfe=240, target_samples=300))
    plan = plan_budget(method, 240, 10, 10)
    assert report["nfe"] == plan.nfe <= 240
    assert report["nfe"] == report["nfe_grad"] + report["nfe_forward"]
    if method == "bon":
        assert report["nfe_grad"] == 0  # plain ancestral samples, forward passes only
    if method == "topk":
        assert report["nfe_grad"] == plan.num_particles * 9  # K·(steps − 1)
    assert (report["acceptance"] is None) == (method not in MCMC_KERNELS)
    assert report["target_reward_mean"] == pytest.approx(problem.target_reward_mean)
    assert math.isfinite(report["reward_mean"]) and report["energy_distance_plugin"] >= -1e-9
    # the unbiased estimate drops the zero self-distances, so it never exceeds the plug-in one
    assert math.isfinite(report["energy_distance"])
    assert report["energy_distance"] <= report["energy_distance_plugin"] + 1e-12
