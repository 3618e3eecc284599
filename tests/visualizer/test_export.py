"""write_trace: JSON + .npz that load back with the trace's numbers and shapes."""

from __future__ import annotations

import copy
import json
import math

import numpy as np
import pytest
import torch
from psi_sampler.visualizer import write_trace


def test_write_trace_round_trip(trace8, tmp_path):
    before = copy.deepcopy(trace8.to_dict())
    paths = write_trace(trace8, tmp_path, "runs/psi")
    assert paths.json == tmp_path / "runs" / "psi_00001.json" and paths.npz.suffix == ".npz"
    assert json.loads(paths.json.read_text()) == trace8.to_dict() == before
    s, k, t, c = len(trace8.smc), 8, len(trace8.mcmc), trace8.mcmc[0].accepted.numel()
    with np.load(paths.npz) as arrays:
        assert arrays["smc_ancestors"].shape == (s, k) and arrays["smc_ancestors"].dtype == np.int64
        assert arrays["smc_log_weights"].shape == (s, k) and arrays["smc_reward"].shape == (s, k)
        for name in ("smc_step", "smc_sigma", "smc_sigma_next", "smc_ess", "smc_ess_after", "smc_resampled"):
            assert arrays[name].shape == (s,)
        assert arrays["mcmc_accepted"].shape == (t, c) and arrays["mcmc_accepted"].dtype == bool
        assert arrays["mcmc_reward"].shape == (t, c) and arrays["mcmc_burn_in"].shape == (t,)
        assert arrays["initial_reward"].shape == (k,) and arrays["selected"].tolist() == trace8.selected
        assert np.array_equal(arrays["smc_ancestors"], trace8.genealogy().numpy())
        assert np.array_equal(arrays["smc_resampled"], [r.resampled for r in trace8.smc])
        recorded = sorted(int(name.rsplit("_", 1)[1]) for name in arrays.files if name.startswith("x0_hat_step_"))
        assert recorded == [r.step for r in trace8.smc if r.x0_hat is not None] == [0, 2, 3, 4, 9]
        assert np.allclose(arrays["x0_hat_step_4"], trace8.smc[4].x0_hat.numpy())
        assert arrays["x0_hat_initial"].shape == (k, 2)
    again = write_trace(trace8, tmp_path, "runs/psi")
    assert again.json.name == "psi_00002.json" and paths.json.exists()


def test_non_finite_numbers_are_null_in_json_and_exact_in_npz(trace8, tmp_path):
    trace = copy.deepcopy(trace8)
    trace.smc[9].reward[2] = float("-inf")
    trace.smc[9].log_weights[2] = float("-inf")
    trace.smc[9].x0_hat = trace.smc[9].x0_hat.to(torch.bfloat16)
    paths = write_trace(trace, tmp_path, "psi")
    text = paths.json.read_text()
    assert "Infinity" not in text and "NaN" not in text
    data = json.loads(text)
    assert data["smc"][9]["reward"][2] is None and data["smc"][9]["log_weights"][2] is None
    with np.load(paths.npz) as arrays:
        assert math.isinf(arrays["smc_reward"][9, 2]) and arrays["x0_hat_step_9"].dtype == np.float32


def test_trace_without_smc_or_mcmc(make_trace, tmp_path):
    trace = copy.deepcopy(make_trace(4, steps=3, method="prior", record=()))
    trace.smc = []
    paths = write_trace(trace, tmp_path, "psi")
    with np.load(paths.npz) as arrays:
        assert not any(name.startswith(("smc_", "mcmc_", "x0_hat")) for name in arrays.files)


@pytest.mark.parametrize("prefix", ["../escape", "/abs", "", "a/../../b"])
def test_prefix_must_stay_inside_the_folder(trace8, tmp_path, prefix):
    with pytest.raises(ValueError, match="prefix"):
        write_trace(trace8, tmp_path / "out", prefix)
