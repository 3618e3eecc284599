"""Bad input: every public entry validates before any model call and raises
ValueError/TypeError naming the parameter and the value received.

The look-ahead used here wraps a denoiser and a reward that fail the test if they
are ever called, so an error raised late (after a model call) shows up as an
AssertionError instead of the expected ValueError/TypeError.
"""

from __future__ import annotations

import math
import re

import pytest
import torch

from core_testing import RecordingDenoiser, exploding_reward
from psi_sampler.psi_core import InitialConfig, Lookahead, SMCConfig, draw_initial, make_generator, plan_budget, run_smc
from psi_sampler.psi_core import validation
from psi_sampler.psi_core.families import start_map
from psi_sampler.psi_core.initial import InitialParticles

SIGMAS = torch.tensor([1.0, 0.5, 0.2, 0.0], dtype=torch.float64)


def _lookahead() -> Lookahead:
    return Lookahead(RecordingDenoiser(explode=True), exploding_reward, grad_batch_size=4)


def _draw(**overrides):
    base = dict(method="pcnl", num_particles=4, num_chains=2, mcmc_steps=6, burn_in=2, step_size=0.5,
                alpha_mcmc=0.1)
    base.update(overrides)
    start = start_map("flow", 1.0, None, True)
    return draw_initial(InitialConfig(**base), _lookahead(), start, (3,), 1.0, make_generator(0))


def _prior_particles(k: int = 4, sigma0: float = 1.0) -> InitialParticles:
    eps = torch.randn((k, 3), generator=make_generator(1))
    return InitialParticles("prior", eps, eps * sigma0, sigma0)


def _smc(config: SMCConfig | None = None, sigmas=SIGMAS, family="flow", initial=None):
    return run_smc(initial or _prior_particles(), sigmas, _lookahead(), config or SMCConfig(), family,
                   make_generator(0))


def _names(error, *words):
    """The error message mentions every word (parameter names, values as repr'd)."""
    message = str(getattr(error, "value", error))
    for word in words:
        assert re.search(re.escape(str(word)), message), f"{word!r} not in message {message!r}"


# --- initial-particle options ----------------------------------------------------------

@pytest.mark.parametrize("field,value", [
    ("alpha_mcmc", 0.0), ("alpha_mcmc", -0.1), ("alpha_mcmc", math.nan), ("alpha_mcmc", math.inf),
    ("step_size", 0.0), ("step_size", -0.5), ("step_size", 4.5), ("step_size", math.nan),
    ("num_particles", 0), ("num_particles", -3),
    ("num_chains", 0),
    ("burn_in", -1),
    ("mcmc_steps", 0),
    ("grad_clip", 0.0),
    ("method", "hmc"),
])
def test_initial_config_rejects_bad_values_before_any_model_call(field, value):
    with pytest.raises(ValueError) as excinfo:
        _draw(**{field: value})
    _names(excinfo, field, repr(value))


@pytest.mark.parametrize("method,step_size", [("mala", 10.5), ("ula", 0.0)])
def test_step_size_range_depends_on_the_kernel(method, step_size):
    with pytest.raises(ValueError) as excinfo:
        _draw(method=method, step_size=step_size)
    _names(excinfo, "step_size", repr(step_size))
    # δ = 5 is fine for MALA although above pCNL's maximum of 4
    assert _draw_is_possible(method="mala", step_size=5.0)
    with pytest.raises(ValueError, match="step_size"):
        _draw(method="pcnl", step_size=5.0)


@pytest.mark.parametrize("field,value", [("num_particles", 2.0), ("num_particles", True), ("num_chains", "4"),
                                         ("burn_in", 1.5)])
def test_non_integer_counts_are_type_errors(field, value):
    with pytest.raises(TypeError) as excinfo:
        _draw(**{field: value})
    _names(excinfo, field, repr(value))


def test_alpha_of_wrong_type_is_a_type_error():
    with pytest.raises(TypeError) as excinfo:
        _draw(alpha_mcmc="0.1")
    _names(excinfo, "alpha_mcmc", "'0.1'")


