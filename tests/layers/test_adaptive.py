"""AdaptiveConv2d against an independent loop implementation of SPEC §2, gradients, init and counting."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from frugalvision import count_ops
from frugalvision.layers import CONV_TYPES, AdaptiveConv2d, create_conv2d
from frugalvision.ops import adaptive_conv2d
from frugalvision.ops.adaptive_conv import adaptive_conv2d_reference


def loop_adaptive_conv2d(x, q, b, stride=(1, 1), padding=(0, 0), kernel_size=None):
    """SPEC §2 written out with explicit loops over outputs, channels and kernel positions (float64)."""
    n, c_in, height, width = x.shape
    c_out = q.shape[0]
    kh, kw = kernel_size or (int(q.shape[-1] ** 0.5),) * 2
    (sh, sw), (ph, pw) = stride, padding
    h_out, w_out = (height + 2 * ph - kh) // sh + 1, (width + 2 * pw - kw) // sw + 1
    xp = torch.zeros(n, c_in, height + 2 * ph, width + 2 * pw, dtype=torch.float64)
    xp[:, :, ph:ph + height, pw:pw + width] = x.detach().double()
    xl, ql, bl = xp.tolist(), q.detach().double().tolist(), b.detach().double().tolist()
    y = [[[[0.0] * w_out for _ in range(h_out)] for _ in range(c_out)] for _ in range(n)]
    for bi in range(n):
        for o in range(c_out):
            for i in range(h_out):
                for j in range(w_out):
                    total = 0.0
                    for c in range(c_in):
                        patch = [xl[bi][c][i * sh + u][j * sw + v] for u in range(kh) for v in range(kw)]
                        for d in range(kh * kw):
                            z = sum(ql[o][c][d][jj] * patch[jj] for jj in range(kh * kw)) + bl[o][c][d]
                            total += math.tanh(z) * patch[d]
                    y[bi][o][i][j] = total
    return torch.tensor(y, dtype=torch.float64)


CASES = [  # (n, c_in, c_out, h, w, k, stride, padding)
    (2, 2, 3, 5, 5, 3, 1, 1),
    (1, 3, 2, 7, 6, 3, 2, 0),
    (2, 1, 2, 6, 7, 3, 2, 1),
    (1, 2, 2, 6, 5, 5, 1, 2),
    (1, 2, 1, 9, 8, 5, 3, 2),
]


@pytest.mark.parametrize(("n", "c_in", "c_out", "h", "w", "k", "stride", "padding"), CASES)
def test_matches_loop_formula_float64(n, c_in, c_out, h, w, k, stride, padding):
    g = torch.Generator().manual_seed(n * 100 + h * 10 + w)
    x = torch.randn(n, c_in, h, w, generator=g, dtype=torch.float64)
    layer = AdaptiveConv2d(c_in, c_out, k, stride=stride, padding=padding, dtype=torch.float64)
    with torch.no_grad():
        layer.weight.copy_(0.4 * torch.randn(layer.weight.shape, generator=g, dtype=torch.float64))
        layer.kernel_bias.copy_(torch.randn(layer.kernel_bias.shape, generator=g, dtype=torch.float64))
        y = layer(x)
    expected = loop_adaptive_conv2d(x, layer.weight, layer.kernel_bias, (stride, stride), (padding, padding))
    assert y.dtype == torch.float64 and y.shape == expected.shape
    torch.testing.assert_close(y, expected, rtol=1e-10, atol=1e-10)


def test_rectangular_kernel_matches_loop():
    g = torch.Generator().manual_seed(3)
    x = torch.randn(1, 2, 6, 7, generator=g, dtype=torch.float64)
    q = 0.3 * torch.randn(2, 2, 6, 6, generator=g, dtype=torch.float64)
    b = torch.randn(2, 2, 6, generator=g, dtype=torch.float64)
    y = adaptive_conv2d(x, q, b, stride=(1, 2), padding=(1, 0), kernel_size=(2, 3))
    torch.testing.assert_close(y, loop_adaptive_conv2d(x, q, b, (1, 2), (1, 0), kernel_size=(2, 3)))


@pytest.mark.parametrize("max_chunk", [1, 7, 100, 1 << 24])
def test_chunking_does_not_change_values_or_gradients(max_chunk):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 8, 7, generator=g, dtype=torch.float64, requires_grad=True)
    q = (0.3 * torch.randn(4, 3, 9, 9, generator=g, dtype=torch.float64)).requires_grad_()
    b = torch.randn(4, 3, 9, generator=g, dtype=torch.float64, requires_grad=True)
    y = adaptive_conv2d(x, q, b, stride=2, padding=1, max_chunk_elements=max_chunk)
    y_ref = adaptive_conv2d_reference(x, q, b, stride=2, padding=1)
    torch.testing.assert_close(y, y_ref)
    grad = torch.randn(y.shape, generator=g, dtype=torch.float64)
    for got, want in zip(torch.autograd.grad(y, (x, q, b), grad), torch.autograd.grad(y_ref, (x, q, b), grad)):
        torch.testing.assert_close(got, want)


@pytest.mark.parametrize(("stride", "padding", "max_chunk"), [(1, 1, 1 << 24), (2, 0, 5), (2, 1, 40)])
def test_gradcheck(stride, padding, max_chunk):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 2, 5, 4, generator=g, dtype=torch.float64, requires_grad=True)
    q = (0.5 * torch.randn(2, 2, 9, 9, generator=g, dtype=torch.float64)).requires_grad_()
    b = torch.randn(2, 2, 9, generator=g, dtype=torch.float64, requires_grad=True)
    bias = torch.randn(2, generator=g, dtype=torch.float64, requires_grad=True)
    # fast mode: checks a random projection of the Jacobian (the full one is 700 columns of finite differences)

    def fn(x, q, b, bias):
        return adaptive_conv2d(x, q, b, bias, stride=stride, padding=padding, max_chunk_elements=max_chunk)

    assert torch.autograd.gradcheck(fn, (x, q, b, bias), fast_mode=True)


def test_zero_q_is_conv_with_tanh_b():
    layer = AdaptiveConv2d(3, 4, 3, stride=2, padding=1, init="conv")
    assert torch.count_nonzero(layer.weight) == 0
    x = torch.randn(2, 3, 9, 9)
    expected = F.conv2d(x, layer.static_kernel(), stride=2, padding=1)
    torch.testing.assert_close(layer(x), expected, rtol=1e-5, atol=1e-5)
    # the "conv" init starts as a default-initialised nn.Conv2d: |tanh(b)| <= 1/sqrt(fan_in)
    assert layer.static_kernel().abs().max() <= 1 / (3 * 9) ** 0.5 + 1e-6


def test_parameters_and_init():
    layer = AdaptiveConv2d(3, 5, 5, bias=True)
    assert layer.weight.shape == (5, 3, 25, 25) and layer.kernel_bias.shape == (5, 3, 25)
    assert sum(p.numel() for p in layer.parameters()) == 3 * 5 * 25 * 26 + 5
    assert layer.weight.abs().max() <= 0.2 and layer.kernel_bias.abs().max() <= 0.2  # U(-1/k, 1/k)
    with pytest.raises(ValueError, match="init"):
        AdaptiveConv2d(1, 1, 3, init="xavier")


def test_float32_matches_float64_and_trains():
    layer = AdaptiveConv2d(2, 3, 3, padding=1)
    x = torch.randn(4, 2, 10, 10)
    y = layer(x)
    assert y.dtype == torch.float32
    y64 = adaptive_conv2d_reference(x.double(), layer.weight.double(), layer.kernel_bias.double(), padding=1)
    torch.testing.assert_close(y.double(), y64, rtol=1e-4, atol=1e-5)
    y.square().mean().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in layer.parameters())


def test_factory_and_counting():
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


def test_bad_inputs():
    q, b = torch.zeros(2, 3, 9, 9), torch.zeros(2, 3, 9)
    with pytest.raises(ValueError, match="channels"):
        adaptive_conv2d(torch.zeros(1, 2, 5, 5), q, b)
    with pytest.raises(ValueError, match="kernel_bias"):
        adaptive_conv2d(torch.zeros(1, 3, 5, 5), q, torch.zeros(2, 3, 8))
    with pytest.raises(ValueError, match="does not fit"):
        adaptive_conv2d(torch.zeros(1, 3, 2, 2), q, b)
