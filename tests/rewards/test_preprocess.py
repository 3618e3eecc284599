"""Differentiable preprocessing lines up with transformers' (PIL) processors."""

import numpy as np
import pytest
import torch
from PIL import Image

from rewards_testing import rand_images
from psi_sampler.rewards.preprocess import clip_style, detector_style, shortest_side_size


@pytest.mark.parametrize("height, width", [(20, 20), (300, 200), (150, 190), (40, 1000), (2049, 777), (800, 1333)])
def test_sizes_match_transformers(height, width):
    from transformers.image_transforms import get_resize_output_image_size, get_size_with_aspect_ratio

    assert shortest_side_size(height, width, 800, 1333) == tuple(get_size_with_aspect_ratio((height, width), 800, 1333))
    expected = get_resize_output_image_size(
        np.zeros((height, width, 3)), 224, default_to_square=False, input_data_format="channels_last"
    )
    assert shortest_side_size(height, width, 224) == tuple(expected)


@pytest.mark.parametrize("style", ["clip", "detector"])
def test_pixels_match_pil_processors(style):
    """Same pixels as the processors up to their uint8 rounding (smooth image, no overshoot)."""
    from transformers import CLIPImageProcessorPil, GroundingDinoImageProcessorPil

    smooth = torch.nn.functional.avg_pool2d(rand_images(1, 154, 204, seed=1), 5, 1)  # 150 x 200
    x = (smooth * 255).round() / 255
    pil = Image.fromarray((x[0].permute(1, 2, 0) * 255).round().byte().numpy())
    if style == "clip":
        processor, ours = CLIPImageProcessorPil(), clip_style(x)
    else:
        processor, ours = GroundingDinoImageProcessorPil(), detector_style(x)
    ref = torch.as_tensor(np.array(processor(images=pil, return_tensors="np")["pixel_values"]))
    assert ref.shape == ours.shape
    assert (ref - ours).abs().max() < 0.03  # about 2/255 over the std
    assert (ref - ours).abs().mean() < 0.01


def test_preprocessing_is_differentiable():
    x = rand_images(2, 50, 70).requires_grad_(True)
    (clip_style(x, 32).sum() + detector_style(x, 40, 60).sum()).backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
