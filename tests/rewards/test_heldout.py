"""Held-out scorers: PickScore on a tiny CLIPModel; ImageReward on transformers' BLIP classes
(its equality with image-reward's own score() is in test_heldout_packages.py); the optional
package HPS v2 needs gives a clear message."""

import importlib.util
import json
import sys
from pathlib import Path

import pytest
import torch

from rewards_testing import assert_batch_equals_single, input_gradient, rand_images
from psi_sampler.rewards.heldout import (
    PromptSimilarityReward,
    load_hpsv2,
    load_pickscore,
    pickscore_reward,
)
from psi_sampler.rewards.image_reward import VISION_NAMES, load_image_reward, rename_vision_key
from psi_sampler.rewards.loading import RewardLoadError, RewardUnavailableError
from psi_sampler.rewards.preprocess import CLIP_MEAN, CLIP_STD, clip_style, letterbox, normalize, resize

PROMPT = "a red cat on the table"


def reference_pickscore(model, tokenizer, images, size):
    tokens = tokenizer([PROMPT], padding="max_length", max_length=77, truncation=True, return_tensors="pt")
    out = model(input_ids=tokens["input_ids"], attention_mask=tokens["attention_mask"],
                pixel_values=clip_style(images, size))
    return out.logits_per_image[:, 0]


def test_pickscore_matches_clip_logits(tiny_clip_model):
    model, tokenizer = tiny_clip_model
    reward = pickscore_reward(model, tokenizer, PROMPT, image_size=32)
    images = rand_images(3, 40, 48, seed=41)
    torch.testing.assert_close(reward(images), reference_pickscore(model, tokenizer, images, 32), atol=1e-5, rtol=1e-5)
    assert_batch_equals_single(reward, images)
    input_gradient(reward, images)
    assert reward.differentiable and PROMPT in reward.describe()


def test_pickscore_loader(tmp_path, tiny_clip_model):
    model, tokenizer = tiny_clip_model
    model.save_pretrained(tmp_path / "pickscore")
    tokenizer.save_pretrained(tmp_path / "processor")
    (tmp_path / "processor" / "preprocessor_config.json").write_text(json.dumps(
        {"crop_size": {"height": 32, "width": 32}, "image_mean": [0.5, 0.5, 0.5], "image_std": [0.25, 0.25, 0.25]}
    ))
    reward = load_pickscore(tmp_path / "pickscore", PROMPT, tmp_path / "processor")
    assert reward.image_size == 32 and reward.mean == (0.5, 0.5, 0.5)
    images = rand_images(2, 32, 32, seed=42)
    expected = pickscore_reward(model, tokenizer, PROMPT, 32, (0.5,) * 3, (0.25,) * 3)(images)
    torch.testing.assert_close(reward(images), expected)
    with pytest.raises(RewardLoadError) as info:
        load_pickscore(tmp_path / "pickscore", PROMPT)  # the model folder has no tokenizer
    assert "laion/CLIP-ViT-H-14-laion2B-s32B-b79K" in str(info.value)
    with pytest.raises(RewardLoadError, match="yuvalkirstain/PickScore_v1"):
        load_pickscore(tmp_path / "absent", PROMPT)
    with pytest.raises(ValueError, match="prompt must be a non-empty string"):
        pickscore_reward(model, tokenizer, "  ")


def test_optional_package_missing(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "open_clip", None)
    with pytest.raises(RewardUnavailableError) as info:
        load_hpsv2(tmp_path / "HPS_v2.1_compressed.pt", PROMPT)
    assert "The HPSv2 scorer needs the Python package `open_clip`" in str(info.value)
    assert "Install open_clip_torch (an optional extra" in str(info.value)


# --------------------------------------------------------------------------- ImageReward

_TINY = Path(__file__).resolve().parents[1] / "host" / "reward_fixtures" / "psi_heldout_fixtures" / "tiny_image_reward.py"
_spec = importlib.util.spec_from_file_location("tiny_image_reward", _TINY)
tiny_image_reward = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(tiny_image_reward)


@pytest.fixture(scope="module")
def image_reward_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("image_reward")
    return tiny_image_reward.save_tiny_image_reward(folder, seed=3), folder / "med_config.json"


def test_image_reward_vit_names_map_both_ways():
    """BLIP's ViT-L/16 names (timm) <-> BlipVisionModel's, for every tensor of a 24-block ViT."""
    from transformers import BlipVisionConfig, BlipVisionModel

    assert rename_vision_key("blocks.23.attn.qkv.weight") == "encoder.layers.23.self_attn.qkv.weight"
    assert rename_vision_key("blocks.0.attn.proj.bias") == "encoder.layers.0.self_attn.projection.bias"
    assert rename_vision_key("norm.weight") == "post_layernorm.weight"
    assert rename_vision_key("cls_token") == "embeddings.class_embedding"
    assert rename_vision_key("post_layernorm.bias", to_transformers=False) == "norm.bias"
    for unknown in ("blocks.0.attn.qkv.scale", "head.weight", "xblocks.0.norm1.weight", "norm.weight.extra"):
        assert rename_vision_key(unknown) is None, unknown
    config = BlipVisionConfig(hidden_size=64, intermediate_size=64, num_hidden_layers=24, num_attention_heads=1,
                              image_size=32, patch_size=16)
    names = list(BlipVisionModel(config).state_dict())
    package = [rename_vision_key(n, to_transformers=False) for n in names]
    assert None not in package and len(set(package)) == len(names) == 2 + 2 + 24 * 12 + 2
    assert [rename_vision_key(n) for n in package] == names
    assert {p.split(".")[0] for p in package} == {"cls_token", "pos_embed", "patch_embed", "blocks", "norm"}
    assert len(VISION_NAMES) == 10


