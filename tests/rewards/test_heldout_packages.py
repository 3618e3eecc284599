"""HPSv2 and ImageReward with their real packages, in the interpreter named by PSI_EXTRAS_PYTHON.

Each test builds a tiny random configuration of the real architecture with the package's
own classes (open_clip: a registered config with ViT-H-14's structure scaled down;
image-reward: its BLIP VisionTransformer, its BLIP BertModel from a tiny med_config and
its ImageReward class with MLP), writes the files our loaders read and the package's own
scores, and compares them with the loaders' scores.

HPS v2 is loaded in that interpreter. image-reward 1.5 runs only on transformers <= 4.55
(its med.py imports names 4.56 removed), so the side interpreter builds and scores the
ImageReward oracle, and this pack's ImageReward, built on transformers' own BLIP classes,
loads the saved files in the test's own interpreter (transformers 5).
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


IMAGE_REWARD_PACKAGE_BODY = r"""
import json
import sys
from pathlib import Path

import numpy as np
import torch
import transformers
from PIL import Image

sys.path.insert(0, %(tests)r)
from rewards_testing import bert_vocab, blip_stand_in, image_reward_package

PROMPT = %(prompt)r
folder = Path(%(folder)r)
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
              "model_type": "bert", "num_attention_heads": 12, "num_hidden_layers": 2, "pad_token_id": 0,
              "type_vocab_size": 2, "vocab_size": len(tokenizer), "encoder_width": 128,
              "add_cross_attention": True}
(folder / "med_config.json").write_text(json.dumps(med_config))

torch.manual_seed(0)
ir_module.BLIP_Pretrain = blip_stand_in(vit, med, folder / "med_config.json", patch_size=32, embed_dim=128,
                                        depth=2, num_heads=2, tokenizer=tokenizer)
package_model = ir_module.ImageReward(med_config=str(folder / "med_config.json"), device="cpu").eval()
# the package's init gives near-constant scores, unit layer norms and zero biases: randomise
# them so that a swapped, dropped or unused tensor shows in the scores
with torch.no_grad():
    for name, p in package_model.named_parameters():
        if name.startswith("mlp."):
            p.normal_(0.0, 0.08)
        elif "norm" in name.lower() and name.endswith("weight"):
            p.normal_(1.0, 0.1)
        elif name.endswith("bias"):
            p.normal_(0.0, 0.02)
torch.save(package_model.state_dict(), folder / "ImageReward.pt")

gen = torch.Generator().manual_seed(5)
# uint8-valued 224x224 images pass the package's PIL preprocessing (resize, crop) unchanged
exact = torch.randint(0, 256, (3, 3, 224, 224), generator=gen).float() / 255
exact[1] = (exact[1] * 255 // 4).round() / 255  # a dark image next to a mid-grey one
exact[2] = (exact[2] * 255 // 2 + 100).round() / 255
# another size: PIL's bicubic resize on uint8 vs torch's antialiased bicubic on floats
resized = torch.randint(0, 256, (2, 3, 256, 300), generator=gen).float() / 255
torch.save({"exact": exact, "resized": resized}, folder / "images.pt")

def package_scores(images):
    pixels = (images * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    with torch.no_grad():
        return [package_model.score(PROMPT, Image.fromarray(p)) for p in pixels]

report({"transformers": transformers.__version__, "package_mean_std": [package_model.mean, package_model.std],
        "exact": package_scores(exact), "resized": package_scores(resized)})
"""


def test_image_reward_on_transformers_5_equals_package_score(tmp_path):
    """A tiny random ImageReward built by image-reward 1.5 (transformers <= 4.55, side interpreter),
    scored by the package's own `score()`, then loaded here (this venv's transformers 5) from the
    saved state dict through transformers' BLIP classes and scored on the same images."""
    import torch
    import transformers

    from psi_sampler.rewards.image_reward import IMAGE_REWARD_MEAN, IMAGE_REWARD_STD, load_image_reward

    python = require_python("PSI_EXTRAS_PYTHON")
    folder = tmp_path / "ImageReward"
    folder.mkdir()
    body = IMAGE_REWARD_PACKAGE_BODY % {"prompt": PROMPT, "tests": str(ROOT / "tests" / "rewards"),
                                        "folder": str(folder)}
    package = run_script(python, body, tmp_path=tmp_path, timeout=300)
    assert package["transformers"].startswith("4."), package["transformers"]
    assert int(transformers.__version__.split(".")[0]) >= 5, transformers.__version__
    assert package["package_mean_std"] == [IMAGE_REWARD_MEAN, IMAGE_REWARD_STD]

    reward = load_image_reward(folder / "ImageReward.pt", folder / "med_config.json", PROMPT)
    images = torch.load(folder / "images.pt", weights_only=True)
    with torch.no_grad():
        ours = reward(images["exact"])
        ours_resized = reward(images["resized"])
    expected = torch.tensor(package["exact"])
    # fixed before the first run: the same float32 math in another order, 1e-4 relative to the scale
    tolerance = 1e-4 * max(1.0, float(expected.abs().max()))
    diff = float((ours - expected).abs().max())
    print(f"ImageReward on transformers {transformers.__version__} vs image-reward 1.5 score() on "
          f"transformers {package['transformers']}: max abs diff {diff:.3g}, max rel diff "
          f"{float(((ours - expected).abs() / expected.abs()).max()):.3g} (scores {expected.tolist()})")
    assert diff <= tolerance, (ours.tolist(), expected.tolist())
    assert float(expected.max() - expected.min()) > 1e-2  # the images score differently
    # 256x300 -> 224: PIL resizes uint8 pixels, this pack resizes floats, differentiably
    assert ours_resized.tolist() == pytest.approx(package["resized"], abs=2e-3)
