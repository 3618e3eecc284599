"""The quantity reward's T2ICount backend against a real ComfyUI server (see conftest.py).

A random T2ICount-layout checkpoint (ComfyUI's own SD1.5 UNetModel class at tiny widths,
the pack's counting head, a few frozen VAE/CLIP tensors) is written into a temporary
`psi_rewards` folder while the host boots. The SD1.5 parts come from ComfyUI objects:
the tiny SD1.5-like model's VAE (4-channel, /8) and a tiny SD1 CLIP made with ComfyUI's
classes and its real CLIP-L tokenizer (the psi_t2icount_fixtures pack). Images are
resized to T2ICount's 384², so every reward pass runs the VAE encoder at 384² and the
UNet at 48² latents: the prompts here keep to a few passes.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

import host_graphs as graphs

HERE = Path(__file__).resolve().parent
FIXTURES = HERE / "reward_fixtures" / "psi_t2icount_fixtures"
CHECKPOINT = "t2icount/best_model_paper.pth"
COUNTS = [{"object": "apple", "count": 3}, {"object": "red pears", "count": 1}]


host = graphs.host_conftest()


class T2ICountServer(host.ComfyServer):
    """conftest's server with a psi_rewards model folder and the T2ICount fixture pack."""

    extra_packs = {"psi_t2icount_fixtures": FIXTURES}
    required_nodes = ("PsiQuantityReward", "PsiTestTinySD1Clip", "PsiTestTinyModel", "PsiTestGradCheck")

    def __init__(self, root: Path, python: Path, work: Path):
        super().__init__(root, python, work)
        self.models = work / "psi_rewards"

    def model_paths(self) -> dict[str, Path]:
        return {"psi_rewards": self.models}

    def write_checkpoint(self) -> None:
        """The random checkpoint, written with the host's python (ComfyUI's UNetModel)."""
        command = [str(self.python), str(FIXTURES / "make_checkpoint.py"), str(self.root), str(host.REPO),
                   str(self.models / CHECKPOINT)]
        done = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=self.root)
        assert done.returncode == 0, done.stderr[-3000:]

    def loads(self) -> int:
        return self.log_path.read_text(errors="replace").count("psi: loading t2icount from")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    yield from host.serve(T2ICountServer, tmp_path_factory, "psi_t2icount_host", T2ICountServer.write_checkpoint)


def quantity(g: graphs.Graph, vae: list | None, clip: list | None, counts=COUNTS, **inputs) -> str:
    node = {"grounding_dino_folder": "(nothing found in models/psi_rewards)", "counts": json.dumps(counts),
            "box_threshold": 0.35, "temperature": 0.1, "detector_size": 0, "backend": "t2icount",
            "t2icount_checkpoint": CHECKPOINT, **inputs}
    if vae is not None:
        node["vae"] = vae
    if clip is not None:
        node["clip"] = clip
    return g.add("PsiQuantityReward", **node)


def t2icount_graph() -> tuple[graphs.Graph, dict]:
    """Tiny SD1.5-like model (its VAE also serves T2ICount), tiny SD1 CLIP, the reward."""
    g = graphs.Graph()
    b = graphs.base(g, "sd15", 0, "color")
    clip = g.link(g.add("PsiTestTinySD1Clip", seed=0))
    b["reward"] = g.link(quantity(g, b["vae"], clip))
    return g, b


def execution_error(entry: dict) -> str:
    for kind, data in entry["status"].get("messages", []):
        if kind == "execution_error":
            return f"{data.get('node_type')}: {data.get('exception_message', '')}"
    return ""


def run_ok(server, prompt: dict, timeout: float = 900.0) -> dict:
    entry = server.run(prompt, timeout=timeout)
    assert entry["status"]["status_str"] == "success", f"{execution_error(entry)}\n{server.log_tail()}"
    return entry


def test_quantity_node_offers_the_t2icount_backend(server):
    node = server.get("/object_info")["PsiQuantityReward"]
    optional = node["input"]["optional"]
    assert optional["backend"][1]["options"][:2] == ["grounding_dino", "t2icount"]
    assert optional["backend"][1]["default"] == "grounding_dino"
    assert optional["t2icount_checkpoint"][1]["options"] == [CHECKPOINT]
    assert optional["t2icount_checkpoint"][1]["default"] == CHECKPOINT
    assert optional["vae"][0] == "VAE" and optional["clip"][0] == "CLIP"
    for name in ("backend", "t2icount_checkpoint", "vae", "clip"):
        assert optional[name][1]["tooltip"], name
    assert "T2ICount" in node["description"]


def test_t2icount_gradient_through_vae_encoder_unet_and_head(server):
    """The bridge's gradient through model, decoder, then T2ICount's VAE encoder, UNet and
    head, against central finite differences (the shared fixture pack's check)."""
    g, b = t2icount_graph()
    check = g.add("PsiTestGradCheck", model=b["model"], positive=b["positive"], negative=b["negative"], cfg=2.0,
                  vae=b["vae"], reward=b["reward"], steps=4, sigma_indices="0", rel_step=3e-3, seed=0,
                  forget_inplace=False)
    report = run_ok(server, g.nodes)["outputs"][check]["psi_gradcheck"][0]
    item = report["checks"][0]
    print(json.dumps(item))
    # Measured here: batch vs single 8e-6, along the gradient 0.4% off, along a random
    # direction (a 25x smaller derivative, so float32 noise and ReLU kinks of the head weigh
    # more) 9% off. In float64 the same path matches finite differences to 1e-8.
    along = item["gradient_direction"]
    assert item["reward"] < 0 and item["batch_vs_single"] < 1e-3, item
    assert along["analytic"] > 0 and along["rel_error"] < 5e-2, item
    assert item["random_direction"]["rel_error"] < 0.3, item
    assert report["inference_weights_after"] == 0, report  # the reward's weights took part in the gradient
    assert server.loads() == 1