def test_image_reward_scores_batches_and_gradients(image_reward_files):
    checkpoint, med_config = image_reward_files
    reward = load_image_reward(checkpoint, med_config, PROMPT)
    assert reward.differentiable and reward.image_size == 32 and PROMPT in reward.describe()
    images = rand_images(3, 40, 48, seed=44)
    scores = reward(images)
    assert scores.shape == (3,) and float(scores.max() - scores.min()) > 1e-3  # images score differently
    assert_batch_equals_single(reward, images)
    input_gradient(reward, images)
    other = load_image_reward(checkpoint, med_config, "a blue dog")
    assert float((other(images) - scores).abs().max()) > 1e-4  # the prompt matters


def test_image_reward_gradient_matches_finite_differences(image_reward_files):
    """d score / d image along random directions == central differences of the scorer itself."""
    checkpoint, med_config = image_reward_files
    reward = load_image_reward(checkpoint, med_config, PROMPT)
    gen = torch.Generator().manual_seed(45)
    images = 0.2 + 0.6 * torch.rand(2, 3, 36, 40, generator=gen)
    grad = input_gradient(reward, images)
    step = 1e-2
    for _ in range(3):
        direction = torch.randn(images.shape, generator=gen)
        with torch.no_grad():
            finite = (reward(images + step * direction) - reward(images - step * direction)).sum() / (2 * step)
        analytic = (grad * direction).sum()
        # float32 scores of magnitude ~1: round-off / step ~ 1e-4; curvature ~ step**2
        assert abs(float(finite - analytic)) <= 1e-3 + 1e-2 * abs(float(analytic)), (float(finite), float(analytic))


def test_image_reward_load_errors_name_the_file_and_the_keys(image_reward_files, tmp_path):
    checkpoint, med_config = image_reward_files
    state = torch.load(checkpoint, weights_only=True)

    def refused(state, config=med_config, **kwargs) -> str:
        path = tmp_path / "edited.pt"
        torch.save(state, path)
        with pytest.raises(RewardLoadError) as info:
            load_image_reward(path, config, PROMPT, **kwargs)
        message = str(info.value)
        assert "THUDM/ImageReward" in message or "bert-base-uncased" in message, message
        return message

    message = refused({k: v for k, v in state.items() if k != "mlp.layers.4.weight"})
    assert "missing keys ['mlp.layers.4.weight']" in message and str(tmp_path / "edited.pt") in message, message
    message = refused({k: v for k, v in state.items() if k != "blip.visual_encoder.blocks.1.attn.qkv.bias"})
    assert "missing keys ['blip.visual_encoder.blocks.1.attn.qkv.bias']" in message, message
    message = refused({**state, "blip.visual_encoder.blocks.0.attn.qkv.scale": torch.ones(1)})
    assert "unexpected keys ['blip.visual_encoder.blocks.0.attn.qkv.scale']" in message, message
    wide = dict(state)
    wide["blip.text_encoder.encoder.layer.0.intermediate.dense.weight"] = torch.zeros(65, 768)
    message = refused(wide)
    assert "wrong shapes ['blip.text_encoder.encoder.layer.0.intermediate.dense.weight: (65, 768) " \
           "(want (64, 768))']" in message, message
    message = refused({k: v for k, v in state.items() if not k.startswith("blip.visual_encoder.")})
    assert "not an ImageReward state dict (no 'blip.visual_encoder.cls_token')" in message, message
    config = json.loads(med_config.read_text())
    del config["num_hidden_layers"]
    (tmp_path / "med_config.json").write_text(json.dumps(config))
    (tmp_path / "vocab.txt").write_text((med_config.parent / "vocab.txt").read_text())
    message = refused(state, tmp_path / "med_config.json")
    assert "med_config.json lacks the integer fields ['num_hidden_layers']" in message, message
    message = refused(state, tokenizer_folder=tmp_path / "nowhere")
    assert "no vocab.txt or tokenizer.json" in message and "google-bert/bert-base-uncased" in message, message
    with pytest.raises(ValueError, match="prompt must be a non-empty string"):
        load_image_reward(checkpoint, med_config, " ")


def test_letterbox_pads_like_hpsv2():
    """HPS v2's fit: longest side to the size, black padding centred, then mean/std."""
    images = rand_images(2, 20, 40, seed=43)
    pixels = letterbox(images, 32)
    assert pixels.shape == (2, 3, 32, 32)
    black = normalize(torch.zeros(1, 3, 1, 1), CLIP_MEAN, CLIP_STD)
    # 20x40 -> 16x32, 8 rows of padding above and below
    torch.testing.assert_close(pixels[:, :, :8], black.expand(2, 3, 8, 32))
    torch.testing.assert_close(pixels[:, :, 24:], black.expand(2, 3, 8, 32))
    torch.testing.assert_close(pixels[:, :, 8:24], normalize(resize(images, (16, 32)), CLIP_MEAN, CLIP_STD))
    with pytest.raises(ValueError, match="fit must be one of \\('crop', 'pad'\\), got 'stretch'"):
        PromptSimilarityReward("x", lambda p: p.flatten(1), torch.ones(3), PROMPT, fit="stretch")
