"""PsiParticleVisualizer executed by a real ComfyUI with tiny random-weight models.

The grid follows `visualizer.grid_layout` (the layout formula in visualizer/grid.py) for
1, 4 and 32 particles, with the VAE and with the fast latent preview; annotated regions
differ where rewards differ; the curves image has its documented size; save_trace
writes JSON + NPZ into the output folder.
"""

from __future__ import annotations

import io
import json
import urllib.parse

import frontend_graphs as graphs
import numpy as np
import pytest
from PIL import Image
from psi_sampler.visualizer import grid_layout
from psi_sampler.visualizer.curves import PANEL_SIZE, TITLE_H
from psi_sampler.visualizer.drawing import fmt

CASES = [  # particles, image width, height, steps, rows, preview
    (1, 64, 64, 2, 6, False),
    (4, 64, 32, 3, 3, False),
    (32, 32, 32, 2, 6, True),
]


def images_of(server, entry: dict, node_id: str) -> list[Image.Image]:
    out = []
    for item in entry["outputs"][node_id]["images"]:
        query = urllib.parse.urlencode({k: item[k] for k in ("filename", "subfolder", "type")})
        out.append(Image.open(io.BytesIO(server.get_bytes(f"/view?{query}"))).convert("RGB"))
    return out


@pytest.mark.parametrize("particles, width, height, steps, rows, preview", CASES)
def test_visualizer_layout(server, screenshot_dir, particles, width, height, steps, rows, preview):
    prompt, ids = graphs.visualizer_run(particles, width, height, steps, rows, preview,
                                        save_trace=particles == 4)
    entry = server.run_ok(prompt)
    grid, curves = images_of(server, entry, ids["visualizer"])
    trace = entry["outputs"][ids["summary"]]["psi_trace"][0]
    screenshot_dir.mkdir(parents=True, exist_ok=True)
    grid.save(screenshot_dir / f"visualizer_grid_k{particles}.png")
    curves.save(screenshot_dir / f"visualizer_curves_k{particles}.png")

    shown = min(rows, steps + 1)  # the sampler kept the start and every step (trace_steps = steps)
    # decoded images are 8x the latent, the preview is the latent itself: the same aspect either way
    layout = grid_layout(particles, shown, (height, width))
    assert grid.size == (layout.width, layout.height)
    assert curves.size == (2 * PANEL_SIZE[0], TITLE_H + 2 * PANEL_SIZE[1])

    # tiles are drawn (not blank) and annotations differ where the shown rewards differ
    pixels = np.asarray(grid, dtype=np.int16)
    last = shown - 1
    left, top, right, bottom = layout.tile_box(last, 0)
    assert pixels[top:bottom, left:right].std() > 0
    rewards = trace["smc"][-1]["reward"]

    def annotation(col):
        a_left, a_top, a_right, _ = layout.annotation_box(last, col)
        return pixels[a_top:a_top + 4 + 2 * layout.line, a_left:a_right]  # the two text lines

    compared = 0
    for col in range(1, particles):
        if fmt(rewards[col]) != fmt(rewards[0]):
            assert np.abs(annotation(col) - annotation(0)).sum() > 0, f"particle {col} annotated like particle 0"
            compared += 1
    if particles > 1:
        assert compared > 0, f"all rewards equal to 3 digits: {rewards}"

    if particles == 4:
        output = server.work / "base" / "output" / "psi"
        written = sorted(output.glob("psi_trace_*.json"))
        assert written, f"no trace written under {output}"
        data = json.loads(written[-1].read_text())
        assert len(data["smc"]) == steps and len(data["smc"][0]["reward"]) == particles
        arrays = np.load(written[-1].with_suffix(".npz"))
        assert arrays["smc_reward"].shape == (steps, particles)
        assert arrays[f"x0_hat_step_{steps - 1}"].shape == (particles, 4, height // 8, width // 8)


def test_visualizer_without_a_model_decodes_with_the_recorded_format(server):
    """The sampler records its model's latent format in the trace (written to the JSON), and the
    visualizer without a MODEL input decodes with it: the same grid as with the model connected."""
    grids = {}
    for connect in (True, False):
        prompt, ids = graphs.visualizer_run(2, 32, 32, 2, 3, False, save_trace=not connect, seed=7,
                                            connect_model=connect)
        grids[connect] = np.asarray(images_of(server, server.run_ok(prompt), ids["visualizer"])[0])
    assert np.array_equal(grids[True], grids[False])
    written = sorted((server.work / "base" / "output" / "psi").glob("psi_trace_*.json"))
    assert written and all(json.loads(p.read_text())["latent_format"] == "SD15"  # the tiny SD1.5-like model's
                           for p in written)


def test_visualizer_initial_trace_only(server):
    """Without SMC steps the grid is a short notice and the curves show the MCMC panels."""
    prompt, ids = graphs.initial_only_run()
    grid, curves = images_of(server, server.run_ok(prompt), ids["visualizer"])
    assert grid.width == 640 and grid.height < 200
    assert curves.size == (2 * PANEL_SIZE[0], TITLE_H + 2 * PANEL_SIZE[1])
    pixels = np.asarray(curves, dtype=np.int16)

    def ink(rows):  # pixels that differ from their right neighbour
        return int((np.abs(np.diff(rows, axis=1)).sum(axis=2) > 0).sum())

    smc_notes = ink(pixels[TITLE_H:TITLE_H + PANEL_SIZE[1]])  # "no SMC steps in this trace"
    mcmc_plots = ink(pixels[TITLE_H + PANEL_SIZE[1]:])  # acceptance and reward per chain, with axes
    assert mcmc_plots > 2 * smc_notes, (mcmc_plots, smc_notes)