def test_more_particles_than_chain_states():
    # 2 chains × (6 − 2) kept iterations = 8 states < 9 particles
    with pytest.raises(ValueError) as excinfo:
        _draw(num_particles=9)
    _names(excinfo, "num_particles=9", "8")
    assert _draw_is_possible(num_particles=8)


def _draw_is_possible(**overrides) -> bool:
    base = dict(method="pcnl", num_particles=4, num_chains=2, mcmc_steps=6, burn_in=2)
    base.update(overrides)
    return InitialConfig(**base).validated() is not None


def test_burn_in_must_leave_iterations():
    with pytest.raises(ValueError) as excinfo:
        _draw(burn_in=6)
    _names(excinfo, "burn_in", "6")


def test_topk_candidates_must_cover_the_particles():
    with pytest.raises(ValueError) as excinfo:
        _draw(method="topk", topk_candidates=3)
    _names(excinfo, "topk_candidates", "3")


def test_adaptive_step_size_needs_a_valid_target():
    with pytest.raises(ValueError) as excinfo:
        _draw(adapt_step_size=True, target_acceptance=1.0)
    _names(excinfo, "target_acceptance", "1.0")


def test_lookahead_batch_sizes():
    with pytest.raises(ValueError) as excinfo:
        Lookahead(RecordingDenoiser(explode=True), exploding_reward, grad_batch_size=0)
    _names(excinfo, "grad_batch_size", "0")
    with pytest.raises(TypeError, match="forward_batch_size"):
        Lookahead(RecordingDenoiser(explode=True), exploding_reward, grad_batch_size=2, forward_batch_size=2.5)


# --- SMC options ------------------------------------------------------------------------

@pytest.mark.parametrize("field,value", [
    ("alpha", 0.0), ("alpha", -1.0), ("alpha", math.nan), ("alpha", math.inf), ("alpha", -math.inf),
    ("ess_threshold", -0.1), ("ess_threshold", 1.5), ("ess_threshold", math.nan),
    ("resampling", "bogus"), ("output", "median"), ("initial_weights", "double"),
    ("eta", 1.5), ("guidance", -1.0), ("kernel", "heun"),
])
def test_smc_config_rejects_bad_values_before_any_model_call(field, value):
    with pytest.raises(ValueError) as excinfo:
        _smc(SMCConfig(**{field: value}))
    _names(excinfo, field, repr(value))


def test_alpha_of_wrong_type_in_smc_is_a_type_error():
    with pytest.raises(TypeError, match="alpha"):
        _smc(SMCConfig(alpha=None))


@pytest.mark.parametrize("sigmas,words", [
    (torch.tensor([1.0, 0.5, 0.7, 0.0]), ["strictly decreasing"]),
    (torch.tensor([1.0, 0.5, 0.5, 0.0]), ["strictly decreasing"]),
    (torch.tensor([1.0, 0.5, 0.2]), ["end at 0", "0.2"]),
    (torch.tensor([1.0, math.nan, 0.0]), ["finite"]),
    (torch.tensor([[1.0, 0.0]]), ["1-D", "(1, 2)"]),
    (torch.tensor([0.0]), ["at least 2"]),
])
def test_bad_sigmas(sigmas, words):
    with pytest.raises(ValueError) as excinfo:
        _smc(sigmas=sigmas)
    _names(excinfo, "sigmas", *words)


def test_sigmas_of_wrong_type_and_mismatched_start():
    with pytest.raises(TypeError, match="sigmas"):
        _smc(sigmas=[1.0, 0.5, 0.0])
    with pytest.raises(ValueError) as excinfo:
        _smc(initial=_prior_particles(sigma0=0.8))
    _names(excinfo, "sigmas[0]", "0.8")


def test_unknown_family():
    with pytest.raises(ValueError) as excinfo:
        _smc(family="vpred")
    _names(excinfo, "family", "'vpred'")


