"""The initial-particle stage: thinning over chains and time, the carried evaluation,
acceptance statistics, adaptive step size and float32 MH arithmetic."""

from __future__ import annotations

import math

import torch

from core_testing import small_problem
from psi_sampler.psi_core import InitialConfig, Lookahead, NFECounter, draw_initial, make_generator, start_map, thinning_schedule
from psi_sampler.psi_core.budget import distinct_chains
from psi_sampler.psi_core.initial import distinct_count
from psi_sampler.psi_core.toy.exact import exact_problem


def _draw(problem, denoiser=None, **overrides):
    config = dict(method="pcnl", num_particles=10, num_chains=4, mcmc_steps=20, burn_in=10,
                  alpha_mcmc=problem.alpha_mcmc)
    config.update(overrides)
    counter = NFECounter()
    lookahead = Lookahead(denoiser or problem.denoiser, problem.reward, grad_batch_size=8, counter=counter)
    initial = draw_initial(InitialConfig(**config), lookahead, problem.start(), (problem.dim,),
                           float(problem.sigmas[0]), make_generator(0))
    return initial, counter


def test_thinning_spreads_particles_over_chains_and_time():
    picks = thinning_schedule(10, 4, 20, 10)
    assert len(picks) == len(set(picks)) == 10
    per_chain = torch.bincount(torch.tensor([c for _, c in picks]), minlength=4)
    assert per_chain.tolist() == [3, 3, 2, 2]
    assert all(10 <= i < 20 for i, _ in picks)
    for chain in range(4):
        its = sorted(i for i, c in picks if c == chain)
        assert its[-1] == 19  # the latest state of every chain is kept
        gaps = {b - a for a, b in zip(its, its[1:])}
        assert len(gaps) <= 1 and (not gaps or min(gaps) >= 3)  # evenly spaced, not adjacent
    # more chains than particles: one state from each of the first K chains
    assert thinning_schedule(3, 5, 4, 1) == [(3, 0), (3, 1), (3, 2)]


def test_kept_particles_carry_the_evaluation_of_their_chain_state():
    problem = small_problem("flow")
    initial, counter = _draw(problem)
    schedule = thinning_schedule(10, 4, 20, 10)
    trace_rewards = torch.stack([initial.trace.mcmc[i].reward[c] for i, c in schedule])
    assert torch.equal(initial.evaluation.reward, trace_rewards)
    a, b = problem.coefficients(float(problem.sigmas[0]))
    x0 = problem.prior.denoise(initial.x.double(), a, b)
    assert torch.allclose(initial.evaluation.x0_hat.double(), x0, atol=1e-5)
    assert torch.allclose(initial.evaluation.reward.double(), problem.reward(x0), atol=1e-4)
    assert torch.allclose(initial.x, problem.start()(initial.noise))
    assert counter.grad == 4 * 21 and counter.forward == 0  # one start + one per iteration, per chain


def test_acceptance_is_the_post_burn_in_mean():
    problem = small_problem("flow")
    initial, _ = _draw(problem)
    rows = torch.stack([r.accepted.float() for r in initial.trace.mcmc[10:]])
    assert abs(initial.trace.acceptance - float(rows.mean())) < 1e-6


def test_adaptive_step_size_moves_during_burn_in_only():
    problem = small_problem("flow")
    # MALA at δ = 4 accepts ≈ 10% on this toy (measured); asking for 70% shrinks δ
    fixed, _ = _draw(problem, method="mala", step_size=4.0, mcmc_steps=40, burn_in=30, adapt_step_size=False)
    adapted, _ = _draw(problem, method="mala", step_size=4.0, target_acceptance=0.7, mcmc_steps=40, burn_in=30)
    sizes = [r.step_size for r in adapted.trace.mcmc]
    assert sizes[0] == 4.0
    assert len(set(sizes[30:])) == 1  # frozen after burn-in
    assert sizes[-1] < 2.5
    assert adapted.trace.final_step_size == sizes[-1]
    assert adapted.trace.to_dict()["final_step_size"] == sizes[-1]
    assert adapted.trace.acceptance > fixed.trace.acceptance + 0.3  # adaptation is on by default
    assert all(r.step_size == 4.0 for r in fixed.trace.mcmc)
    assert fixed.trace.final_step_size == 4.0


