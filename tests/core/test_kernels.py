"""The ancestral kernels and the noise scaling against ComfyUI's own formulas.

The reference functions below are written independently from ComfyUI's
k-diffusion loops (comfy/k_diffusion/sampling.py): `sample_euler_ancestral` with `get_ancestral_step`
for EPS/V models and `sample_euler_ancestral_RF` for CONST (flow) models, and
`model_sampling.noise_scaling`. psi_core writes the same steps as Gaussians
N(μ, s²I); μ is the step with zero noise, s the factor in front of the noise.
"""

from __future__ import annotations

import math

import pytest
import torch

from psi_sampler.psi_core import SMCConfig, make_generator, run_smc
from psi_sampler.psi_core.families import ancestral_coefficients, kernel_coefficients, start_map
from psi_sampler.psi_core.initial import InitialParticles
from psi_sampler.psi_core.lookahead import Lookahead
from psi_sampler.psi_core.smc import SMCState, smc_step
from psi_sampler.psi_core.toy import figure1
from psi_sampler.psi_core.weights import LogWeights


# --- ComfyUI reference (k-diffusion sampling.py), float arithmetic as there -------------

def comfy_get_ancestral_step(sigma_from, sigma_to, eta=1.0):
    if not eta:
        return sigma_to, 0.0
    sigma_up = min(sigma_to, eta * (sigma_to ** 2 * (sigma_from ** 2 - sigma_to ** 2) / sigma_from ** 2) ** 0.5)
    sigma_down = (sigma_to ** 2 - sigma_up ** 2) ** 0.5
    return sigma_down, sigma_up


def comfy_euler_ancestral_step(x, denoised, sigma, sigma_next, eta, noise):
    """One iteration of sample_euler_ancestral (s_noise = 1)."""
    sigma_down, sigma_up = comfy_get_ancestral_step(sigma, sigma_next, eta=eta)
    if sigma_down == 0:
        return denoised
    d = (x - denoised) / sigma          # to_d
    dt = sigma_down - sigma
    x = x + d * dt
    if sigma_next > 0:
        x = x + noise * sigma_up
    return x


def comfy_euler_ancestral_rf_step(x, denoised, sigma, sigma_next, eta, noise):
    """One iteration of sample_euler_ancestral_RF (s_noise = 1)."""
    if sigma_next == 0:
        return denoised
    downstep_ratio = 1 + (sigma_next / sigma - 1) * eta
    sigma_down = sigma_next * downstep_ratio
    alpha_ip1 = 1 - sigma_next
    alpha_down = 1 - sigma_down
    renoise_coeff = (sigma_next ** 2 - sigma_down ** 2 * alpha_ip1 ** 2 / alpha_down ** 2) ** 0.5
    sigma_down_i_ratio = sigma_down / sigma
    x = sigma_down_i_ratio * x + (1 - sigma_down_i_ratio) * denoised
    if eta > 0:
        x = (alpha_ip1 / alpha_down) * x + noise * renoise_coeff
    return x


def comfy_noise_scaling(family, sigma, noise, latent, max_denoise):
    if family == "eps":
        noise = noise * (math.sqrt(1.0 + sigma ** 2) if max_denoise else sigma)
        return noise + latent
    return sigma * noise + (1.0 - sigma) * latent


def comfy_lcm_step(family, x, denoised, sigma_next, noise):
    """One iteration of sample_lcm: the prediction, re-noised with noise_scaling (no max_denoise)."""
    x = denoised
    if sigma_next > 0:
        x = comfy_noise_scaling(family, sigma_next, noise, x, max_denoise=False)
    return x


COMFY_STEP = {"eps": comfy_euler_ancestral_step, "flow": comfy_euler_ancestral_rf_step}
PAIRS = {"eps": [(14.6, 10.0), (3.0, 2.2), (1.0, 0.5), (0.1, 0.03)],
         "flow": [(1.0, 0.95), (0.9, 0.6), (0.5, 0.45), (0.08, 0.01)]}


