"""The `memory` option (gradient checkpointing in reward-gradient passes), fp8 weights,
and the faults around them, against a real ComfyUI.

Equality: every mode's look-ahead gradients equal fast's to float32 tolerance (the same
operations, recomputed), checkpointing really recomputes the blocks the mode names (a leaf
inside them runs twice per gradient pass), and nothing stays wrapped after a pass, after a
failing pass or during a forward-only pass. fp8: gradients through a model stored in fp8
(ComfyUI's manual-cast ops, as UNETLoader's weight_dtype builds it) match finite
differences with the same tolerances as float32 weights.
"""

from __future__ import annotations

import pytest

import host_graphs as graphs
from host_graphs import Graph
from test_host import (_assert_gradient_checks, assert_success, error_message, outputs_of, print_figures,
                       ui_items)

MODES = ("fast", "balanced", "low")
# float32, identical operations recomputed: differences can only come from summation order
GRAD_RTOL = 1e-5
REWARD_ATOL = 1e-6


def memory_prompt(family: str, forget_inplace: bool = False, fp8: str | None = None) -> tuple[dict, str]:
    g = Graph()
    b = graphs.base(g, family, 0, "tiny_net")
    model = b["model"]
    if fp8:
        model = g.link(g.add("PsiTestFp8Model", model=model, weight_dtype=fp8))
    node = g.add("PsiTestMemoryModes", model=model, positive=b["positive"], negative=b["negative"],
                 cfg=graphs.CFG[family], vae=b["vae"], reward=b["reward"], forget_inplace=forget_inplace)
    return g.nodes, node


def run_modes(comfy, family: str, **options) -> dict:
    prompt, node = memory_prompt(family, **options)
    entry = comfy.run(prompt)
    assert_success(entry, comfy)
    report = outputs_of(entry, node, "psi_memory")[0]
    print(f"\n{family} {options}: " + "; ".join(
        f"{m}: {report[m]['blocks']} blocks, grad diff {report[m]['grad_rel_diff']:.1e}" for m in MODES))
    return report


def assert_modes_agree(report: dict, first_pass: int = 0) -> None:
    """first_pass: the first gradient pass whose leaf calls are compared (a pass repeated after
    learning that the model updates activations in place has extra calls that depend on where
    backward stopped)."""
    fast = report["fast"]
    assert fast["blocks"] == 0
    assert 0 < report["balanced"]["blocks"] < report["low"]["blocks"]
    for mode in MODES:
        r = report[mode]
        assert r["finite"], r
        assert r["grad_rel_diff"] <= GRAD_RTOL, (mode, r)
        assert r["reward_abs_diff"] <= REWARD_ATOL, (mode, r)
        assert r["wrapped_after"] == 0 and r["wrapped_in_forward_only"] == 0, (mode, r)
        assert r["failing_pass"]["raised"] == "fixture failure inside a gradient pass", (mode, r)
        assert r["failing_pass"]["wrapped_after"] == 0, (mode, r)
    for fast_pass, balanced, low in zip(*(report[m]["leaf_calls_per_pass"][first_pass:] for m in MODES)):
        assert fast_pass["denoiser"] >= 1 and fast_pass["decoder"] >= 1, fast_pass
        # balanced recomputes the decoder's blocks only; low the denoiser's too
        assert balanced == {"denoiser": fast_pass["denoiser"], "decoder": 2 * fast_pass["decoder"]}, balanced
        assert low == {"denoiser": 2 * fast_pass["denoiser"], "decoder": 2 * fast_pass["decoder"]}, low


@pytest.mark.parametrize("family", ("sd15", "flux", "lumina2"))
def test_memory_modes_give_the_fast_gradients(comfy, family):
    report = run_modes(comfy, family)
    assert_modes_agree(report)
    if family == "flux":  # in-place residual blocks: recomputed under the activation-cloning hooks
        assert all(report[m]["clone_saved"] and not report[m]["retried"] for m in MODES)


def test_unknown_inplace_model_is_learned_under_checkpointing(comfy):
    """FLUX treated as unknown: the first gradient pass fails on the in-place update (also inside a
    checkpointed block's recomputation) and is repeated with cloning; gradients still equal fast's."""
    report = run_modes(comfy, "flux", forget_inplace=True)
    assert_modes_agree(report, first_pass=1)
    assert all(report[m]["clone_saved"] and report[m]["retried"] for m in MODES)


