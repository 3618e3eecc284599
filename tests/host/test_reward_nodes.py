"""The reward nodes against a real ComfyUI server (see conftest.py for the host).

Tiny random-weight models of the real architectures (transformers CLIP vision with
a 768-d projection + the real LAION aesthetic head, Grounding DINO + BERT tokenizer,
PickScore's CLIPModel + CLIP tokenizer) are saved with `save_pretrained` into a
temporary `psi_rewards` directory registered through the server's
extra-model-paths yaml. This module starts its own server (the session server of
conftest.py takes no model folders) with the pack, the shared fixture pack and the
reward fixture pack (a tiny CLIP_VISION made by ComfyUI's own class).

Covers: every reward node listed with its folder choices and tooltips; each reward
used by a Ψ sampler in a prompt that succeeds (64×64, 4 steps, 2 particles, grad
batch 1); models loaded once and reused by the next prompt; bad targets and
missing files or packages refused with clear messages; Ψ Score Images shows scores.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

import host_graphs as graphs

HERE = Path(__file__).resolve().parent
REWARD_FIXTURE_PACK = HERE / "reward_fixtures" / "psi_reward_fixtures"
REWARDS_TESTS = HERE.parent / "rewards"

REWARD_NODES = ("PsiAestheticReward", "PsiLayoutReward", "PsiQuantityReward", "PsiPickScoreReward", "PsiHPSv2Reward",
                "PsiImageRewardReward", "PsiCombineRewards", "PsiScoreImages")
HEAD_FILE = "sac+logos+ava1-l14-linearMSE.pth"
CLIP_DIR, DINO_DIR, PICKSCORE_DIR, BROKEN_DIR = "clip-vit-large-patch14", "grounding-dino-base", "PickScore_v1", "broken-dino"
NO_CLIP = "none (use clip_vision)"
SAME_AS_MODEL = "same as model_folder"
FAST = {"grad_batch_size": 1}
INITIAL_FAST = {"particles": 2, "chains": 2, "burn_in": 1, "mcmc_steps": 2, "grad_batch_size": 1}
DETECTOR_SIZE = 128  # the tiny detector's coarsest level must keep > 1 value per GroupNorm group


host = graphs.host_conftest()


# --------------------------------------------------------------------------- tiny models


def build_models(folder: Path) -> Path:
    """Tiny random models of the real architectures, saved as ComfyUI users store the real ones."""
    sys.path.insert(0, str(REWARDS_TESTS))
    try:
        import torch
        from rewards_testing import (HEAD_PATH, make_bert_tokenizer, make_clip_tokenizer, seeded, tiny_clip_config,
                                     tiny_grounding_dino_config)
        from transformers import CLIPModel, CLIPVisionModelWithProjection, GroundingDinoForObjectDetection
    finally:
        sys.path.remove(str(REWARDS_TESTS))
    if not HEAD_PATH.is_file():
        pytest.fail(f"the real aesthetic head is missing: {HEAD_PATH}")
    folder.mkdir(parents=True)
    shutil.copy(HEAD_PATH, folder / HEAD_FILE)  # into the temporary models dir only
    with seeded(1):
        CLIPVisionModelWithProjection(tiny_clip_config().vision_config).save_pretrained(folder / CLIP_DIR)
    with seeded(0):
        dino = GroundingDinoForObjectDetection(tiny_grounding_dino_config())
        for name, module in dino.named_modules():  # DETR init zeroes the last box layer; give it weights
            if "bbox_embed" in name and isinstance(module, torch.nn.Linear):
                torch.nn.init.normal_(module.weight, std=0.1)
    dino.save_pretrained(folder / DINO_DIR)
    make_bert_tokenizer().save_pretrained(folder / DINO_DIR)
    with seeded(2):
        CLIPModel(tiny_clip_config(projection_dim=16)).save_pretrained(folder / PICKSCORE_DIR)
    make_clip_tokenizer().save_pretrained(folder / PICKSCORE_DIR)
    (folder / BROKEN_DIR).mkdir()  # a Grounding DINO folder without weights
    shutil.copy(folder / DINO_DIR / "config.json", folder / BROKEN_DIR / "config.json")
    return folder


# --------------------------------------------------------------------------- server


class RewardServer(host.ComfyServer):
    """conftest's server with a psi_rewards model folder and the reward fixture pack."""

    extra_packs = {"psi_reward_fixtures": REWARD_FIXTURE_PACK}
    required_nodes = (*REWARD_NODES, "PsiTestTinyClipVision")

    def __init__(self, root: Path, python: Path, work: Path, models: Path):
        super().__init__(root, python, work)
        self.models = models

    def model_paths(self) -> dict[str, Path]:
        # the folder may be filled while the host boots: ComfyUI lists model files live
        return {"psi_rewards": self.models}

    def loads(self, kind: str) -> int:
        """How often the pack loaded a reward model of `kind` (it logs every real load)."""
        return self.log_path.read_text(errors="replace").count(f"psi: loading {kind} from")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    yield from host.serve(lambda root, python, work: RewardServer(root, python, work, work / "psi_rewards"),
                          tmp_path_factory, "psi_reward_host", lambda instance: build_models(instance.models))


