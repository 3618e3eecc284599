"""PsiParticleVisualizer: pictures of a Ψ run for Preview/Save Image nodes.

Takes the PSI_TRACE of the Ψ SMC Sampler and/or the Ψ Initial Sampler and draws
(with the pure `visualizer` package):

- grid: predicted clean images over SMC steps (rows) × particles (columns), each
  with its reward and normalised weight, resampling and genealogy lines;
- curves: ESS and reward over SMC steps, MCMC acceptance and reward per chain.

The trace keeps predicted clean latents (model latent space) only at the steps
its sampler recorded. They are decoded with the VAE (`VAE.decode`, no gradients)
or, with `preview` on or no VAE, mapped to RGB with the latent format's linear
preview factors (ComfyUI's Latent2RGB previewer). Steps without recorded latents
are drawn as grey tiles, still annotated.
"""

from __future__ import annotations

import dataclasses
import logging

import torch
from comfy_api.latest import io, ui
from PIL import Image, ImageDraw

from ..comfy_host.events import show_text
from ..comfy_host.folders import output_directory
from ..comfy_host.latent_formats import latent_format_named, latent_format_of
from ..psi_core.trace import Trace
from ..visualizer import (
    choose_steps,
    pil_to_tensor,
    recorded_latents,
    render_curves,
    render_particle_grid,
    write_trace,
)
from ..visualizer.drawing import GREY, WHITE, fmt, put_text
from .declared import check_execution_inputs, validate
from .types import PsiTrace

LOG = logging.getLogger("psi_sampler")

#: colour of the tiles of steps whose latents the trace did not keep
PLACEHOLDER_GREY = 0.86


# --------------------------------------------------------------------------- traces


def combine_traces(smc_trace: Trace | None, initial_trace: Trace | None) -> Trace:
    """One trace to draw: the SMC trace (it already carries the MCMC records when its
    particles came from the initial sampler), completed with the initial trace's MCMC
    records where it has none; or the initial trace alone."""
    for name, trace in (("smc_trace", smc_trace), ("initial_trace", initial_trace)):
        if trace is not None and not isinstance(trace, Trace):
            raise ValueError(f"{name} must be a PSI_TRACE from a Ψ sampler node; got {type(trace).__name__}")
    if smc_trace is None and initial_trace is None:
        raise ValueError("connect a trace: the Ψ SMC Sampler's trace, the Ψ Initial Sampler's trace, or both")
    if smc_trace is None:
        return initial_trace
    if smc_trace.mcmc or initial_trace is None or not initial_trace.mcmc:
        return smc_trace
    return dataclasses.replace(smc_trace, mcmc=list(initial_trace.mcmc),
                               alpha_mcmc=smc_trace.alpha_mcmc or initial_trace.alpha_mcmc,
                               latent_format=smc_trace.latent_format or initial_trace.latent_format)


def grid_rows(trace: Trace, rows: int) -> tuple[list[int], bool]:
    """(row keys, whether they have recorded latents): up to `rows` of the recorded
    steps (evenly spaced, always the last), or of all SMC steps when none was recorded."""
    recorded = sorted(recorded_latents(trace))
    if recorded:
        return [recorded[i] for i in choose_steps(len(recorded), rows)], True
    return choose_steps(len(trace.smc), rows), False


# --------------------------------------------------------------------------- latents -> images


def latent_format_for(model, trace: Trace):
    """The latent format of the connected model, else the one the sampler recorded in the trace
    (a comfy.latent_formats class name), else None. Never guessed from the channel count: SDXL
    shares SD1.5's 4 channels with another scale, SD3 FLUX's 16 with another shift and scale."""
    if model is not None:
        return latent_format_of(model)
    if trace.latent_format:
        return latent_format_named(trace.latent_format)
    return None


def preview_rgb(latents: torch.Tensor, latent_format) -> torch.Tensor:
    """Fast preview of model-space latents [K, C, h, w] (or one frame [K, C, 1, h, w]) -> [K, h, w, 3]
    in [0, 1]: the latent format's linear RGB factors (as ComfyUI's Latent2RGB previewer, after the format's
    `latent_rgb_factors_reshape` where it has one: FLUX.2's 128 channels are 32 patchified 2×2, so
    [K, 2h, 2w, 3]); without factors, the first three channels (or the mean) scaled from [-1, 1]."""
    x = first_frame(latents).detach().to("cpu", torch.float32)
    reshape = getattr(latent_format, "latent_rgb_factors_reshape", None)
    x = (x if reshape is None else reshape(x)).movedim(1, -1)
    factors = getattr(latent_format, "latent_rgb_factors", None)
    if factors is not None and len(factors) == x.shape[-1]:
        weight = torch.tensor(factors, dtype=torch.float32).transpose(0, 1)
        bias = getattr(latent_format, "latent_rgb_factors_bias", None)
        rgb = torch.nn.functional.linear(x, weight, None if bias is None else torch.tensor(bias, dtype=torch.float32))
    elif x.shape[-1] >= 3:
        rgb = x[..., :3]
    else:
        rgb = x.mean(dim=-1, keepdim=True).expand(*x.shape[:-1], 3)
    return ((rgb + 1.0) / 2.0).clamp(0.0, 1.0)