@pytest.mark.parametrize("eta", [0.0, 0.4, 1.0])
@pytest.mark.parametrize("family", ["eps", "flow"])
def test_mean_and_noise_scale_match_comfyui(family, eta):
    g = make_generator(1)
    x = torch.randn(5, 3, generator=g, dtype=torch.float64) * 3
    x0 = torch.randn(5, 3, generator=g, dtype=torch.float64)
    noise = torch.randn(5, 3, generator=g, dtype=torch.float64)
    for sigma, sigma_next in PAIRS[family]:
        coeff = ancestral_coefficients(family, sigma, sigma_next, eta)
        mu_ref = COMFY_STEP[family](x, x0, sigma, sigma_next, eta, torch.zeros_like(x))
        with_noise = COMFY_STEP[family](x, x0, sigma, sigma_next, eta, noise)
        s_ref = float(((with_noise - mu_ref) / noise).mean())
        assert torch.allclose(coeff.mean(x, x0), mu_ref, rtol=1e-12, atol=1e-12), (family, sigma, sigma_next, eta)
        assert math.isclose(coeff.s, s_ref, rel_tol=1e-10, abs_tol=1e-12), (family, sigma, sigma_next, eta)
        assert torch.allclose(coeff.mean(x, x0) + coeff.s * noise, with_noise, rtol=1e-12, atol=1e-12)
        if eta == 0:
            assert coeff.s == 0.0


@pytest.mark.parametrize("family", ["eps", "flow"])
def test_lcm_kernel_matches_comfyui(family):
    g = make_generator(4)
    x = torch.randn(5, 3, generator=g, dtype=torch.float64) * 3
    x0 = torch.randn(5, 3, generator=g, dtype=torch.float64)
    noise = torch.randn(5, 3, generator=g, dtype=torch.float64)
    for sigma, sigma_next in PAIRS[family]:
        coeff = kernel_coefficients("lcm", family, sigma, sigma_next, eta=0.3)  # η plays no part
        assert torch.allclose(coeff.mean(x, x0) + coeff.s * noise, comfy_lcm_step(family, x, x0, sigma_next, noise),
                              rtol=1e-12, atol=1e-12), (family, sigma, sigma_next)
        assert coeff.s == sigma_next
    with pytest.raises(ValueError, match="sigma_next"):
        kernel_coefficients("lcm", family, 1.0, 0.0, 1.0)
    with pytest.raises(ValueError, match="kernel.*'heun'"):
        kernel_coefficients("heun", family, 1.0, 0.5, 1.0)


def test_eps_noise_scale_is_sigma_up_in_closed_form():
    # η = 1: σ_up = σ'·√(σ² − σ'²)/σ, σ_down = σ'²/σ, μ = x̂0 + (σ'²/σ²)(x − x̂0)
    coeff = ancestral_coefficients("eps", 2.0, 1.0, 1.0)
    assert math.isclose(coeff.s, math.sqrt(3.0) / 2.0, rel_tol=1e-12)
    assert math.isclose(coeff.a, 0.25, rel_tol=1e-12) and math.isclose(coeff.b, 0.75, rel_tol=1e-12)


def test_kernel_rejects_final_step_and_unknown_family():
    with pytest.raises(ValueError, match="sigma_next"):
        ancestral_coefficients("eps", 1.0, 0.0, 1.0)
    with pytest.raises(ValueError, match="family.*'vpred'"):
        ancestral_coefficients("vpred", 1.0, 0.5, 1.0)


