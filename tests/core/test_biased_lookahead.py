"""An approximate look-ahead leaves the target exact: the final weight corrects it to r.

The twist potentials of the SMC may use a cheaper look-ahead reward r̂ than the reward r
that defines the target p·exp(r/α) (a TAESD decode instead of the VAE's); the last step's
increment [r(x0) − λ·r̂(x, σ)]/α replaces the last twist by r, and the sum of increments
telescopes to the exact weight whatever r̂ is (twisted SMC: Wu et al. 2023; Chopin &
Papaspiliopoulos 2020, ch. 10; Ψ-Sampler, arXiv 2506.01320).

On the exact 8-D Gaussian problem (psi_core.toy.exact: closed-form target, eps and flow,
the reward strengths of test_exact.py) the look-ahead is r of a deliberately perturbed
decode, r̂(x0) = r(0.85·x0 + 0.3): its own tilt moves E[r] by 0.2 (α = 1) to 0.4 (α = 0.3).

Tolerances, fixed before the runs (those of test_exact.py): the estimate is the mean over
12 seeds of K = 4000 prior-initialised particles, its standard error sd/√12 from the runs;
with the final correction |z| ≤ 3.5 against the exact E[r]. The test is not vacuous: the
same runs without the correction (r̂ taken as the reward) fail that criterion, |z| > 3.5,
and instead match the closed form of the law they then target, p·exp(r̂/α), with |z| ≤ 3.5.
The same holds from Ψ-Sampler's start, pCNL chains tilted by the same r̂, whose initial weights
use the r̂ of the first twist, so the sum telescopes from the start.
"""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from psi_sampler.psi_core import (InitialConfig, InitialParticles, Lookahead, SMCConfig, draw_initial, make_generator,
                                  run_smc)
from psi_sampler.psi_core.smc import initial_log_weights, smc_init
from psi_sampler.psi_core.toy.exact import (base_law, exact_moments, exact_problem, gaussian_moments, over_seeds,
                                            perturbed_decode_reward, smc_estimate)

SEEDS = 12
PARTICLES = 4000
Z_REWARD = 3.5


def _z(estimate, value: float) -> float:
    return (estimate.reward - value) / estimate.reward_se


def _with_and_without_correction(family: str, alpha: float, initial: InitialConfig | None = None):
    """(problem, r̂, {corrected: estimate over the seeds}, exact E[r]) for the biased look-ahead."""
    problem = exact_problem("gaussian", family)
    biased = perturbed_decode_reward(problem)
    config = SMCConfig(alpha=alpha, output="all")
    runs = {corrected: over_seeds([smc_estimate(problem, config, PARTICLES, seed, lookahead_reward=biased,
                                                final_correction=corrected, initial=initial)
                                   for seed in range(SEEDS)]) for corrected in (True, False)}
    return problem, biased, runs, exact_moments(problem, alpha).reward


def _figures(runs: dict, **values) -> dict:
    return {**values, **{f"corrected={k}": (v.reward, v.reward_se) for k, v in runs.items()}}


@pytest.mark.parametrize("alpha", [1.0, 0.3])
@pytest.mark.parametrize("family", ["eps", "flow"])
def test_large_k_smc_with_a_biased_lookahead_recovers_the_exact_expected_reward(family, alpha):
    problem, biased, runs, exact = _with_and_without_correction(family, alpha)
    biased_target = gaussian_moments(base_law(problem).tilt(biased, alpha), problem.reward).reward
    figures = _figures(runs, exact=exact, biased_target=biased_target)
    assert abs(_z(runs[True], exact)) <= Z_REWARD, figures
    assert abs(_z(runs[False], exact)) > Z_REWARD, figures  # the bias is detected without the correction
    assert abs(_z(runs[False], biased_target)) <= Z_REWARD, figures  # ... and it is the look-ahead's own tilt


# Ψ-Sampler's start: pCNL chains on the same biased r̂ (400 chains, 20 burn-in + 10 kept iterations each). The
# chains' tilt is weaker than the target's, α_mcmc = 20·α, so the SMC starts tempered at λ_0 = α/α_mcmc = 0.05
# with flat weights, and the first twist is the chains' own r̂. (With α_mcmc = α the SMC starts untempered at
# λ_0 = 1, which on this problem measured 3–11 standard errors off even with the exact look-ahead: the
# untempered twist's own degeneracy, which would hide what the correction does.)
PSI_START = InitialConfig(method="pcnl", num_chains=400, mcmc_steps=30, burn_in=20)
CHAIN_TILT = 20.0


