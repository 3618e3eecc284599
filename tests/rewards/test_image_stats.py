"""Image statistics: known values on constructed images, gradients, goals."""

import pytest
import torch

from rewards_testing import assert_batch_equals_single, input_gradient, rand_images
from psi_sampler.rewards.image_stats import (
    ImageStatReward,
    brightness,
    color_closeness,
    colorfulness,
    contrast,
    parse_color,
    saturation,
    sharpness,
)


def solid(r, g, b, size=8):
    return torch.tensor([r, g, b], dtype=torch.float32).view(1, 3, 1, 1).expand(1, 3, size, size).clone()


def checkerboard(size=8):
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    return ((yy + xx) % 2).float().view(1, 1, size, size).expand(1, 3, size, size).clone()


def test_known_values():
    gray, red, board = solid(0.5, 0.5, 0.5), solid(1, 0, 0), checkerboard()
    halves = torch.zeros(1, 3, 8, 8)
    halves[..., 4:] = 1.0
    close = lambda a, b: torch.testing.assert_close(a, torch.tensor([b]), atol=1e-4, rtol=0)  # noqa: E731
    close(brightness(gray), 0.5)
    close(brightness(red), 0.299)
    close(contrast(gray), 0.0)
    close(contrast(halves), 0.5)
    close(saturation(gray), 0.0)
    close(saturation(red), 1.0)
    close(saturation(solid(1.0, 0.5, 0.5)), 0.5)
    close(colorfulness(gray), 0.0)
    close(colorfulness(red), 0.3 * (1 + 0.25) ** 0.5)
    close(sharpness(gray), 0.0)
    close(sharpness(board), 16.0)
    close(color_closeness(red, (1, 0, 0)), 1.0)
    close(color_closeness(solid(0, 0, 0), (1, 1, 1)), 0.0)
    close(color_closeness(gray, (1, 0.5, 0.5)), 1 - 0.25 / 3)


@pytest.mark.parametrize("statistic", ["brightness", "contrast", "saturation", "colorfulness", "sharpness", "color"])
def test_rewards_are_differentiable_and_batched(statistic):
    reward = ImageStatReward(statistic, color="#ff8000" if statistic == "color" else None)
    images = rand_images(3, 20, 24, seed=31)
    assert_batch_equals_single(reward, images, atol=1e-6)
    input_gradient(reward, images)


def test_goals():
    images = torch.cat([solid(0.2, 0.2, 0.2), solid(0.7, 0.7, 0.7)])
    torch.testing.assert_close(ImageStatReward("brightness")(images), torch.tensor([0.2, 0.7]))
    torch.testing.assert_close(ImageStatReward("brightness", "minimize")(images), torch.tensor([-0.2, -0.7]))
    torch.testing.assert_close(ImageStatReward("brightness", "target", 0.6)(images), torch.tensor([-0.4, -0.1]))
    assert parse_color("#FF0080") == (1.0, 0.0, 128 / 255)


@pytest.mark.parametrize("kwargs, pattern", [
    ({"statistic": "loudness"}, "statistic must be one of"),
    ({"statistic": "brightness", "goal": "best"}, "goal must be one of"),
    ({"statistic": "brightness", "goal": "target"}, "needs a target"),
    ({"statistic": "brightness", "goal": "target", "target": float("inf")}, "target must be a finite number; got inf"),
    ({"statistic": "color"}, "needs a color"),
    ({"statistic": "color", "color": "#12345"}, "#rrggbb"),
    ({"statistic": "color", "color": (1.2, 0, 0)}, r"color component 0 must be in \[0.0, 1.0\]; got 1.2"),
])
def test_bad_settings(kwargs, pattern):
    with pytest.raises(ValueError, match=pattern):
        ImageStatReward(**kwargs)
