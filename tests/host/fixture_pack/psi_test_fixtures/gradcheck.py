"""Finite-difference check of the sampler bridge's reward gradient (test-only).

Runs inside ComfyUI's sampling loop (a sampler function under `guider.sample`,
inside a node, so under the executor's inference mode): r̂(x, σ) through the
CFG-combined model, the VAE decoder and the reward. For each σ checked and each
direction v (the gradient's own direction and a random one), compares
⟨∇_x r̂, v⟩ with the central difference (r̂(x + hv) − r̂(x − hv)) / 2h, and the
gradient of a particle evaluated alone with the same particle in a batch. With
dynamic-VRAM stand-ins (dynamic_standin.py) it also reports which model and VAE
the gradient passes ran through.
"""

from __future__ import annotations

import sys

import torch

from . import dynamic_standin, ungated_kitchen


def pack_module(suffix: str):
    """The psi-sampler module loaded by ComfyUI whose name ends with `suffix`
    (ComfyUI names a pack module after its path)."""
    for name, module in list(sys.modules.items()):
        if name.endswith(suffix) and module is not None:
            return module
    raise RuntimeError(f"psi-sampler is not loaded (no module *{suffix})")


def inference_weights(*modules: torch.nn.Module) -> int:
    return sum(int(t.is_inference()) for m in modules for t in list(m.parameters()) + list(m.buffers()))


def _unit(v: torch.Tensor) -> torch.Tensor:
    return v / v.flatten().norm().clamp_min(1e-30)


def _central(look, x: torch.Tensor, sigma: float, v: torch.Tensor, step: float) -> float:
    plus = float(look(x + step * v, sigma, need_grad=False).reward[0])
    minus = float(look(x - step * v, sigma, need_grad=False).reward[0])
    return (plus - minus) / (2.0 * step)


def _directional(look, x: torch.Tensor, sigma: float, grad: torch.Tensor, v: torch.Tensor, step: float) -> dict:
    """Central difference with one Richardson step (error O(h⁴)) against ⟨∇, v⟩."""
    finite_difference = (4.0 * _central(look, x, sigma, v, step / 2.0) - _central(look, x, sigma, v, step)) / 3.0
    analytic = float((grad.double() * v.double()).sum())
    scale = max(abs(finite_difference), abs(analytic), 1e-30)
    return {"analytic": analytic, "finite_difference": finite_difference,
            "rel_error": abs(finite_difference - analytic) / scale, "step": step}


def check_function(bridge_module, vae, reward, sigma_indices: list[int], rel_step: float, seed: int, report: dict,
                   forget_inplace: bool = False):
    """A sampler function that fills `report` with the figures and returns x.
    forget_inplace: start without activation cloning, as for a model the bridge does not
    know, so the first gradient pass must detect the in-place update and be repeated."""

    def sample(model, x, sigmas, extra_args=None, callback=None, disable=None):
        generator = torch.Generator().manual_seed(seed)
        with bridge_module.SamplerBridge(model, extra_args, vae, reward, grad_batch_size=2) as bridge:
            bridge.prepare((2, *x.shape[1:]))
            if forget_inplace:
                bridge.clone_saved = False
            report["clone_saved_at_start"] = bridge.clone_saved
            look = bridge.lookahead()
            eps = torch.randn((2, *x.shape[1:]), generator=generator).to(x)
            report["family"] = bridge.family
            report["checks"] = []
            for index in sigma_indices:
                sigma = float(sigmas[index])
                states = bridge.start(sigmas[index:])(eps)
                pair = look(states, sigma, need_grad=True)
                single = look(states[:1], sigma, need_grad=True)
                x0, grad = states[:1], single.grad
                step = rel_step * float(x0.flatten().norm())
                random_v = _unit(torch.randn(x0.shape, generator=generator).to(x0))
                report["checks"].append({
                    "sigma": sigma,
                    "reward": float(single.reward[0]),
                    "batch_vs_single": float((pair.grad[:1] - grad).abs().max() / grad.abs().max().clamp_min(1e-30)),
                    "gradient_direction": _directional(look, x0, sigma, grad, _unit(grad), step),
                    "random_direction": _directional(look, x0, sigma, grad, random_v, step),
                })
            report["clone_saved"] = bridge.clone_saved
            report["retried"] = bridge.retried
            report["converted"] = bridge.converted
            report["gradient_models_are_delegates"] = [bridge.grad_base is not bridge.base,
                                                        bridge.grad_vae_model is not vae.first_stage_model]
            report["gradient_models_inference_weights"] = inference_weights(bridge.grad_base, bridge.grad_vae_model)
        return x

    return sample


def run(model, positive, negative, cfg: float, vae, reward, steps: int, sigma_indices: list[int],
        rel_step: float, seed: int, forget_inplace: bool = False) -> dict:
    """Build a guider, run the check inside `guider.sample`, return the figures."""
    bridge = pack_module("comfy_host.sampling")
    report = {"inference_weights_before": inference_weights(model.model, vae.first_stage_model,
                                                             *reward.modules()),
              "model_vae_inference_weights_before": inference_weights(model.model, vae.first_stage_model)}
    latent = pack_module("comfy_host.checks").prepare_latent(model, {"samples": torch.zeros((1, 4, 8, 8))})  # as from Empty Latent Image
    sigmas = bridge.schedule(model, "simple", steps, 1.0)
    guider = bridge.cfg_guider(model, positive, negative, cfg)
    function = check_function(pack_module("comfy_host.sampler_bridge"), vae, reward, sigma_indices, rel_step, seed,
                              report, forget_inplace)
    calls_before = dict(ungated_kitchen.CALLS)
    with dynamic_standin.claim_dynamic(pack_module("comfy_host.dynamic_vram")):
        bridge.sample_with(guider, torch.zeros_like(latent), latent, sigmas, function, seed)
    # kitchen kernels called with inputs requiring grad during this check (only counted when ungated)
    report["kitchen_grad_calls"] = {k: v - calls_before.get(k, 0) for k, v in ungated_kitchen.CALLS.items()
                                    if v > calls_before.get(k, 0)}
    report["inference_weights_after"] = inference_weights(model.model, vae.first_stage_model, *reward.modules())
    report["model_vae_inference_weights_after"] = inference_weights(model.model, vae.first_stage_model)
    report["standin_counts"] = dynamic_standin.counts_of(model)
    return report
