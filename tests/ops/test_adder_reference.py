"""The reference adder op (and its torch.library registration) against the loop-by-loop formulas."""

from __future__ import annotations

import pytest
import torch

from frugalvision.ops import adder2d, use_backend
from frugalvision.ops import reference as ref

from .brute_force import brute_force_adder

# (n, c_in, h, w, c_out, k, stride, padding, dilation, groups)
SHAPES = [
    (1, 1, 5, 5, 1, 3, 1, 0, 1, 1),
    (2, 3, 7, 6, 4, 3, 2, 1, 1, 1),
    (1, 4, 9, 8, 6, 3, 1, 2, 2, 2),
    (3, 2, 6, 7, 3, 1, 2, 0, 1, 1),
    (2, 4, 8, 8, 4, 2, 1, 1, 1, 4),
    (1, 6, 10, 9, 4, 5, 2, 2, 1, 2),
]


def _inputs(shape, dtype=torch.float64, seed=0):
    n, c_in, h, w, c_out, k, stride, padding, dilation, groups = shape
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, c_in, h, w, generator=gen, dtype=dtype)
    weight = torch.randn(c_out, c_in // groups, k, k, generator=gen, dtype=dtype)
    return x, weight, dict(stride=stride, padding=padding, dilation=dilation, groups=groups)


@pytest.mark.parametrize("shape", SHAPES)
def test_forward_and_gradients_match_formulas(shape):
    x, weight, args = _inputs(shape)
    x.requires_grad_(True)
    weight.requires_grad_(True)
    with use_backend("reference"):
        y = adder2d(x, weight, **args)
        grad_out = torch.randn_like(y)
        y.backward(grad_out)
    y_bf, gx_bf, gw_bf = brute_force_adder(x.detach(), weight.detach(), grad_output=grad_out, **args)
    torch.testing.assert_close(y, y_bf, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(x.grad, gx_bf, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(weight.grad, gw_bf, rtol=1e-12, atol=1e-12)


def test_padding_contributes_abs_weight():
    x = torch.zeros(1, 1, 1, 1, dtype=torch.float64)
    weight = torch.tensor([[[[1.0, -2.0, 3.0]] * 3]], dtype=torch.float64)  # (1, 1, 3, 3)
    y = adder2d(x, weight, padding=1)
    assert y.item() == pytest.approx(-weight.abs().sum().item())


def test_non_contiguous_and_channels_last_input():
    x, weight, args = _inputs(SHAPES[1])
    wide = torch.randn(2, 3, 7, 12, dtype=torch.float64)[..., ::2]  # a strided view
    for inp in (x.to(memory_format=torch.channels_last), wide):
        expected, _, _ = brute_force_adder(inp.contiguous(), weight, **args)
        torch.testing.assert_close(adder2d(inp, weight, **args), expected)


def test_sign_gradient_is_true_gradient_of_l1():
    x, weight, args = _inputs(SHAPES[1])
    weight.requires_grad_(True)
    y = adder2d(x, weight, weight_grad="sign", **args)
    grad_out = torch.randn_like(y)
    y.backward(grad_out)
    # autograd through an explicit |x - w| formula gives sign(x - w) * G summed over positions
    w2 = weight.detach().clone().requires_grad_(True)
    cols = torch.nn.functional.unfold(x, 3, padding=1, stride=2)  # (n, C*9, L)
    y2 = -(cols[:, None] - w2.view(1, 4, -1, 1)).abs().sum(2)  # (n, O, L)
    y2.backward(grad_out.flatten(2))
    torch.testing.assert_close(weight.grad, w2.grad)


def test_bias_and_float32():
    x, weight, args = _inputs(SHAPES[0], dtype=torch.float32)
    bias = torch.tensor([0.5])
    expected, _, _ = brute_force_adder(x, weight, **args)
    y = adder2d(x, weight, bias, **args)
    assert y.dtype == torch.float32
    torch.testing.assert_close(y.double(), expected + 0.5, rtol=1e-5, atol=1e-4)


def test_half_inputs_accumulate_in_float32():
    x, weight, args = _inputs(SHAPES[1], dtype=torch.float32)
    y = adder2d(x.bfloat16(), weight, **args)
    assert y.dtype == torch.float32
    expected, _, _ = brute_force_adder(x.bfloat16().double(), weight.double(), **args)
    torch.testing.assert_close(y.double(), expected, rtol=1e-5, atol=1e-3)


def test_chunking_bounds_temporaries_and_keeps_results():
    x, weight, args = _inputs((3, 4, 9, 9, 6, 3, 1, 1, 1, 2))
    args_tuple = ((args["stride"],) * 2, (args["padding"],) * 2, (args["dilation"],) * 2, args["groups"])
    tiny = 3 * 6 * 18 * 8  # forces several batch and column chunks
    y_small = ref.adder2d_forward(x, weight, *args_tuple, chunk_bytes=tiny)
    y_big = ref.adder2d_forward(x, weight, *args_tuple)
    torch.testing.assert_close(y_small, y_big, rtol=1e-13, atol=1e-12)
    g = torch.randn_like(y_big)
    torch.testing.assert_close(ref.adder2d_grad_input(g, x, weight, *args_tuple, chunk_bytes=tiny),
                               ref.adder2d_grad_input(g, x, weight, *args_tuple))


def test_weight_gradient_equals_conv_gradient_under_batchnorm():
    """AdderNet identity: after a training-mode BN the rank-1 term vanishes (rowsum of G is 0)."""
    x, weight, args = _inputs(SHAPES[1])
    weight.requires_grad_(True)
    bn = torch.nn.BatchNorm2d(4).double()
    bn(adder2d(x, weight, **args)).pow(2).sum().backward()
    conv_w = weight.detach().clone().requires_grad_(True)
    y = adder2d(x, conv_w, **args)
    g = torch.autograd.grad(bn(y).pow(2).sum(), y)[0]
    conv_grad = torch.nn.grad.conv2d_weight(x, weight.shape, g, args["stride"], args["padding"])
    torch.testing.assert_close(weight.grad, conv_grad, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: adder2d(torch.randn(3, 8, 8), torch.randn(2, 3, 3, 3)), "input must be 4-D"),
        (lambda: adder2d(torch.randn(1, 4, 8, 8), torch.randn(2, 3, 3, 3)), "input has 4 channels"),
        (lambda: adder2d(torch.randn(1, 4, 8, 8), torch.randn(3, 2, 3, 3), groups=2), "groups=2"),
        (lambda: adder2d(torch.randn(1, 3, 2, 2), torch.randn(2, 3, 3, 3)), "does not fit"),
        (lambda: adder2d(torch.randn(1, 3, 8, 8).double(), torch.randn(2, 3, 3, 3)), "mix float64"),
        (lambda: adder2d(torch.ones(1, 3, 8, 8, dtype=torch.long), torch.randn(2, 3, 3, 3)), "floating-point"),
        (lambda: adder2d(torch.randn(1, 3, 8, 8), torch.randn(2, 3, 3, 3), weight_grad="bad"), "weight_grad"),
        (lambda: adder2d(torch.randn(1, 3, 8, 8), torch.randn(2, 3, 3, 3), torch.randn(3)), "bias must have"),
    ],
)
def test_bad_inputs_give_clear_errors(make, message):
    with pytest.raises((ValueError, TypeError), match=message):
        make()


def test_opcheck_reference_backend():
    x, weight, _ = _inputs(SHAPES[1], dtype=torch.float64)
    with use_backend("reference"):
        torch.library.opcheck(
            torch.ops.frugalvision.adder2d.default,
            (x.requires_grad_(), weight.requires_grad_(), [2, 2], [1, 1], [1, 1], 1, False),
        )


def test_gradcheck_through_registered_op_is_not_autograd_of_forward():
    """The registered backward is AdderNet's (Eq. 5/6), deliberately not the derivative of the forward."""
    x, weight, args = _inputs(SHAPES[0])
    x.requires_grad_(True)
    with pytest.raises(RuntimeError, match="Jacobian mismatch"):
        torch.autograd.gradcheck(lambda t: adder2d(t, weight, **args), (x,), raise_exception=True)