# --------------------------------------------------------------------------- prompts


def sampler_inputs(g: graphs.Graph, reward: list) -> dict:
    """Tiny SD1.5-like model, VAE, conditioning and an empty 64×64 latent, with `reward`."""
    b = graphs.base(g, "sd15", 0, "color")
    return {**b, "reward": reward}


def decode_and_score(g: graphs.Graph, b: dict, latent: list, reward: list, summary: str = "mean") -> str:
    decoded = g.add("VAEDecode", samples=latent, vae=b["vae"])
    return g.add("PsiScoreImages", images=g.link(decoded), reward=reward, summary=summary, batch_size=2)


def layout_node(g: graphs.Graph, boxes, units: str = "normalized", width: int = 512, height: int = 512,
                matching: str = "soft", folder: str = DINO_DIR, detector_size: int = DETECTOR_SIZE) -> str:
    text = boxes if isinstance(boxes, str) else json.dumps(boxes)
    return g.add("PsiLayoutReward", grounding_dino_folder=folder, boxes=text, units=units, width=width,
                 height=height, matching=matching, detector_size=detector_size)


def quantity_node(g: graphs.Graph, counts, folder: str = DINO_DIR, detector_size: int = DETECTOR_SIZE) -> str:
    text = counts if isinstance(counts, str) else json.dumps(counts)
    return g.add("PsiQuantityReward", grounding_dino_folder=folder, counts=text, box_threshold=0.35, temperature=0.1,
                 detector_size=detector_size)


def scored_image_prompt(reward_class: str, **inputs) -> tuple[dict, str]:
    """A grey image scored by one reward node (validation and scorer-only prompts)."""
    g = graphs.Graph()
    reward = g.add(reward_class, **inputs)
    image = g.add("EmptyImage", width=64, height=64, batch_size=2, color=0x808080)
    score = g.add("PsiScoreImages", images=g.link(image), reward=g.link(reward), summary="mean", batch_size=2)
    return g.nodes, score


def run_ok(server, prompt: dict) -> dict:
    entry = server.run(prompt)
    assert entry["status"]["status_str"] == "success", f"{execution_error(entry)}\n{server.log_tail()}"
    return entry


def execution_error(entry: dict) -> str:
    for kind, data in entry["status"].get("messages", []):
        if kind == "execution_error":
            return f"{data.get('node_type')}: {data.get('exception_message', '')}"
    return ""


def refused(server, prompt: dict) -> str:
    """The node errors of a prompt that /prompt must refuse, as text."""
    status, reply = server.queue(prompt)
    assert status == 400 and reply.get("node_errors"), (status, reply)
    return json.dumps(reply["node_errors"])


def failed(server, prompt: dict) -> str:
    entry = server.run(prompt)
    assert entry["status"]["status_str"] == "error", entry["status"]
    return execution_error(entry)


# --------------------------------------------------------------------------- tests


