"""Node inputs that cannot work with this model, VAE or reward, found before sampling.

The Ψ samplers work on image latents [B, C, H, W] of EPS/V-prediction models
(x = x0 + σε) and flow models (x = (1−σ)·x0 + σε), the two families whose Tweedie
estimate x̂0 the look-ahead reward uses (Yoon et al., arXiv 2506.01320).
"""

from __future__ import annotations

import torch

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