def test_budget_plan_validation():
    for kwargs, word in [(dict(method="pcnl", nfe=0, num_steps=10), "nfe"),
                         (dict(method="pcnl", nfe=100, num_steps=0), "num_steps"),
                         (dict(method="pcnl", nfe=100, num_steps=10, num_chains=0), "num_chains"),
                         (dict(method="pcnl", nfe=100, num_steps=10, initial_fraction=1.0), "initial_fraction"),
                         (dict(method="smc", nfe=100, num_steps=10), "method"),
                         (dict(method="prior", nfe=5, num_steps=10), "nfe=5")]:
        with pytest.raises(ValueError, match=re.escape(word)):
            plan_budget(**kwargs)


# --- shapes -------------------------------------------------------------------------------

@pytest.mark.parametrize("method", ["prior", "pcnl"])
def test_latent_and_noise_shape_mismatch_is_a_value_error(method):
    # A [1, 4, 8, 8] latent with noise of shape (4, 6, 6) must be refused with a
    # ValueError naming both shapes, before any model call (it once surfaced as
    # torch's broadcast RuntimeError from StartMap.__call__).
    latent = torch.ones(1, 4, 8, 8)
    start = start_map("eps", 10.0, latent, True)
    config = InitialConfig(method=method, num_particles=2, num_chains=2, mcmc_steps=3, burn_in=1)
    try:
        draw_initial(config, _lookahead(), start, (4, 6, 6), 10.0, make_generator(0))
    except ValueError as error:
        _names(error, "(4, 6, 6)", "8")
    except Exception as error:  # noqa: BLE001 - reported as the bug it is
        pytest.fail(f"latent/noise shape mismatch raised {type(error).__name__}: {error}")
    else:
        pytest.fail("latent/noise shape mismatch was accepted")


# --- inputs are not mutated by validation paths -------------------------------------------

def test_inputs_survive_a_rejected_call():
    sigmas = SIGMAS.clone()
    initial = _prior_particles()
    x_before = initial.x.clone()
    with pytest.raises(ValueError):
        _smc(SMCConfig(alpha=0.0), sigmas=sigmas, initial=initial)
    assert torch.equal(sigmas, SIGMAS) and torch.equal(initial.x, x_before)


# --- the checks themselves: one exception type per kind of mistake ------------------------

@pytest.mark.parametrize("check, args, error, words", [
    (validation.finite, ("weight", "1.0"), TypeError, ["weight", "'1.0'", "a number"]),
    (validation.finite, ("weight", True), TypeError, ["weight", "True", "a number"]),
    (validation.finite, ("weight", math.nan), ValueError, ["weight", "nan", "finite"]),
    (validation.positive_finite, ("alpha", 0.0), ValueError, ["alpha", "0.0", "> 0"]),
    (validation.non_negative, ("count", -2), ValueError, ["count", "-2", ">= 0"]),
    (validation.non_negative, ("count", None), TypeError, ["count", "None", "a number"]),
    (validation.integer_at_least, ("particles", 2.0, 1), TypeError, ["particles", "2.0", "integer >= 1"]),
    (validation.integer_at_least, ("particles", 0, 1), ValueError, ["particles", "0", "integer >= 1"]),
    (validation.choice, ("goal", "best", ("maximize", "minimize")), ValueError, ["goal", "'best'", "maximize"]),
    (validation.non_empty_text, ("prompt", 3), TypeError, ["prompt", "3", "non-empty string"]),
    (validation.non_empty_text, ("prompt", "  "), ValueError, ["prompt", "'  '", "non-empty string"]),
])
def test_checks_name_the_parameter_the_value_and_what_is_allowed(check, args, error, words):
    with pytest.raises(error) as excinfo:
        check(*args)
    _names(excinfo, *words)


def test_checks_return_the_cleaned_value():
    assert validation.finite("weight", 2) == 2.0 and isinstance(validation.finite("weight", 2), float)
    assert validation.non_negative("count", 0) == 0.0
    assert validation.prompt_text("  a red apple ") == "a red apple"
    assert validation.in_range("p", 1.0, 0.0, 1.0) == 1.0
    with pytest.raises(ValueError, match=r"p must be in \[0.0, 1.0\); got 1.0"):
        validation.in_range("p", 1.0, 0.0, 1.0, high_open=True)
