"""Frozen-layer backward passes (comfy_host/input_gradients.py) on plain torch modules: the
module imports only torch; tests/host/test_taesd_lookahead.py checks it on ComfyUI's TAESD."""

from __future__ import annotations

import copy

import pytest
import torch

from psi_sampler.comfy_host.input_gradients import FrozenConv2d, MaskReLU, convert_frozen_layers


class Block(torch.nn.Module):
    """conv, ReLU, conv + a 1×1 skip, then ReLU: TAESD's residual block with a channel change."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.conv = torch.nn.Sequential(torch.nn.Conv2d(c_in, c_out, 3, padding=1), torch.nn.ReLU(),
                                        torch.nn.Conv2d(c_out, c_out, 3, padding=1))
        self.skip = torch.nn.Conv2d(c_in, c_out, 1, bias=False)
        self.fuse = torch.nn.ReLU()

    def forward(self, x):
        return self.fuse(self.conv(x) + self.skip(x))


def frozen_net(dtype=torch.float32) -> torch.nn.Sequential:
    """Every geometry the conversion must get right: stride 2 on an even and an odd size (output padding 1 and 0),
    dilation with groups, no bias, nearest upsampling between converted layers."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(), Block(8, 6),
        torch.nn.Conv2d(6, 6, 3, stride=2, padding=1, bias=False), torch.nn.ReLU(),
        torch.nn.Conv2d(6, 6, 3, padding=2, dilation=2, groups=2), torch.nn.Upsample(scale_factor=2),
        torch.nn.ReLU(), torch.nn.Conv2d(6, 3, 1))
    return net.to(dtype).requires_grad_(False)


def _input(dtype) -> torch.Tensor:
    return torch.randn(2, 3, 10, 11, generator=torch.Generator().manual_seed(1), dtype=dtype)


def output_and_gradient(net, x):
    x = x.detach().clone().requires_grad_(True)
    y = net(x)
    (grad,) = torch.autograd.grad(y.square().mean(), x)
    return y.detach(), grad


def count_layers(net) -> int:
    return sum(type(m) in (torch.nn.Conv2d, torch.nn.ReLU) for m in net.modules())


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_same_values_and_input_gradient_as_autograd(dtype):
    plain = frozen_net(dtype)
    converted = copy.deepcopy(plain)
    assert convert_frozen_layers(converted) == count_layers(plain) == 12  # 7 convolutions, 5 ReLUs
    kinds = [type(m) for m in converted.modules()]
    assert torch.nn.ReLU not in kinds and kinds.count(MaskReLU) == 5
    assert kinds.count(FrozenConv2d) == kinds.count(torch.nn.Conv2d) == 7  # each convolution wrapped once
    x = _input(dtype)
    y_plain, g_plain = output_and_gradient(plain, x)
    y_conv, g_conv = output_and_gradient(converted, x)
    assert torch.equal(y_conv, y_plain)  # forward is the same F.conv2d and relu
    assert g_plain.abs().max() > 0
    torch.testing.assert_close(g_conv, g_plain)  # torch's default tolerance for the dtype
    with torch.no_grad():
        assert torch.equal(converted(x), y_plain)


def saved_tensors(net, x) -> list[torch.Tensor]:
    """What autograd saves for backward during a forward of `net` from x."""
    saved: list[torch.Tensor] = []
    x = x.detach().clone().requires_grad_(True)

    def pack(t):
        saved.append(t)
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        net(x)
    return saved


def float_activations(net, saved) -> list[torch.Tensor]:
    """The saved tensors that are neither the net's weights nor boolean masks."""
    weights = {p.data_ptr() for p in net.parameters()}
    return [t for t in saved if t.dtype != torch.bool and t.data_ptr() not in weights]


def test_backward_keeps_only_weights_and_boolean_masks():
    plain = frozen_net()
    x = _input(torch.float32)
    assert float_activations(plain, saved_tensors(plain, x))  # autograd's own layers keep activations
    converted = copy.deepcopy(plain)
    convert_frozen_layers(converted)
    saved = saved_tensors(converted, x)
    assert float_activations(converted, saved) == []
    assert sum(t.dtype == torch.bool for t in saved) == 5  # one mask per ReLU


class CastingConv(torch.nn.Conv2d):
    """Stands for comfy.ops layers that cast or patch their weights in forward."""
    comfy_cast_weights = True


def test_layers_that_are_not_frozen_plain_or_out_of_place_are_left_alone():
    trainable = torch.nn.Conv2d(3, 3, 3, padding=1)
    reflect = torch.nn.Conv2d(3, 3, 3, padding=1, padding_mode="reflect").requires_grad_(False)
    same_padding = torch.nn.Conv2d(3, 3, 3, padding="same").requires_grad_(False)
    casting = CastingConv(3, 3, 3, padding=1).requires_grad_(False)
    inplace = torch.nn.ReLU(inplace=True)
    net = torch.nn.Sequential(trainable, reflect, same_padding, casting, inplace)
    assert convert_frozen_layers(net) == 0
    assert list(net) == [trainable, reflect, same_padding, casting, inplace]


def test_converting_twice_changes_nothing_more():
    net = frozen_net()
    first = convert_frozen_layers(net)
    layers = list(net.modules())
    assert first > 0 and convert_frozen_layers(net) == 0
    assert list(net.modules()) == layers
    assert sum(isinstance(m, (FrozenConv2d, MaskReLU)) for m in layers) == first
