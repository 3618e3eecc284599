"""ComfyUI's weights made usable by autograd, and ComfyUI's training switch.

The executor runs nodes under `torch.inference_mode()`, so weights loaded by ComfyUI
are inference tensors that autograd cannot save. Before a gradient pass each inference
parameter/buffer is replaced by a normal clone made outside inference mode, module by
module (the peak is one tensor), with `requires_grad=False`: gradients are only ever
taken with respect to the latents x [B, C, H, W] (the look-ahead reward's ∇x r̂ of
Yoon et al., arXiv 2506.01320).
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import torch

import comfy.model_management as model_management


def make_gradient_ready(module: torch.nn.Module) -> int:
    """Replace inference-tensor parameters and buffers of `module` by normal clones
    (module by module) and turn off weight gradients. Returns how many were replaced."""
    replaced = 0
    with torch.inference_mode(False), torch.no_grad():
        for sub in module.modules():
            for name, param in list(sub._parameters.items()):
                if param is None:
                    continue
                if param.is_inference():
                    sub._parameters[name] = torch.nn.Parameter(param.clone(), requires_grad=False)
                    replaced += 1
                elif param.requires_grad:
                    param.requires_grad_(False)
            for name, buf in list(sub._buffers.items()):
                if buf is not None and buf.is_inference():
                    sub._buffers[name] = buf.clone()
                    replaced += 1
    return replaced


# What a gradient pass needs on current hosts (ComfyUI 0.33.0, comfy-kitchen 0.2.31).
# comfy-kitchen registers its kernels as torch.library custom ops with fake (meta)
# implementations but no autograd formula (no register_autograd anywhere in the
# package), so any of them on the differentiated path fails in backward. Where the
# image models the pack supports reach them:
# - RoPE: comfy/ldm/flux/math.py (`apply_rope`, `apply_rope1`, imported by FLUX, Chroma,
#   Qwen-Image, HiDream, Lumina 2 / Z-Image, OmniGen2, ...) calls ck.apply_rope unless
#   `comfy.model_management.in_training` is set; comfy/ldm/lumina/model.py fuses q/k
#   RMSNorm + RoPE (ck.rms_rope, ck.rms_rope1) unless in_training. Both have eager paths.
# - Norms: comfy/rmsnorm.py is torch.nn.functional.rms_norm (autograd), not a kitchen op.
# - Linear layers: comfy/ops.py quantised layers that quantise their input (fp8, nvfp4,
#   mxfp8, int8) take `QuantLinearFunc` (ComfyUI's own torch.autograd.Function) when the
#   input requires grad; the INT8 activation-fusion path (`linear_input_act`,
#   ck.int8_linear) is skipped when in_training. Weight-only formats (AWQ W4A16) keep the
#   weight a QuantizedTensor and F.linear dispatches to a kitchen op (ck.gemv_awq_w4a16)
#   below autograd, so backward needs matmuls with that tensor subclass: untested (GPU-only
#   formats), expected to fail loudly if unsupported.
# - Attention: comfy/ldm/modules/attention.py uses PyTorch SDPA by default (autograd);
#   `--use-ck-attention` (ck.int8_attention) and `--use-sage-attention` have no backward
#   and in_training does not change them: with those flags gradient passes fail loudly.
# - Ungated kitchen calls (no eager path even in training): cosmos/predict2.py
#   (ck.rms_rope_split_half, Cosmos Predict2 / Anima) and minimax/vae.py: not supported for
#   gradients here. ComfyUI 0.3.64 has no comfy-kitchen and no `in_training`.
# So one switch covers every supported image family: `in_training`, which ComfyUI's own
# trainer sets around its loop (comfy_extras/nodes_train.py).


@contextlib.contextmanager
def training_switch() -> Iterator[None]:
    """`comfy.model_management.in_training` on for one gradient pass (forward and
    backward), then restored to what it was (deleted again on hosts that never had
    it), also when the pass raises or is interrupted."""
    had = hasattr(model_management, "in_training")
    previous = getattr(model_management, "in_training", False)
    model_management.in_training = True
    try:
        yield
    finally:
        if had:
            model_management.in_training = previous
        else:
            del model_management.in_training
