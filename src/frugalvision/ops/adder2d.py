"""``frugalvision::adder2d``: the AdderNet operator registered with ``torch.library``.

Three ops, each dispatching to the fastest backend that accepts its tensors (see :mod:`.dispatch`):

    frugalvision::adder2d(input, weight, stride, padding, dilation, groups, sign_weight_grad) -> output
    frugalvision::adder2d_grad_input(grad_output, input, weight, stride, padding, dilation, groups) -> grad_input
    frugalvision::adder2d_grad_weight(grad_output, input, weight, stride, padding, dilation, groups, sign) -> grad_w

``adder2d`` carries an autograd formula made of the two gradient ops, so ``torch.compile`` traces through the
backward, ``opcheck`` can check the registration, and :func:`frugalvision.count_ops` sees one adder op per layer
(its cost formula is registered here, :mod:`.cost`). The formulas are AdderNet's (Chen et al., CVPR 2020): Eq. 2
forward, Eq. 5 full-precision weight gradient (or the sign gradient for the ablation), Eq. 6 HardTanh input
gradient; :mod:`.reference` states them literally (for the tests and the docs), :mod:`.backends` registers the
kernels (numba, Triton, and the portable plain-PyTorch :mod:`.adder_torch`).

Dtypes: float32 and float64 compute in their own precision; float16 / bfloat16 inputs are accepted and accumulate
in float32, and the output is float32 (adder outputs reach ~1e3 with a spread of ~1, which half precision cannot
hold). Gradients come back in the dtype of the tensor they belong to.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from ..errors import InputError, InputTypeError
from .cost import WEIGHT_LAYER, register_cost
from .dispatch import select
from .utils import conv_output_size, to_pair

__all__ = ["ADDER_OP", "adder2d", "adder2d_macs", "compute_dtype"]

ADDER_OP = "adder2d"


def compute_dtype(*tensors: Tensor) -> torch.dtype:
    """float64 when every tensor is float64, else float32 (half-precision inputs accumulate in float32)."""
    return torch.float64 if all(t.dtype == torch.float64 for t in tensors) else torch.float32


def _output_shape(x: Tensor, weight: Tensor, stride, padding, dilation) -> tuple[int, int, int, int]:
    out_hw = conv_output_size(
        x.shape[2], x.shape[3], (weight.shape[2], weight.shape[3]), tuple(stride), tuple(padding), tuple(dilation)
    )
    return x.shape[0], weight.shape[0], out_hw[0], out_hw[1]


# --------------------------------------------------------------------------------------------------------------
# Registered ops


@torch.library.custom_op("frugalvision::adder2d", mutates_args=())
def _adder2d_op(
    input: Tensor,
    weight: Tensor,
    stride: Sequence[int],
    padding: Sequence[int],
    dilation: Sequence[int],
    groups: int,
    sign_weight_grad: bool,
) -> Tensor:
    backend = select(ADDER_OP, input, weight)
    return backend.kernels["forward"](input, weight, tuple(stride), tuple(padding), tuple(dilation), groups)


@_adder2d_op.register_fake
def _(input, weight, stride, padding, dilation, groups, sign_weight_grad):
    shape = _output_shape(input, weight, stride, padding, dilation)
    return input.new_empty(shape, dtype=compute_dtype(input, weight))


@torch.library.custom_op("frugalvision::adder2d_grad_input", mutates_args=())
def _adder2d_grad_input_op(
    grad_output: Tensor,
    input: Tensor,
    weight: Tensor,
    stride: Sequence[int],
    padding: Sequence[int],
    dilation: Sequence[int],
    groups: int,
) -> Tensor:
    backend = select(ADDER_OP, input, weight)
    grad = backend.kernels["grad_input"](
        grad_output, input, weight, tuple(stride), tuple(padding), tuple(dilation), groups
    )
    return grad.to(input.dtype)


@_adder2d_grad_input_op.register_fake
def _(grad_output, input, weight, stride, padding, dilation, groups):
    return torch.empty_like(input, memory_format=torch.contiguous_format)


@torch.library.custom_op("frugalvision::adder2d_grad_weight", mutates_args=())
def _adder2d_grad_weight_op(
    grad_output: Tensor,
    input: Tensor,
    weight: Tensor,
    stride: Sequence[int],
    padding: Sequence[int],
    dilation: Sequence[int],
    groups: int,
    sign: bool,
) -> Tensor:
    backend = select(ADDER_OP, input, weight)
    grad = backend.kernels["grad_weight"](
        grad_output, input, weight, tuple(stride), tuple(padding), tuple(dilation), groups, sign
    )
    return grad.to(weight.dtype)


@_adder2d_grad_weight_op.register_fake
def _(grad_output, input, weight, stride, padding, dilation, groups, sign):
    return torch.empty_like(weight, memory_format=torch.contiguous_format)


def _setup_context(ctx, inputs, output):
    input, weight, stride, padding, dilation, groups, sign_weight_grad = inputs
    ctx.save_for_backward(input, weight)
    ctx.conv_args = (list(stride), list(padding), list(dilation), groups)
    ctx.sign_weight_grad = sign_weight_grad


def _backward(ctx, grad_output):
    input, weight = ctx.saved_tensors
    grad_input = grad_weight = None
    if ctx.needs_input_grad[0]:
        grad_input = torch.ops.frugalvision.adder2d_grad_input(grad_output, input, weight, *ctx.conv_args)
    if ctx.needs_input_grad[1]:
        grad_weight = torch.ops.frugalvision.adder2d_grad_weight(
            grad_output, input, weight, *ctx.conv_args, ctx.sign_weight_grad
        )
    return grad_input, grad_weight, None, None, None, None, None


_adder2d_op.register_autograd(_backward, setup_context=_setup_context)


def adder2d_macs(input_shape: Sequence[int], weight_shape: Sequence[int], output_shape: Sequence[int]) -> int:
    """Number of |x - w| terms of one adder2d call: N * C_out * H_out * W_out * (C_in/groups) * kh * kw."""
    n, out_channels, h_out, w_out = output_shape
    return n * out_channels * h_out * w_out * weight_shape[1] * weight_shape[2] * weight_shape[3]


def _adder2d_cost(args, kwargs, out, module) -> tuple[str, dict[str, int]]:
    """count_ops formula: two additions per |x - w| term (the subtraction and the accumulation), no multiplication
    (AdderNet Sec. 4.1's convention); an optional bias adds one addition per output element outside the op."""
    input, weight = args[0], args[1]
    return WEIGHT_LAYER, {"add": 2 * adder2d_macs(input.shape, weight.shape, out.shape)}


register_cost(torch.ops.frugalvision.adder2d.default, _adder2d_cost)


# --------------------------------------------------------------------------------------------------------------
# Public functional API


def _pair(value: int | Sequence[int], name: str) -> tuple[int, int]:
    return to_pair(value, "adder2d", name)


def _check_inputs(input: Tensor, weight: Tensor, bias: Tensor | None, stride, padding, dilation, groups) -> None:
    if input.dim() != 4:
        raise InputError(f"adder2d: input must be 4-D (N, C, H, W), got shape {tuple(input.shape)}")
    if weight.dim() != 4:
        raise InputError(f"adder2d: weight must be 4-D (C_out, C_in/groups, kh, kw), got shape {tuple(weight.shape)}")
    for name, t in (("input", input), ("weight", weight)):
        if not t.is_floating_point():
            raise InputTypeError(f"adder2d: {name} must be a floating-point tensor, got {t.dtype}")
    if (input.dtype == torch.float64) != (weight.dtype == torch.float64):
        raise InputTypeError(f"adder2d: input ({input.dtype}) and weight ({weight.dtype}) mix float64 with "
                             "another dtype")
    if input.device != weight.device:
        raise InputError(f"adder2d: input is on {input.device} but weight is on {weight.device}")
    if groups < 1 or input.shape[1] % groups or weight.shape[0] % groups:
        raise InputError(
            f"adder2d: groups={groups} must divide in_channels={input.shape[1]} and out_channels={weight.shape[0]}"
        )
    if input.shape[1] != weight.shape[1] * groups:
        raise InputError(
            f"adder2d: input has {input.shape[1]} channels but weight expects {weight.shape[1] * groups} "
            f"(weight.shape[1]={weight.shape[1]} x groups={groups})"
        )
    if min(stride) < 1 or min(dilation) < 1 or min(padding) < 0:
        raise InputError(f"adder2d: need stride >= 1, dilation >= 1, padding >= 0; got {stride}, {dilation}, {padding}")
    out = _output_shape(input, weight, stride, padding, dilation)
    if out[2] < 1 or out[3] < 1:
        raise InputError(
            f"adder2d: kernel {tuple(weight.shape[2:])} (dilation {dilation}) does not fit input "
            f"{tuple(input.shape[2:])} with padding {padding}"
        )
    if bias is not None and bias.shape != (weight.shape[0],):
        raise InputError(f"adder2d: bias must have shape ({weight.shape[0]},), got {tuple(bias.shape)}")


def adder2d(
    input: Tensor,
    weight: Tensor,
    bias: Tensor | None = None,
    stride: int | Sequence[int] = 1,
    padding: int | Sequence[int] = 0,
    dilation: int | Sequence[int] = 1,
    groups: int = 1,
    *,
    weight_grad: str = "full",
) -> Tensor:
    """AdderNet layer: ``Y[n,o,h,w] = -sum_{c,i,j} |X_pad[n, c, h*s + i*d, w*s + j*d] - W[o,c,i,j]| (+ bias)``.

    Same arguments as :func:`torch.nn.functional.conv2d`. Zero padding takes part in the sum (a padded position
    contributes ``|w|``), as in the official implementation.

    Args:
        input: (N, C_in, H, W).
        weight: (C_out, C_in/groups, kh, kw).
        bias: optional (C_out,).
        weight_grad: ``"full"`` for the full-precision gradient of AdderNet Eq. 5 (default) or ``"sign"`` for the
            true gradient sign(X - W), which exists for the optimisation ablation. The input gradient is always the
            HardTanh gradient of Eq. 6.

    Returns:
        (N, C_out, H_out, W_out), float32 unless input and weight are float64.
    """
    if weight_grad not in ("full", "sign"):
        raise InputError(f"adder2d: weight_grad must be 'full' or 'sign', got {weight_grad!r}")
    stride, padding, dilation = _pair(stride, "stride"), _pair(padding, "padding"), _pair(dilation, "dilation")
    _check_inputs(input, weight, bias, stride, padding, dilation, groups)
    out = torch.ops.frugalvision.adder2d(
        input, weight, list(stride), list(padding), list(dilation), groups, weight_grad == "sign"
    )
    if bias is not None:
        out = out + bias.to(out.dtype).view(1, -1, 1, 1)
    return out