@pytest.mark.parametrize("weight_dtype", ("fp8_e4m3fn", "fp8_e5m2"))
@pytest.mark.parametrize("family", ("sd15", "flux"))
def test_fp8_weights_gradient_matches_finite_differences(comfy, family, weight_dtype):
    g = Graph()
    b = graphs.base(g, family, 0, "tiny_net")
    fp8 = g.add("PsiTestFp8Model", model=b["model"], weight_dtype=weight_dtype)
    check = g.add("PsiTestGradCheck", model=g.link(fp8), positive=b["positive"], negative=b["negative"],
                  cfg=graphs.CFG[family], vae=b["vae"], reward=b["reward"], steps=4, sigma_indices="0,2",
                  rel_step=3e-3, seed=0)
    entry = comfy.run(g.nodes)
    assert_success(entry, comfy)
    stored = outputs_of(entry, fp8, "psi_fp8")[0]
    assert stored["stored"] == [f"torch.float8_{weight_dtype[4:]}"], stored  # really stored as fp8
    report = outputs_of(entry, check, "psi_gradcheck")[0]
    print_figures(f"{family} {weight_dtype}", report, family)
    _assert_gradient_checks(report, family)


def test_fp8_weights_under_every_memory_mode(comfy):
    assert_modes_agree(run_modes(comfy, "flux", fp8="fp8_e4m3fn"))


def test_sampler_nodes_give_the_same_particles_in_every_mode(comfy):
    digests = {}
    for mode in ("fast", "low"):
        prompt, ids = graphs.initial_smc("sd15", seed=2, model_seed=4, memory=mode)
        prompt[ids["smc"]]["inputs"]["memory"] = mode
        entry = comfy.run(prompt)
        assert_success(entry, comfy)
        digests[mode] = ui_items(entry, "psi_digest")
    for label in ("initial", "smc"):
        fast, low = digests["fast"][label], digests["low"][label]
        assert fast["shape"] == low["shape"] and low["finite"]
        assert low["mean"] == pytest.approx(fast["mean"], rel=1e-5, abs=1e-6), label
        assert low["std"] == pytest.approx(fast["std"], rel=1e-5), label


@pytest.mark.parametrize("node", ("PsiSMCSampler", "PsiInitialSampler"))
def test_mode_without_blocks_is_refused_before_sampling(comfy, node):
    prompt, ids = graphs.initial_smc("sd15", seed=2, model_seed=4)
    opaque = str(len(prompt) + 1)
    prompt[opaque] = {"class_type": "PsiTestOpaqueModel", "inputs": {"model": [ids["model"], 0]}}
    target = ids["smc"] if node == "PsiSMCSampler" else ids["initial"]
    prompt[target]["inputs"]["model"] = [opaque, 0]
    prompt[target]["inputs"]["memory"] = "low"
    entry = comfy.run(prompt)
    assert entry["status"]["status_str"] == "error"
    message = error_message(entry)
    assert "memory: low" in message and "Opaque" in message and "use memory: fast or balanced" in message, message


def test_out_of_memory_in_a_gradient_pass_names_the_options_and_leaves_the_host_usable(comfy):
    failing, _ = graphs.initial_smc("sd15", seed=5, model_seed=11, reward="oom", memory="balanced")
    entry = comfy.run(failing)
    assert entry["status"]["status_str"] == "error"
    message = error_message(entry)
    assert "out of memory in a reward-gradient pass" in message, message
    assert "memory: low" in message and "grad_batch_size below 2" in message, message
    prompt, _ = graphs.initial_smc("sd15", seed=5, model_seed=11)
    again = comfy.run(prompt)
    assert_success(again, comfy)
    assert ui_items(again, "psi_digest")["smc"]["finite"]


@pytest.mark.parametrize("family", ("sd15", "flux"))
def test_partially_loaded_model_gradient_matches_finite_differences(comfy, family):
    """ComfyUI's lowvram path (what partially_load leaves for weights that do not fit): weights cast
    per op and a weight patch applied at cast time. On a CPU the cast makes a fresh tensor; the
    per-stream cast buffers and offload streams of a GPU are not exercised here."""
    g = Graph()
    b = graphs.base(g, family, 0, "tiny_net")
    partial = g.add("PsiTestPartialModel", model=b["model"], budget_bytes=1)
    check = g.add("PsiTestGradCheck", model=g.link(partial), positive=b["positive"], negative=b["negative"],
                  cfg=graphs.CFG[family], vae=b["vae"], reward=b["reward"], steps=4, sigma_indices="0,2",
                  rel_step=3e-3, seed=0)
    entry = comfy.run(g.nodes)
    assert_success(entry, comfy)
    assert outputs_of(entry, partial, "psi_partial")[0]["lowvram_modules"] > 0
    report = outputs_of(entry, check, "psi_gradcheck")[0]
    print_figures(f"{family} partially loaded", report, family)
    _assert_gradient_checks(report, family)
