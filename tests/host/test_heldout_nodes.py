"""The held-out scorer nodes (HPS v2, ImageReward) against a real ComfyUI server.

HPS v2 needs the optional package open_clip_torch in the host's python (this pack does not
install it; see PsiHPSv2Reward). Where the host has it, the server also loads the test-only
pack reward_fixtures/psi_heldout_fixtures, which replaces open_clip's registered "ViT-H-14"
config *in the server process only* by a scaled-down config with the same structure (a test-
only substitution: the node builds "ViT-H-14" by name as it does for the real HPS_v2.1 weights).
Random weights of that tiny model are saved in HPS v2's file layout ({"state_dict": ...}) as
HPS_v2.1_compressed.pt in a temporary psi_rewards folder given to the server through its
extra-model-paths yaml. Where the host lacks open_clip, the HPS v2 tests skip, naming
`pip install open_clip_torch`.

ImageReward runs on the host's own transformers (5.x) with no extra package: a tiny random
ImageReward in the released file's layout (reward_fixtures/psi_heldout_fixtures/
tiny_image_reward.py) is written to the same folder, and its node steers the sampler.

Covers: both nodes listed with their files as choices; HPS v2 and ImageReward → guided Ψ SMC →
VAEDecode → Ψ Score Images run without node errors and give finite scores that match the
scorer's own scoring of the saved images (HPS v2: open_clip's; ImageReward: the pack's loader
in the test process), HPS v2 taken from the cache by a second prompt; bad files refused when
queued.
"""

from __future__ import annotations

import importlib.util
import json
import math
import subprocess
from pathlib import Path

import pytest

import host_graphs as graphs

HERE = Path(__file__).resolve().parent
HELDOUT_FIXTURE_PACK = HERE / "reward_fixtures" / "psi_heldout_fixtures"
TINY_OPEN_CLIP = HELDOUT_FIXTURE_PACK / "tiny_open_clip.py"
TINY_IMAGE_REWARD = HELDOUT_FIXTURE_PACK / "tiny_image_reward.py"
HPS_FILE, IMAGE_REWARD_FILE, MED_CONFIG = "HPS_v2.1_compressed.pt", "ImageReward.pt", "med_config.json"
PROMPT = "a red cat on the table"
SMC_FAST = {"particles": 2, "grad_batch_size": 1, "output": "all"}
#: ViT-H-14's open_clip config keys, which the tiny substitute keeps
VIT_H_14_KEYS = {"embed_dim": None, "vision_cfg": {"image_size", "layers", "width", "head_width", "patch_size"},
                 "text_cfg": {"context_length", "vocab_size", "width", "heads", "layers"}}


host = graphs.host_conftest()


def tiny_image_reward():
    """The fixture module that writes a tiny ImageReward (plain Python; imported by path)."""
    spec = importlib.util.spec_from_file_location("tiny_image_reward", TINY_IMAGE_REWARD)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def host_tiny_open_clip(server: "HeldoutServer", *args: str) -> dict:
    """Run tiny_open_clip.py in the server's python and PYTHONPATH (where open_clip is); its JSON line."""
    done = subprocess.run([str(server.python), str(TINY_OPEN_CLIP), *args], capture_output=True, text=True,
                          timeout=300, env=graphs.host_env(server.python_path))
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


# --------------------------------------------------------------------------- server


class HeldoutServer(host.ComfyServer):
    """conftest's server with a psi_rewards model folder and the heldout fixture pack."""

    extra_packs = {"psi_heldout_fixtures": HELDOUT_FIXTURE_PACK}
    required_nodes = ("PsiHPSv2Reward", "PsiImageRewardReward", "PsiScoreImages", "PsiSMCSampler", "PsiTestTinyModel",
                      "PsiTestOpenClipConfig")

    def __init__(self, root: Path, python: Path, work: Path):
        super().__init__(root, python, work)
        self.models = work / "psi_rewards"
        self.python_path = host.optional_packages()
        self.open_clip = graphs.host_has(python, "open_clip", self.python_path)

    def model_paths(self) -> dict[str, Path]:
        return {"psi_rewards": self.models}  # ComfyUI lists model files live: filled while the host boots

    def fill_models(self) -> None:
        self.models.mkdir(parents=True)
        if self.open_clip:
            out = host_tiny_open_clip(self, "save", str(self.models / HPS_FILE), "0")
            # a whole open_clip CLIP as HPS v2 stores it: both towers, their projections, logit_scale
            assert {"visual.proj", "visual.conv1.weight", "token_embedding.weight", "text_projection",
                    "logit_scale"} <= set(out["keys"]), out
        tiny_image_reward().save_tiny_image_reward(self.models, seed=0, checkpoint=IMAGE_REWARD_FILE)

    def require_open_clip(self) -> None:
        if not self.open_clip:
            pytest.skip(f"HPSv2 HOST TESTS SKIPPED: open_clip is not importable in the host python {self.python}; "
                        "set PSI_HOST_OPTIONAL to a folder with open_clip_torch, timm, ftfy and wcwidth "
                        "(scripts/side_env.sh host-optional; scripts/test.sh does it) to run them")

    def output_file(self, image: dict) -> Path:
        return self.work / "base" / image["type"] / image.get("subfolder", "") / image["filename"]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    yield from host.serve(HeldoutServer, tmp_path_factory, "psi_heldout_host", HeldoutServer.fill_models)