def test_reward_nodes_listed_with_folder_choices(server):
    info = server.get("/object_info")
    for node_id in REWARD_NODES:
        node = info[node_id]
        assert node["category"] == "sampling/psi" and node["description"], node_id
        for section in ("required", "optional"):
            for name, spec in node["input"].get(section, {}).items():
                assert len(spec) > 1 and spec[1].get("tooltip"), f"{node_id}.{name} has no tooltip"
        assert node["output_tooltips"] and all(node["output_tooltips"]), node_id

    def choices(node_id: str, name: str) -> list:
        spec = info[node_id]["input"]["required"][name]
        return spec[1]["options"] if spec[0] == "COMBO" else spec[0]

    assert HEAD_FILE in choices("PsiAestheticReward", "head")
    assert info["PsiAestheticReward"]["input"]["required"]["head"][1]["default"] == HEAD_FILE
    assert choices("PsiAestheticReward", "clip_folder") == [CLIP_DIR, PICKSCORE_DIR, NO_CLIP]
    assert "clip_vision" in info["PsiAestheticReward"]["input"]["optional"]
    for node_id in ("PsiLayoutReward", "PsiQuantityReward"):
        assert choices(node_id, "grounding_dino_folder") == [BROKEN_DIR, DINO_DIR]
        assert info[node_id]["input"]["required"]["grounding_dino_folder"][1]["default"] == DINO_DIR
    assert choices("PsiPickScoreReward", "model_folder") == [PICKSCORE_DIR]
    assert choices("PsiPickScoreReward", "processor_folder") == [DINO_DIR, PICKSCORE_DIR, SAME_AS_MODEL]
    assert choices("PsiLayoutReward", "units") == ["normalized", "pixels"]
    assert '"phrase"' in info["PsiLayoutReward"]["input"]["required"]["boxes"][1]["tooltip"]
    # nothing suitable found: one placeholder that explains itself when queued
    assert choices("PsiImageRewardReward", "med_config") == ["(nothing found in models/psi_rewards)"]
    assert info["PsiScoreImages"]["output"] == ["STRING", "FLOAT"]
    for node_id in REWARD_NODES[:-1]:
        assert info[node_id]["output"] == ["PSI_REWARD"], node_id


def test_aesthetic_from_folder_steers_initial_and_smc(server):
    g = graphs.Graph()
    reward = g.link(g.add("PsiAestheticReward", head=HEAD_FILE, clip_folder=CLIP_DIR))
    b = sampler_inputs(g, reward)
    initial = graphs.initial_node(g, "sd15", b, seed=1, **INITIAL_FAST)
    smc = graphs.smc_node(g, "sd15", b, g.link(initial, 0), seed=1, **FAST)
    score = decode_and_score(g, b, g.link(smc, 0), reward)
    entry = run_ok(server, g.nodes)
    text = entry["outputs"][score]["text"][0]
    assert text.startswith("aesthetic: ") and "mean" in text and "nan" not in text, text
    assert server.loads("clip_vision") == 1 and server.loads("aesthetic_head") == 1


def test_clip_vision_input_replaces_the_folder(server):
    def prompt(projection_dim: int) -> tuple[dict, str]:
        g = graphs.Graph()
        clip = g.add("PsiTestTinyClipVision", projection_dim=projection_dim, seed=0)
        reward = g.link(g.add("PsiAestheticReward", head=HEAD_FILE, clip_folder=NO_CLIP, clip_vision=g.link(clip)))
        b = sampler_inputs(g, reward)
        smc = graphs.smc_node(g, "sd15", b, b["latent"], seed=2, particles=2, **FAST)
        return g.nodes, decode_and_score(g, b, g.link(smc, 0), reward, summary="best")

    nodes, score = prompt(768)
    text = run_ok(server, nodes)["outputs"][score]["text"][0]
    assert text.startswith("aesthetic: ") and "nan" not in text, text
    message = failed(server, prompt(512)[0])
    assert "512-value image embeddings" in message and "ViT-L/14" in message, message


