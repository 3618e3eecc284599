"""ComfyUI's sampling plumbing: schedules, the CFG guider, and running a sampler function.

A Ψ sampler runs as a k-diffusion sampler function `fn(model, x, sigmas, extra_args,
callback, disable)` inside ComfyUI's own loop (`guider.sample(...)`, what
SamplerCustomAdvanced does), so ComfyUI loads the model, prepares the conditioning,
applies `noise_scaling` and `process_latent_in/out`, and CFG, ControlNet, hooks and
model patches behave as in KSampler.
"""

from __future__ import annotations

import math
from typing import Callable

import torch

from .checks import HostInputError
from .compat import HostCompatibilityError, host_symbol, warn_once
from .memory import intermediate_device


def scheduler_names() -> list[str]:
    """ComfyUI's scheduler names (read when the node schemas are built, so a host without
    them still loads the pack: the schedule is then refused when a node runs)."""
    try:
        return list(host_symbol("comfy.samplers.SCHEDULER_NAMES"))
    except HostCompatibilityError as err:
        warn_once("scheduler_names", str(err))
        return ["simple"]


def schedule(model, scheduler: str, steps: int, denoise: float) -> torch.Tensor:
    """KSampler's sigmas for `steps` steps at `denoise` (1-D CPU float32, ends at 0)."""
    if denoise <= 0.0:
        raise HostInputError(f"denoise must be > 0; got {denoise}")
    model_sampling = model.get_model_object("model_sampling")
    calculate_sigmas = host_symbol("comfy.samplers.calculate_sigmas")
    if denoise > 0.9999:
        return calculate_sigmas(model_sampling, scheduler, steps).cpu().float()
    sigmas = calculate_sigmas(model_sampling, scheduler, int(steps / denoise)).cpu().float()
    return sigmas[-(steps + 1):]


def cfg_guider(model, positive, negative, cfg: float):
    guider = host_symbol("comfy.samplers.CFGGuider")(model)
    guider.set_conds(positive, negative)
    guider.set_cfg(cfg)
    return guider


def make_sampler(function: Callable):
    """A SAMPLER (comfy.samplers.KSAMPLER) from a k-diffusion sampler function
    `fn(model, x, sigmas, extra_args, callback, disable)`."""
    return host_symbol("comfy.samplers.KSAMPLER")(function)


def sample_with(guider, noise: torch.Tensor, latent_image: torch.Tensor, sigmas: torch.Tensor,
                function: Callable, seed: int, callback=None) -> torch.Tensor:
    """Run `function` as the sampler of ComfyUI's loop; returns the samples
    (VAE latent space) on the intermediate device."""
    samples = guider.sample(noise, latent_image, make_sampler(function), sigmas, callback=callback,
                            disable_pbar=not host_symbol("comfy.utils.PROGRESS_BAR_ENABLED"), seed=seed)
    return samples.to(intermediate_device())


def evaluation_source(guider, vae, reward) -> tuple:
    """Identity of what a look-ahead evaluation depends on (model and its patches,
    the conditioning that is used, guidance numbers, VAE, reward), to decide whether
    a cached evaluation can be reused. With plain CFG at cfg 1 the negative is not
    evaluated (ComfyUI's cfg1 optimisation), so CFGGuider(cfg=1) and BasicGuider agree."""
    patcher = guider.model_patcher
    conds = dict(getattr(guider, "original_conds", {}))
    predict = getattr(type(guider), "predict_noise", None)
    standard = predict is host_symbol("comfy.samplers.CFGGuider").predict_noise
    cfg = float(getattr(guider, "cfg", 1.0))
    if standard and math.isclose(cfg, 1.0) and not guider.model_options.get("disable_cfg1_optimization", False):
        conds.pop("negative", None)
    used = tuple((key, tuple(id(c.get("cross_attn")) for c in value)) for key, value in sorted(conds.items()))
    numbers = tuple(sorted((k, v) for k, v in vars(guider).items()
                           if isinstance(v, (int, float)) and not isinstance(v, bool)))
    kind = "cfg" if standard else getattr(predict, "__qualname__", repr(predict))
    return (id(patcher), getattr(patcher, "patches_uuid", None), kind, numbers, used, id(vae), id(reward))
