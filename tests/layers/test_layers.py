"""Adder2d, BinaryConv2d and the conv-type factory."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from frugalvision.layers import Adder2d, BinaryConv2d, create_conv2d
from frugalvision.ops import adder2d


def test_adder2d_module_matches_functional_and_conv_shapes():
    layer = Adder2d(4, 6, 3, stride=2, padding=1, dilation=1, groups=2, bias=True)
    conv = nn.Conv2d(4, 6, 3, stride=2, padding=1, groups=2, bias=True)
    assert layer.weight.shape == conv.weight.shape
    assert layer.bias.shape == conv.bias.shape
    x = torch.randn(2, 4, 9, 9)
    torch.testing.assert_close(layer(x), adder2d(x, layer.weight, layer.bias, 2, 1, 1, 2))
    assert layer(x).shape == conv(x).shape
    assert "groups=2" in repr(layer)


def test_adder2d_init_is_normal_by_default_and_conv2d_like_with_kaiming():
    torch.manual_seed(0)
    layer = Adder2d(64, 64, 3)
    assert layer.weight.std().item() == pytest.approx(1.0, abs=0.02)
    kaiming = Adder2d(64, 64, 3, weight_init="kaiming")  # nn.Conv2d's default: U(-1/sqrt(fan_in), 1/sqrt(fan_in))
    bound = 1 / (64 * 9) ** 0.5
    assert kaiming.weight.abs().max().item() <= bound
    assert kaiming.weight.std().item() == pytest.approx(bound / 3**0.5, rel=0.02)


def test_adder2d_state_dict_swaps_with_conv():
    conv = nn.Conv2d(3, 5, 3, bias=False)
    layer = Adder2d(3, 5, 3)
    layer.load_state_dict(conv.state_dict())
    assert torch.equal(layer.weight, conv.weight)


@pytest.mark.parametrize("option, value", [("weight_init", "xavier"), ("weight_grad", "none")])
def test_adder2d_bad_options(option, value):
    with pytest.raises(ValueError, match=option):
        Adder2d(3, 5, 3, **{option: value})


def test_binary_conv_uses_binary_weights_and_activations():
    torch.manual_seed(0)
    layer = BinaryConv2d(3, 4, 3, padding=1, bias=False)
    x = torch.randn(2, 3, 6, 6)
    alpha = layer.weight.abs().mean(dim=(1, 2, 3), keepdim=True)
    expected = nn.functional.conv2d(torch.where(x >= 0, 1.0, -1.0), alpha * torch.where(layer.weight >= 0, 1.0, -1.0),
                                    padding=1)
    torch.testing.assert_close(layer(x), expected)


def test_binary_activation_straight_through_is_clipped():
    layer = BinaryConv2d(1, 1, 1, bias=False)
    x = torch.tensor([[[[-2.0, -0.5]], [[0.5, 3.0]]]]).view(1, 1, 2, 2).requires_grad_(True)
    layer(x).sum().backward()
    mask = (x.detach().abs() <= 1).float()
    assert torch.equal(x.grad != 0, mask.bool())


@pytest.mark.parametrize("conv_type, cls", [("conv", nn.Conv2d), ("adder", Adder2d), ("binary", BinaryConv2d)])
def test_factory_builds_the_conv_type_with_the_geometry(conv_type, cls):
    layer = create_conv2d(conv_type, 3, 8, 3, stride=2, padding=1)
    assert type(layer) is cls
    assert (layer.stride, layer.padding, layer.weight.shape) == ((2, 2), (1, 1), (8, 3, 3, 3))
    assert layer(torch.randn(1, 3, 8, 8)).shape == (1, 8, 4, 4)


def test_factory_rejects_unknown_type():
    with pytest.raises(ValueError, match="unknown conv_type 'shift'"):
        create_conv2d("shift", 3, 8, 3)
