"""The pure-PyTorch references behind the pack's backward for comfy-kitchen's ops
(comfy_host/kitchen_autograd.py), without ComfyUI or the kitchen.

- Each reference against an independent statement of its map: interleaved RoPE as the complex product
  (x[2i] + i·x[2i+1])·e^{iθ_i} (Su et al., arXiv 2104.09864, eq. 34) with ComfyUI's rotation matrices
  [[cos θ, −sin θ], [sin θ, cos θ]]; split-half RoPE the same on (x[i], x[i + D/2]); RMSNorm
  x / sqrt(mean(x²) + ε) · scale written out; AdaLN norm(x)·(1 + scale) + shift (float64, ≤ 1e-12).
- Each op's backward (reference_vjp, what the registered formula returns) against
  torch.autograd.gradcheck of the reference: every Jacobian entry against finite differences in
  float64 (gradcheck's default tolerances), for every differentiable input (x, freqs_cis, scales, shift).
- reference_vjp gives None for inputs not asked for and for non-tensors, and zeros where an output's
  gradient is None.
"""

from __future__ import annotations

import pytest
import torch

from psi_sampler.comfy_host import kitchen_autograd as ka

D = 8


def rand(*shape, seed=[0]):
    seed[0] += 1
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed[0]), dtype=torch.float64)


def rotations(*shape):
    angle = rand(*shape)
    return angle, torch.stack((angle.cos(), -angle.sin(), angle.sin(), angle.cos()), -1).unflatten(-1, (2, 2))


