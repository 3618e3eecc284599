"""Diagnostic curves: size, non-empty panels, resampling marks, MCMC panels, no mutation."""

from __future__ import annotations

import copy

import numpy as np
import pytest
from psi_sampler.visualizer import render_curves
from psi_sampler.visualizer.curves import TITLE_H
from psi_sampler.visualizer.drawing import BLUE, GREEN, PALETTE, RED, WHITE


def _panels(image, pw, ph):
    canvas = np.asarray(image)
    return [canvas[TITLE_H + r * ph + 40:TITLE_H + (r + 1) * ph - 40, c * pw + 54:(c + 1) * pw - 14]
            for r in (0, 1) for c in (0, 1)]


def _count(panel, colour):
    return int(np.all(panel == colour, axis=-1).sum())


@pytest.mark.parametrize("panel_size", [(480, 300), (320, 200)])
def test_curves_size_and_content(trace8, panel_size):
    pw, ph = panel_size
    image = render_curves(trace8, panel_size=panel_size)
    assert image.mode == "RGB" and image.size == (2 * pw, TITLE_H + 2 * ph)
    ess, reward, acceptance, mcmc_reward = _panels(image, pw, ph)
    for panel in (ess, reward, acceptance, mcmc_reward):
        assert (panel != WHITE).any(axis=-1).mean() > 0.02  # something drawn in every plot area
        assert len(np.unique(panel.reshape(-1, 3), axis=0)) > 4
    assert _count(ess, BLUE) > 50 and _count(reward, BLUE) > 50
    assert any(r.resampled for r in trace8.smc)
    assert _count(ess, RED) > 10  # resampling marked
    chains = trace8.mcmc[0].accepted.numel()
    for c in range(chains):  # one line per chain in the MCMC reward panel
        assert _count(mcmc_reward, PALETTE[c]) > 20


def test_no_resampling_no_red(make_trace):
    trace = make_trace(1, steps=6)  # one particle never resamples
    assert not any(r.resampled for r in trace.smc)
    ess, reward, _, _ = _panels(render_curves(trace), 480, 300)
    assert _count(ess, RED) == 0 and _count(reward, RED) == 0


def test_prior_trace_without_mcmc(make_trace):
    trace = make_trace(4, steps=5, method="prior")
    assert not trace.mcmc
    image = render_curves(trace)
    assert image.size == (960, TITLE_H + 600)
    _, _, acceptance, mcmc_reward = _panels(image, 480, 300)
    for panel in (acceptance, mcmc_reward):  # only the "no MCMC" note, no lines
        assert all(_count(panel, colour) == 0 for colour in (BLUE, *PALETTE) if len(set(colour)) > 1)
        assert (panel != WHITE).any(axis=-1).any()


def test_curves_do_not_modify_the_trace(trace8):
    before = copy.deepcopy(trace8.to_dict())
    render_curves(trace8)
    assert trace8.to_dict() == before


def test_curves_with_invalid_rewards(trace8):
    trace = copy.deepcopy(trace8)
    trace.smc[3].reward[:] = float("nan")
    trace.mcmc[2].reward[0] = float("-inf")
    assert render_curves(trace).size == (960, TITLE_H + 600)


def test_bad_panel_size(trace8):
    with pytest.raises(ValueError, match="panel_size"):
        render_curves(trace8, panel_size=(100, 100))
    with pytest.raises(ValueError, match="panel_size"):
        render_curves(trace8, panel_size=480)


def test_tempering_lambda_is_drawn_only_where_the_run_tempered(trace8):
    untempered = copy.deepcopy(trace8)
    untempered.initial_lambda = 1.0
    for r in untempered.smc:
        r.lam = 1.0
    ess, _, _, _ = _panels(render_curves(untempered), 480, 300)
    assert _count(ess, GREEN) == 0
    tempered = copy.deepcopy(untempered)
    tempered.initial_lambda = 0.05
    for i, r in enumerate(tempered.smc):
        r.lam = min(1.0, 0.05 + 0.15 * i)
    ess, _, _, _ = _panels(render_curves(tempered), 480, 300)
    assert _count(ess, GREEN) > 50
