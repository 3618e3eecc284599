"""HPSv2 and ImageReward with their real packages, in the interpreter named by PSI_EXTRAS_PYTHON.

Each test builds a tiny random configuration of the real architecture with the package's
own classes (open_clip: a registered config with ViT-H-14's structure scaled down;
image-reward: its BLIP VisionTransformer, its BLIP BertModel from a tiny med_config and
its ImageReward class with MLP), writes the files our loaders read, loads them through
the loaders and compares with the package's own scoring path.

image-reward 1.5 cannot import on transformers >= 4.56 (its med.py imports names that
transformers removed); with such an interpreter the ImageReward test checks that the
loader says so, and with transformers <= 4.55 it runs the full comparison.
"""

from __future__ import annotations

import pytest

from external_python import ROOT, require_python, run_script

PROMPT = "a red cat on the table"
TINY_OPEN_CLIP = ROOT / "tests" / "host" / "reward_fixtures" / "psi_heldout_fixtures" / "tiny_open_clip.py"

HPS_BODY = r"""
import json
from pathlib import Path

import open_clip
import torch

from psi_sampler.rewards.heldout import load_hpsv2
from psi_sampler.rewards.loading import RewardLoadError

PROMPT = %(prompt)r
# the host tests' tiny config with ViT-H-14's structure, and HPS v2's own scoring as the reference
import importlib.util
spec = importlib.util.spec_from_file_location("tiny_open_clip", %(fixture)r)
fixture = importlib.util.module_from_spec(spec)
spec.loader.exec_module(fixture)
tiny = fixture.TINY_VIT_H_14
wide = json.loads(json.dumps(tiny))
wide["vision_cfg"]["width"] = 48
for name, cfg in (("ViT-H-14-psi-tiny", tiny), ("ViT-H-14-psi-wide", wide)):
    Path(name + ".json").write_text(json.dumps(cfg))
    open_clip.add_model_config(Path(name + ".json"))

torch.manual_seed(0)
model = open_clip.create_model("ViT-H-14-psi-tiny", pretrained=None).eval()
torch.save({"state_dict": model.state_dict()}, "HPS_v2.1_compressed.pt")  # HPS v2's file layout
reward = load_hpsv2("HPS_v2.1_compressed.pt", PROMPT, architecture="ViT-H-14-psi-tiny")

def reference(images):
    return fixture.hps_reference(model, "ViT-H-14-psi-tiny", PROMPT, images, 32)

gen = torch.Generator().manual_seed(3)
diffs, grads, batch_diffs, spreads = [], [], [], []
for shape in ((2, 3, 40, 56), (2, 3, 20, 24), (2, 3, 32, 32)):
    images = torch.rand(*shape, generator=gen)
    x = images.clone().requires_grad_(True)
    scores = reward(x)
    scores.sum().backward()
    grads.append([bool(torch.isfinite(x.grad).all()), float(x.grad.abs().sum())])
    ref = reference(images)
    diffs.append(float((scores.detach() - ref).abs().max()))
    spreads.append(float(ref.abs().max()))
    alone = torch.cat([reward(images[i:i + 1]) for i in range(2)])
    batch_diffs.append(float((reward(images) - alone).abs().max()))

errors = {}
try:
    load_hpsv2("HPS_v2.1_compressed.pt", PROMPT, architecture="ViT-H-14-psi-wide")
except RewardLoadError as err:
    errors["wrong_architecture"] = str(err)
try:
    load_hpsv2("HPS_v2.1_compressed.pt", PROMPT, architecture="no-such-model")
except ValueError as err:
    errors["unknown_architecture"] = str(err)
report({"diffs": diffs, "grads": grads, "batch_diffs": batch_diffs, "spreads": spreads,
        "describe": reward.describe(), "differentiable": reward.differentiable,
        "fit": reward.fit, "size": reward.image_size, "errors": errors})
"""


