"""Node inputs that cannot work with this model, VAE or reward, found before sampling.

The Ψ samplers work on image latents [B, C, H, W] of EPS/V-prediction models
(x = x0 + σε) and flow models (x = (1−σ)·x0 + σε), the two families whose Tweedie
estimate x̂0 the look-ahead reward uses (Yoon et al., arXiv 2506.01320).
"""

from __future__ import annotations

import math

import torch

from ..psi_core.trace import Trace
from . import memory_modes
from .compat import host_symbol

MASK_MESSAGE = ("inpainting masks are not supported by the Ψ samplers: the latent carries a noise_mask "
                "(from Set Latent Noise Mask / VAE Encode for Inpainting). Remove the mask, or use a plain "
                "KSampler for inpainting")


class HostInputError(ValueError):
    """A node input that cannot work with this model, VAE or reward (found before sampling)."""


def model_family(model_sampling) -> str:
    """"eps" (EPS, V-prediction, EDM, x0: x = x0 + σε) or "flow" (CONST: x = (1−σ)x0 + σε)."""
    if isinstance(model_sampling, host_symbol("comfy.model_sampling.CONST")):
        return "flow"
    if isinstance(model_sampling, host_symbol("comfy.model_sampling.EPS")):
        return "eps"
    raise HostInputError(
        f"the Ψ samplers support EPS/V-prediction and flow (CONST) models; this model samples with "
        f"{type(model_sampling).__name__}")


def family_of(model) -> str:
    """The family of a MODEL (ModelPatcher)."""
    return model_family(model.get_model_object("model_sampling"))


def prepare_latent(model, latent: dict) -> torch.Tensor:
    """The LATENT's samples [B, C, *spatial] made to fit the model (empty latents get the
    model's channel count and, for 3-D latent formats such as Qwen-Image's Wan 2.1 latents,
    the frame axis: [B, C, 1, H, W]), or a clear error. Latents of 3-D formats must hold one
    frame: the reward scores one image per particle."""
    if not isinstance(latent, dict) or "samples" not in latent:
        raise HostInputError("latent_image must be a LATENT (a dict with 'samples')")
    if latent.get("noise_mask") is not None:
        raise HostInputError(MASK_MESSAGE)
    samples = host_symbol("comfy.sample.fix_empty_latent_channels")(model, latent["samples"])
    latent_format = model.get_model_object("latent_format")
    dims = getattr(latent_format, "latent_dimensions", 2)
    if dims not in (2, 3) or samples.ndim != 2 + dims:
        raise HostInputError(
            f"the Ψ samplers work on image latents [B, C, H, W] (or one frame [B, C, 1, H, W]); got shape "
            f"{tuple(samples.shape)} for a {type(latent_format).__name__} model")
    if dims == 3 and samples.shape[2] != 1:
        raise HostInputError(
            f"the latent holds {samples.shape[2]} frames, shape {tuple(samples.shape)}; the reward scores one image "
            "per particle, so the Ψ samplers take one frame: use a latent of length 1")
    if samples.shape[1] != latent_format.latent_channels:
        raise HostInputError(
            f"the latent has {samples.shape[1]} channels but this model works on "
            f"{latent_format.latent_channels}-channel latents ({type(latent_format).__name__}); encode the "
            "image with this model's VAE or start from an Empty Latent Image")
    if min(samples.shape[-2:]) < 2:
        raise HostInputError(f"the latent is too small for the model: {tuple(samples.shape)}")
    return samples


def check_vae(vae, model) -> None:
    """The VAE exists and decodes this model's latents (model: ModelPatcher or BaseModel)."""
    if vae is None or getattr(vae, "first_stage_model", None) is None:
        raise HostInputError("no VAE: the reward scores decoded images, so the Ψ samplers need a VAE "
                             "(this checkpoint has none; add a Load VAE node)")
    latent_format = (model.get_model_object("latent_format") if hasattr(model, "get_model_object")
                     else model.latent_format)
    if getattr(vae, "latent_dim", 2) != getattr(latent_format, "latent_dimensions", 2):
        raise HostInputError(
            f"the VAE decodes {getattr(vae, 'latent_dim', 2)}-D latents but the model makes "
            f"{getattr(latent_format, 'latent_dimensions', 2)}-D latents ({type(latent_format).__name__}): use the "
            "VAE that belongs to this model")
    if vae.latent_channels != latent_format.latent_channels:
        raise HostInputError(
            f"the VAE decodes {vae.latent_channels}-channel latents but the model makes "
            f"{latent_format.latent_channels}-channel latents ({type(latent_format).__name__}): "
            "use the VAE that belongs to this model")


