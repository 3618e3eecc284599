"""Gradients through comfy-kitchen's kernels rest on the pack's own backward, not on ComfyUI's switches.

The kernels have no backward of their own; comfy_host/kitchen_autograd.py registers one per op (the
vector–Jacobian product of a PyTorch reference of the same map). Here, on hosts whose ComfyUI imports
comfy-kitchen (0.33.0; 0.3.64 has none and is skipped, saying so), both with the kitchen the host pins
(0.2.31) and with comfy-kitchen 0.2.40 on the server's PYTHONPATH in its place (scripts/side_env.sh
host-kitchen):

- per op (kitchen_op_probe.py): the kitchen's forward against the reference (float32, ≤ FORWARD_RTOL of
  the largest output), the op's gradient (the registered backward) against autograd through the
  reference (≤ BACKWARD_RTOL), and against central differences through the op along its gradient and
  a random direction over all its inputs (float32, the family checks' tolerances; the reference is
  checked in float64 in tests/core);
- per family calling those kernels (FLUX.1-dev, Chroma, Lumina 2, Z-Image, Qwen-Image, ERNIE-Image):
  the bridge's reward gradient against finite differences (test_families.py's check and tolerances) on
  a server where the training-switch fallbacks of flux/math.py, lumina/model.py and ernie/model.py are
  removed, as releases between 0.3.64 and 0.33 have them (fixture_pack ungated_kitchen.py), with
  comfy-kitchen 0.2.40; the report counts the kernels the gradient passes called.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

import host_graphs as graphs
from host_probe import REPO, run_probe
from test_families import gradient_check, gradient_failures, need_family

host = graphs.host_conftest()

# written down before the first verdict run
FORWARD_RTOL = 1e-5  # the same map computed in another order (float32 round-off)
BACKWARD_RTOL = 1e-6  # the registered backward is autograd through the reference: equal up to round-off
# float32 central differences with one Richardson step: the family checks' tolerances (host_graphs)
GRADIENT_DIRECTION_RTOL, RANDOM_DIRECTION_RTOL = graphs.GRADIENT_DIRECTION_RTOL, graphs.RANDOM_DIRECTION_RTOL

#: the kitchen the test host's ComfyUI pins is replaced by this one in the ungated run
KITCHEN_VARIANT = "0.2.40"
#: the families whose models call kitchen kernels, and the kernels their gradient passes must reach
KITCHEN_FAMILIES = {"flux": {"apply_rope"}, "chroma": {"apply_rope"}, "lumina2": {"rms_rope"},
                    "zimage": {"rms_rope"}, "qwen_image": {"apply_rope1"}, "ernie": {"rms_rope_split_half"}}
UNGATED_MODULES = {"comfy.ldm.flux.math", "comfy.ldm.lumina.model", "comfy.ldm.ernie.model"}


def host_kitchen_or_skip(python: Path) -> None:
    if not graphs.host_has(python, "comfy_kitchen"):
        pytest.skip("this ComfyUI imports no comfy-kitchen (0.3.64): its models call no kitchen op")


@pytest.fixture(scope="module")
def kitchen_variant() -> Path:
    """The folder holding comfy-kitchen KITCHEN_VARIANT for the host's PYTHONPATH (built once, cached)."""
    root, python, reason = host.host_location()
    if reason is not None:
        pytest.skip(reason)
    host_kitchen_or_skip(python)
    done = subprocess.run(["bash", str(REPO / "scripts" / "side_env.sh"), "host-kitchen"], capture_output=True,
                          text=True, timeout=600, env={**os.environ, "PYTHON": str(python),
                                                       "PSI_HOST_KITCHEN": KITCHEN_VARIANT})
    assert done.returncode == 0, done.stderr[-3000:]
    return Path(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("kitchen", ["host", KITCHEN_VARIANT])
def test_each_kitchen_op_has_the_packs_backward_matching_its_forward(request, kitchen):
    root, python, reason = host.host_location()
    if reason is not None:
        pytest.skip(reason)
    host_kitchen_or_skip(python)
    figures = run_probe("kitchen_op_probe.py", str(REPO),
                        python_path=None if kitchen == "host" else request.getfixturevalue("kitchen_variant"))
    if kitchen != "host":
        assert figures["kitchen"] == kitchen, figures["kitchen_file"]
    print(f"\ncomfy-kitchen {figures['kitchen']}: " + "; ".join(
        f"{c['op']} ({c['case']}): forward {c['forward']:.1e}, backward {c['backward_vs_reference']:.1e}, "
        f"grad-dir {c['gradient_direction']:.1e}, random-dir {c['random_direction']:.1e}" for c in figures["cases"]))
    assert set(figures["coverage"].values()) == {"pack"}, figures["coverage"]
    for case in figures["cases"]:
        assert case["forward"] <= FORWARD_RTOL, case
        assert case["backward_vs_reference"] <= BACKWARD_RTOL, case
        assert case["gradient_direction"] <= GRADIENT_DIRECTION_RTOL, case
        assert case["random_direction"] <= RANDOM_DIRECTION_RTOL, case


class UngatedKitchenServer(host.ComfyServer):
    """A test server with comfy-kitchen KITCHEN_VARIANT in place of the host's and the training-switch
    fallbacks of flux/math.py, lumina/model.py and ernie/model.py removed."""

    def launch(self) -> None:
        os.environ["PSI_TEST_UNGATED_KITCHEN"] = "1"  # read by the fixture pack as the server imports it
        try:
            super().launch()
        finally:
            del os.environ["PSI_TEST_UNGATED_KITCHEN"]


@pytest.fixture(scope="module")
def ungated(kitchen_variant, tmp_path_factory):
    root, python, _ = host.host_location()
    server = UngatedKitchenServer(root, python, tmp_path_factory.mktemp("ungated_kitchen"))
    server.python_path = kitchen_variant
    yield from host.run_server(server)


@pytest.fixture(scope="module")
def ungated_families(ungated) -> list[str]:
    spec = ungated.get("/object_info")["PsiTestTinyModel"]["input"]["required"]["family"]
    return list(spec[1]["options"] if isinstance(spec[0], str) else spec[0])


@pytest.mark.parametrize("family", list(KITCHEN_FAMILIES))
def test_gradient_through_the_kernels_without_the_training_fallbacks(ungated, ungated_families, family):
    need_family(ungated_families, family)
    report, dimension = gradient_check(ungated, family)
    assert report["kitchen_version"] == KITCHEN_VARIANT
    assert set(report["ungated_modules"]) == UNGATED_MODULES, report["ungated_modules"]
    assert report["kitchen_backward"].get(next(iter(KITCHEN_FAMILIES[family]))) == "pack", report["kitchen_backward"]
    assert KITCHEN_FAMILIES[family] <= set(report["kitchen_grad_calls"]), report["kitchen_grad_calls"]
    assert not gradient_failures(report, family, dimension), gradient_failures(report, family, dimension)
