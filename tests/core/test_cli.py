"""`python -m psi_core.toy`: one JSON object per run for every method; bad arguments
exit non-zero with a message.

Importing torch costs ~3 s of CPU per process, so only some runs are real
subprocesses of the venv's interpreter (started together, one torch thread each):
two methods and two bad-argument cases (an argparse error and a validation error),
which check `python -m`, its stdout and its exit status. The other methods and
argument cases call the same `main(argv)` that `__main__` exits with, in-process."""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from psi_sampler.psi_core.names import METHODS, PCNL, PRIOR
from psi_sampler.psi_core.toy import figure1
from psi_sampler.psi_core.toy.__main__ import main
from psi_sampler.psi_core.toy.run import ToySettings, sample_toy

ROOT = Path(__file__).resolve().parents[2]
KEYS = {"method", "kind", "dim", "nfe", "nfe_grad", "nfe_forward", "reward_mean", "target_reward_mean",
        "energy_distance", "modes_covered", "modes_total", "mode_mass_error", "acceptance", "wall_s"}
SUBPROCESS_METHODS = (PRIOR, PCNL)
RUN_ARGS = ("--nfe", "200", "--steps", "10", "--json")


def _start(*args: str) -> subprocess.Popen:
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    return subprocess.Popen([sys.executable, "-m", "psi_core.toy", *args], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _finish(proc: subprocess.Popen) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=120)
    return proc.returncode, out, err


@pytest.fixture(scope="module")
def reports() -> dict[str, dict]:
    runs = {m: _start("--method", m, *RUN_ARGS) for m in SUBPROCESS_METHODS}
    texts = {}
    for method in METHODS:
        if method not in runs:
            buffer = io.StringIO()
            with contextlib.redirect_stdout(buffer):
                assert main(["--method", method, *RUN_ARGS]) == 0, method
            texts[method] = buffer.getvalue()
    for method, proc in runs.items():
        code, stdout, stderr = _finish(proc)
        assert code == 0, f"{method}: exit {code}\n{stderr}"
        texts[method] = stdout
    out = {}
    for method, stdout in texts.items():
        lines = [line for line in stdout.splitlines() if line.strip()]
        assert len(lines) == 1, f"{method}: expected one JSON line, got {stdout!r}"
        out[method] = json.loads(lines[0])
    return out


@pytest.mark.parametrize("method", METHODS)
def test_every_method_prints_one_json_object_with_the_keys(reports, method):
    report = reports[method]
    assert KEYS <= set(report), KEYS - set(report)
    assert report["method"] == method and report["kind"] == "flow" and report["dim"] == 2
    assert 0 < report["nfe"] <= 200
    assert report["nfe"] == report["nfe_grad"] + report["nfe_forward"]
    assert math.isclose(report["target_reward_mean"], figure1("flow", steps=10).target_reward_mean, rel_tol=1e-9)
    assert report["modes_total"] == 2 and 0 <= report["modes_covered"] <= 2
    assert 0.0 <= report["mode_mass_error"] <= 1.0
    assert report["wall_s"] >= 0 and math.isfinite(report["reward_mean"]) and math.isfinite(report["energy_distance"])
    if method in ("ula", "mala", "pcnl"):
        assert 0.0 <= report["acceptance"] <= 1.0
    else:
        assert report["acceptance"] is None


