"""The AdaptiveConv2d layer: wiring to the functional op, the conv-equivalent init, parameters and counting."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from frugalvision import count_ops
from frugalvision.layers import CONV_TYPES, AdaptiveConv2d, create_conv2d
from frugalvision.ops import adaptive_conv2d


@pytest.mark.parametrize("bias", [False, True])
def test_layer_is_the_functional_op_on_its_parameters(bias: bool) -> None:
    """The module passes its parameters and geometry to ``adaptive_conv2d`` (the op is checked against the loop
    oracle in tests/ops/test_adaptive_conv.py): same output, same gradients."""
    torch.manual_seed(0)
    layer = AdaptiveConv2d(2, 3, (2, 3), stride=(1, 2), padding=(1, 0), dilation=(2, 1), bias=bias,
                           max_chunk_elements=50, dtype=torch.float64)
    x = torch.randn(2, 2, 7, 8, dtype=torch.float64)
    y = layer(x)
    params = [p for p in (layer.weight, layer.kernel_bias, layer.bias) if p is not None]
    expected = adaptive_conv2d(x, layer.weight, layer.kernel_bias, layer.bias, stride=(1, 2), padding=(1, 0),
                               dilation=(2, 1), kernel_size=(2, 3))
    assert y.shape == (2, 3, 7, 3)
    torch.testing.assert_close(y, expected, rtol=1e-13, atol=1e-13)
    grad = torch.randn_like(y)
    for got, want in zip(torch.autograd.grad(y, params, grad), torch.autograd.grad(expected, params, grad)):
        torch.testing.assert_close(got, want, rtol=1e-13, atol=1e-13)


def test_zero_q_is_conv_with_tanh_b():
    layer = AdaptiveConv2d(3, 4, 3, stride=2, padding=1, init="conv")
    assert torch.count_nonzero(layer.weight) == 0
    x = torch.randn(2, 3, 9, 9)
    expected = F.conv2d(x, torch.tanh(layer.kernel_bias).view(4, 3, 3, 3), stride=2, padding=1)
    torch.testing.assert_close(layer(x), expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(layer.static_kernel(), torch.tanh(layer.kernel_bias).view(4, 3, 3, 3))
    # the "conv" init starts as a default-initialised nn.Conv2d: |tanh(b)| <= 1/sqrt(fan_in)
    assert layer.static_kernel().abs().max() <= 1 / (3 * 9) ** 0.5 + 1e-6


def test_parameter_shapes_count_and_uniform_init():
    torch.manual_seed(0)
    layer = AdaptiveConv2d(3, 5, 5, bias=True)
    assert layer.weight.shape == (5, 3, 25, 25) and layer.kernel_bias.shape == (5, 3, 25)
    assert sum(p.numel() for p in layer.parameters()) == 3 * 5 * 25 * 26 + 5
    for p in (layer.weight, layer.kernel_bias):  # U(-1/k, 1/k): inside the bound, filling it, E|U| = 1/(2k)
        assert 0.19 <= p.abs().max() <= 0.2 and p.abs().mean().item() == pytest.approx(0.1, abs=0.01)
    with pytest.raises(ValueError, match="init"):
        AdaptiveConv2d(1, 1, 3, init="xavier")


def test_factory_builds_it_and_counting_sees_one_op():
    assert "adaptive" in CONV_TYPES
    layer = create_conv2d("adaptive", 2, 4, 3, stride=1, padding=1)
    assert isinstance(layer, AdaptiveConv2d)
    with pytest.raises(ValueError, match="groups"):
        create_conv2d("adaptive", 2, 4, 3, groups=2)
    model = torch.nn.Sequential(layer, torch.nn.Conv2d(4, 3, 1))
    counts = count_ops(model, (2, 8, 8))
    ops = [r["op"] for r in counts["layers"]]
    assert ops == ["adaptive_conv2d", "convolution"]  # one op per adaptive layer, no inner matmul counted
    expected = 4 * 64 * 2 * 9 * 10  # C_out * L * C_in * kk * (kk + 1)
    assert counts["layers"][0]["mul"] == expected and counts["layers"][0]["add"] == expected