def first_frame(latents: torch.Tensor) -> torch.Tensor:
    """[K, C, h, w] as it is; [K, C, T, h, w] (3-D latent formats: Qwen-Image's Wan 2.1 latents) -> its first
    frame [K, C, h, w]."""
    return latents[:, :, 0] if latents.ndim == 5 else latents


def vae_decode(latents: torch.Tensor, vae, latent_format) -> torch.Tensor:
    """Model-space latents [K, C, h, w] or [K, C, T, h, w] -> images [K, H, W, 3] with `VAE.decode`
    (no gradients; the first frame of a 3-D VAE's output)."""
    samples = latents.detach().to("cpu", torch.float32)
    if latent_format is not None:
        samples = latent_format.process_out(samples)
    images = vae.decode(samples)
    if images.ndim == 5:  # video VAEs: [K, T, H, W, 3], keep the first frame
        images = images[:, 0]
    return images.detach().to("cpu", torch.float32)


def decoded_rows(trace: Trace, keys: list[int], vae, model, preview: bool) -> dict[int, torch.Tensor]:
    """{row key: [K, H, W, 3]} for recorded rows."""
    latents = recorded_latents(trace)
    out = {}
    for key in keys:
        x0 = latents[key]
        if x0.ndim not in (4, 5):
            raise ValueError(f"the trace's latents at step {key} have shape {tuple(x0.shape)}; the visualizer "
                             "draws image latents [K, C, H, W] or [K, C, T, H, W]")
        latent_format = latent_format_for(model, trace)
        if vae is not None and not preview:
            if latent_format is None:
                raise ValueError("the trace does not say which latent format its model uses: connect the "
                                 "model input (or turn preview on)")
            out[key] = vae_decode(x0, vae, latent_format)
        else:
            out[key] = preview_rgb(x0, latent_format)
    return out


def placeholder_rows(trace: Trace, keys: list[int]) -> dict[int, torch.Tensor]:
    k = trace.smc[0].ancestors.numel()
    tile = torch.full((k, 8, 8, 3), PLACEHOLDER_GREY)
    return {key: tile for key in keys}


def grid_title(trace: Trace, particles: int, note: str) -> str:
    nfe = trace.nfe.get("nfe") if trace.nfe else None
    return (f"Psi-Sampler particles | {trace.method} | K={particles} | alpha {fmt(trace.alpha)}"
            + (f" | NFE {nfe}" if nfe is not None else "") + f" | {note}")


def notice_image(lines: list[str], width: int = 640) -> Image.Image:
    """A small white picture with a few grey lines of text (the grid of a trace without SMC steps)."""
    image = Image.new("RGB", (width, 40 + 20 * len(lines)), WHITE)
    draw = ImageDraw.Draw(image)
    for i, line in enumerate(lines):
        put_text(draw, (16, 20 + 20 * i), line, 13 if i == 0 else 11, fill=(0, 0, 0) if i == 0 else GREY,
                 width=width - 32)
    return image


def render_grid(trace: Trace, rows: int, vae, model, preview: bool, tile_width: int | None) -> Image.Image:
    if not trace.smc:
        return notice_image([f"Psi-Sampler | {trace.method} | no SMC steps in this trace",
                             "Connect the Psi SMC Sampler's trace to see particles over steps;",
                             "the curves output shows the MCMC acceptance and rewards."])
    keys, recorded = grid_rows(trace, rows)
    if recorded:
        images = decoded_rows(trace, keys, vae, model, preview)
        how = "latent preview" if preview or vae is None else "VAE decoded"
        title = grid_title(trace, trace.smc[0].ancestors.numel(), f"predicted x0, {how}")
    else:
        images = placeholder_rows(trace, keys)
        title = grid_title(trace, trace.smc[0].ancestors.numel(), "images not recorded by the sampler")
    return render_particle_grid(images, trace, tile_width=tile_width, title=title)


#: longest file or folder name most file systems take (bytes of UTF-8)
MAX_NAME_BYTES = 255
#: room kept in each name for the counter and extension the trace writer appends ("_00001_.json")
NAME_SUFFIX_BYTES = 16


def check_filename_prefix(prefix: str) -> str:
    """The trace files' name prefix: a relative path inside the output folder whose every
    part fits a file name (checked when the prompt is queued, not after the graph ran)."""
    if not isinstance(prefix, str) or not prefix.strip() or "\0" in prefix:
        raise ValueError(f"filename_prefix must be a non-empty relative name inside the output folder; "
                         f"got {str(prefix)[:80]!r}")
    parts = prefix.replace("\\", "/").split("/")
    if prefix.startswith(("/", "\\")) or ".." in parts or ":" in parts[0]:
        raise ValueError(f"filename_prefix must be a relative name inside the output folder; got {prefix[:80]!r}")
    for part in parts:
        if len(part.encode()) > MAX_NAME_BYTES - NAME_SUFFIX_BYTES:
            raise ValueError(f"filename_prefix: the name {part[:40]!r}… is {len(part.encode())} bytes long; file "
                             f"names take at most {MAX_NAME_BYTES - NAME_SUFFIX_BYTES} here")
    return prefix


