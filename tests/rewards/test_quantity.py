"""Soft count and count reward on constructed logits; tiny Grounding DINO end to end; T2ICount hook."""

import pytest
import torch

from rewards_testing import assert_batch_equals_single, input_gradient, rand_images
from psi_sampler.rewards.grounding import TransformersGroundingDino
from psi_sampler.rewards.loading import RewardLoadError
from psi_sampler.rewards.quantity import QuantityReward, count_reward, soft_count
from psi_sampler.rewards.t2icount import read_t2icount_checkpoint
from psi_sampler.rewards.targets import CountTarget


def test_soft_count_increases_with_detections():
    counts = []
    for detected in range(6):
        logits = torch.full((1, 20, 1), -8.0)
        logits[0, :detected, 0] = 3.0
        counts.append(soft_count(logits, threshold_logit=-0.619, temperature=0.1)[0, 0].item())
    assert all(b > a for a, b in zip(counts, counts[1:]))
    torch.testing.assert_close(torch.tensor(counts), torch.arange(6.0), atol=1e-6, rtol=0)
    # one count per phrase
    logits = torch.tensor([[[3.0, -8.0], [3.0, 3.0], [-8.0, -8.0]]])
    torch.testing.assert_close(soft_count(logits, 0.0, 0.1), torch.tensor([[2.0, 1.0]]), atol=1e-6, rtol=0)


def test_count_reward_is_negative_smooth_l1():
    targets = torch.tensor([2.0, 3.0])
    counts = torch.tensor([[2.0, 3.0], [5.0, 3.0], [2.5, 3.0], [0.0, 6.0]])
    expected = torch.tensor([0.0, -2.5, -0.125, -(1.5 + 2.5)])
    torch.testing.assert_close(count_reward(counts, targets), expected)


def test_quantity_reward_tiny_grounding_dino(tiny_grounding_dino):
    model, tokenizer = tiny_grounding_dino
    detector = TransformersGroundingDino(model, tokenizer, shortest=96, longest=128)
    reward = QuantityReward(detector, CountTarget.build(["eggs", "apple"], [3, 1]), temperature=0.5)
    images = rand_images(3, 64, 64, seed=21)
    assert (reward(images) <= 0).all()
    counts = reward.counts(images)
    assert counts.shape == (3, 2) and (counts >= 0).all() and (counts <= 24).all()
    assert_batch_equals_single(reward, images, atol=1e-4)
    input_gradient(reward, images)


@pytest.mark.parametrize("kwargs, pattern", [
    ({"box_threshold": 1.0}, r"box_threshold must be in \(0.0, 1.0\); got 1.0"),
    ({"box_threshold": 1.5}, r"box_threshold must be in \(0.0, 1.0\); got 1.5"),
    ({"temperature": -1}, "temperature must be a finite number > 0; got -1"),
    ({"beta": float("nan")}, "beta must be a finite number > 0; got nan"),
])
def test_bad_settings(tiny_grounding_dino, kwargs, pattern):
    model, tokenizer = tiny_grounding_dino
    detector = TransformersGroundingDino(model, tokenizer)
    with pytest.raises(ValueError, match=pattern):
        QuantityReward(detector, CountTarget.build(["eggs"], [3]), **kwargs)


def test_t2icount_hook(tmp_path):
    with pytest.raises(RewardLoadError) as info:
        read_t2icount_checkpoint(tmp_path / "best_model_paper.pth")
    assert "T2ICount" in str(info.value) and "best_model_paper.pth" in str(info.value)
    (tmp_path / "best_model_paper.pth").write_bytes(b"x")
    with pytest.raises(RewardLoadError, match="not a readable PyTorch weights file"):
        read_t2icount_checkpoint(tmp_path / "best_model_paper.pth")
