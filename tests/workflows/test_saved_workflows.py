"""Workflows saved before a node gained an input still load with every value where it was.

saved_before_kernel/ holds a shipped workflow as it was before the Ψ SMC Sampler gained its `kernel`
input (taken from git, unchanged). Loaded in the real frontend, each of its Ψ SMC Sampler nodes must show
the values it was saved with under the same names, the new input its default, and the server must accept
the prompt the frontend makes of it. A new input placed anywhere but after the old ones would shift the
saved values onto other names and fail here.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from make_workflows import MODEL_INPUTS
from test_workflows import LOAD_AND_CONVERT

SAVED = Path(__file__).resolve().parent / "saved_before_kernel"

#: what the saved file's Ψ SMC Sampler nodes were built with (make_workflows.py's psi_smc at the time), by name
SAVED_SMC_VALUES = {"seed": 0, "steps": 25, "scheduler": "simple", "denoise": 1.0, "cfg": 1.0, "alpha": 0.1,
                    "ess_threshold": 0.5, "resampling": "systematic", "eta": 1.0, "guidance": 1.0,
                    "gradient_free": False, "grad_batch_size": 1, "output": "best", "trace_steps": 6,
                    "tempering": True, "tempering_ess": 0.99, "guidance_clip": 1.0}
SAVED_PARTICLES = {8: 20, 16: 10}  # prior-initialised SMC, Ψ SMC (node ids)
NEW_DEFAULTS = {"kernel": "ancestral"}


@pytest.fixture(scope="module")
def saved() -> dict[str, dict]:
    return {path.stem: json.loads(path.read_text(encoding="utf-8")) for path in sorted(SAVED.glob("*.json"))}


@pytest.fixture(scope="module")
def loaded(in_browser, saved) -> dict[str, dict]:
    return in_browser(lambda page: {stem: page.js(LOAD_AND_CONVERT, wf) for stem, wf in saved.items()})


def test_saved_workflow_keeps_its_values_under_their_names(saved, loaded):
    assert saved, "no saved workflows"
    for stem, workflow in saved.items():
        result = loaded[stem]
        assert result["missing"] == []
        smc_nodes = [n for n in workflow["nodes"] if n["type"] == "PsiSMCSampler"]
        assert sorted(n["id"] for n in smc_nodes) == sorted(SAVED_PARTICLES)
        for node in smc_nodes:
            assert len(node["widgets_values"]) == len(SAVED_SMC_VALUES) + 2  # + particles, seed's control value
            shown = dict(result["nodes"][str(node["id"])]["widgets"])
            expected = {**SAVED_SMC_VALUES, "particles": SAVED_PARTICLES[node["id"]], **NEW_DEFAULTS}
            for name, value in expected.items():
                assert shown[name] == pytest.approx(value) if isinstance(value, float) else shown[name] == value, (
                    f"{stem} node {node['id']}.{name}: frontend {shown[name]!r}, saved {value!r}")


def test_server_accepts_the_prompt_the_frontend_makes_of_it(server, loaded):
    for stem, result in loaded.items():
        status, reply = server.queue(result["output"])
        assert status == 200 and reply.get("node_errors") == {}, json.dumps(reply, indent=1)[:3000]
        smc = [node for node in result["output"].values() if node["class_type"] == "PsiSMCSampler"]
        assert smc and all(node["inputs"]["kernel"] == "ancestral" for node in smc)
        entry = server.history(reply["prompt_id"])  # it stops at the first placeholder model file
        loaders = {node_type for node_type, _ in MODEL_INPUTS}
        for kind, data in entry["status"].get("messages", []):
            if kind == "execution_error":
                assert data["node_type"] in loaders, f"{stem}: {data['node_type']}: {data['exception_message']}"
