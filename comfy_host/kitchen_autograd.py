"""Backward formulas, owned by the pack, for the comfy-kitchen ops a gradient pass can reach.

comfy-kitchen registers its fused kernels as `torch.library` custom ops with fake (meta)
implementations but without `register_autograd`: autograd reaches each op's generic kernel, which
runs the forward and refuses the backward ("Trying to backward through comfy_kitchen.apply_rope.default
but no autograd formula was registered"). ComfyUI 0.33 steers its image models around the RoPE ops
when `comfy.model_management.in_training` is set, but releases between 0.3.64 and 0.33 bind
`apply_rope = comfy.quant_ops.ck.apply_rope` at import time, and 0.33's ERNIE-Image calls
`ck.apply_rope_split_half` even in training. So the pack gives every op below a backward of its own
(`torch.library.register_autograd`), registered at the first gradient pass (`ensure_backward`) and
only where the op has none (a formula kitchen ships itself is kept). The forward stays the kitchen's
kernel; the backward is the vector–Jacobian product of a pure-PyTorch reference of the same map
(`REFERENCE`), recomputed from the saved inputs. The training switch (gradients.training_switch)
stays on as a second line: with it, 0.33's models take their eager paths and never reach these ops.

The maps (Su et al., "RoFormer", arXiv 2104.09864, eq. 34, in ComfyUI's matrix form). x [..., D]
is split into D/2 pairs p_i, freqs_cis [..., D/2, 2, 2] holds one 2×2 matrix F_i per pair
(broadcast over the leading dims), and the output pair is F_i p_i:

  interleaved ("rope")     p_i = (x[2i], x[2i+1])
  split-half               p_i = (x[i], x[i + D/2])
  rms_rope*                the same after per-head RMSNorm, x / sqrt(mean(x²) + ε) · scale (Zhang &
                           Sennrich, arXiv 1910.07467); rms_rope_split_half rotates only the first
                           rot_dim entries when rot_dim > 0 (0: all D)
  rms_adaln / adaln        norm(x) · (1 + scale) + shift, norm = RMSNorm / LayerNorm without affine

Products are taken in freqs_cis's dtype and cast back to x's; freqs_cis with more positions than x
(dimension 2) is trimmed to x's, as the kernels do.

Survey (comfy-kitchen 0.2.31, what ComfyUI 0.33.0 pins, and 0.2.40, the newest on the registry in
December 2026; every op listed via the torch dispatcher, checked for a registered backward: none has
one in either version):

  op (comfy_kitchen::)                  where image families reach it              backward here
  apply_rope, apply_rope1               flux/math.py: FLUX, Chroma, Qwen-Image,    pack (REFERENCE)
                                        Lumina 2, Z-Image, HiDream
  rms_rope, rms_rope1                   lumina/model.py q/k norm: Lumina 2,        pack
                                        Z-Image (joyimage too)
  apply_rope_split_half                 ernie/model.py: ERNIE-Image (ungated)      pack
  rms_rope_split_half                   ernie/model.py outside training; cosmos/   pack
                                        predict2.py (Anima, ungated), ideogram4
  apply_rope_split_half1,               LTX-Video (video; text encoders)           pack
  rms_rope_split_half1
  rms_adaln, adaln                      LTX-Video blocks (video)                   pack
  apply_rope_, apply_rope1_, *_rope*_   in place, "inference only" (LTX VAE)       none: in-place
  (the eight in-place variants)                                                     custom ops cannot
                                                                                    take register_autograd
  int8_attention, int8_attention_masked --use-ck-attention (any family)            none: quantised
                                                                                    attention; refused
  int8_linear                           ops.linear_input_act (Wan, LTX, MiniMax    none: gated by
                                        MLPs), skipped in training                 in_training; ComfyUI's
                                                                                    QuantLinearFunc
                                                                                    covers quantised linears
  quantize_*/dequantize_* (fp8, nvfp4,  quantised weights (QuantizedTensor);       none: ComfyUI's
  mxfp8, int8, svdquant, convrot),      forward of QuantLinearFunc                  QuantLinearFunc takes
  scaled_mm_nvfp4/mxfp8/svdquant_w4a4                                               their backward
  gemv_awq_w4a16                        AWQ weight-only linears                    none: refused
  na3d, sol_attn (0.2.40), fp16_conv3d, LTX VAE / video attention / 3-D VAE        none: not on an image
  group_norm_* (0.2.40)                 kernels                                     family's path
  not custom ops: rms_gated_residual,   not called by ComfyUI 0.33's image         none: plain functions
  fp16_linear, int8_linear_modulated,   families (text encoders' decode kernels,   over the backends (on
  int8_linear_rms_modulated, mm_int8,   0.2.40's fused linears)                     the eager backend
  w4a8_int8_linear, convrot_w4a4_linear,                                            autograd sees PyTorch
  flash_attention_decode*, gated_delta*                                             ops; not tested)

"pack" ops are checked in tests/core (reference against finite differences) and tests/host
(kitchen forward against the reference, registered backward against finite differences, on the
kitchen the host has and on 0.2.40). An op still without a backward is refused by
gradient_support, naming it.
"""

