"""A diffusion model with an op that has no backward (test-only).

`NoBackwardUNet` wraps a tiny SD1.5 UNet and passes its output through `psi_test::no_backward_scale`,
a `torch.library` custom op with a fake (meta) implementation but no autograd formula: the way
comfy-kitchen registers its fused kernels. Forward passes work; backward through it fails with
autograd's "no autograd formula was registered" error naming the op.
"""

from __future__ import annotations

import torch

OP_NAME = "psi_test::no_backward_scale"


@torch.library.custom_op(OP_NAME, mutates_args=())
def no_backward_scale(x: torch.Tensor) -> torch.Tensor:
    """x · 0.5 (any shape), with no backward."""
    return x * 0.5


@no_backward_scale.register_fake
def _(x: torch.Tensor) -> torch.Tensor:
    return torch.empty_like(x)


class NoBackwardUNet(torch.nn.Module):
    """`inner`'s output [B, C, H, W] through no_backward_scale."""

    def __init__(self, inner: torch.nn.Module):
        super().__init__()
        self.inner = inner
        self.dtype = inner.dtype  # BaseModel reads its diffusion model's dtype

    def forward(self, *args, **kwargs) -> torch.Tensor:
        return no_backward_scale(self.inner(*args, **kwargs))