@pytest.mark.parametrize("alpha", [1.0, 0.3])
@pytest.mark.parametrize("family", ["eps", "flow"])
def test_psi_started_smc_with_a_biased_lookahead_recovers_the_exact_expected_reward(family, alpha):
    start = dataclasses.replace(PSI_START, alpha_mcmc=CHAIN_TILT * alpha)
    _, _, runs, exact = _with_and_without_correction(family, alpha, start)
    figures = _figures(runs, exact=exact)
    assert abs(_z(runs[True], exact)) <= Z_REWARD, figures
    assert abs(_z(runs[False], exact)) > Z_REWARD, figures


def test_the_final_reward_and_trace_are_the_exact_reward_of_the_output():
    problem = exact_problem("gaussian", "flow")
    biased = perturbed_decode_reward(problem)
    lookahead = Lookahead(problem.denoiser, biased, grad_batch_size=256, final_reward=problem.reward)
    generator = make_generator(3)
    initial = draw_initial(InitialConfig(method="prior", num_particles=256), lookahead, problem.start(),
                           (problem.dim,), float(problem.sigmas[0]), generator)
    result = run_smc(initial, problem.sigmas, lookahead, SMCConfig(alpha=0.3, output="best"), problem.family,
                     generator)
    last = result.trace.smc[-1]
    exact = problem.reward(result.particles.double()).float()
    assert torch.allclose(result.final_reward, exact, rtol=1e-5, atol=1e-5)
    assert torch.allclose(last.reward, exact, rtol=1e-5, atol=1e-5)
    # the replaced twist is the look-ahead r̂ of the same (deterministic) final particles, and differs from r
    assert torch.allclose(last.replaced_reward, biased(result.particles.double()).float(), rtol=1e-5, atol=1e-5)
    assert float((last.replaced_reward - exact).abs().max()) > 0.1
    # best output = the highest exact reward among live particles
    assert result.selected == [int(torch.argmax(exact))]
    # earlier steps keep r̂ (no exact scoring before σ = 0)
    assert all(r.replaced_reward is None for r in result.trace.smc[:-1])


def test_initial_weights_correct_the_chains_tilt_to_another_first_twist():
    # particles from N·exp(r̂_tilt/α_mcmc) whose first SMC twist is another r̂_0 (the chains'
    # evaluation was dropped): log w_0 = λ_0·r̂_0/α − r̂_tilt/α_mcmc, exactly
    r0 = torch.tensor([-1.0, -2.0, 0.5, -math.inf])
    tilt = torch.tensor([-1.5, -0.5, 0.25, -1.0])
    got = initial_log_weights(r0, 0.2, 0.5, "consistent", lam=0.4, tilt_reward=tilt)
    expected = 0.4 * r0.double() / 0.2 - tilt.double() / 0.5
    assert torch.allclose(got[:3], expected[:3], rtol=0, atol=1e-12)
    assert got[3] == -math.inf
    # without a separate tilt the chains' own r̂ is the first twist: r̂·(λ_0/α − 1/α_mcmc)
    same = initial_log_weights(tilt, 0.2, 0.5, "consistent", lam=0.4)
    assert torch.allclose(same, tilt.double() * (0.4 / 0.2 - 1 / 0.5), rtol=0, atol=1e-12)


def test_smc_init_uses_the_kept_tilt_reward_when_it_evaluates_the_first_twist_itself():
    problem = exact_problem("gaussian", "eps")
    x = torch.randn(6, problem.dim, generator=make_generator(4)) * problem.start().scale
    tilt = torch.linspace(-3.0, -1.0, 6)
    initial = InitialParticles("pcnl", x / problem.start().scale, x, float(problem.sigmas[0]), evaluation=None,
                               alpha_mcmc=0.5, tilt_reward=tilt)
    lookahead = Lookahead(problem.denoiser, perturbed_decode_reward(problem), grad_batch_size=6)
    config = SMCConfig(alpha=0.25, tempering=False)
    state = smc_init(initial, lookahead, config, need_grad=True)
    r0 = state.evaluation.reward.double()
    expected = r0 / 0.25 - tilt.double() / 0.5
    assert torch.allclose(state.log_weights.log_w, expected, rtol=1e-12, atol=1e-9)
    # the first step subtracts the same r̂_0 it added: the sum telescopes from the start
    assert torch.equal(state.evaluation.reward, lookahead(x, float(problem.sigmas[0]), need_grad=False).reward)
