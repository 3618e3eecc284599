"""Weighted sums and the registry used by the node layer."""

import pytest
import torch

from rewards_testing import HEAD_PATH, rand_images
from psi_sampler.rewards import REWARD_KINDS, build_reward, describe_kinds
from psi_sampler.rewards.combine import WeightedSum
from psi_sampler.rewards.grounding import TransformersGroundingDino
from psi_sampler.rewards.image_stats import ImageStatReward
from psi_sampler.rewards.layout import LayoutReward
from psi_sampler.rewards.quantity import QuantityReward


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
    ([ImageStatReward("brightness")], [float("nan")], "weight 0 .* must be finite"),
    ([ImageStatReward("brightness")], [0.0], "all zero"),
])
def test_weighted_sum_validation(rewards, weights, pattern):
    error = TypeError if pattern is None else ValueError
    with pytest.raises(error, match=pattern or "must be a Reward"):
        WeightedSum(rewards, weights)


def test_shared_detector_modules_listed_once(tiny_grounding_dino):
    model, tokenizer = tiny_grounding_dino
    detector = TransformersGroundingDino(model, tokenizer, 96, 128)
    layout = build_reward("layout", phrases=["cat"], boxes=[[0.1, 0.1, 0.6, 0.6]], detector=detector)
    quantity = build_reward("quantity", objects=["cat"], counts=[2], detector=detector)
    assert isinstance(layout, LayoutReward) and isinstance(quantity, QuantityReward)
    total = build_reward("weighted_sum", rewards=[layout, quantity], weights=[1.0, 0.1])
    assert len(total.modules()) == 1
    assert total.memory_bytes() == layout.memory_bytes()


def test_registry_specs_and_errors(tmp_path):
    assert set(REWARD_KINDS) == {"aesthetic", "layout", "quantity", "image_stat", "pickscore", "hpsv2",
                                 "imagereward", "weighted_sum"}
    for kind in REWARD_KINDS.values():
        names = [p.name for p in kind.params]
        assert len(names) == len(set(names))
        assert kind.describe().startswith(kind.kind)
    assert "head_path" in describe_kinds()
    stat = build_reward("image_stat", statistic="contrast", goal="target", target=0.2)
    assert isinstance(stat, ImageStatReward) and stat.target == 0.2
    with pytest.raises(ValueError, match="unknown reward kind"):
        build_reward("beauty")
    with pytest.raises(ValueError, match="has no parameter"):
        build_reward("image_stat", colour="#fff000")
    with pytest.raises(ValueError, match="needs the parameter 'phrases'"):
        build_reward("layout", boxes=[[0, 0, 1, 1]])
    with pytest.raises(ValueError, match="goal must be one of"):
        build_reward("image_stat", goal="best")
    with pytest.raises(ValueError, match="temperature must be >= 1e-06"):
        build_reward("layout", phrases=["cat"], boxes=[[0, 0, 1, 1]], temperature=0.0)
    # targets are checked before any weights are looked for
    with pytest.raises(ValueError, match="outside the image"):
        build_reward("layout", phrases=["cat"], boxes=[[0, 0, 2, 1]], box_units="normalized",
                     grounding_dino_folder=tmp_path / "absent")
    with pytest.raises(ValueError, match="must be >= 0"):
        build_reward("quantity", objects=["cat"], counts=[-2], grounding_dino_folder=tmp_path / "absent")
    with pytest.raises(ValueError, match="grounding_dino_folder"):
        build_reward("layout", phrases=["cat"], boxes=[[0, 0, 1, 1]])


@pytest.mark.skipif(not HEAD_PATH.is_file(), reason="aesthetic head weights not present")
def test_registry_builds_aesthetic_from_a_vision_callable():
    vision = lambda pixels: pixels.mean(dim=(2, 3)).repeat(1, 256)  # noqa: E731
    reward = build_reward("aesthetic", head_path=HEAD_PATH, vision=vision)
    assert reward(rand_images(2, 32, 32)).shape == (2,)
