"""Backward passes that keep no float activations, for frozen convolutional decoders.

The Ψ-Sampler's look-ahead gradient (Yoon et al., arXiv 2506.01320) is taken with respect
to the particle only: the decoder's weights are frozen. Autograd does not know that a
layer will never be asked for its weight gradient, so a Conv2d saves its input and a ReLU
its output for backward, which in TAESD's last stage (64 channels at the full image size)
is about 64 MiB per tensor at 512², float32.

With frozen weights neither is needed (for y = conv(x; W) + b and z = max(y, 0)):

    ∂L/∂x = conv_transpose(∂L/∂y; W)      (the weights only: nothing of x)
    ∂L/∂y = ∂L/∂z · 1[z > 0]              (a boolean mask, a quarter of a float32 tensor)

`convert_frozen_layers(module)` swaps a module's eligible Conv2d and ReLU children for
layers whose backward is exactly that; forward values are unchanged, and a pass without
gradients runs the original layer. Only the input gradient is returned, so the weights
must not require gradients (layers whose weights do are left as they are).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable


def _transpose_output_padding(input_size, grad, weight, stride, padding, dilation) -> list[int]:
    """The output_padding that makes conv_transpose2d return `input_size`'s spatial size
    (a strided convolution maps several input sizes to one output size)."""
    return [int(input_size[2 + i]) - ((grad.shape[2 + i] - 1) * stride[i] - 2 * padding[i]
                                      + dilation[i] * (weight.shape[2 + i] - 1) + 1) for i in range(2)]


class _ConvolutionInputGradient(torch.autograd.Function):
    """y = conv2d(x, W, b) [B, C_out, H', W'] from x [B, C_in, H, W]; saves W only."""

    @staticmethod
    def forward(ctx, x, weight, bias, stride, padding, dilation, groups):
        ctx.geometry = (x.shape, stride, padding, dilation, groups)
        ctx.save_for_backward(weight)
        return F.conv2d(x, weight, bias, stride, padding, dilation, groups)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):
        (weight,) = ctx.saved_tensors
        input_size, stride, padding, dilation, groups = ctx.geometry
        output_padding = _transpose_output_padding(input_size, grad, weight, stride, padding, dilation)
        grad_x = F.conv_transpose2d(grad, weight, None, stride, padding, output_padding, groups, dilation)
        return grad_x, None, None, None, None, None, None


class _ReluMaskGradient(torch.autograd.Function):
    """z = max(y, 0); saves the boolean mask z > 0 [same shape as y] only."""

    @staticmethod
    def forward(ctx, y):
        z = torch.relu(y)
        ctx.save_for_backward(z > 0)
        return z

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):
        (mask,) = ctx.saved_tensors
        return torch.where(mask, grad, 0.0)


def _needs_graph(x: torch.Tensor) -> bool:
    return torch.is_grad_enabled() and x.requires_grad


class FrozenConv2d(torch.nn.Module):
    """A frozen Conv2d whose backward gives the input gradient from the weights alone."""

    def __init__(self, conv: torch.nn.Conv2d):
        super().__init__()
        self.conv = conv

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = self.conv
        if not _needs_graph(x):
            return c(x)
        return _ConvolutionInputGradient.apply(x, c.weight, c.bias, c.stride, c.padding, c.dilation, c.groups)


class MaskReLU(torch.nn.Module):
    """ReLU whose backward keeps a boolean mask instead of its float output."""

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        return _ReluMaskGradient.apply(y) if _needs_graph(y) else torch.relu(y)


def _convertible_conv(module: torch.nn.Module) -> bool:
    """A plain zero-padded Conv2d with frozen weights, whose forward is F.conv2d with its own
    weights (not ComfyUI's weight casting or patching: comfy.ops layers with
    `comfy_cast_weights` or weight functions are left as they are)."""
    return (isinstance(module, torch.nn.Conv2d) and module.padding_mode == "zeros"
            and isinstance(module.padding, tuple) and not module.weight.requires_grad
            and (module.bias is None or not module.bias.requires_grad)
            and not getattr(module, "comfy_cast_weights", False)
            and not getattr(module, "weight_function", None) and not getattr(module, "bias_function", None))


def _converted(module: torch.nn.Module) -> torch.nn.Module | None:
    if _convertible_conv(module):
        return FrozenConv2d(module)
    if type(module) is torch.nn.ReLU and not module.inplace:
        return MaskReLU()
    return None


def convert_frozen_layers(module: torch.nn.Module) -> int:
    """Swap, in place, every convertible Conv2d and every out-of-place nn.ReLU under
    `module` for FrozenConv2d / MaskReLU; returns how many were swapped. Modules whose
    forward calls F.relu or a conv themselves are not seen (only child modules are)."""
    swapped = 0
    for parent in list(module.modules()):
        if isinstance(parent, (FrozenConv2d, MaskReLU)):
            continue
        for name, child in list(parent.named_children()):
            replacement = _converted(child)
            if replacement is not None:
                setattr(parent, name, replacement)
                swapped += 1
    return swapped