def check_reward(reward, needs_gradient: bool, purpose: str) -> None:
    """A PSI_REWARD is connected, and has a gradient where `purpose` needs one."""
    if reward is None or not callable(reward):
        raise HostInputError("no reward: connect a PSI_REWARD (a Ψ reward loader node)")
    if needs_gradient and not getattr(reward, "differentiable", False):
        name = getattr(reward, "name", type(reward).__name__)
        raise HostInputError(
            f"the reward '{name}' has no gradient, but {purpose} needs one: turn on gradient_free (SMC), "
            "or use the topk or prior initial method")


def check_memory_mode(memory: str, diffusion_model, vae, vae_model=None) -> list:
    """The blocks the `memory` option checkpoints in gradient passes of this model and VAE,
    or a HostInputError naming the option, the class and what works (before sampling)."""
    try:
        return memory_modes.check(memory, diffusion_model, vae_model or getattr(vae, "first_stage_model", None))
    except ValueError as err:
        raise HostInputError(str(err)) from err


# ----------------------------------------------------------------- linked inputs
# ComfyUI passes linked values to `execute` only (never to validate_inputs), and an API
# prompt may hold a literal where a link belongs (a string for `model`, a list for a
# latent). These checks run first in `execute`, before any model pass, and name the input.

def _kind_error(name: str, kind: str, what: str, value) -> HostInputError:
    return HostInputError(f"{name} must be a {kind} ({what}), connected from a node that outputs one; "
                          f"got {type(value).__name__} {str(value)[:60]!r}")


def check_model_value(name: str, value) -> None:
    """A MODEL: ComfyUI's ModelPatcher."""
    if not isinstance(value, host_symbol("comfy.model_patcher.ModelPatcher")):
        raise _kind_error(name, "MODEL", "a loaded diffusion model", value)


def check_vae_value(name: str, value) -> None:
    """A VAE: ComfyUI's VAE object."""
    if not isinstance(value, host_symbol("comfy.sd.VAE")):
        raise _kind_error(name, "VAE", "a loaded VAE", value)


def check_conditioning_value(name: str, value) -> None:
    """A CONDITIONING: a non-empty list of [tensor [B, T, D], dict] pairs."""
    if not isinstance(value, list) or not value or not all(
            isinstance(entry, (list, tuple)) and len(entry) == 2 and isinstance(entry[0], torch.Tensor)
            and isinstance(entry[1], dict) for entry in value):
        raise _kind_error(name, "CONDITIONING", "a list of [tensor, options] pairs from a text encoder", value)


def check_latent_value(name: str, value) -> None:
    """A LATENT: a dict whose 'samples' is a tensor [B, C, H, W] (or [B, C, T, H, W])."""
    samples = value.get("samples") if isinstance(value, dict) else None
    if not isinstance(samples, torch.Tensor):
        raise _kind_error(name, "LATENT", "a dict holding a 'samples' tensor", value)
    if samples.ndim not in (4, 5) or samples.numel() == 0:
        raise HostInputError(f"{name}: the latent's samples must be [B, C, H, W] (or [B, C, T, H, W]); "
                             f"got shape {tuple(samples.shape)}")
    mask = value.get("noise_mask")
    if mask is not None and not isinstance(mask, torch.Tensor):
        raise HostInputError(f"{name}: the latent's noise_mask must be a tensor; got {type(mask).__name__}")


def check_sigmas_value(name: str, value) -> None:
    """SIGMAS: a 1-D tensor of at least 2 noise levels."""
    if not isinstance(value, torch.Tensor):
        raise _kind_error(name, "SIGMAS", "a 1-D tensor of noise levels from a scheduler node", value)
    if value.ndim != 1 or value.numel() < 2:
        raise HostInputError(f"{name} must be 1-D with at least 2 noise levels; got shape {tuple(value.shape)}")
    if not torch.isfinite(value).all():
        raise HostInputError(f"{name} must be finite; got {value.tolist()[:8]}")


