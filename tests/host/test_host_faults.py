"""A gradient pass that fails leaves ComfyUI and the model as they were.

The fixture node PsiTestGradientFault (fixture_pack/.../faults.py) runs three
gradient passes through the bridge inside ComfyUI's loop; the second fails in
the forward pass, in backward, or by ComfyUI's interrupt exception. Compared:
ComfyUI's training switch, grad mode and inference mode, the guider's model, the
bridge's pass flag, weight values and patches of the model and VAE, before the
passes and after the failure; and the pass after the failure against the first.
Through the real executor: a user's /interrupt during FLUX gradient passes
leaves the training switch as it was and the next FLUX run succeeds.
"""

from __future__ import annotations

import pytest

import host_graphs as graphs
from host_graphs import Graph
from host_results import assert_success, outputs_of, ui_items

EXPECTED = {"error": "FaultError: fixture failure in the forward pass",
            "backward": "FaultError: fixture failure in the backward pass",
            "interrupt": "InterruptProcessingException"}


def fault_prompt(family: str, fault: str, dynamic_standin: bool = False) -> tuple[dict, str]:
    g = Graph()
    model = g.add("PsiTestTinyModel", family=family, seed=0, dynamic_standin=dynamic_standin)
    node = g.add("PsiTestGradientFault", model=g.link(model, 0), positive=g.link(model, 2),
                 negative=g.link(model, 3), vae=g.link(model, 1), fault=fault)
    return g.nodes, node


def run_fault(comfy, family: str, fault: str, dynamic_standin: bool = False) -> dict:
    prompt, node = fault_prompt(family, fault, dynamic_standin)
    entry = comfy.run(prompt)
    assert_success(entry, comfy)
    return outputs_of(entry, node, "psi_fault")[0]


def assert_restored(report: dict, fault: str) -> None:
    assert report["raised"] is not None and report["raised"].startswith(EXPECTED[fault]), report["raised"]
    during = report["during"]
    assert len(during) == 3, during  # one observation inside each of the three passes
    for inside in during:
        assert inside["in_training"] == "True" and inside["in_gradient_pass"], inside
        assert inside["guider_model_is_gradient_model"] and inside["grad_enabled"], inside
        assert not inside["inference_mode"], inside
    assert report["before"]["in_training"] != "True"  # the switch really changed during the passes
    assert report["after"] == report["before"]
    assert report["after_run"]["in_training"] == report["before"]["in_training"]
    assert report["third_equals_first"]


@pytest.mark.parametrize("fault", ("error", "backward", "interrupt"))
@pytest.mark.parametrize("family", ("flux", "sd15"))
def test_failed_gradient_pass_restores_host_and_model(comfy, family, fault):
    report = run_fault(comfy, family, fault)
    assert not report["gradient_models_are_delegates"]
    assert_restored(report, fault)


@pytest.mark.parametrize("fault", ("error", "interrupt"))
def test_failed_gradient_pass_on_a_dynamic_standin_restores_the_guider(comfy, fault):
    report = run_fault(comfy, "flux", fault, dynamic_standin=True)
    assert report["gradient_models_are_delegates"]
    assert report["before"]["guider_model_is_base"] and not report["before"]["guider_model_is_gradient_model"]
    assert report["standin_counts"].get("model_standin", 0) == 0, report["standin_counts"]
    assert_restored(report, fault)


def host_state(comfy, nonce: int) -> dict:
    g = Graph()
    node = g.add("PsiTestHostState", nonce=nonce)
    entry = comfy.run(g.nodes)
    assert_success(entry, comfy)
    return outputs_of(entry, node, "psi_host_state")[0]


def test_user_interrupt_during_flux_gradient_passes_restores_the_switch(comfy):
    fresh = host_state(comfy, 1)
    long_run, _ = graphs.initial_smc("flux", seed=6, model_seed=12, mcmc_steps=400, burn_in=10)
    driven = comfy.drive(long_run, interrupt_after="psi.mcmc_step:2")
    assert driven["finished"] and driven["interrupt_sent_at"] is not None, driven
    after = driven["events"][driven["interrupt_sent_at"] + 1:]
    assert any(e["type"] == "execution_interrupted" for e in after), after
    assert host_state(comfy, 2) == fresh
    prompt, ids = graphs.initial_smc("flux", seed=6, model_seed=12)
    entry = comfy.run(prompt)
    assert_success(entry, comfy)
    assert ui_items(entry, "psi_digest")["smc"]["finite"]
