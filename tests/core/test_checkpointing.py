"""Gradient checkpointing of repeated blocks (comfy_host/checkpointing.py) on plain torch
modules: the module imports only torch, so its contract is checked without a host; the host
tests check it on ComfyUI's own models (tests/host/test_memory_modes.py)."""

from __future__ import annotations

import torch

from psi_sampler.comfy_host.checkpointing import checkpointed, find_blocks


class Block(torch.nn.Module):
    """A residual block (conv, ReLU, conv + skip), as TAESD's decoder stacks them."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = torch.nn.Sequential(torch.nn.Conv2d(channels, channels, 3, padding=1), torch.nn.ReLU(),
                                        torch.nn.Conv2d(channels, channels, 3, padding=1))

    def forward(self, x):
        return torch.relu(self.conv(x) + x)


class PassThroughBlock(torch.nn.Module):
    """Returns (None, y) like SD3's last joint block (its context output is dropped)."""

    def __init__(self, channels: int):
        super().__init__()
        self.linear = torch.nn.Sequential(torch.nn.Linear(channels, channels), torch.nn.Tanh())

    def forward(self, context, x):
        return None, self.linear(x) + x


def sequential_decoder(channels: int = 4) -> torch.nn.Sequential:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Conv2d(3, channels, 3, padding=1), torch.nn.ReLU(), Block(channels),
                               Block(channels), torch.nn.Upsample(scale_factor=2), Block(channels))


def input_gradient(module, x):
    x = x.detach().clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(module(x).square().mean(), x)
    return grad


def test_a_sequential_root_is_searched_as_a_list_of_blocks():
    decoder = sequential_decoder()
    blocks = find_blocks(decoder)
    assert [type(b) for b in blocks] == [Block, Block, Block]
    assert all(b is decoder[i] for b, i in zip(blocks, (2, 3, 5)))


def test_checkpointed_blocks_give_the_same_gradient_and_are_restored():
    decoder = sequential_decoder()
    x = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    plain = input_gradient(decoder, x)
    blocks = find_blocks(decoder)
    with checkpointed(blocks) as wrapped:
        assert wrapped == 3
        assert all("forward" in b.__dict__ for b in blocks)
        ckpt = input_gradient(decoder, x)
    assert all("forward" not in b.__dict__ for b in blocks)
    torch.testing.assert_close(ckpt, plain, rtol=1e-5, atol=1e-7)


def test_a_block_with_a_none_output_is_checkpointed():
    torch.manual_seed(2)
    block = PassThroughBlock(6)
    context, x = torch.randn(3, 6), torch.randn(3, 6)

    def loss_gradient():
        xg = x.clone().requires_grad_(True)
        none, y = block(context, xg)
        assert none is None
        return torch.autograd.grad(y.square().sum(), xg)[0]

    plain = loss_gradient()
    with checkpointed([block]):
        ckpt = loss_gradient()
    torch.testing.assert_close(ckpt, plain, rtol=1e-5, atol=1e-7)