# --------------------------------------------------------------------------- prompts


def run_ok(server, prompt: dict) -> dict:
    entry = server.run(prompt)
    if entry["status"]["status_str"] != "success":
        messages = [data for kind, data in entry["status"].get("messages", []) if kind == "execution_error"]
        pytest.fail(f"prompt failed: {messages}\n{server.log_tail()}")
    return entry


def sampler_prompt(reward_class: str, seed: int, **reward_inputs) -> tuple[dict, dict]:
    """reward node → tiny SD1.5-like model → guided Ψ SMC (2 particles, all kept) → VAEDecode →
    Ψ Score Images (+ its JSON and number shown by PreviewAny) and SaveImage."""
    g = graphs.Graph()
    reward = g.add(reward_class, **reward_inputs)
    b = {**graphs.base(g, "sd15", 0, "color"), "reward": g.link(reward)}
    smc = graphs.smc_node(g, "sd15", b, b["latent"], seed=seed, gradient_free=False, **SMC_FAST)
    decoded = g.link(g.add("VAEDecode", samples=g.link(smc, 0), vae=b["vae"]))
    score = g.add("PsiScoreImages", images=decoded, reward=g.link(reward), summary="mean", batch_size=2)
    ids = {"reward": reward, "smc": smc, "score": score,
           "report": g.add("PreviewAny", source=g.link(score, 0)),
           "number": g.add("PreviewAny", source=g.link(score, 1)),
           "save": g.add("SaveImage", images=decoded, filename_prefix=f"psi_heldout_{seed}")}
    return g.nodes, ids


# --------------------------------------------------------------------------- tests


def test_heldout_nodes_listed_with_their_files(server):
    info = server.get("/object_info")

    def choices(node_id: str, name: str) -> tuple[list, str]:
        spec = info[node_id]["input"]["required"][name]
        return (spec[1]["options"] if spec[0] == "COMBO" else spec[0]), spec[1].get("default")

    for node_id in ("PsiHPSv2Reward", "PsiImageRewardReward"):
        node = info[node_id]
        assert node["category"] == "sampling/psi" and node["output"] == ["PSI_REWARD"], node_id
        assert info[node_id]["input"]["required"]["prompt"][0] == "STRING"
    weights = [HPS_FILE, IMAGE_REWARD_FILE] if server.open_clip else [IMAGE_REWARD_FILE]
    assert choices("PsiHPSv2Reward", "checkpoint") == (weights, weights[0])
    assert choices("PsiImageRewardReward", "checkpoint") == (weights, IMAGE_REWARD_FILE)
    assert choices("PsiImageRewardReward", "med_config") == ([MED_CONFIG], MED_CONFIG)
    assert "open_clip_torch" in info["PsiHPSv2Reward"]["description"]
    assert "transformers" in info["PsiImageRewardReward"]["description"]


def test_server_builds_the_tiny_vit_h_14(server):
    """The test-only substitution is in place in the server process (open_clip's own registry)."""
    server.require_open_clip()
    g = graphs.Graph()
    node = g.add("PsiTestOpenClipConfig", seed=0)
    config = run_ok(server, g.nodes)["outputs"][node]["psi_open_clip"][0]["ViT-H-14"]
    assert config["embed_dim"] == 16 and config["vision_cfg"]["width"] == 32, config
    assert set(config) == set(VIT_H_14_KEYS)
    for tower in ("vision_cfg", "text_cfg"):
        assert set(config[tower]) == VIT_H_14_KEYS[tower], config[tower]
    assert config["text_cfg"]["context_length"] == 77 and config["text_cfg"]["vocab_size"] == 49408