def test_layout_quantity_pickscore_combined_in_smc(server):
    boxes = [{"phrase": "a cat", "box": [0.05, 0.3, 0.5, 0.95]}, {"phrase": "a dog", "box": [0.5, 0.3, 0.95, 0.9]}]
    g = graphs.Graph()
    layout = g.link(layout_node(g, boxes))
    quantity = g.link(quantity_node(g, [{"object": "apple", "count": 3}]))
    pick = g.link(g.add("PsiPickScoreReward", model_folder=PICKSCORE_DIR, processor_folder=SAME_AS_MODEL,
                        prompt="a cat and a dog"))
    combined = g.link(g.add("PsiCombineRewards", reward_1=layout, weight_1=1.0, reward_2=quantity, weight_2=0.5,
                            reward_3=pick, weight_3=0.1, weight_4=1.0))
    b = sampler_inputs(g, combined)
    smc = graphs.smc_node(g, "sd15", b, b["latent"], seed=3, particles=2, **FAST)
    decoded = g.link(g.add("VAEDecode", samples=g.link(smc, 0), vae=b["vae"]))
    scores = {name: g.add("PsiScoreImages", images=decoded, reward=r, summary="best", batch_size=2)
              for name, r in (("layout", layout), ("quantity", quantity), ("pickscore", pick), ("sum", combined))}
    entry = run_ok(server, g.nodes)
    for name, node_id in scores.items():
        text = entry["outputs"][node_id]["text"][0]
        assert text.startswith(f"{'weighted_sum' if name == 'sum' else name}: ") and "nan" not in text, text
    layout_value = float(entry["outputs"][scores["layout"]]["text"][0].split(": ")[1].split("\n")[0])
    assert 0.0 <= layout_value <= 1.0
    assert server.loads("grounding_dino") == 1  # one copy shared by the layout and quantity rewards
    assert server.loads("pickscore") == 1

    # new targets re-run the reward nodes but reuse the loaded models; pixel boxes, greedy matching,
    # the layout reward straight into the initial sampler and the SMC
    g = graphs.Graph()
    pixel_boxes = [{"phrase": "a red car", "box": [32, 100, 400, 480]}]
    layout = g.link(layout_node(g, pixel_boxes, units="pixels", width=512, height=512, matching="greedy"))
    quantity = g.link(quantity_node(g, [{"object": "eggs", "count": 2}, {"object": "apple", "count": 0}]))
    b = sampler_inputs(g, layout)
    initial = graphs.initial_node(g, "sd15", b, seed=4, **INITIAL_FAST)
    smc = graphs.smc_node(g, "sd15", {**b, "reward": quantity}, g.link(initial, 0), seed=4, **FAST)
    score = decode_and_score(g, b, g.link(smc, 0), quantity)
    entry = run_ok(server, g.nodes)
    assert entry["outputs"][score]["text"][0].startswith("quantity: ")
    assert server.loads("grounding_dino") == 1 and server.loads("pickscore") == 1


#: rewards whose input gradient is exact: checked against central finite differences
EXACT_GRADIENT = {
    "aesthetic_clip_vision": lambda g: g.add("PsiAestheticReward", head=HEAD_FILE, clip_folder=NO_CLIP,
                                             clip_vision=g.link(g.add("PsiTestTinyClipVision", projection_dim=768,
                                                                      seed=1))),
    "pickscore": lambda g: g.add("PsiPickScoreReward", model_folder=PICKSCORE_DIR, processor_folder=SAME_AS_MODEL,
                                 prompt="a cat"),
}
#: Grounding DINO rewards: transformers' GroundingDino detaches its reference points and two-stage
#: proposals (DETR training practice), so the input gradient drops those paths and is only an
#: ascent direction (a few % off in float64 on the tiny model; the samplers stay consistent because
#: their weights use the same gradient as their proposals)
DETECTOR_GRADIENT = {
    "layout": lambda g: layout_node(g, [{"phrase": "a cat", "box": [0.1, 0.2, 0.6, 0.9]}]),
    "quantity": lambda g: quantity_node(g, [{"object": "apple", "count": 2}]),
}


def gradient_report(server, reward, sigma_indices: str) -> list[dict]:
    g = graphs.Graph()
    b = sampler_inputs(g, g.link(reward(g)))
    check = g.add("PsiTestGradCheck", model=b["model"], positive=b["positive"], negative=b["negative"], cfg=2.0,
                  vae=b["vae"], reward=b["reward"], steps=4, sigma_indices=sigma_indices, rel_step=3e-3, seed=0)
    checks = run_ok(server, g.nodes)["outputs"][check]["psi_gradcheck"][0]["checks"]
    for item in checks:
        print(f"σ={item['sigma']:.3g}: r={item['reward']:.4g} grad-dir {item['gradient_direction']['rel_error']:.2e} "
              f"random-dir {item['random_direction']['rel_error']:.2e} batch {item['batch_vs_single']:.1e}")
        assert item["batch_vs_single"] < 1e-3, item
    return checks


