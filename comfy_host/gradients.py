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

from .kitchen_autograd import ensure_backward


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


# What a gradient pass needs: a backward for every op on the differentiated path. comfy-kitchen's
# kernels have none of their own; kitchen_autograd gives the ones image families reach (RoPE, fused
# RMSNorm + RoPE, split-half RoPE, AdaLN) a backward owned by the pack, registered at the first pass
# (its docstring surveys every kitchen op and says which are covered and how). ComfyUI 0.33 also has
# a training switch, `comfy.model_management.in_training`, which its own trainer sets around its loop
# (comfy_extras/nodes_train.py) and under which its image models take eager paths around those
# kernels (flux/math.py RoPE, lumina's fused q/k norm + RoPE, ernie's fused norm + RoPE, ops.py's INT8
# activation fusion): it is kept on as a second line, not relied on (releases between 0.3.64 and 0.33
# call the kernels without it; tests/host/test_kitchen_gradients.py runs the families that way).
# Elsewhere:
# - Norms: comfy/rmsnorm.py is torch.nn.functional.rms_norm (autograd), not a kitchen op.
# - Linear layers: quantised layers that quantise their input (fp8, nvfp4, mxfp8, int8) take
#   ComfyUI's own `QuantLinearFunc` (a torch.autograd.Function) when the input requires grad.
#   Weight-only formats (AWQ W4A16) dispatch F.linear to ck.gemv_awq_w4a16 below autograd:
#   untested (GPU-only formats), refused by gradient_support if it fails.
# - Attention: PyTorch SDPA by default (autograd); `--use-ck-attention` (ck.int8_attention) and
#   `--use-sage-attention` have no backward: gradient passes are refused naming the op.
# ComfyUI 0.3.64 has no comfy-kitchen and no `in_training`.


@contextlib.contextmanager
def training_switch() -> Iterator[None]:
    """`comfy.model_management.in_training` on for one gradient pass (forward and
    backward), then restored to what it was (deleted again on hosts that never had
    it), also when the pass raises or is interrupted. The pack's backward formulas for comfy-kitchen's
    ops are registered first (once per process)."""
    ensure_backward()
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
