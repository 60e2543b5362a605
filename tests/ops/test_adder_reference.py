"""The adder2d oracle, the executable spec and the portable ``torch`` backend; properties of the public op.

The loop oracle (:mod:`.brute_force`) is checked against values computed by hand and by autograd; the spec
(:mod:`frugalvision.ops.reference`) against the loop oracle on every odd-shape case; the ``torch`` backend's
chunked kernels against the spec on the same cases, with chunk budgets that force many chunks. The comparison of
every registered backend (``torch`` included) with the loop oracle through the public op is in
tests/ops/test_adder_kernels.py.
"""

from __future__ import annotations

import pytest
import torch

from frugalvision.ops import adder2d, adder_torch, use_backend
from frugalvision.ops import reference as ref

from .brute_force import brute_force_adder
from .cases import EXTRA_CASES, GRID, ConvCase, assert_rel_close, make_inputs

ALL_CASES = GRID + EXTRA_CASES

X_HAND = torch.tensor([[[[1.0, -2.0], [3.0, 0.5]]]], dtype=torch.float64)  # (1, 1, 2, 2)
W_HAND = torch.tensor([[[[0.5]]]], dtype=torch.float64)  # (1, 1, 1, 1)
# by hand, with G = 1 everywhere: Y = -|X - 0.5|, dW = sum (X - 0.5) (Eq. 5), dX = HardTanh(0.5 - X) (Eq. 6)
Y_HAND = torch.tensor([[[[-0.5, -2.5], [-2.5, 0.0]]]], dtype=torch.float64)
GRAD_X_HAND = torch.tensor([[[[-0.5, 1.0], [-1.0, 0.0]]]], dtype=torch.float64)
GRAD_W_HAND = torch.tensor([[[[0.5]]]], dtype=torch.float64)
GRAD_W_SIGN_HAND = torch.tensor([[[[1.0]]]], dtype=torch.float64)  # sign: 1 - 1 + 1 + 0


@pytest.mark.parametrize("weight_grad", ["full", "sign"])
def test_oracle_matches_hand_computed_values(weight_grad: str) -> None:
    y, grad_x, grad_w = brute_force_adder(X_HAND, W_HAND, grad_output=torch.ones(1, 1, 2, 2), weight_grad=weight_grad)
    assert torch.equal(y, Y_HAND) and torch.equal(grad_x, GRAD_X_HAND)
    assert torch.equal(grad_w, GRAD_W_HAND if weight_grad == "full" else GRAD_W_SIGN_HAND)


@pytest.mark.parametrize("backend", ["torch", "numba"])
def test_op_matches_hand_computed_values(backend: str) -> None:
    x, weight = X_HAND.clone().requires_grad_(True), W_HAND.clone().requires_grad_(True)
    with use_backend(backend):
        y = adder2d(x, weight)
        y.backward(torch.ones_like(y))
    assert torch.equal(y, Y_HAND) and torch.equal(x.grad, GRAD_X_HAND) and torch.equal(weight.grad, GRAD_W_HAND)


def test_oracle_padding_contributes_abs_weight() -> None:
    weight = torch.tensor([[[[1.0, -2.0, 3.0]] * 3]], dtype=torch.float64)  # (1, 1, 3, 3)
    y, _, _ = brute_force_adder(torch.zeros(1, 1, 1, 1, dtype=torch.float64), weight, padding=1)
    assert y.item() == -18.0  # -sum |w| = -3 * (1 + 2 + 3)


@pytest.mark.parametrize("backend", ["torch", "numba"])
def test_sign_weight_gradient_is_autograd_of_the_l1_distance(backend: str) -> None:
    """weight_grad="sign" is the true gradient of Eq. 2: autograd through an explicit unfold form gives it, and so
    does the oracle."""
    case = ConvCase(2, 4, 6, 7, 6, stride=(2, 2), padding=(1, 1))
    x, weight, grad_out = make_inputs(case, torch.float64)
    weight.requires_grad_(True)
    with use_backend(backend):
        adder2d(x, weight, weight_grad="sign", **case.conv_kwargs()).backward(grad_out)
    w2 = weight.detach().clone().requires_grad_(True)
    cols = torch.nn.functional.unfold(x, 3, padding=1, stride=2)  # (n, C*9, L)
    y2 = -(cols[:, None] - w2.view(1, 6, -1, 1)).abs().sum(2)  # (n, O, L)
    y2.backward(grad_out.flatten(2))
    torch.testing.assert_close(weight.grad, w2.grad, rtol=1e-12, atol=1e-12)
    _, _, oracle_grad = brute_force_adder(x, weight.detach(), grad_output=grad_out, weight_grad="sign",
                                          **case.conv_kwargs())
    torch.testing.assert_close(oracle_grad, w2.grad, rtol=1e-12, atol=1e-12)


