"""A cheaper look-ahead decoder: ComfyUI's Tiny AutoEncoder (TAESD, madebyollin).

The look-ahead reward r̂(x, σ) = reward(decode(x̂0)) of the Ψ samplers (Ψ-Sampler, arXiv
2506.01320) may decode with TAESD instead of the model's VAE: a small convolutional
decoder trained to mimic the VAE's images, whose forward and backward passes cost a small
fraction of the VAE decoder's time and memory. Only the twist potentials and the guided
proposal see it: the SMC scores its final particles with the real VAE decode and the
real reward, and the final weight replaces the last TAESD twist by that exact reward
(psi_core.smc), so the target p·exp(r/α) is unchanged and only the variance of the
weights depends on how well TAESD mimics the VAE.

The decoder files are the ones ComfyUI's own TAESD previews and VAE loader use, in the
`vae_approx` model folder, chosen by the model's latent format:

    SD15 (SD1.x/2.x) → taesd_decoder    SDXL → taesdxl_decoder
    SD3 → taesd3_decoder                Flux (FLUX.1) → taef1_decoder

Other latent formats have no image TAESD decoder here and are refused by name.

TAESD decodes latents in the model's latent space (after `process_in`: the scale and the
shift are already applied, as ComfyUI's previewer feeds it x̂0), and `TAESD.decode` maps
to [−1, 1]; the images for the reward are (decode + 1)/2, unclamped like the VAE path,
float32, [B, 3, 8h, 8w] for latents [B, C, h, w].
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import folder_paths
import torch

from .compat import host_symbol
from .input_gradients import convert_frozen_layers

#: values of the sampler nodes' `lookahead_decoder` option
LOOKAHEAD_DECODERS = ("vae", "taesd")
OPTION = "lookahead_decoder"
#: ComfyUI's model folder of the TAESD files
FOLDER = "vae_approx"
#: ComfyUI latent format (class name) → TAESD model name; its decoder is "<name>_decoder.*"
TAESD_MODELS = {"SD15": "taesd", "SDXL": "taesdxl", "SD3": "taesd3", "Flux": "taef1"}
#: what each TAESD model is for, in messages
FOR_MODELS = {"taesd": "SD1.x/2.x", "taesdxl": "SDXL", "taesd3": "SD3", "taef1": "FLUX.1"}


class LookaheadDecoderError(ValueError):
    """The look-ahead decoder option cannot work with this model or these model files."""


def check_option(value: str) -> str:
    """`value` if it is one of LOOKAHEAD_DECODERS, else a LookaheadDecoderError naming them."""
    if value not in LOOKAHEAD_DECODERS:
        raise LookaheadDecoderError(f"{OPTION} must be one of {', '.join(LOOKAHEAD_DECODERS)}; got {value!r}")
    return value


def decoder_file_prefix(name: str) -> str:
    return f"{name}_decoder."


def decoder_files() -> dict[str, str]:
    """{TAESD model name: file name in vae_approx} of the image TAESD decoders present."""
    found: dict[str, str] = {}
    for file in sorted(folder_paths.get_filename_list(FOLDER)):
        for name in TAESD_MODELS.values():
            if name not in found and os.path.basename(file).startswith(decoder_file_prefix(name)):
                found[name] = file
    return found


def _wanted() -> str:
    return ", ".join(f"{decoder_file_prefix(n)}* for {FOR_MODELS[n]}" for n in TAESD_MODELS.values())


def check_available(value: str) -> None:
    """The check when a prompt is queued (the model is not known yet): `taesd` needs at least
    one image TAESD decoder in vae_approx."""
    if check_option(value) == "taesd" and not decoder_files():
        raise LookaheadDecoderError(
            f"{OPTION} 'taesd' needs a TAESD decoder in models/{FOLDER} and there is none ({_wanted()}; from "
            f"github.com/madebyollin/taesd). Put the one for your model there, or set {OPTION} to vae")


def taesd_file(latent_format) -> str:
    """The full path of the TAESD decoder for `latent_format` (a comfy.latent_formats instance),
    or a LookaheadDecoderError naming the option, the latent format and what would work."""
    format_name = type(latent_format).__name__
    name = TAESD_MODELS.get(format_name)
    if name is None:
        supported = ", ".join(f"{f} ({FOR_MODELS[n]})" for f, n in TAESD_MODELS.items())
        raise LookaheadDecoderError(
            f"{OPTION} 'taesd' has no TAESD decoder for this model's latent format {format_name}: it works with "
            f"{supported}; set {OPTION} to vae for this model")
    file = decoder_files().get(name)
    if file is None:
        raise LookaheadDecoderError(
            f"{OPTION} 'taesd' needs models/{FOLDER}/{decoder_file_prefix(name)}pth or .safetensors for this "
            f"{format_name} model ({FOR_MODELS[name]}), and it is missing (get {name}_decoder from "
            f"github.com/madebyollin/taesd). Put it there, or set {OPTION} to vae")
    return folder_paths.get_full_path(FOLDER, file)


def check_for_model(value: str, model) -> None:
    """The check when a node with a MODEL input runs, before any sampling: `taesd` needs the
    decoder of this model's latent format (model: ComfyUI's ModelPatcher)."""
    if check_option(value) == "taesd":
        taesd_file(model.get_model_object("latent_format"))


def prepare_for_gradients(module: torch.nn.Module) -> torch.nn.Module:
    """`module` (a TAESD, or its decoder) made ready for look-ahead gradients, in place: eval,
    weights frozen (gradients are taken with respect to x̂0 only), and its convolutions and
    ReLUs swapped for frozen-weight layers (`input_gradients`), whose backward keeps boolean
    ReLU masks instead of 64-channel float activations. Channels-last layout would save about
    30 % of the time on a CPU, but it changes float32 rounding enough to flip ReLUs at their
    kinks against ComfyUI's previewer (2e-3 relative in one test gradient), so the layout is
    torch's default, as the previewer's."""
    module.eval()
    module.requires_grad_(False)
    convert_frozen_layers(module)
    return module


def decoder_input(x0: torch.Tensor, module: torch.nn.Module) -> torch.Tensor:
    """x̂0 [B, C, h, w] on `module`'s device, in its dtype."""
    parameter = next(module.parameters())
    return x0.to(device=parameter.device, dtype=parameter.dtype)


