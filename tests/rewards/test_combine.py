"""Weighted sums, and the rewards built the way the reward nodes build them: each from its
own module (a constructor over a detector, a loader over files), checking its settings
and targets before any weights are looked for."""

import pytest
import torch

from rewards_testing import HEAD_PATH, rand_images
from psi_sampler.rewards.aesthetic import AestheticReward, load_aesthetic_head
from psi_sampler.rewards.combine import WeightedSum
from psi_sampler.rewards.grounding import TransformersGroundingDino, load_grounding_dino
from psi_sampler.rewards.image_stats import ImageStatReward
from psi_sampler.rewards.layout import LayoutReward
from psi_sampler.rewards.loading import RewardLoadError
from psi_sampler.rewards.quantity import QuantityReward
from psi_sampler.rewards.targets import CountTarget, LayoutTarget


class _NoGrad(ImageStatReward):
    differentiable = False


def test_weighted_sum_values_and_flags():
    bright, sat = ImageStatReward("brightness"), ImageStatReward("saturation")
    images = rand_images(2, 8, 8, seed=51)
    total = WeightedSum([bright, sat], [2.0, -0.5])
    torch.testing.assert_close(total(images), 2 * bright(images) - 0.5 * sat(images))
    assert total.differentiable
    assert not WeightedSum([bright, _NoGrad("contrast")]).differentiable
    assert total.parts(images).shape == (2, 2)
    assert "2 * [brightness: maximize]" in total.describe()


@pytest.mark.parametrize("rewards, weights, pattern", [
    ([], None, "at least one reward"),
    (["x"], [1.0], None),
    ([ImageStatReward("brightness")], [1.0, 2.0], "one weight per reward"),
    ([ImageStatReward("brightness")], [float("nan")], "weight 0 .* must be a finite number; got nan"),
    ([ImageStatReward("brightness")], [0.0], "all zero"),
])
def test_weighted_sum_validation(rewards, weights, pattern):
    error = TypeError if pattern is None else ValueError
    with pytest.raises(error, match=pattern or "must be a Reward"):
        WeightedSum(rewards, weights)


def test_shared_detector_modules_listed_once(tiny_grounding_dino):
    model, tokenizer = tiny_grounding_dino
    detector = TransformersGroundingDino(model, tokenizer, 96, 128)
    layout = LayoutReward(detector, LayoutTarget.build(["cat"], [[0.1, 0.1, 0.6, 0.6]]))
    quantity = QuantityReward(detector, CountTarget.build(["cat"], [2]))
    total = WeightedSum([layout, quantity], [1.0, 0.1])
    assert len(total.modules()) == 1
    assert total.memory_bytes() == layout.memory_bytes()


def test_settings_and_targets_refused_with_the_value_named(tmp_path):
    stat = ImageStatReward(statistic="contrast", goal="target", target=0.2)
    assert stat.target == 0.2
    with pytest.raises(ValueError, match="goal must be one of .*'best'"):
        ImageStatReward("brightness", goal="best")
    target = LayoutTarget.build(["cat"], [[0, 0, 1, 1]])
    with pytest.raises(ValueError, match="temperature must be a finite number > 0; got 0.0"):
        LayoutReward(_NoDetector(), target, temperature=0.0)
    # targets are checked on their own, before a node looks for any weights
    with pytest.raises(ValueError, match="outside the image"):
        LayoutTarget.build(["cat"], [[0, 0, 2, 1]], "normalized")
    with pytest.raises(ValueError, match=r"count 0 \('cat'\) must be a finite number >= 0; got -2"):
        CountTarget.build(["cat"], [-2])
    with pytest.raises(RewardLoadError, match="folder not found"):
        load_grounding_dino(tmp_path / "absent")


class _NoDetector:
    """A detector whose settings are refused before it is asked for anything."""

    def encode(self, phrases):
        raise AssertionError("the settings must be checked before the detector is used")

    detect = modules = encode


@pytest.mark.skipif(not HEAD_PATH.is_file(), reason="aesthetic head weights not present")
def test_aesthetic_from_a_vision_callable():
    vision = lambda pixels: pixels.mean(dim=(2, 3)).repeat(1, 256)  # noqa: E731
    reward = AestheticReward(vision, load_aesthetic_head(HEAD_PATH))
    assert reward(rand_images(2, 32, 32)).shape == (2,)
