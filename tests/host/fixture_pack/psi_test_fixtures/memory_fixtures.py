"""Memory modes, fp8 weights and opaque models for the host tests (test-only).

compare_modes  inside ComfyUI's sampling loop, one bridge per memory mode evaluates the
               look-ahead reward and its gradient for the same particles at two σ; the
               report has each mode's gradients' largest difference from fast's, how often
               a leaf inside a checkpointed block ran per gradient pass (2 = recomputed in
               backward), whether any block was still wrapped after the passes, after a
               failing pass and during a forward-only pass.
fp8_model      the tiny model rebuilt as UNETLoader builds a model with weight_dtype
               fp8_e4m3fn / fp8_e5m2: the model config's inference dtype set to the fp8
               storage type with a manual-cast compute dtype, weights loaded from the
               float32 state dict (so stored as fp8, cast per op by comfy.ops).
partial_model  a MODEL with a weight patch that ComfyUI always loads partially (lowvram).
opaque_model   a MODEL whose diffusion model is hidden in a wrapper that registers no
               sub-modules (as a foreign wrapper might): no blocks can be found.
"""

from __future__ import annotations

import torch

import comfy.model_management
import comfy.model_patcher
import comfy.supported_models

from .gradcheck import pack_module

MODES = ("fast", "balanced", "low")
FP8 = {"fp8_e4m3fn": torch.float8_e4m3fn, "fp8_e5m2": torch.float8_e5m2}


class ModeFault(RuntimeError):
    """Raised by the fixture inside a gradient pass (expected by the test)."""


def _leaf_counter(bridge, counts: dict) -> list:
    """Forward pre-hooks on the first weighted leaf (Linear/Conv) of the first block of the
    denoiser and of the VAE decoder: a leaf runs through __call__ in the forward and again
    in a checkpointed block's recomputation."""
    find_blocks = pack_module("comfy_host.checkpointing").find_blocks
    roots = {"denoiser": bridge.grad_base.diffusion_model, "decoder": bridge.grad_vae_model.decoder}
    handles = []
    for part, root in roots.items():
        block = find_blocks(root)[0]
        leaf = next(m for m in block.modules()
                    if not any(True for _ in m.children()) and any(True for _ in m.parameters()))
        counts[part] = 0
        handles.append(leaf.register_forward_pre_hook(lambda *_, p=part: counts.__setitem__(p, counts[p] + 1)))
    return handles


def _wrapped(blocks: list) -> int:
    return sum("forward" in b.__dict__ for b in blocks)


def compare_function(bridge_module, vae, reward, report: dict, forget_inplace: bool):
    def sample(model, x, sigmas, extra_args=None, callback=None, disable=None):
        generator = torch.Generator().manual_seed(0)
        eps = torch.randn((2, *x.shape[1:]), generator=generator).to(x)
        results = {}
        for mode in MODES:
            with bridge_module.SamplerBridge(model, extra_args, vae, reward, grad_batch_size=2,
                                             memory=mode) as bridge:
                bridge.prepare((2, *x.shape[1:]))
                if forget_inplace:
                    bridge.clone_saved = False
                look = bridge.lookahead()
                blocks = bridge.checkpoint_blocks
                counts: dict = {}
                observed = _leaf_counter(bridge, counts)
                grads, rewards, per_pass = [], [], []
                for index in (0, 2):
                    states = bridge.start(sigmas[index:])(eps)
                    before = dict(counts)
                    evaluation = look(states, float(sigmas[index]), need_grad=True)
                    per_pass.append({k: counts[k] - before[k] for k in counts})
                    grads.append(evaluation.grad)
                    rewards.append(evaluation.reward)
                wrapped_after = _wrapped(blocks)
                forward_only = look(states, float(sigmas[0]), need_grad=False)
                wrapped_in_forward_only = _wrapped(blocks) if forward_only is not None else None
                failed = _failing_pass(bridge, look, states, float(sigmas[0]), blocks)
                for handle in observed:
                    handle.remove()
                results[mode] = {"grads": torch.cat(grads), "rewards": torch.cat(rewards)}
                report[mode] = {"blocks": len(blocks), "leaf_calls_per_pass": per_pass,
                                "wrapped_after": wrapped_after, "wrapped_in_forward_only": wrapped_in_forward_only,
                                "failing_pass": failed, "retried": bridge.retried, "clone_saved": bridge.clone_saved}
        fast = results["fast"]
        for mode in MODES:
            grads, rewards = results[mode]["grads"], results[mode]["rewards"]
            report[mode]["grad_rel_diff"] = float((grads - fast["grads"]).abs().max() / fast["grads"].abs().max())
            report[mode]["reward_abs_diff"] = float((rewards - fast["rewards"]).abs().max())
            report[mode]["finite"] = bool(torch.isfinite(grads).all())
        return x

    return sample