@pytest.mark.parametrize("max_denoise", [True, False])
@pytest.mark.parametrize("family", ["eps", "flow"])
def test_start_map_is_comfyui_noise_scaling(family, max_denoise):
    g = make_generator(2)
    noise = torch.randn(2, 4, 3, 3, generator=g)
    latent = torch.randn(1, 4, 3, 3, generator=g)
    sigma = 0.87 if family == "flow" else 14.6
    start = start_map(family, sigma, latent, max_denoise)
    ref = comfy_noise_scaling(family, sigma, noise, latent, max_denoise)
    assert torch.allclose(start(noise), ref, atol=1e-5)
    empty = start_map(family, sigma, torch.zeros_like(latent), max_denoise)
    assert empty.offset is None
    assert torch.allclose(empty(noise), comfy_noise_scaling(family, sigma, noise, torch.zeros_like(latent),
                                                            max_denoise), atol=1e-6)
    before = latent.clone()
    start(noise)
    assert torch.equal(latent, before)
    with pytest.raises(ValueError, match="family"):
        start_map("x0", sigma, latent, max_denoise)


def _one_step_with_same_noise(family: str, gradient_free: bool):
    problem = figure1(family, steps=8, dim=2)
    sigmas = problem.sigmas.tolist()
    i = 2
    sigma, sigma_next = sigmas[i], sigmas[i + 1]
    g = make_generator(3)
    x = torch.randn(6, 2, generator=g) * sigma
    lookahead = Lookahead(problem.denoiser, problem.reward, grad_batch_size=6)
    evaluation = lookahead(x, sigma, need_grad=True)
    state = SMCState(x=x, log_weights=LogWeights.uniform(6), evaluation=evaluation)
    config = SMCConfig(alpha=problem.alpha, ess_threshold=0.0, gradient_free=gradient_free, guidance=0.0)
    new_state, _ = smc_step(state, i, sigma, sigma_next, lookahead, config, family, make_generator(77), False)
    noise = torch.randn(x.shape, generator=make_generator(77), dtype=torch.float32)
    denoised = problem.denoiser(x, torch.full((6,), sigma))
    expected = COMFY_STEP[family](x, denoised, sigma, sigma_next, 1.0, noise)
    return new_state.x, expected


@pytest.mark.parametrize("family", ["eps", "flow"])
def test_unguided_smc_step_is_the_comfyui_step_with_the_same_noise(family):
    for gradient_free in (True, False):  # guidance 0 also proposes from the model kernel
        got, expected = _one_step_with_same_noise(family, gradient_free)
        assert torch.allclose(got, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kernel", ["ancestral", "lcm"])
@pytest.mark.parametrize("family", ["eps", "flow"])
def test_whole_unweighted_run_is_comfyuis_sampler(family, kernel):
    # prior particles + gradient-free SMC with no resampling = ComfyUI's full loop
    # (euler_ancestral[_RF], or lcm with the distilled toy model), fed the same noise
    # in the same order (the start noise, then one draw per step)
    problem = figure1(family, steps=10, dim=2, denoiser="distilled" if kernel == "lcm" else "tweedie")
    assert problem.kernel == kernel
    sigmas = problem.sigmas.tolist()
    k = 16
    g = make_generator(5)
    eps = torch.randn((k, 2), generator=g, dtype=torch.float32)
    x = comfy_noise_scaling(family, sigmas[0], eps, torch.zeros(1, 2), max_denoise=True)
    for s, s_next in zip(sigmas[:-1], sigmas[1:]):
        noise = torch.randn(x.shape, generator=g, dtype=torch.float32) if s_next > 0 else None
        denoised = problem.denoiser(x, torch.full((k,), s))
        if kernel == "lcm":
            x = comfy_lcm_step(family, x, denoised, s_next, noise)
        else:
            x = COMFY_STEP[family](x, denoised, s, s_next, 1.0, noise)

    generator = make_generator(5)
    start = problem.start()
    eps2 = torch.randn((k, 2), generator=generator, dtype=torch.float32)
    initial = InitialParticles("prior", eps2, start(eps2), sigmas[0])
    lookahead = Lookahead(problem.denoiser, problem.reward, grad_batch_size=k)
    result = run_smc(initial, problem.sigmas, lookahead,
                     SMCConfig(alpha=problem.alpha, kernel=kernel, gradient_free=True, ess_threshold=0.0,
                               output="all"),
                     family, generator)
    assert torch.allclose(result.particles, x, rtol=1e-5, atol=1e-5)