def test_hpsv2_steers_smc_and_scores_like_open_clip(server):
    server.require_open_clip()
    prompt, ids = sampler_prompt("PsiHPSv2Reward", seed=5, checkpoint=HPS_FILE, prompt=PROMPT)
    entry = run_ok(server, prompt)  # run() also asserts the prompt was queued without node errors
    outputs = entry["outputs"]
    report = json.loads(outputs[ids["report"]]["text"][0])
    scores = report["scores"]
    assert len(scores) == SMC_FAST["particles"] and all(
        isinstance(v, float) and math.isfinite(v) and -1.0 <= v <= 1.0 for v in scores), report
    assert report["reward"] == f"hpsv2 for prompt {PROMPT!r}", report
    number = float(outputs[ids["number"]]["text"][0])
    assert math.isfinite(number) and number == pytest.approx(sum(scores) / len(scores), abs=1e-9)
    assert outputs[ids["score"]]["text"][0].startswith("hpsv2: ")

    # open_clip's own HPS v2 scoring of the saved PNGs, in the host's python: the same numbers up to
    # the PNG's 8-bit rounding of the decoded images
    files = [server.output_file(image) for image in outputs[ids["save"]]["images"]]
    assert len(files) == len(scores) and all(f.is_file() for f in files), files
    reference = host_tiny_open_clip(server, "score", str(server.models / HPS_FILE), PROMPT,
                                    *map(str, files))["scores"]
    print(f"node {scores} · open_clip {reference}")
    assert scores == pytest.approx(reference, abs=2e-3)
    assert max(abs(v) for v in reference) > 1e-3  # not trivially zero

    # a new seed re-runs the sampler with the cached HPS v2 model; a new prompt re-embeds the text
    prompt, ids = sampler_prompt("PsiHPSv2Reward", seed=6, checkpoint=HPS_FILE, prompt="a blue dog")
    report = json.loads(run_ok(server, prompt)["outputs"][ids["report"]]["text"][0])
    assert all(math.isfinite(v) for v in report["scores"]) and "a blue dog" in report["reward"], report


def test_image_reward_steers_smc_and_scores_like_the_loader(server):
    """The node runs on the host's transformers 5 and its scores are the loader's on the saved PNGs."""
    import numpy as np
    import torch
    from PIL import Image

    from psi_sampler.rewards.image_reward import load_image_reward

    prompt, ids = sampler_prompt("PsiImageRewardReward", seed=7, checkpoint=IMAGE_REWARD_FILE, med_config=MED_CONFIG,
                                 prompt=PROMPT)
    outputs = run_ok(server, prompt)["outputs"]  # run() also asserts the prompt was queued without node errors
    report = json.loads(outputs[ids["report"]]["text"][0])
    scores = report["scores"]
    assert len(scores) == SMC_FAST["particles"] and all(isinstance(v, float) and math.isfinite(v) for v in scores)
    assert report["reward"] == f"imagereward for prompt {PROMPT!r}", report
    files = [server.output_file(image) for image in outputs[ids["save"]]["images"]]
    assert len(files) == len(scores) and all(f.is_file() for f in files), files
    reward = load_image_reward(server.models / IMAGE_REWARD_FILE, server.models / MED_CONFIG, PROMPT)
    pixels = torch.stack([torch.from_numpy(np.asarray(Image.open(f).convert("RGB")).copy())
                          for f in files]).permute(0, 3, 1, 2).float() / 255
    with torch.no_grad():
        reference = reward(pixels).tolist()
    print(f"node {scores} · loader {reference}")
    # the same scorer on the PNG's 8-bit rounding of the decoded images
    assert scores == pytest.approx(reference, abs=2e-3)


def test_image_reward_bad_files_refused_when_queued(server):
    prompt, ids = sampler_prompt("PsiImageRewardReward", seed=8, checkpoint="ImageReward_v2.pt",
                                 med_config=MED_CONFIG, prompt=PROMPT)
    status, reply = server.queue(prompt)
    assert status == 400 and ids["reward"] in reply.get("node_errors", {}), (status, reply)
    message = json.dumps(reply["node_errors"][ids["reward"]]["errors"])
    assert "no file 'ImageReward_v2.pt' in the psi_rewards model folder" in message, message
    assert "THUDM/ImageReward" in message and "transformers" not in message, message


def test_hpsv2_missing_checkpoint_refused_when_queued(server):
    server.require_open_clip()  # without open_clip the refusal names the package (test_reward_nodes.py)
    prompt, ids = sampler_prompt("PsiHPSv2Reward", seed=8, checkpoint="HPS_v2_compressed.pt", prompt=PROMPT)
    status, reply = server.queue(prompt)
    assert status == 400 and ids["reward"] in reply.get("node_errors", {}), (status, reply)
    message = json.dumps(reply["node_errors"][ids["reward"]]["errors"])
    assert "no file 'HPS_v2_compressed.pt' in the psi_rewards model folder" in message, message
    assert "xswu/HPSv2" in message and str(server.models) in message, message
