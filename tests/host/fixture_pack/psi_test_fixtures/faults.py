"""A gradient pass that fails, and what it leaves behind (test-only).

Inside ComfyUI's sampling loop (under the executor's inference mode), one bridge
runs three gradient passes on the same particles: the first succeeds, the second
fails (the reward raises in forward, raises in backward, or raises ComfyUI's
interrupt), the third succeeds. The report holds a snapshot of ComfyUI's globals
the bridge changes, the guider, the bridge's own state and digests of the
weights and patches of the model and VAE, taken before the first pass, inside
the failing pass and after it, plus whether the third pass reproduced the first
bit for bit.
"""

from __future__ import annotations

import hashlib

import torch

import comfy.model_management

from . import dynamic_standin
from .gradcheck import pack_module

FAULTS = ("error", "backward", "interrupt")
MISSING = "<absent>"


class FaultError(RuntimeError):
    """The failure the fixture raises (expected by the test)."""


class FaultReward:
    """PSI_REWARD whose gradient call number `fail_at` fails as `fault` says; images [B, 3, H, W] -> [B].
    `observe()` is called inside every gradient call (snapshots of the state during the pass)."""

    differentiable = True
    name = "fixture_fault"

    def __init__(self, fault: str, fail_at: int, observe):
        if fault not in FAULTS:
            raise ValueError(f"fault must be one of {FAULTS}; got {fault!r}")
        self.fault, self.fail_at, self.observe = fault, fail_at, observe
        self.grad_calls = 0

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        target = torch.tensor([0.8, 0.3, 0.2], device=images.device).view(1, 3, 1, 1)
        reward = -(images - target).square().flatten(1).mean(dim=1)
        if not images.requires_grad:
            return reward
        self.grad_calls += 1
        self.observe()
        if self.grad_calls != self.fail_at:
            return reward
        if self.fault == "error":
            raise FaultError("fixture failure in the forward pass")
        if self.fault == "interrupt":
            raise comfy.model_management.InterruptProcessingException()
        return _fail_in_backward(reward)

    def modules(self) -> list:
        return []


def _fail_in_backward(reward: torch.Tensor) -> torch.Tensor:
    def hook(_grad):
        raise FaultError("fixture failure in the backward pass")
    reward.register_hook(hook)
    return reward


def _digest(tensors) -> str:
    h = hashlib.sha256()
    for name, tensor in tensors:
        h.update(name.encode())
        h.update(tensor.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return h.hexdigest()


def host_state() -> dict:
    """ComfyUI's globals that a gradient pass changes (the training switch)."""
    return {"in_training": repr(getattr(comfy.model_management, "in_training", MISSING))}


def state(bridge, patcher, vae) -> dict:
    """What a gradient pass may change: ComfyUI's training switch, grad mode, the guider's
    model, the bridge's pass flag, weights (values) and patches of the model and VAE."""
    return {
        **host_state(),
        "grad_enabled": torch.is_grad_enabled(),
        "inference_mode": torch.is_inference_mode_enabled(),
        "guider_model_is_base": bridge.guider.inner_model is bridge.base,
        "guider_model_is_gradient_model": bridge.guider.inner_model is bridge.grad_base,
        "in_gradient_pass": bridge.in_gradient_pass,
        "model_weights": _digest(patcher.model.state_dict().items()),
        "vae_weights": _digest(vae.first_stage_model.state_dict().items()),
        "patches": sorted(patcher.patches),
        "patches_uuid": str(patcher.patches_uuid),
        "model_options_keys": sorted(patcher.model_options),
    }


def run(model, positive, negative, vae, fault: str) -> dict:
    """Three gradient passes (the second fails) inside `guider.sample`; the report."""
    bridge_module = pack_module("comfy_host.sampler_bridge")
    sampling = pack_module("comfy_host.sampling")
    report: dict = {"fault": fault, "during": []}
    latent = torch.zeros((1, vae.latent_channels, 8, 8))
    sigmas = sampling.schedule(model, "simple", 4, 1.0)
    patched = model.clone()  # with a weight patch, as a LoRA leaves a MODEL
    key, weight = next((k, w) for k, w in patched.model.state_dict().items()
                       if k.startswith("diffusion_model.") and k.endswith(".weight"))
    patched.add_patches({key: (torch.randn(weight.shape, generator=torch.Generator().manual_seed(1)) * 0.01,)}, 0.5)
    guider = sampling.cfg_guider(patched, positive, negative, 1.0)

    def sample(k_model, x, sigmas, extra_args=None, callback=None, disable=None):
        holder = {}
        reward = FaultReward(fault, 2, lambda: report["during"].append(state(holder["bridge"], patched, vae)))
        with bridge_module.SamplerBridge(k_model, extra_args, vae, reward, grad_batch_size=2) as bridge:
            holder["bridge"] = bridge
            bridge.prepare((1, *x.shape[1:]))
            look = bridge.lookahead()
            states = bridge.start(sigmas)(torch.randn((1, *x.shape[1:]), generator=torch.Generator().manual_seed(0)))
            sigma = float(sigmas[0])
            report["before"] = state(bridge, patched, vae)
            first = look(states, sigma, need_grad=True).grad.clone()
            try:
                look(states, sigma, need_grad=True)
                report["raised"] = None
            except (Exception, comfy.model_management.InterruptProcessingException) as err:
                report["raised"] = f"{type(err).__name__}: {err}"
            report["after"] = state(bridge, patched, vae)
            third = look(states, sigma, need_grad=True).grad
            report["third_equals_first"] = bool(torch.equal(first, third))
            report["gradient_models_are_delegates"] = bridge.grad_base is not bridge.base
        return x

    with dynamic_standin.claim_dynamic(pack_module("comfy_host.dynamic_vram")):
        sampling.sample_with(guider, torch.zeros_like(latent), latent, sigmas, sample, 0)
    report["after_run"] = host_state()
    report["standin_counts"] = dynamic_standin.counts_of(model)
    return report