def test_hpsv2_tiny_open_clip_matches_open_clip_scoring(tmp_path):
    python = require_python("PSI_EXTRAS_PYTHON")
    body = HPS_BODY % {"prompt": PROMPT, "fixture": str(TINY_OPEN_CLIP)}
    out = run_script(python, body, tmp_path=tmp_path, timeout=300)
    # float32, same weights and same ops order up to batching: 1e-5 on cosines of magnitude <= 1
    assert max(out["diffs"]) < 1e-5, out["diffs"]
    assert max(out["batch_diffs"]) < 1e-5, out["batch_diffs"]
    assert min(out["spreads"]) > 1e-3  # the scores are not trivially zero
    assert all(finite and total > 0 for finite, total in out["grads"]), out["grads"]
    assert out["differentiable"] and out["fit"] == "pad" and out["size"] == 32
    assert PROMPT in out["describe"]
    assert "does not fit open_clip ViT-H-14-psi-wide" in out["errors"]["wrong_architecture"]
    assert "xswu/HPSv2" in out["errors"]["wrong_architecture"]
    assert "architecture must be an open_clip model config name" in out["errors"]["unknown_architecture"]
    assert "'no-such-model'" in out["errors"]["unknown_architecture"]


IMAGE_REWARD_BODY = r"""
import json
import sys
from pathlib import Path

import torch
import transformers

from psi_sampler.rewards.heldout import IMAGE_REWARD_MEAN, IMAGE_REWARD_STD, load_image_reward
from psi_sampler.rewards.loading import RewardLoadError, RewardUnavailableError

PROMPT = %(prompt)r
folder = Path("ImageReward")
folder.mkdir()
version = tuple(int(part) for part in transformers.__version__.split(".")[:2])
if version >= (4, 56):
    try:
        load_image_reward(folder / "ImageReward.pt", folder / "med_config.json", PROMPT)
    except RewardUnavailableError as err:
        report({"mode": "unavailable", "transformers": transformers.__version__, "message": str(err)})
    else:
        report({"mode": "loaded", "transformers": transformers.__version__})
    raise SystemExit(0)

sys.path.insert(0, %(tests)r)
from rewards_testing import bert_vocab, blip_stand_in, image_reward_package
from PIL import Image

ir_module, vit, med = image_reward_package()  # the package's own modules, without its __init__
assert "ImageReward" not in sys.modules

vocab = bert_vocab()
(folder / "vocab.txt").write_text("\n".join(sorted(vocab, key=vocab.get)) + "\n")
tokenizer = transformers.BertTokenizer(str(folder / "vocab.txt"))
tokenizer.add_special_tokens({"bos_token": "[DEC]"})        # as image-reward's init_tokenizer
tokenizer.add_special_tokens({"additional_special_tokens": ["[ENC]"]})
# BLIP's med_config.json with the sizes scaled down (ImageReward's MLP needs hidden_size 768)
med_config = {"architectures": ["BertModel"], "attention_probs_dropout_prob": 0.1, "hidden_act": "gelu",
              "hidden_dropout_prob": 0.1, "hidden_size": 768, "initializer_range": 0.02,
              "intermediate_size": 64, "layer_norm_eps": 1e-12, "max_position_embeddings": 40,
              "model_type": "bert", "num_attention_heads": 12, "num_hidden_layers": 1, "pad_token_id": 0,
              "type_vocab_size": 2, "vocab_size": len(tokenizer), "encoder_width": 128,
              "add_cross_attention": True}
(folder / "med_config.json").write_text(json.dumps(med_config))

torch.manual_seed(0)
ir_module.BLIP_Pretrain = blip_stand_in(vit, med, folder / "med_config.json", patch_size=32, embed_dim=128,
                                        depth=2, num_heads=2, tokenizer=tokenizer)
package_model = ir_module.ImageReward(med_config=str(folder / "med_config.json"), device="cpu").eval()
with torch.no_grad():
    for p in package_model.mlp.parameters():
        p.normal_(0.0, 0.08)  # the package's init gives near-constant scores
torch.save(package_model.state_dict(), folder / "ImageReward.pt")

reward = load_image_reward(folder / "ImageReward.pt", folder / "med_config.json", PROMPT)

def package_scores(images):
    pixels = (images * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    with torch.no_grad():
        return torch.tensor([package_model.score(PROMPT, Image.fromarray(p)) for p in pixels])

gen = torch.Generator().manual_seed(5)
# uint8-valued 224x224 images survive the package's PIL round trip unchanged
exact = torch.randint(0, 256, (2, 3, 224, 224), generator=gen).float() / 255
exact[1] = (exact[1] * 255 // 4).round() / 255  # a dark image next to a mid-grey one
# other sizes: PIL's bicubic resize on uint8 vs torch's antialiased bicubic on floats
resized = torch.randint(0, 256, (2, 3, 256, 300), generator=gen).float() / 255
x = exact.clone().requires_grad_(True)
scores = reward(x)
scores.sum().backward()
alone = torch.cat([reward(exact[i:i + 1]) for i in range(2)])

errors = {}
state = torch.load(folder / "ImageReward.pt", weights_only=True)
torch.save({k: v for k, v in state.items() if not k.startswith("mlp.")}, "no_mlp.pt")
try:
    load_image_reward("no_mlp.pt", folder / "med_config.json", PROMPT)
except RewardLoadError as err:
    errors["no_mlp"] = str(err)
try:
    load_image_reward(folder / "ImageReward.pt", folder / "med_config.json", PROMPT, tokenizer_folder="nowhere")
except RewardLoadError as err:
    errors["no_tokenizer"] = str(err)

report({"mode": "scored", "transformers": transformers.__version__,
        "ours": scores.detach().tolist(), "package": package_scores(exact).tolist(),
        "ours_resized": reward(resized).tolist(), "package_resized": package_scores(resized).tolist(),
        "alone": alone.tolist(), "grad_finite": bool(torch.isfinite(x.grad).all()),
        "grad_sum": float(x.grad.abs().sum()), "package_mean_std": [package_model.mean, package_model.std],
        "our_mean_std": [IMAGE_REWARD_MEAN, IMAGE_REWARD_STD], "differentiable": reward.differentiable,
        "errors": errors})
"""