def test_interleaved_rope_is_the_complex_rotation():
    x = rand(2, 3, 5, D)
    angle, freqs = rotations(2, 1, 5, D // 2)
    expected = torch.view_as_real(torch.view_as_complex(x.unflatten(-1, (-1, 2)).contiguous())
                                  * torch.polar(torch.ones_like(angle), angle)).flatten(-2)
    assert (ka.rope_interleaved(x, freqs) - expected).abs().max() < 1e-12


def test_interleaved_rope_trims_extra_positions():
    x = rand(2, 3, 5, D)
    _, freqs = rotations(2, 1, 7, D // 2)
    assert torch.equal(ka.rope_interleaved(x, freqs), ka.rope_interleaved(x, freqs[:, :, :5]))


def test_split_half_rope_rotates_i_with_i_plus_half():
    x = rand(2, 5, 3, D)
    angle, freqs = rotations(2, 5, 1, D // 2)
    first, second = x[..., :D // 2], x[..., D // 2:]
    expected = torch.cat((angle.cos() * first - angle.sin() * second, angle.sin() * first + angle.cos() * second), -1)
    assert (ka.rope_split_half(x, freqs) - expected).abs().max() < 1e-12


@pytest.mark.parametrize("split_half", [False, True])
def test_rms_rope_is_rmsnorm_then_rope_and_rot_dim_rotates_a_prefix(split_half):
    x, scale = rand(2, 5, 3, D), rand(D)
    _, freqs = rotations(2, 5, 1, D // 2)
    eps = 1e-6
    normed = x / (x.square().mean(-1, keepdim=True) + eps).sqrt() * scale
    rotate = ka.rope_split_half if split_half else ka.rope_interleaved
    assert (ka.rms_rope(x, freqs, scale, eps, split_half) - rotate(normed, freqs)).abs().max() < 1e-12
    partial = ka.rms_rope(x, freqs[..., :D // 4, :, :], scale, eps, split_half, rot_dim=D // 2)
    assert (partial[..., :D // 2] - rotate(normed[..., :D // 2], freqs[..., :D // 4, :, :])).abs().max() < 1e-12
    assert (partial[..., D // 2:] - normed[..., D // 2:]).abs().max() < 1e-12


def test_adaln_references():
    x, scale, shift = rand(2, 5, D), rand(2, 1, D), rand(2, 1, D)
    rms = x / (x.square().mean(-1, keepdim=True) + 1e-6).sqrt()
    centred = x - x.mean(-1, keepdim=True)
    layer = centred / (centred.square().mean(-1, keepdim=True) + 1e-6).sqrt()
    assert (ka.REFERENCE["rms_adaln"](x, scale, shift, 1e-6) - (rms * (1 + scale) + shift)).abs().max() < 1e-12
    assert (ka.REFERENCE["adaln"](x, scale, shift, 1e-6) - (layer * (1 + scale) + shift)).abs().max() < 1e-12


def op_inputs(name):
    """Schema-ordered inputs of each op (float64)."""
    _, f = rotations(2, 5, 1, D // 2)
    x, y = rand(2, 5, 3, D), rand(2, 5, 3, D)
    return {
        "apply_rope": (x, y, f), "apply_rope1": (x, f), "apply_rope_split_half": (x, y, f),
        "apply_rope_split_half1": (x, f), "rms_rope": (x, y, f, rand(D), rand(D), 1e-6),
        "rms_rope1": (x, f, rand(D), 1e-6), "rms_rope_split_half": (x, y, f, rand(D), rand(D), 1e-6, 0),
        "rms_rope_split_half1": (x, f, rand(D), 1e-6),
        "rms_adaln": (rand(2, 5, D), rand(2, 1, D), rand(2, 1, D), 1e-6),
        "adaln": (rand(2, 5, D), rand(2, 1, D), rand(2, 1, D), 1e-6),
    }[name]


class _VJP(torch.autograd.Function):
    """The op as the registered formula sees it: forward the reference, backward reference_vjp."""

    @staticmethod
    def forward(ctx, name, plain, *tensors):
        ctx.name, ctx.plain = name, plain
        ctx.save_for_backward(*tensors)
        with torch.no_grad():
            out = ka.REFERENCE[name](*_merge(plain, tensors))
        return out if isinstance(out, tuple) else (out,)

    @staticmethod
    def backward(ctx, *grads):
        inputs = _merge(ctx.plain, ctx.saved_tensors)
        needs = tuple(isinstance(a, torch.Tensor) for a in inputs)
        found = ka.reference_vjp(ctx.name, inputs, grads, needs)
        return (None, None, *[g for g, a in zip(found, inputs) if isinstance(a, torch.Tensor)])


def _merge(plain, tensors):
    it = iter(tensors)
    return tuple(next(it) if p is None else p for p in plain)


@pytest.mark.parametrize("name", list(ka.REFERENCE))
def test_each_ops_backward_passes_gradcheck(name):
    inputs = op_inputs(name)
    plain = tuple(None if isinstance(a, torch.Tensor) else a for a in inputs)
    tensors = tuple(a.clone().requires_grad_(True) for a in inputs if isinstance(a, torch.Tensor))
    assert torch.autograd.gradcheck(lambda *t: _VJP.apply(name, plain, *t), tensors)


def test_partial_rotation_backward_passes_gradcheck():
    _, f = rotations(2, 5, 1, D // 4)
    inputs = (rand(2, 5, 3, D), rand(2, 5, 3, D), f, rand(D), rand(D), 1e-6, D // 2)
    plain = tuple(None if isinstance(a, torch.Tensor) else a for a in inputs)
    tensors = tuple(a.clone().requires_grad_(True) for a in inputs if isinstance(a, torch.Tensor))
    assert torch.autograd.gradcheck(lambda *t: _VJP.apply("rms_rope_split_half", plain, *t), tensors)


def test_vjp_skips_what_is_not_asked_and_fills_missing_output_gradients():
    x, y, f = op_inputs("apply_rope")
    grads = ka.reference_vjp("apply_rope", (x, y, f), (torch.ones_like(x), None), (True, True, False))
    assert torch.equal(grads[1], torch.zeros_like(y)) and grads[2] is None
    assert grads[0].shape == x.shape
    none = ka.reference_vjp("rms_rope1", op_inputs("rms_rope1"), (torch.ones(2, 5, 3, D, dtype=torch.float64),),
                            (False, False, False, False))
    assert none == (None, None, None, None)