def test_kind_and_dim_are_passed_through(capsys):
    assert main(["--method", "pcnl", "--kind", "eps", "--dim", "64", "--nfe", "200", "--steps", "10",
                 "--seed", "3", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["kind"] == "eps" and report["dim"] == 64
    assert math.isclose(report["target_reward_mean"], figure1("eps", dim=64).target_reward_mean, rel_tol=1e-9)
    assert report["acceptance"] > 0.5  # pCNL at δ = 0.5


def test_distilled_denoiser_is_passed_through(capsys):
    assert main(["--method", "prior", "--denoiser", "distilled", "--nfe", "100", "--steps", "5", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["denoiser"] == "distilled"
    assert math.isclose(report["target_reward_mean"], figure1("flow").target_reward_mean, rel_tol=1e-12)


def test_plain_output_without_json(capsys):
    assert main(["--method", "prior", "--nfe", "60", "--steps", "5"]) == 0
    out = capsys.readouterr().out
    assert "reward_mean" in out and not out.lstrip().startswith("{")


def test_bad_arguments_exit_nonzero_from_the_command_line():
    cases = {"invalid choice": ["--method", "hmc"], "error: nfe": ["--nfe", "0"]}
    procs = {needle: _start(*args, "--json") for needle, args in cases.items()}
    for needle, proc in procs.items():
        code, out, err = _finish(proc)
        assert code == 2, (needle, code)
        assert needle in err, err
        assert out.strip() == ""


@pytest.mark.parametrize("args,needle", [
    (["--kind", "vpred"], "invalid choice"),
    (["--nfe", "abc"], "invalid int"),
])
def test_unparsable_arguments_are_argparse_errors(capsys, args, needle):
    with pytest.raises(SystemExit) as excinfo:
        main([*args, "--json"])
    assert excinfo.value.code == 2
    captured = capsys.readouterr()
    assert needle in captured.err and captured.out == ""


@pytest.mark.parametrize("args,needle", [
    (["--dim", "1"], "dim"),
    (["--dim", "20000"], "dim"),
    (["--method", "pcnl", "--step-size", "9"], "step_size"),
    (["--method", "mala", "--step-size", "-0.5"], "step_size"),
    (["--steps", "0"], "steps"),
    (["--method", "pcnl", "--chains", "0"], "num_chains"),
    (["--method", "prior", "--nfe", "5"], "nfe=5"),
])
def test_invalid_values_exit_2_with_an_error_line(capsys, args, needle):
    assert main([*args, "--json"]) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith("error: ") and needle in captured.err, captured.err
    assert captured.out == ""


def test_demo_prints_every_method_and_the_ratio_and_writes_the_figure(capsys, tmp_path):
    """README command one's module on a small budget: the table rows, the Ψ/prior line
    computed from them, and a PNG of five panels."""
    from PIL import Image

    from psi_sampler.psi_core.toy import demo

    out = tmp_path / "figure1.png"
    # the 2-D Tweedie toy keeps this quick; the default regime (distilled, d = 1024) takes minutes
    assert demo.main(["--out", str(out), "--seeds", "2", "--figure-seeds", "1", "--nfe", "150",
                      "--denoiser", "tweedie", "--dim", "2"]) == 0
    text = capsys.readouterr().out
    assert text.startswith("Regime: tweedie denoiser, d = 2") and "chosen on the command line" in text
    assert "Which initial method" in text
    for label in demo.LABELS.values():
        assert label in text
    assert "2 seeds" in text
    ratio_line = next(line for line in text.splitlines() if line.startswith("Psi-Sampler / prior SMC"))
    ratio = float(ratio_line.split(":")[1].split()[0])
    assert math.isfinite(ratio)
    with Image.open(out) as image:
        width, height = image.size
    assert width > 4 * height  # five panels side by side


def test_a_diverging_proposal_prints_one_line_and_exits_1(capsys):
    # the distilled model's unbounded shift at α = 0.1 (the shift is ~9× the state near σ = 1):
    # one line naming the option, exit 1, no traceback
    code = main(["--denoiser", "distilled", "--dim", "3", "--method", "prior", "--untempered",
                 "--guidance-clip", "0"])
    captured = capsys.readouterr()
    assert code == 1
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "guidance_clip" in lines[0], captured.err
    assert "Traceback" not in captured.err and captured.out == ""


@pytest.mark.parametrize("method", METHODS)
def test_guided_distilled_runs_stay_finite_at_alpha_001(method):
    # every method on the distilled model at d = 64 with α = α_mcmc = 0.01 (ten times the paper's
    # strongest aesthetic setting) and the default controls: no non-finite state, finite metrics
    problem = dataclasses.replace(figure1("flow", steps=10, dim=64, denoiser="distilled"), alpha=0.01,
                                  alpha_mcmc=0.01)
    run = sample_toy(problem, ToySettings(method=method, nfe=150, seed=0))
    assert bool(torch.isfinite(run.samples).all()) and bool(torch.isfinite(run.reward).all())
    if run.trace is not None:
        assert all(bool(torch.isfinite(r.reward).all()) for r in run.trace.smc)