from __future__ import annotations

import sys
from typing import Callable

import torch

NAMESPACE = "comfy_kitchen"


def _trim(x: torch.Tensor, freqs_cis: torch.Tensor) -> torch.Tensor:
    """freqs_cis cut to x's positions (dimension 2) when it has more of them."""
    if x.ndim > 2 and freqs_cis.ndim > 2 and x.shape[2] != 1 and freqs_cis.shape[2] > x.shape[2]:
        return freqs_cis[:, :, :x.shape[2]]
    return freqs_cis


def _rotate_pairs(pairs: torch.Tensor, freqs_cis: torch.Tensor) -> torch.Tensor:
    """F_i p_i for pairs [..., D/2, 2] and freqs_cis [..., D/2, 2, 2] (broadcast)."""
    return (freqs_cis @ pairs.to(freqs_cis.dtype).unsqueeze(-1)).squeeze(-1)


def rope_interleaved(x: torch.Tensor, freqs_cis: torch.Tensor) -> torch.Tensor:
    """RoPE on interleaved pairs (x[2i], x[2i+1]); x [..., D] → [..., D] in x's dtype."""
    rotated = _rotate_pairs(x.unflatten(-1, (-1, 2)), _trim(x, freqs_cis))
    return rotated.flatten(-2).to(x.dtype)


def rope_split_half(x: torch.Tensor, freqs_cis: torch.Tensor) -> torch.Tensor:
    """RoPE on split-half pairs (x[i], x[i + D/2]); x [..., D] → [..., D] in x's dtype."""
    half = x.shape[-1] // 2
    rotated = _rotate_pairs(torch.stack((x[..., :half], x[..., half:]), dim=-1), freqs_cis)
    return torch.cat((rotated[..., 0], rotated[..., 1]), dim=-1).to(x.dtype)


def rms_norm(x: torch.Tensor, scale: torch.Tensor | None, eps: float) -> torch.Tensor:
    """x / sqrt(mean(x², last dim) + eps) · scale, in x's dtype."""
    return torch.nn.functional.rms_norm(x, (x.shape[-1],), weight=scale, eps=eps)


def rms_rope(x, freqs_cis, scale, eps, split_half: bool, rot_dim: int = 0) -> torch.Tensor:
    """RMSNorm then RoPE; with 0 < rot_dim < D only x[..., :rot_dim] is rotated."""
    normed = rms_norm(x, scale, eps)
    rotate = rope_split_half if split_half else rope_interleaved
    if rot_dim and rot_dim != x.shape[-1]:
        return torch.cat((rotate(normed[..., :rot_dim], freqs_cis), normed[..., rot_dim:]), dim=-1)
    return rotate(normed, freqs_cis)


def _pair_rms(split_half: bool):
    def reference(q, k, freqs_cis, q_scale, k_scale=None, epsilon=1e-6, rot_dim=0):
        k_scale = q_scale if k_scale is None else k_scale
        return (rms_rope(q, freqs_cis, q_scale, epsilon, split_half, rot_dim),
                rms_rope(k, freqs_cis, k_scale, epsilon, split_half, rot_dim))
    return reference


def _adaln(norm: Callable):
    def reference(x, scale, shift, eps):
        return norm(x, eps) * (1 + scale) + shift
    return reference