def test_without_burn_in_the_step_size_adapts_with_a_diminishing_gain():
    initial, _ = _draw(small_problem("flow"), num_particles=4, mcmc_steps=6, burn_in=0)
    sizes = [r.step_size for r in initial.trace.mcmc]
    assert initial.trace.adaptation == "diminishing"
    assert len(set(sizes)) > 1
    steps = [abs(math.log(b) - math.log(a)) for a, b in zip(sizes, sizes[1:])]
    assert all(step <= 1.0 / (i + 1) ** 0.6 + 1e-9 for i, step in enumerate(steps, start=1))
    fixed, _ = _draw(small_problem("flow"), num_particles=4, mcmc_steps=6, burn_in=0, adapt_step_size=False)
    assert [r.step_size for r in fixed.trace.mcmc] == [0.5] * 6 and fixed.trace.adaptation == "off"
    with_burn_in, _ = _draw(small_problem("flow"), num_particles=4, mcmc_steps=6, burn_in=2)
    assert with_burn_in.trace.adaptation == "burn_in"
    assert len({r.step_size for r in with_burn_in.trace.mcmc[2:]}) == 1


def test_the_trace_counts_distinct_initial_particles():
    initial, _ = _draw(small_problem("flow"), num_particles=8, num_chains=2, mcmc_steps=10, burn_in=2)
    rows = initial.noise.reshape(8, -1)
    copies = sum(bool((rows[i] == rows[j]).all()) for i in range(8) for j in range(i))
    assert initial.trace.distinct_initial == distinct_count(initial.noise)
    assert initial.trace.to_dict()["distinct_initial"] == initial.trace.distinct_initial
    assert 1 <= initial.trace.distinct_initial <= 8 and (copies == 0) == (initial.trace.distinct_initial == 8)
    assert distinct_count(torch.tensor([[1.0, 2.0], [1.0, 2.0], [0.0, 2.0]])) == 2


def test_distinct_chains_keep_expected_copies_under_ten_percent():
    for particles, initial_nfe in [(33, 100), (14, 98), (4, 100), (83, 250), (35, 245), (10, 250)]:
        chains = distinct_chains(particles, initial_nfe, 10)
        assert min(10, particles) <= chains <= particles
        steps = initial_nfe // chains - 1
        per_chain = -(-particles // chains)
        gap = (steps - steps // 2) // per_chain
        assert gap >= 1 and (per_chain - 1) / per_chain * 0.7 ** gap <= 0.1
    assert distinct_chains(33, 100, 10) == 33  # too few iterations to thin: one state per chain


def test_a_bfloat16_model_still_gets_float32_mh_arithmetic():
    problem = small_problem("eps", dim=4)

    def bf16_denoiser(x, sigma):
        return problem.denoiser(x.to(torch.bfloat16), sigma).to(torch.bfloat16)

    initial, _ = _draw(problem, denoiser=bf16_denoiser, num_particles=6, mcmc_steps=8, burn_in=2)
    assert initial.evaluation.reward.dtype == torch.float32
    assert initial.evaluation.grad.dtype == torch.float32
    assert initial.noise.dtype == torch.float32
    assert 0.0 < initial.trace.acceptance <= 1.0


def test_ula_keeps_its_step_size_without_an_acceptance_test_to_tune_on():
    initial, _ = _draw(small_problem("flow"), method="ula", num_particles=4, mcmc_steps=8, burn_in=4)
    assert [r.step_size for r in initial.trace.mcmc] == [0.5] * 8


def test_default_adaptive_step_size_keeps_pcnl_moving_under_a_strong_tilt():
    # the 8-D exact problem's reward at α_mcmc = 0.1, chains started at σ0 = 2 (eps): measured before
    # this test was written, δ = 0.5 accepts nothing (0.0 over 4 seeds) and the default adaptive δ
    # 0.58 (final δ ≈ 0.12); the bounds below only ask that adaptation makes the chains move
    problem = exact_problem("gaussian", "eps")
    start = start_map("eps", 2.0, None, max_denoise=True)
    rates = {}
    for adapt in (False, True):
        lookahead = Lookahead(problem.denoiser, problem.reward, grad_batch_size=64)
        config = InitialConfig(method="pcnl", num_particles=10, num_chains=10, mcmc_steps=60, burn_in=30,
                               alpha_mcmc=0.1, adapt_step_size=adapt)
        initial = draw_initial(config, lookahead, start, (problem.dim,), 2.0, make_generator(0))
        rates[adapt] = initial.trace.acceptance
    assert rates[False] < 0.05
    assert rates[True] > 0.3