def check_reward_value(name: str, value) -> None:
    """A PSI_REWARD: a reward object (callable on images) from a Ψ reward node."""
    if not callable(value) or isinstance(value, type):
        raise _kind_error(name, "PSI_REWARD", "a reward from a Ψ reward node", value)


def check_image_value(name: str, value) -> None:
    """An IMAGE: a tensor [B, H, W, C]."""
    if not isinstance(value, torch.Tensor) or value.ndim != 4 or value.numel() == 0:
        raise _kind_error(name, "IMAGE", "a tensor [B, H, W, C] of images", value)


def check_trace_value(name: str, value) -> None:
    """A PSI_TRACE: the Ψ samplers' trace."""
    if not isinstance(value, Trace):
        raise _kind_error(name, "PSI_TRACE", "the trace output of a Ψ sampler", value)


LINK_CHECKS = {"PSI_TRACE": check_trace_value, "MODEL": check_model_value, "VAE": check_vae_value, "CONDITIONING": check_conditioning_value,
               "LATENT": check_latent_value, "SIGMAS": check_sigmas_value, "PSI_REWARD": check_reward_value,
               "IMAGE": check_image_value}


def check_linked(kinds: dict[str, str], values: dict) -> None:
    """Each value of `values` whose input is named in `kinds` ({input: ComfyUI type}) is of
    that type; None (an optional input left unconnected) is skipped."""
    for name, kind in kinds.items():
        value = values.get(name)
        if value is not None:
            LINK_CHECKS[kind](name, value)


# ----------------------------------------------------------------- memory estimate

#: float32 copies of the particles' latents a run keeps at once (state, noise, proposal,
#: cached Tweedie estimate, look-ahead gradient, resampled copy, weights' work space), with room
LATENT_COPIES = 8
#: bytes of one decoded image and its gradient per latent element (float32; the VAE upsamples
#: 8× per side to 3 channels: 3·64/C pixels per element, counted for C = 4). A lower bound of
#: a gradient pass: the VAE's own activations come on top
DECODED_BYTES_PER_LATENT_ELEMENT = 2 * 4 * 3 * 64 // 4


def device_memory(device: torch.device) -> int:
    """Total bytes of `device` (what could ever be used; a run that needs more never fits)."""
    return int(host_symbol("comfy.model_management.get_total_memory")(device))


def run_memory_limit() -> int:
    """Total bytes a run's particles can have: the smaller of the compute device's and the
    CPU's (the particles' noise is drawn on the CPU and moved to the device)."""
    compute = host_symbol("comfy.model_management.get_torch_device")()
    return min(device_memory(compute), device_memory(torch.device("cpu")))


def check_run_memory(particles: int, latent_shape: tuple[int, ...], kept_steps: int, grad_batch_size: int,
                     total_bytes: int, count_name: str = "particles") -> int:
    """Refuse a run whose particles (latent_shape [C, *spatial] each, LATENT_COPIES copies
    plus `kept_steps` recorded in the trace) and gradient batch of decoded images would not
    fit in `total_bytes`; returns the estimate in bytes."""
    per_particle = 4 * math.prod(latent_shape)
    particle_bytes = particles * per_particle * (LATENT_COPIES + kept_steps)
    batch_bytes = min(grad_batch_size, particles) * math.prod(latent_shape) * DECODED_BYTES_PER_LATENT_ELEMENT
    estimate = particle_bytes + batch_bytes
    if estimate > total_bytes:
        raise HostInputError(
            f"{count_name} = {particles} with latents of shape {tuple(latent_shape)} and grad_batch_size = "
            f"{grad_batch_size} need about {estimate / 2**30:.1f} GiB (particles {particle_bytes / 2**30:.1f} GiB, "
            f"one gradient batch {batch_bytes / 2**30:.1f} GiB), more than this device's "
            f"{total_bytes / 2**30:.1f} GiB: lower {count_name}, trace_steps, grad_batch_size or the image size")
    return estimate
