"""Held-out scorers: PickScore on a tiny CLIPModel; optional packages give clear messages."""

import json
import sys

import pytest
import torch

from rewards_testing import assert_batch_equals_single, input_gradient, rand_images
from psi_sampler.rewards.heldout import (
    PromptSimilarityReward,
    load_hpsv2,
    load_image_reward,
    load_pickscore,
    pickscore_reward,
)
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


def test_optional_packages_missing(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "open_clip", None)
    monkeypatch.setitem(sys.modules, "ImageReward", None)
    with pytest.raises(RewardUnavailableError) as info:
        load_hpsv2(tmp_path / "HPS_v2.1_compressed.pt", PROMPT)
    assert "The HPSv2 scorer needs the Python package `open_clip`" in str(info.value)
    assert "Install open_clip_torch (an optional extra" in str(info.value)
    with pytest.raises(RewardUnavailableError) as info:
        load_image_reward(tmp_path / "ImageReward.pt", tmp_path / "med_config.json", PROMPT)
    assert "needs the Python package `ImageReward` (pip name image-reward)" in str(info.value)
    assert "transformers <= 4.55" in str(info.value)


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
