"""The particle grid: documented layout for 1, 4 and 32 particles, annotations, genealogy, highlight."""

from __future__ import annotations

import copy
import itertools

import numpy as np
import pytest
import torch
from psi_sampler.visualizer import INITIAL, grid_layout, recorded_latents, render_particle_grid, tensor_to_pil
from psi_sampler.visualizer.drawing import BLUE, ORANGE, WHITE


def documented_size(k: int, rows: int, h: int, w: int) -> tuple[int, int]:
    """The formula of visualizer/grid.py's docstring, with its constants written out."""
    tile_w = min(256, max(64, 1536 // k))
    tile_h = max(1, round(tile_w * h / w))
    text = 12 if tile_w >= 96 else 10
    annot = 2 * (text + 4) + 14
    width = 2 * 12 + 104 + k * tile_w + (k - 1) * 6
    height = 2 * 12 + 56 + rows * (tile_h + annot) + (rows - 1) * 30 + 48
    return width, height


@pytest.mark.parametrize("k, rows, hw, expected", [
    (1, 3, (48, 48), (384, 1094)),
    (4, 3, (48, 48), (1170, 1094)),
    (32, 3, (48, 48), (2362, 506)),
    (4, 2, (32, 64), (1170, 24 + 56 + 2 * (128 + 46) + 30 + 48)),
])
def test_layout_formula(k, rows, hw, expected):
    layout = grid_layout(k, rows, hw)
    assert (layout.width, layout.height) == expected == documented_size(k, rows, *hw)
    # tiles in a row do not overlap and stay inside the picture
    boxes = [layout.tile_box(rows - 1, col) for col in range(k)]
    assert all(a[2] < b[0] for a, b in itertools.pairwise(boxes))
    assert boxes[-1][2] <= layout.width and layout.annotation_box(rows - 1, k - 1)[3] <= layout.height


@pytest.mark.parametrize("k", [1, 4, 32])
def test_rendered_grid_has_documented_layout(k, make_trace, grid_images):
    trace = make_trace(k, steps=6, record=(0, 2, 5))
    images = grid_images(trace)
    assert sorted(images) == [INITIAL, 0, 2, 5]
    grid = render_particle_grid(images, trace)
    assert grid.mode == "RGB"
    assert grid.size == documented_size(k, 4, 48, 48)
    layout = grid_layout(k, 4, (48, 48))
    canvas = np.asarray(grid)
    # every tile shows its particle's picture, resized to the tile
    for row, key in enumerate(sorted(images)):
        for col in (0, k - 1):
            left, top, right, bottom = layout.tile_box(row, col)
            expected = tensor_to_pil(images[key][col])[0].resize((layout.tile_w, layout.tile_h), 3, reducing_gap=2.0)
            assert np.array_equal(canvas[top:bottom, left:right], np.asarray(expected))
    if k == 1:  # a single column: nothing right of the one tile but the margin
        assert layout.tile_box(0, 0)[2] == grid.width - 12


def _crop(grid, box):
    left, top, right, bottom = box
    return np.asarray(grid)[top:bottom, left:right]


def _row_of(images, key):
    return sorted(images).index(key)


def test_annotations_differ_where_rewards_differ(trace8, grid_images):
    trace = copy.deepcopy(trace8)
    images = grid_images(trace)
    step = 4
    record = trace.smc[step]
    # particles 0 and 1: same reward and weight; particle 2: same weight, another reward
    record.reward[1] = record.reward[0]
    record.reward[2] = record.reward[0] + 0.5
    record.log_weights[1] = record.log_weights[0]
    record.log_weights[2] = record.log_weights[0]
    grid = render_particle_grid(images, trace)
    layout = grid_layout(8, len(images), (48, 48))
    row = _row_of(images, step)
    a0, a1, a2 = (_crop(grid, layout.annotation_box(row, col)) for col in range(3))
    assert np.array_equal(a0, a1)
    assert not np.array_equal(a0, a2)
    # the real run's rewards differ from particle to particle, and so do their annotations
    real = render_particle_grid(images, trace8)
    rewards = trace8.smc[step].reward
    i, j = int(torch.argmin(rewards)), int(torch.argmax(rewards))
    assert abs(float(rewards[i] - rewards[j])) > 1e-3
    assert not np.array_equal(_crop(real, layout.annotation_box(row, i)), _crop(real, layout.annotation_box(row, j)))


def test_weight_bar_length_is_proportional_to_weight(trace8, grid_images):
    images = grid_images(trace8)
    grid = render_particle_grid(images, trace8)
    layout = grid_layout(8, len(images), (48, 48))
    step = 9
    row = _row_of(images, step)
    weights = trace8.smc[step].log_weights.exp()
    lengths = []
    for col in range(8):
        left, _, right, bottom = layout.annotation_box(row, col)
        bar_row = np.asarray(grid)[bottom - 6, left:right]  # a row of pixels through the bar
        lengths.append(int(np.all(bar_row == BLUE, axis=-1).sum()))
    top_col = int(torch.argmax(weights))
    span = lengths[top_col]
    assert span >= layout.tile_w - 8
    for col in range(8):
        assert lengths[col] == pytest.approx(span * float(weights[col] / weights[top_col]), abs=2.5)


def _composed_parents(trace, upper, lower, k):
    index = torch.arange(k)
    for step in range(lower, upper, -1):
        index = trace.smc[step].ancestors[index]
    return index.tolist()


def test_genealogy_lines_follow_the_ancestors(trace8, grid_images):
    images = grid_images(trace8)
    keys = sorted(images)
    grid = np.asarray(render_particle_grid(images, trace8))
    layout = grid_layout(8, len(keys), (48, 48))
    resampled_bands = 0
    for row in range(1, len(keys)):
        upper, lower = keys[row - 1], keys[row]
        parents = _composed_parents(trace8, upper, lower, 8)
        resampled = any(r.resampled for r in trace8.smc[upper + 1:lower + 1])
        top, bottom = layout.link_band(row)
        centres = [layout.column_x(col) + layout.tile_w // 2 for col in range(8)]
        for col in range(8):
            # a line enters every particle from above ...
            assert tuple(grid[bottom - 6, centres[col]]) != WHITE
            # ... and leaves exactly the particles that have descendants
            leaves = tuple(grid[top + 5, centres[col]]) != WHITE
            assert leaves == (col in parents)
        if resampled:
            resampled_bands += 1
            colours = {tuple(grid[bottom - 6, c]) for c in centres}
            assert colours <= {BLUE, ORANGE} and BLUE in colours
            # a family's bar joins the parent to its children across the band
            for child, parent in enumerate(parents):
                if parent != child:
                    xs = range(min(centres[child], centres[parent]), max(centres[child], centres[parent]) + 1)
                    band = grid[top:bottom, xs]
                    assert np.all(np.any(np.all(band != WHITE, axis=-1), axis=0))
        else:
            assert parents == list(range(8))
    assert resampled_bands >= 2


def test_selected_particle_and_its_ancestors_are_framed(trace8, grid_images):
    images = grid_images(trace8)
    keys = sorted(images)
    grid = np.asarray(render_particle_grid(images, trace8))
    layout = grid_layout(8, len(keys), (48, 48))
    (selected,) = trace8.selected
    last = len(trace8.smc) - 1
    for row, key in enumerate(keys):
        ancestor = _composed_parents(trace8, key, last, 8)[selected]
        for col in range(8):
            left, top, _, bottom = layout.tile_box(row, col)
            framed = tuple(grid[(top + bottom) // 2, left - 2]) == ORANGE
            assert framed == (col == ancestor), (key, col)


def test_inputs_are_not_modified(trace8, grid_images):
    images = grid_images(trace8)
    images[0] = images[0].to(torch.bfloat16)  # any float dtype is accepted
    before_images = {key: value.clone() for key, value in images.items()}
    before_trace = copy.deepcopy(trace8.to_dict())
    before_latents = {key: value.clone() for key, value in recorded_latents(trace8).items()}
    render_particle_grid(images, trace8)
    assert sorted(images) == sorted(before_images)
    for key, value in images.items():
        assert value.dtype == before_images[key].dtype and torch.equal(value, before_images[key])
    assert trace8.to_dict() == before_trace
    for key, value in recorded_latents(trace8).items():
        assert torch.equal(value, before_latents[key])


def test_invalid_rewards_and_bad_inputs(trace8, grid_images):
    trace = copy.deepcopy(trace8)
    trace.smc[9].reward[3] = float("-inf")
    trace.smc[9].log_weights[3] = float("-inf")
    images = grid_images(trace)
    layout = grid_layout(8, len(images), (48, 48))
    grid = render_particle_grid(images, trace)
    assert grid.size == (layout.width, layout.height)
    note = _crop(grid, layout.annotation_box(_row_of(images, 9), 3)).astype(int)
    reddish = (note[..., 0] > 150) & (note[..., 1] < 110) & (note[..., 2] < 110)
    assert reddish.any()  # "r invalid" in red
    assert not np.all(note == BLUE, axis=-1).any()  # and no weight bar
    with pytest.raises(ValueError, match="keys"):
        render_particle_grid({10: images[9]}, trace)
    with pytest.raises(ValueError, match="particles"):
        render_particle_grid({9: images[9][:4]}, trace)
    with pytest.raises(ValueError, match="same number"):
        render_particle_grid({4: images[4], 9: images[9][:4]}, trace)
    with pytest.raises(ValueError):
        render_particle_grid({}, trace)
    with pytest.raises(ValueError, match="images"):
        render_particle_grid({9: images[9][..., :2]}, trace)


def test_without_freetype_the_bitmap_font_is_used(trace8, grid_images, monkeypatch):
    from PIL import ImageFont
    from psi_sampler.visualizer import drawing, render_curves

    def no_freetype(size=None):  # what load_default does where Pillow has no FreeType
        if size is not None:
            raise ImportError("The _imagingft C module is not installed")
        return ImageFont.load_default_imagefont()

    monkeypatch.setattr(drawing.ImageFont, "load_default", no_freetype)
    drawing.font.cache_clear()
    try:
        images = grid_images(trace8)
        layout = grid_layout(8, len(images), (48, 48))
        assert render_particle_grid(images, trace8).size == (layout.width, layout.height)
        assert render_curves(trace8).size == (960, 628)
        assert isinstance(drawing.font(12), ImageFont.ImageFont)
    finally:
        drawing.font.cache_clear()


def test_trace_of_the_initial_sampler_alone(make_trace, grid_images):
    """The initial-particle node's trace has MCMC records only: one row of starting particles."""
    full = make_trace(4, steps=3, record=(0,))
    trace = copy.deepcopy(full)
    trace.smc, trace.initial_reward, trace.initial_log_weights, trace.selected = [], None, None, []
    images = {INITIAL: grid_images(full)[INITIAL]}
    grid = render_particle_grid(images, trace)
    layout = grid_layout(4, 1, (48, 48))
    assert grid.size == (layout.width, layout.height)
    assert not np.all(np.asarray(grid) == ORANGE, axis=-1).any()  # nothing selected yet
    with pytest.raises(ValueError, match="keys"):
        render_particle_grid({0: images[INITIAL]}, trace)