#: op name → pure-PyTorch reference taking the op's schema arguments in order (tuple outputs as tuples)
REFERENCE: dict[str, Callable] = {
    "apply_rope": lambda xq, xk, f: (rope_interleaved(xq, f), rope_interleaved(xk, f)),
    "apply_rope1": rope_interleaved,
    "apply_rope_split_half": lambda xq, xk, f: (rope_split_half(xq, f), rope_split_half(xk, f)),
    "apply_rope_split_half1": rope_split_half,
    "rms_rope": _pair_rms(split_half=False),
    "rms_rope1": lambda x, f, scale, epsilon=1e-6: rms_rope(x, f, scale, epsilon, split_half=False),
    "rms_rope_split_half": _pair_rms(split_half=True),
    "rms_rope_split_half1": lambda x, f, scale, epsilon=1e-6: rms_rope(x, f, scale, epsilon, split_half=True),
    "rms_adaln": _adaln(lambda x, eps: rms_norm(x, None, eps)),
    "adaln": _adaln(lambda x, eps: torch.nn.functional.layer_norm(x, (x.shape[-1],), eps=eps)),
}


def reference_vjp(name: str, inputs: tuple, grads: tuple, needs: tuple[bool, ...]) -> tuple:
    """Gradients of ⟨grads, REFERENCE[name](*inputs)⟩ with respect to the tensor inputs flagged in
    `needs` (None for the others and for non-tensor arguments), by autograd through the reference."""
    wanted = [i for i, a in enumerate(inputs) if isinstance(a, torch.Tensor) and needs[i]]
    if not wanted:
        return (None,) * len(inputs)
    with torch.enable_grad():
        args = [a.detach().requires_grad_(True) if i in wanted else a for i, a in enumerate(inputs)]
        out = REFERENCE[name](*args)
        outs = out if isinstance(out, tuple) else (out,)
        used = [(o, g) for o, g in zip(outs, grads) if g is not None]
        found = torch.autograd.grad([o for o, _ in used], [args[i] for i in wanted],
                                    [g for _, g in used], allow_unused=True)
    result: list = [None] * len(inputs)
    for i, g in zip(wanted, found):
        result[i] = torch.zeros_like(inputs[i]) if g is None else g
    return tuple(result)


def _formula(name: str):
    def setup_context(ctx, inputs, output):
        tensors = [i for i, a in enumerate(inputs) if isinstance(a, torch.Tensor)]
        ctx.save_for_backward(*(inputs[i] for i in tensors))
        ctx.tensor_slots = tensors
        ctx.plain = [None if isinstance(a, torch.Tensor) else a for a in inputs]

    def backward(ctx, *grads):
        inputs = list(ctx.plain)
        for slot, saved in zip(ctx.tensor_slots, ctx.saved_tensors):
            inputs[slot] = saved
        return reference_vjp(name, tuple(inputs), grads, tuple(ctx.needs_input_grad))

    return setup_context, backward


#: op name → "pack" (backward registered here), "kitchen" (kitchen ships one), "absent" (not in this
#: kitchen), "failed: ..." (registration refused); filled by ensure_backward
COVERAGE: dict[str, str] = {}


def _kitchen_backward(qualname: str):
    """The backward kitchen registered for `qualname` itself, None if none, or False where the op is
    not a Python custom op (its autograd is then whatever the dispatcher has)."""
    opdefs = getattr(getattr(torch, "_library", None), "custom_ops", None)
    opdef = getattr(opdefs, "OPDEFS", {}).get(qualname) if opdefs is not None else None
    return False if opdef is None else opdef._backward_fn


def ensure_backward() -> dict[str, str]:
    """Give every REFERENCE op of the loaded comfy-kitchen a backward (once per process; a no-op where
    ComfyUI has not imported comfy_kitchen, as on 0.3.64). Returns COVERAGE."""
    if COVERAGE or "comfy_kitchen" not in sys.modules:
        return COVERAGE
    for name in REFERENCE:
        qualname = f"{NAMESPACE}::{name}"
        if not hasattr(getattr(torch.ops, NAMESPACE), name):
            COVERAGE[name] = "absent"
            continue
        own = _kitchen_backward(qualname)
        if own:
            COVERAGE[name] = "kitchen"
            continue
        setup_context, backward = _formula(name)
        try:
            torch.library.register_autograd(qualname, backward, setup_context=setup_context)
            COVERAGE[name] = "pack"
        except (RuntimeError, ValueError, NotImplementedError) as err:
            COVERAGE[name] = f"failed: {err}"
    return COVERAGE