def test_bias_is_added_after_the_sum() -> None:
    case = ConvCase(1, 1, 1, 5, 5)
    x, weight, _ = make_inputs(case, torch.float32)
    expected, _, _ = brute_force_adder(x.double(), weight.double())
    y = adder2d(x, weight, torch.tensor([0.5]))
    assert y.dtype == torch.float32
    torch.testing.assert_close(y.double(), expected + 0.5, rtol=1e-6, atol=1e-5)


def _spec(case: ConvCase, x, weight, grad_output) -> dict[str, torch.Tensor]:
    """Y, dX, dW and the sign dW of the executable spec."""
    args = (grad_output, x, weight, *case.conv_kwargs().values())
    return {"forward": ref.adder2d_forward(x, weight, **case.conv_kwargs()),
            "input gradient": ref.adder2d_grad_input(*args),
            "weight gradient": ref.adder2d_grad_weight(*args),
            "sign weight gradient": ref.adder2d_grad_weight_sign(*args)}


@pytest.mark.parametrize("case", ALL_CASES, ids=lambda c: c.id)
def test_spec_matches_loop_oracle(case: ConvCase) -> None:
    """The executable spec equals the independent float64 loop formula on every odd shape and memory layout."""
    x, weight, grad_output = make_inputs(case, torch.float64)
    spec = _spec(case, x, weight, grad_output)
    for weight_grad, key in (("full", "weight gradient"), ("sign", "sign weight gradient")):
        y, grad_x, grad_w = brute_force_adder(x, weight, grad_output=grad_output, weight_grad=weight_grad,
                                              **case.conv_kwargs())
        assert_rel_close(spec[key], grad_w, 1e-12, key)
    assert_rel_close(spec["forward"], y, 1e-12, "forward")
    assert_rel_close(spec["input gradient"], grad_x, 1e-12, "input gradient")


def _torch_backend(case: ConvCase, x, weight, grad_output, chunk_bytes: int) -> dict[str, torch.Tensor]:
    """Y, dX, dW and the sign dW of the ``torch`` backend's kernels with this chunk budget."""
    geometry = (case.stride, case.padding, case.dilation, case.groups)
    return {"forward": adder_torch.adder2d_forward(x, weight, *geometry, chunk_bytes=chunk_bytes),
            "input gradient": adder_torch.adder2d_grad_input(grad_output, x, weight, *geometry,
                                                             chunk_bytes=chunk_bytes),
            "weight gradient": adder_torch.adder2d_grad_weight(grad_output, x, weight, *geometry, False,
                                                               chunk_bytes=chunk_bytes),
            "sign weight gradient": adder_torch.adder2d_grad_weight(grad_output, x, weight, *geometry, True,
                                                                    chunk_bytes=chunk_bytes)}


@pytest.mark.parametrize("case", ALL_CASES, ids=lambda c: c.id)
@pytest.mark.parametrize("chunk_bytes", [adder_torch.DEFAULT_CHUNK_BYTES, 1], ids=["one_chunk", "smallest_chunks"])
def test_torch_backend_matches_spec(case: ConvCase, chunk_bytes: int) -> None:
    """The portable backend equals the spec in float64, forward and all three gradients, on every odd shape and
    memory layout (a non-contiguous grad_output too); ``chunk_bytes=1`` makes every sample and column a chunk."""
    x, weight, grad_output = make_inputs(case, torch.float64)
    grad_output = grad_output.transpose(2, 3).contiguous().transpose(2, 3)  # same values, other strides
    spec = _spec(case, x, weight, grad_output)
    for what, got in _torch_backend(case, x, weight, grad_output, chunk_bytes).items():
        assert got.dtype == torch.float64, what
        assert_rel_close(got, spec[what], 1e-12, what)


def test_weight_gradient_equals_conv_gradient_under_batchnorm() -> None:
    """AdderNet identity: after a training-mode BN the rank-1 term vanishes (rowsum of G is 0)."""
    case = GRID[13]
    x, weight, _ = make_inputs(case, torch.float64)
    weight.requires_grad_(True)
    bn = torch.nn.BatchNorm2d(case.c_out).double()
    bn(adder2d(x, weight, **case.conv_kwargs())).pow(2).sum().backward()
    y = adder2d(x, weight.detach(), **case.conv_kwargs()).requires_grad_(True)
    g = torch.autograd.grad(bn(y).pow(2).sum(), y)[0]
    assert g.sum((0, 2, 3)).abs().max() < 1e-9  # the premise of the identity
    conv_grad = torch.nn.grad.conv2d_weight(x, weight.shape, g, **case.conv_kwargs())
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
    with pytest.raises((ValueError, TypeError), match=message) as info:
        make()
    assert "\n" not in str(info.value)


def test_gradcheck_through_registered_op_is_not_autograd_of_forward():
    """The registered backward is AdderNet's (Eq. 5/6), deliberately not the derivative of the forward."""
    x, weight, _ = make_inputs(ConvCase(1, 1, 1, 5, 5), torch.float64)
    x.requires_grad_(True)
    with pytest.raises(RuntimeError, match="Jacobian mismatch"):
        torch.autograd.gradcheck(lambda t: adder2d(t, weight), (x,), raise_exception=True)