def _failing_pass(bridge, look, states: torch.Tensor, sigma: float, blocks: list) -> dict:
    """A gradient pass whose reward raises after the forward of model and decoder: the
    error comes through unchanged and no block is left wrapped."""
    reward = bridge.reward

    def failing(images):
        if images.requires_grad:
            raise ModeFault("fixture failure inside a gradient pass")
        return reward(images)

    bridge.reward = failing
    try:
        look(states, sigma, need_grad=True)
        raised = None
    except ModeFault as err:
        raised = str(err)
    finally:
        bridge.reward = reward
    return {"raised": raised, "wrapped_after": _wrapped(blocks)}


def compare_modes(model, positive, negative, cfg: float, vae, reward, forget_inplace: bool = False) -> dict:
    sampling = pack_module("comfy_host.sampling")
    report: dict = {}
    latent = torch.zeros((1, vae.latent_channels, 8, 8))
    sigmas = sampling.schedule(model, "simple", 4, 1.0)
    guider = sampling.cfg_guider(model, positive, negative, cfg)
    function = compare_function(pack_module("comfy_host.sampler_bridge"), vae, reward, report, forget_inplace)
    sampling.sample_with(guider, torch.zeros_like(latent), latent, sigmas, function, 0)
    return report


def fp8_model(model, weight_dtype: str):
    """MODEL with the same weights stored as `weight_dtype` and manual-cast float32 compute
    (comfy.sd.load_diffusion_model_state_dict's path for UNETLoader's weight_dtype)."""
    base = model.model
    config = type(base.model_config)(dict(base.model_config.unet_config))
    manual_cast = comfy.model_management.unet_manual_cast(FP8[weight_dtype], model.load_device,
                                                           config.supported_inference_dtypes)
    config.set_inference_dtype(FP8[weight_dtype], manual_cast or torch.float32)
    rebuilt = config.get_model({})
    missing, unexpected = rebuilt.diffusion_model.load_state_dict(base.diffusion_model.state_dict(), strict=True)
    return comfy.model_patcher.ModelPatcher(rebuilt, load_device=model.load_device,
                                            offload_device=model.offload_device)


def stored_dtypes(model) -> list[str]:
    return sorted({str(p.dtype) for p in model.model.diffusion_model.parameters()})


class Opaque(torch.nn.Module):
    """Calls a diffusion model it does not register as a sub-module."""

    def __init__(self, inner: torch.nn.Module):
        super().__init__()
        object.__setattr__(self, "_inner", inner)

    def forward(self, *args, **kwargs):
        return self._inner(*args, **kwargs)


def opaque_model(model):
    patched = model.clone()
    patched.add_object_patch("diffusion_model", Opaque(model.model.diffusion_model))
    return patched




def partial_model(model, budget_bytes: int) -> tuple:
    """A clone with a weight patch (as a LoRA leaves it) that ComfyUI always loads partially:
    every load is given a weight budget of `budget_bytes`, so the modules beyond it run
    ComfyUI's lowvram path (`comfy_cast_weights`, the patch applied at cast time by
    `LowVramPatch`), as `partially_load` leaves a model that does not fit a GPU. Returns the
    clone and how many modules run that path after a first load."""
    patched = model.clone()
    generator = torch.Generator().manual_seed(2)
    for key, weight in list(patched.model.state_dict().items())[:40]:
        if key.startswith("diffusion_model.") and key.endswith(".weight") and weight.ndim >= 2:
            patched.add_patches({key: (torch.randn(weight.shape, generator=generator) * 0.02,)}, 0.5)
    original = patched.load

    def load(device_to=None, lowvram_model_memory=0, force_patch_weights=False, full_load=False, **kwargs):
        return original(device_to, lowvram_model_memory=budget_bytes, force_patch_weights=False, full_load=False,
                        **kwargs)

    patched.load = load
    patched.load(patched.load_device)
    lowvram = sum(1 for m in patched.model.modules()
                  if getattr(m, "comfy_cast_weights", False) and getattr(m, "weight_function", None))
    return patched, lowvram