def test_t2icount_steers_smc_end_to_end(server):
    g, b = t2icount_graph()
    smc = g.add("PsiSMCSampler", model=b["model"], seed=5, steps=2, scheduler="simple", denoise=1.0,
                positive=b["positive"], negative=b["negative"], cfg=2.0, latent_image=b["latent"], vae=b["vae"],
                reward=b["reward"], particles=2, **{**graphs.SMC, "grad_batch_size": 2})
    decoded = g.add("VAEDecode", samples=g.link(smc, 0), vae=b["vae"])
    score = g.add("PsiScoreImages", images=g.link(decoded), reward=b["reward"], summary="best", batch_size=1)
    trace = g.add("PsiTestTraceSummary", trace=g.link(smc, 1), label="t2icount")
    entry = run_ok(server, g.nodes)
    text = entry["outputs"][score]["text"][0]
    assert text.startswith("quantity: ") and "nan" not in text, text
    summary = entry["outputs"][trace]["psi_trace"][0]
    assert summary["invalid_particles"] == 0 and len(summary["smc"]) == 2, summary
    assert all(all(abs(r) < 1e6 for r in step["reward"]) for step in summary["smc"]), summary
    assert server.loads() == 1  # the checkpoint is loaded once and reused


def test_t2icount_inputs_refused_with_clear_messages(server):
    def refused(**inputs) -> str:
        g, b = t2icount_graph()
        node = g.nodes[b["reward"][0]]["inputs"]
        node.update(inputs)
        for name in [n for n, v in inputs.items() if v is None]:
            del node[name]  # left out of the prompt, as by an older frontend
        g.add("PsiScoreImages", images=g.link(g.add("EmptyImage", width=64, height=64, batch_size=1, color=0)),
              reward=b["reward"], summary="mean", batch_size=1)
        status, reply = server.queue(g.nodes)
        assert status == 400 and reply.get("node_errors"), (status, reply)
        return json.dumps(reply["node_errors"])

    def failed(vae: bool, clip: bool, family: str = "sd15") -> str:
        g = graphs.Graph()
        b = graphs.base(g, family, 0, "color")
        reward = quantity(g, b["vae"] if vae else None, g.link(g.add("PsiTestTinySD1Clip", seed=0)) if clip else None)
        image = g.add("EmptyImage", width=64, height=64, batch_size=1, color=0)
        g.add("PsiScoreImages", images=g.link(image), reward=g.link(reward), summary="mean", batch_size=1)
        entry = server.run(g.nodes)
        assert entry["status"]["status_str"] == "error", entry["status"]
        return execution_error(entry)

    missing = refused(t2icount_checkpoint="best_model_paper.pth")
    assert "no file 'best_model_paper.pth'" in missing and "cha15yq/T2ICount" in missing, missing
    assert "no file selected" in refused(t2icount_checkpoint=None)
    assert "backend must be one of" in refused(backend="t2i")
    # the grounding_dino backend (the default when the new inputs are left out) still checks its targets
    assert "whole number >= 0" in refused(backend=None, t2icount_checkpoint=None,
                                          counts='[{"object": "apple", "count": -2}]')
    assert "whole number >= 0" in refused(counts='[{"object": "apple", "count": -2}]')
    assert "connect the vae and clip inputs" in failed(vae=False, clip=True)
    message = failed(vae=True, clip=False)
    assert "missing: clip" in message, message
    message = failed(vae=True, clip=True, family="flux")  # a 16-channel VAE
    assert "needs the SD1.5 VAE (4-channel image latents)" in message, message


AUTHORS_CODE = Path(os.environ.get("PSI_T2ICOUNT_CODE") or "/nonexistent")


@pytest.mark.skipif(not (AUTHORS_CODE / "models" / "diff_unet.py").is_file(),
                    reason=f"no T2ICount checkout at {AUTHORS_CODE} (set PSI_T2ICOUNT_CODE)")
def test_unet_features_equal_the_authors(server):
    """The bridge's UNet features (ComfyUI's UNetModel, the checkpoint's weights) against the
    authors' LDM UNet with their feature forward, run in the host's python."""
    command = [str(server.python), str(FIXTURES / "compare_authors_unet.py"), str(server.root), str(host.REPO),
               str(AUTHORS_CODE), str(server.models / CHECKPOINT)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=server.root)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1].removeprefix("RESULT "))
    assert result["shapes"] == result["reference_shapes"] == [[2, 32, 48, 48], [2, 64, 24, 24], [2, 128, 12, 12],
                                                               [2, 128, 6, 6]], result
    assert max(result["rel_diff"]) < 1e-4, result
