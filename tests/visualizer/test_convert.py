"""Step choice, recorded latents and Pillow <-> ComfyUI IMAGE conversion."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from psi_sampler.visualizer import INITIAL, choose_steps, pil_to_tensor, recorded_latents, tensor_to_pil


@pytest.mark.parametrize("steps, rows, expected", [
    (25, 5, [0, 6, 12, 18, 24]), (25, 1, [24]), (3, 5, [0, 1, 2]), (0, 4, []), (10, 2, [0, 9]), (4, 4, [0, 1, 2, 3]),
])
def test_choose_steps(steps, rows, expected):
    assert choose_steps(steps, rows) == expected


@pytest.mark.parametrize("steps", [1, 2, 7, 25, 50, 101])
@pytest.mark.parametrize("rows", [1, 2, 3, 6, 8])
def test_choose_steps_properties(steps, rows):
    chosen = choose_steps(steps, rows)
    assert chosen[-1] == steps - 1 and len(chosen) == min(steps, rows)
    assert chosen == sorted(set(chosen)) and chosen[0] >= 0
    gaps = np.diff(chosen)
    assert len(gaps) == 0 or gaps.max() - gaps.min() <= 1  # evenly spaced


@pytest.mark.parametrize("steps, rows", [(-1, 3), (5, 0), (5, 1.5), (True, 3)])
def test_choose_steps_rejects_bad_input(steps, rows):
    with pytest.raises(ValueError):
        choose_steps(steps, rows)


def test_pil_tensor_round_trip():
    data = np.arange(2 * 5 * 7 * 3, dtype=np.uint8).reshape(2, 5, 7, 3)
    pictures = [Image.fromarray(frame, "RGB") for frame in data]
    tensor = pil_to_tensor(pictures)
    assert tensor.shape == (2, 5, 7, 3) and tensor.dtype == torch.float32
    assert float(tensor.min()) >= 0.0 and float(tensor.max()) <= 1.0
    back = tensor_to_pil(tensor)
    assert [np.asarray(p).tolist() for p in back] == data.tolist()
    assert pil_to_tensor(pictures[0]).shape == (1, 5, 7, 3)
    assert pil_to_tensor(Image.fromarray(data[0, ..., 0], "L")).shape == (1, 5, 7, 3)


def test_tensor_to_pil_channels_and_range():
    grey = torch.full((1, 4, 4, 1), 0.5)
    assert np.asarray(tensor_to_pil(grey)[0]).tolist()[0][0] == [128, 128, 128]
    rgba = torch.rand(4, 4, 4, generator=torch.Generator().manual_seed(0))
    assert tensor_to_pil(rgba)[0].size == (4, 4)
    wild = torch.tensor([[[[-1.0, 2.0, float("nan")]]]])
    assert np.asarray(tensor_to_pil(wild)[0]).tolist() == [[[0, 255, 0]]]
    with pytest.raises(ValueError):
        tensor_to_pil(torch.zeros(1, 4, 4, 2))
    with pytest.raises(ValueError):
        pil_to_tensor([Image.new("RGB", (2, 2)), Image.new("RGB", (3, 2))])


def test_recorded_latents(trace8):
    latents = recorded_latents(trace8)
    assert list(latents) == [INITIAL, 0, 2, 3, 4, 9]
    assert latents[4] is trace8.smc[4].x0_hat
