"""ComfyUI's latent formats (`comfy.latent_formats`): per model family, the scale and shift
between VAE and model latent space and the linear RGB preview factors."""

from __future__ import annotations

from .compat import host_symbol


def latent_format_named(name: str):
    """An instance of ComfyUI's latent format class `name` ("SD15", "SDXL", "Flux", ...), or a
    HostCompatibilityError where this ComfyUI has no such class."""
    return host_symbol(f"comfy.latent_formats.{name}")()


def latent_format_of(model):
    """The latent format of a MODEL (ModelPatcher)."""
    return model.get_model_object("latent_format")
