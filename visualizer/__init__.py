"""Particle visualizer: pictures and files made from a psi_core Trace.

Pure Python (torch, numpy, Pillow); no ComfyUI import. The node layer decodes the
trace's predicted clean latents (`recorded_latents`) to images and passes them here.

- `render_particle_grid(images, trace)`: steps x particles grid with rewards, weights,
  resampling and genealogy (layout: `grid_layout`, formula in `visualizer.grid`).
- `render_curves(trace)`: ESS, reward, MCMC acceptance and reward panels.
- `write_trace(trace, folder, prefix)`: JSON + .npz for analysis.
- `choose_steps`, `pil_to_tensor`, `tensor_to_pil`: helpers for the node.
"""

from .convert import INITIAL, choose_steps, pil_to_tensor, recorded_latents, tensor_to_pil
from .curves import render_curves
from .export import TracePaths, trace_arrays, write_trace
from .grid import GridLayout, grid_layout, render_particle_grid

__all__ = [
    "INITIAL", "GridLayout", "TracePaths", "choose_steps", "grid_layout", "pil_to_tensor", "recorded_latents",
    "render_curves", "render_particle_grid", "tensor_to_pil", "trace_arrays", "write_trace",
]
