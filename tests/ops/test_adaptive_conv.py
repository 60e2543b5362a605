"""``frugalvision::adaptive_conv2d`` against the float64 loop oracle: forward and all three gradients, odd shapes.

The oracle (:func:`.brute_force.brute_force_adaptive_conv2d`) is the paper's adaptive convolution written with loops
over output channel, input channel and kernel taps and strided slices of the padded input (no unfold, no matmul);
the op's gradients are the true gradients of that formula, so their oracle is ``torch.autograd.grad`` through it.
"""

from __future__ import annotations

import pytest
import torch

from frugalvision.ops import adaptive_conv2d
from frugalvision.ops.adaptive_conv import adaptive_conv2d_reference

from .brute_force import brute_force_adaptive_conv2d
from .cases import ConvCase, assert_rel_close, draw_input

DEFAULT_CHUNK = 1 << 24
# (case, max_chunk_elements): small budgets force the output-channel and output-position chunks
CASES = [
    (ConvCase(2, 2, 3, 5, 5, padding=(1, 1)), DEFAULT_CHUNK),
    (ConvCase(1, 3, 2, 7, 6, stride=(2, 2), layout="sliced"), DEFAULT_CHUNK),
    (ConvCase(2, 1, 2, 6, 7, stride=(2, 2), padding=(1, 1), dilation=(2, 2), layout="sliced"), 40),
    (ConvCase(1, 2, 2, 6, 5, kernel=(5, 5), padding=(2, 2), layout="channels_last"), 200),
    (ConvCase(1, 2, 1, 9, 8, kernel=(5, 5), stride=(3, 3), padding=(2, 2), layout="sliced"), DEFAULT_CHUNK),
    (ConvCase(1, 2, 2, 7, 8, padding=(2, 2), dilation=(2, 2)), 1),
    (ConvCase(2, 2, 2, 6, 7, kernel=(2, 3), stride=(1, 2), padding=(1, 0), dilation=(1, 2), layout="sliced"),
     DEFAULT_CHUNK),
]


def _id(value: object) -> str:
    return value.id if isinstance(value, ConvCase) else f"chunk{value}"


def _geometry(case: ConvCase) -> dict:
    return dict(stride=case.stride, padding=case.padding, dilation=case.dilation)


def _inputs(case: ConvCase, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Generator]:
    """x (in the case's layout), Q and b drawn in float64, then rounded to ``dtype``; the generator, for G."""
    gen = case.generator()
    x = draw_input(case, gen, dtype)
    kk = case.kernel[0] * case.kernel[1]
    q = 0.4 * torch.randn(case.c_out, case.c_in, kk, kk, generator=gen, dtype=torch.float64)
    b = torch.randn(case.c_out, case.c_in, kk, generator=gen, dtype=torch.float64)
    return x, q.to(dtype), b.to(dtype), gen


def _oracle(case: ConvCase, x: torch.Tensor, q: torch.Tensor, b: torch.Tensor, grad_output: torch.Tensor | None):
    """Y and, for a given G, (dX, dQ, db) by autograd through the float64 loop formula."""
    leaves = [t.detach().double().requires_grad_(True) for t in (x, q, b)]
    y = brute_force_adaptive_conv2d(*leaves, **_geometry(case), kernel_size=case.kernel)
    if grad_output is None:
        return y.detach(), None
    return y.detach(), torch.autograd.grad(y, leaves, grad_output.double())


@pytest.mark.parametrize(("case", "max_chunk"), CASES, ids=_id)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=str)
def test_forward_and_gradients_match_loop_oracle(dtype: torch.dtype, case: ConvCase, max_chunk: int) -> None:
    x, q, b, gen = _inputs(case, dtype)
    leaves = [t.detach().requires_grad_(True) for t in (x, q, b)]  # x keeps its strides
    y = adaptive_conv2d(*leaves, **_geometry(case), kernel_size=case.kernel, max_chunk_elements=max_chunk)
    grad_output = torch.randn(y.shape, generator=gen, dtype=torch.float64).to(dtype)
    grads = torch.autograd.grad(y, leaves, grad_output)
    y_ref, grads_ref = _oracle(case, x, q, b, grad_output)
    tol = 1e-10 if dtype == torch.float64 else 1e-5
    assert y.dtype == dtype and all(g.dtype == dtype for g in grads)
    assert_rel_close(y, y_ref, tol, "forward")
    for name, got, want in zip(("input", "weight Q", "kernel bias b"), grads, grads_ref):
        assert_rel_close(got, want, tol, f"{name} gradient")