@pytest.mark.parametrize("name", list(EXACT_GRADIENT))
def test_reward_gradient_matches_finite_differences(server, name):
    """The bridge's gradient through model, VAE and reward inside the real executor (the
    shared fixture pack's check), e.g. through ComfyUI's own CLIP vision layers."""
    for item in gradient_report(server, EXACT_GRADIENT[name], "0,2"):
        assert item["gradient_direction"]["rel_error"] < 1e-2 and item["random_direction"]["rel_error"] < 5e-2, item


@pytest.mark.parametrize("name", list(DETECTOR_GRADIENT))
def test_detector_reward_gradient_is_an_ascent_direction(server, name):
    for item in gradient_report(server, DETECTOR_GRADIENT[name], "0"):
        along = item["gradient_direction"]
        assert along["analytic"] > 0 and along["finite_difference"] > 0 and along["rel_error"] < 0.5, item


def test_score_images_shows_scores(server):
    prompt, score = scored_image_prompt("PsiImageStatsReward", statistic="brightness", goal="maximize", target=0.5,
                                        color="#d04020")
    entry = run_ok(server, prompt)
    text = entry["outputs"][score]["text"][0]
    assert text == "brightness: 0.502, 0.502\nmean 0.502 · best 0.502 (#0)", text  # grey 0x808080: 128/255


BAD_LAYOUT = [
    ([{"phrase": "a cat", "box": [0.1, 0.2, 1.3, 0.9]}], "normalized", "lies outside the image"),
    ([{"phrase": "a cat", "box": [10, 20, 600, 300]}], "pixels", "lies outside the image"),
    ([{"phrase": "  ", "box": [0.1, 0.2, 0.5, 0.9]}], "normalized", "is empty"),
    ([{"phrase": "a cat", "box": [0.5, 0.2, 0.1, 0.9]}], "normalized", "empty or flipped"),
    ([{"phrase": "a cat", "box": [0.1, 0.2, 0.5]}], "normalized", "four numbers"),
    ([{"box": [0.1, 0.2, 0.5, 0.9]}], "normalized", 'with \\"phrase\\" and \\"box\\"'),
    ([], "normalized", "non-empty JSON list"),
    ("[{'phrase': 'a cat'}", "normalized", "not valid JSON"),
]


@pytest.mark.parametrize("boxes,units,expected", BAD_LAYOUT)
def test_bad_layout_targets_refused_before_sampling(server, boxes, units, expected):
    g = graphs.Graph()
    reward = g.link(layout_node(g, boxes, units=units))
    b = sampler_inputs(g, reward)
    smc = graphs.smc_node(g, "sd15", b, b["latent"], seed=0, particles=2, **FAST)
    g.add("SaveImage", images=g.link(g.add("VAEDecode", samples=g.link(smc, 0), vae=b["vae"])),
          filename_prefix="never")
    assert expected in refused(server, g.nodes)