def test_image_reward_tiny_blip_matches_package_score(tmp_path):
    python = require_python("PSI_EXTRAS_PYTHON")
    body = IMAGE_REWARD_BODY % {"prompt": PROMPT, "tests": str(ROOT / "tests" / "rewards")}
    out = run_script(python, body, tmp_path=tmp_path, timeout=300)
    if out["mode"] != "scored":
        # transformers >= 4.56: the loader must refuse with the reason, not a traceback
        assert out["mode"] == "unavailable", out
        message = out["message"]
        assert f"cannot run with transformers {out['transformers']}" in message
        assert "apply_chunking_to_forward" in message and "transformers <= 4.55" in message
        assert "med.py" in message
        return
    assert out["package_mean_std"] == out["our_mean_std"]
    # same weights, same 224x224 pixels: float32 round-off only (seen: 4e-7 on scores near -1.8)
    assert out["ours"] == pytest.approx(out["package"], abs=2e-5)
    assert abs(out["package"][0] - out["package"][1]) > 1e-2  # the images score differently
    assert out["alone"] == pytest.approx(out["ours"], abs=2e-5)
    # 256x300 -> 224: PIL resizes uint8 pixels, this pack resizes floats, differentiably
    # (seen: 2.3e-4, against a spread of 0.06 between the two images)
    assert out["ours_resized"] == pytest.approx(out["package_resized"], abs=2e-3)
    assert out["grad_finite"] and out["grad_sum"] > 0 and out["differentiable"]
    assert "the mlp.* weights do not fit" in out["errors"]["no_mlp"]
    assert "Missing key(s)" in out["errors"]["no_mlp"] and "THUDM/ImageReward" in out["errors"]["no_mlp"]
    assert "google-bert/bert-base-uncased" in out["errors"]["no_tokenizer"]