@dataclass
class TaesdDecoder:
    """x̂0 [B, C, h, w] (model latent space) → images [B, 3, 8h, 8w] float32, (TAESD.decode + 1)/2,
    unclamped. The module is ComfyUI's `comfy.taesd.taesd.TAESD` with the decoder only, float32,
    prepared by `prepare_for_gradients` (its values are TAESD's, as ComfyUI's previewer decodes)."""

    module: torch.nn.Module
    path: str

    def __call__(self, x0: torch.Tensor) -> torch.Tensor:
        images = self.module.decode(decoder_input(x0, self.module))
        return (images.float() + 1.0) / 2.0


#: loaded decoders by (path, modification time, channels, device): a run reuses the previous one's
_LOADED: dict[tuple, torch.nn.Module] = {}


def load_decoder(path: str, latent_channels: int, device) -> TaesdDecoder:
    """ComfyUI's TAESD with the decoder at `path` on `device`, made outside inference mode (the
    executor runs nodes under it, and autograd cannot save inference tensors). The instance is the
    pack's own (not the previewer's), so `prepare_for_gradients` may swap its layers (at 512² on
    a CPU, forward and backward then peak at half the memory in the same time; docs/benchmarks.md)."""
    key = (path, os.path.getmtime(path), int(latent_channels), str(device))
    module = _LOADED.get(key)
    if module is None:
        with torch.inference_mode(False):
            taesd_class = host_symbol("comfy.taesd.taesd.TAESD")
            module = taesd_class(None, path, latent_channels=int(latent_channels))
            module = prepare_for_gradients(module.to(device=device, dtype=torch.float32))
        _LOADED.clear()  # one decoder resident at a time (a few MB)
        _LOADED[key] = module
    return TaesdDecoder(module, path)


def lookahead_decoder(value: str, latent_format, device) -> TaesdDecoder | None:
    """The look-ahead decoder for option `value`: None for the VAE, else the TAESD decoder of
    `latent_format` loaded on `device` (LookaheadDecoderError where there is none)."""
    if check_option(value) == "vae":
        return None
    return load_decoder(taesd_file(latent_format), latent_format.latent_channels, device)