def test_bad_inputs_refused_with_clear_messages(server):
    def layout_error(**inputs) -> str:
        return refused(server, scored_image_prompt("PsiLayoutReward", **{
            "grounding_dino_folder": DINO_DIR, "boxes": '[{"phrase": "a cat", "box": [0.1, 0.1, 0.9, 0.9]}]',
            "units": "normalized", "width": 512, "height": 512, "matching": "soft",
            "detector_size": DETECTOR_SIZE, **inputs})[0])

    def quantity_error(**inputs) -> str:
        return refused(server, scored_image_prompt("PsiQuantityReward", **{
            "grounding_dino_folder": DINO_DIR, "counts": '[{"object": "apple", "count": 2}]', "box_threshold": 0.35,
            "temperature": 0.1, "detector_size": DETECTOR_SIZE, **inputs})[0])

    assert "whole number >= 0" in quantity_error(counts='[{"object": "apple", "count": -1}]')
    assert "whole number >= 0" in quantity_error(counts='[{"object": "apple", "count": 1.5}]')
    assert "must be distinct" in quantity_error(counts='[{"object": "apple", "count": 1}, {"object": "Apple", '
                                                       '"count": 2}]')
    assert "contains '.'" in quantity_error(counts='[{"object": "apple. pear", "count": 1}]')
    assert "detector_size must be 0" in quantity_error(detector_size=32)
    missing = layout_error(grounding_dino_folder="grounding-dino-tiny")
    assert "no model folder 'grounding-dino-tiny' in the psi_rewards model folder" in missing
    assert "IDEA-Research/grounding-dino-base" in missing and str(server.models) in missing
    assert "missing model.safetensors" in layout_error(grounding_dino_folder=BROKEN_DIR)
    nothing = layout_error(grounding_dino_folder="(nothing found in models/psi_rewards)")
    assert "no model folder selected (none found)" in nothing and "grounding-dino-base" in nothing

    # the groundingdino-py backend is offered only where it can run (never on transformers 5) ...
    _, python, _ = host.host_location()
    runs = graphs.host_runs_groundingdino_py(python)
    info = server.get("/object_info")
    for node_id, name in (("PsiLayoutReward", "detector_backend"), ("PsiQuantityReward", "backend")):
        options = info[node_id]["input"]["optional"][name][1]["options"]
        assert ("groundingdino-py" in options) == runs, (node_id, options)
    # ... and a saved prompt that names it on such a host is refused with the reason, before any loading
    gdino_py = {"groundingdino_checkpoint": "groundingdino_swint_ogc.pth",
                "groundingdino_bert_folder": "bert-base-uncased"}
    for message in (layout_error(detector_backend="groundingdino-py", **gdino_py),
                    quantity_error(backend="groundingdino-py", **gdino_py)):
        if graphs.host_has(python, "groundingdino"):
            assert "cannot build its model on transformers" in message and "< 5" in message
        else:
            assert "needs the Python package `groundingdino`" in message and "pip install groundingdino-py" in message

    aesthetic = scored_image_prompt("PsiAestheticReward", head="aesthetic.pth", clip_folder=CLIP_DIR)[0]
    message = refused(server, aesthetic)
    assert "no file 'aesthetic.pth'" in message and "improved-aesthetic-predictor" in message
    pick = scored_image_prompt("PsiPickScoreReward", model_folder=PICKSCORE_DIR, processor_folder=SAME_AS_MODEL,
                               prompt="  ")[0]
    assert "prompt must be a non-empty string" in refused(server, pick)
    pick = scored_image_prompt("PsiPickScoreReward", model_folder=PICKSCORE_DIR, processor_folder=CLIP_DIR,
                               prompt="a cat")[0]
    assert "no tokenizer files" in refused(server, pick)

    # held-out scorers: HPSv2's package "install" message where open_clip is missing, else the missing file's
    # (tests/host/test_heldout_nodes.py runs HPSv2 where open_clip is installed)
    _, python, _ = host.host_location()
    hps = refused(server, scored_image_prompt("PsiHPSv2Reward", checkpoint="HPS_v2.1_compressed.pt",
                                              prompt="a cat")[0])
    if graphs.host_has(python, "open_clip"):
        assert "no file 'HPS_v2.1_compressed.pt'" in hps and "xswu/HPSv2" in hps
    else:
        assert "needs the Python package `open_clip`" in hps and "open_clip_torch" in hps
    image_reward = refused(server, scored_image_prompt("PsiImageRewardReward", checkpoint="ImageReward.pt",
                                                       med_config="med_config.json", prompt="a cat")[0])
    # ImageReward needs no extra package on the host's transformers: only its file is missing here
    assert "no file 'ImageReward.pt'" in image_reward and "THUDM/ImageReward" in image_reward, image_reward

    # found at execution, before any sampling
    no_clip = scored_image_prompt("PsiAestheticReward", head=HEAD_FILE, clip_folder=NO_CLIP)[0]
    assert "no clip_vision is connected" in failed(server, no_clip)
    g = graphs.Graph()
    stats = g.link(g.add("PsiImageStatsReward", statistic="brightness", goal="maximize", target=0.5, color="#d04020"))
    combined = g.add("PsiCombineRewards", reward_1=stats, weight_1=0.0, reward_2=stats, weight_2=0.0, weight_3=1.0,
                     weight_4=1.0)
    image = g.add("EmptyImage", width=64, height=64, batch_size=1, color=0)
    g.add("PsiScoreImages", images=g.link(image), reward=g.link(combined), summary="mean", batch_size=1)
    assert "weights are all zero" in failed(server, g.nodes)