def test_half_input_computes_in_float32_and_returns_half() -> None:
    case = CASES[0][0]
    x, q, b, _ = _inputs(case, torch.float16)
    y = adaptive_conv2d(x, q, b, **_geometry(case))
    y_ref, _ = _oracle(case, x, q, b, None)
    assert y.dtype == torch.float16
    assert_rel_close(y, y_ref, 1e-3, "forward")  # float32 result rounded to float16


@pytest.mark.parametrize("case", [CASES[2][0], CASES[4][0]], ids=_id)
def test_autograd_reference_matches_loop_oracle(case: ConvCase) -> None:
    """``adaptive_conv2d_reference`` (unfold + einsum, differentiated by autograd) is a second, public form (square
    kernels only: it infers the kernel size from the weight)."""
    x, q, b, gen = _inputs(case, torch.float64)
    leaves = [t.detach().requires_grad_(True) for t in (x, q, b)]
    y = adaptive_conv2d_reference(*leaves, **_geometry(case))
    grad_output = torch.randn(y.shape, generator=gen, dtype=torch.float64)
    y_ref, grads_ref = _oracle(case, x, q, b, grad_output)
    assert_rel_close(y, y_ref, 1e-10, "forward")
    for got, want in zip(torch.autograd.grad(y, leaves, grad_output), grads_ref):
        assert_rel_close(got, want, 1e-10, "gradient")


def test_output_bias_is_added_after_the_sum() -> None:
    case = CASES[0][0]
    x, q, b, _ = _inputs(case, torch.float64)
    bias = torch.tensor([0.5, -1.0, 2.0], dtype=torch.float64)
    y_ref, _ = _oracle(case, x, q, b, None)
    assert_rel_close(adaptive_conv2d(x, q, b, bias, **_geometry(case)), y_ref + bias.view(1, -1, 1, 1), 1e-12,
                     "forward with bias")


@pytest.mark.parametrize(("stride", "padding", "max_chunk"), [(1, 1, 1 << 24), (2, 0, 5)])
def test_gradcheck_finite_differences(stride: int, padding: int, max_chunk: int) -> None:
    """The registered backward against finite differences of the forward (fast mode: a random projection)."""
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 2, 5, 4, generator=g, dtype=torch.float64, requires_grad=True)
    q = (0.5 * torch.randn(2, 2, 9, 9, generator=g, dtype=torch.float64)).requires_grad_()
    b = torch.randn(2, 2, 9, generator=g, dtype=torch.float64, requires_grad=True)
    bias = torch.randn(2, generator=g, dtype=torch.float64, requires_grad=True)

    def fn(x, q, b, bias):
        return adaptive_conv2d(x, q, b, bias, stride=stride, padding=padding, max_chunk_elements=max_chunk)

    assert torch.autograd.gradcheck(fn, (x, q, b, bias), fast_mode=True)


def test_opcheck() -> None:
    x, q, b, _ = _inputs(CASES[0][0], torch.float64)
    args = (x.requires_grad_(), q.requires_grad_(), b.requires_grad_(), [3, 3], [1, 1], [1, 1], [1, 1], 1 << 24)
    torch.library.opcheck(torch.ops.frugalvision.adaptive_conv2d.default, args)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda q, b: adaptive_conv2d(torch.zeros(1, 2, 5, 5), q, b), "input has 2 channels but weight expects 3"),
        (lambda q, b: adaptive_conv2d(torch.zeros(1, 3, 5, 5), q, torch.zeros(2, 3, 8)), "kernel_bias must be"),
        (lambda q, b: adaptive_conv2d(torch.zeros(1, 3, 2, 2), q, b), "does not fit"),
        (lambda q, b: adaptive_conv2d(torch.zeros(1, 3, 5, 5), torch.zeros(2, 3, 8, 8), b), "not a square"),
        (lambda q, b: adaptive_conv2d(torch.zeros(1, 3, 5, 5), q, b, max_chunk_elements=0), "max_chunk_elements"),
    ],
)
def test_bad_inputs_give_clear_errors(make, message: str) -> None:
    q, b = torch.zeros(2, 3, 9, 9), torch.zeros(2, 3, 9)
    with pytest.raises(ValueError, match=message) as info:
        make(q, b)
    assert "\n" not in str(info.value)