def check_options(tile_width: int | None, filename_prefix: str | None) -> None:
    """The visualizer's own checks beyond the declared ranges (None: a link not known yet)."""
    if tile_width is not None and tile_width != 0 and not 16 <= tile_width <= 1024:
        raise ValueError(f"tile_width must be 0 (automatic) or in [16, 1024]; got {tile_width}")
    if filename_prefix is not None:
        check_filename_prefix(filename_prefix)


# --------------------------------------------------------------------------- node


class PsiParticleVisualizer(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="PsiParticleVisualizer",
            display_name="Ψ Particle Visualizer",
            category="sampling/psi",
            description=(
                "Pictures of a Ψ run: a grid of predicted clean images over SMC steps × particles with rewards, "
                "weights, resampling and genealogy, and curves of ESS, reward and MCMC acceptance. Optionally "
                "writes the trace (JSON + NPZ) to the output folder."),
            inputs=[
                PsiTrace.Input("smc_trace", optional=True,
                               tooltip="The Ψ SMC Sampler's trace (ESS, weights, ancestors, rewards, recorded "
                                       "predicted latents)."),
                PsiTrace.Input("initial_trace", optional=True,
                               tooltip="The Ψ Initial Sampler's trace (MCMC acceptance and rewards); only needed "
                                       "when the SMC trace lacks it or is not connected."),
                io.Vae.Input("vae", optional=True,
                             tooltip="VAE to decode the recorded predicted latents. Without it (or with preview "
                                     "on) a fast latent-to-RGB preview is drawn."),
                io.Model.Input("model", optional=True,
                               tooltip="The sampled model, for its latent format (scaling and preview colours). "
                                       "Without it the format the sampler recorded in the trace is used."),
                io.Boolean.Input("preview", default=False,
                                 tooltip="Draw tiles with the fast latent-to-RGB preview instead of the VAE "
                                         "(much faster, approximate colours)."),
                io.Int.Input("rows", default=6, min=1, max=64,
                             tooltip="Most steps shown as grid rows (evenly spaced among the recorded steps, "
                                     "always including the last)."),
                io.Int.Input("tile_width", default=0, min=0, max=1024,
                             tooltip="Width of one particle tile in pixels; 0 picks it from the particle count "
                                     "(64 to 256)."),
                io.Boolean.Input("save_trace", default=False,
                                 tooltip="Also write the trace as JSON and NPZ arrays to ComfyUI's output folder."),
                io.String.Input("filename_prefix", default="psi/psi_trace",
                                tooltip="Name (may include a subfolder) of the trace files in the output folder, "
                                        "numbered like saved images."),
            ],
            outputs=[
                io.Image.Output("grid", display_name="grid",
                                tooltip="Particles over steps: tiles with reward r and weight w, genealogy lines "
                                        "(blue where resampled), the output particle's lineage in orange."),
                io.Image.Output("curves", display_name="curves",
                                tooltip="ESS and reward over SMC steps; MCMC acceptance and reward per chain."),
            ],
            is_output_node=True,
        )

    @classmethod
    def validate_inputs(cls, **values):
        return validate(cls, values, lambda: check_options(values.get("tile_width"), values.get("filename_prefix")))

    @classmethod
    def execute(cls, preview, rows, tile_width, save_trace, filename_prefix, smc_trace=None, initial_trace=None,
                vae=None, model=None) -> io.NodeOutput:
        check_execution_inputs(cls, locals())
        check_options(tile_width, filename_prefix)  # linked values arrive only now
        trace = combine_traces(smc_trace, initial_trace)
        grid = render_grid(trace, rows, vae, model, bool(preview), tile_width or None)
        curves = render_curves(trace)
        if save_trace:
            paths = write_trace(trace, output_directory(), filename_prefix)
            LOG.info("psi: trace written to %s and %s", paths.json, paths.npz)
            show_text(f"trace: {paths.json.name}, {paths.npz.name}")
        grid_tensor, curves_tensor = pil_to_tensor(grid), pil_to_tensor(curves)
        saved = []
        for image in (grid_tensor, curves_tensor):
            saved += ui.ImageSaveHelper.save_images(image, "psi_visualizer", io.FolderType.temp, cls,
                                                    compress_level=1)
        return io.NodeOutput(grid_tensor, curves_tensor, ui=ui.SavedImages(saved))


__all__ = ["PsiParticleVisualizer", "combine_traces", "grid_rows", "preview_rgb"]
