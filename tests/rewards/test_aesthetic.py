"""Aesthetic reward: real head weights vs plain matmuls; tiny CLIP ViT forward/backward; loaders."""

import pytest
import torch

from rewards_testing import HEAD_PATH, assert_batch_equals_single, input_gradient, rand_images
from psi_sampler.rewards.aesthetic import AestheticReward, load_aesthetic_head, load_aesthetic_reward
from psi_sampler.rewards.clip import ClipImageEmbedder
from psi_sampler.rewards.loading import RewardLoadError
from psi_sampler.rewards.preprocess import CLIP_MEAN, CLIP_STD

pytestmark = pytest.mark.skipif(not HEAD_PATH.is_file(), reason="aesthetic head weights not present")


def reference_head(embeds: torch.Tensor) -> torch.Tensor:
    """Independent computation from the raw state dict: plain matmuls, no modules."""
    state = {k: v.double() for k, v in torch.load(HEAD_PATH, map_location="cpu", weights_only=True).items()}
    x = embeds.double() / embeds.double().norm(dim=-1, keepdim=True)
    for index in (0, 2, 4, 6, 7):
        x = x @ state[f"layers.{index}.weight"].T + state[f"layers.{index}.bias"]
    return x[:, 0]


def test_real_head_matches_reference_matmuls():
    head = load_aesthetic_head(HEAD_PATH)
    assert not head.training and not any(p.requires_grad for p in head.parameters())
    gen = torch.Generator().manual_seed(3)
    embeds = torch.randn(5, 768, generator=gen, dtype=torch.float64)
    expected = reference_head(embeds).float()
    got = head(torch.nn.functional.normalize(embeds.float(), dim=-1))
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def test_reward_with_any_vision_callable_matches_reference():
    # a fixed linear "vision tower" on the mean colour: checks preprocessing + normalisation + head
    gen = torch.Generator().manual_seed(4)
    proj = torch.randn(3, 768, generator=gen)

    def vision(pixels):
        assert pixels.shape[-2:] == (224, 224)
        return pixels.mean(dim=(2, 3)) @ proj

    reward = AestheticReward(vision, HEAD_PATH)
    images = rand_images(3, 300, 200, seed=5)
    # hand-made CLIP preprocessing for the reference: resize shortest side, centre crop, normalise
    resized = torch.nn.functional.interpolate(images, size=(336, 224), mode="bicubic", antialias=True)
    top = (336 - 224) // 2
    crop = resized[:, :, top : top + 224, :]
    mean = torch.tensor(CLIP_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(CLIP_STD).view(1, 3, 1, 1)
    expected = reference_head(((crop - mean) / std).mean(dim=(2, 3)) @ proj).float()
    torch.testing.assert_close(reward(images), expected, atol=1e-4, rtol=1e-5)
    assert_batch_equals_single(reward, images)


def test_tiny_clip_forward_backward_and_batching(tiny_clip_vision):
    reward = AestheticReward(ClipImageEmbedder(tiny_clip_vision), HEAD_PATH)
    reward.image_size = 32  # tiny config's input size
    images = rand_images(3, 48, 40, seed=6)
    assert_batch_equals_single(reward, images, atol=1e-5)
    grad = input_gradient(reward, images)
    assert grad.shape == images.shape
    assert reward.memory_bytes() > 0 and len(reward.modules()) == 2


def test_loader_from_folders(tmp_path, tiny_clip_vision):
    from transformers import CLIPModel, CLIPVisionModelWithProjection

    vision_dir = tmp_path / "clip_vision"
    tiny_clip_vision.save_pretrained(vision_dir)
    reward = load_aesthetic_reward(vision_dir, HEAD_PATH)
    reward.image_size = 32
    images = rand_images(2, 32, 32, seed=7)
    direct = AestheticReward(ClipImageEmbedder(tiny_clip_vision), HEAD_PATH)
    direct.image_size = 32
    torch.testing.assert_close(reward(images), direct(images))
    assert isinstance(reward.vision.model, CLIPVisionModelWithProjection)

    # a full CLIPModel folder (as openai/clip-vit-large-patch14 ships) loads too
    from rewards_testing import seeded, tiny_clip_config

    with seeded(8):
        full = CLIPModel(tiny_clip_config())
    full.save_pretrained(tmp_path / "clip_full")
    from_full = load_aesthetic_reward(tmp_path / "clip_full", HEAD_PATH)
    from_full.image_size = 32
    expected = AestheticReward(ClipImageEmbedder(full.eval()), HEAD_PATH)
    expected.image_size = 32
    torch.testing.assert_close(from_full(images), expected(images))


def test_loader_errors(tmp_path):
    with pytest.raises(RewardLoadError) as info:
        load_aesthetic_reward(tmp_path / "missing_clip", HEAD_PATH)
    assert "openai/clip-vit-large-patch14" in str(info.value) and "missing_clip" in str(info.value)
    with pytest.raises(TypeError, match="callable"):
        AestheticReward("not callable", HEAD_PATH)
