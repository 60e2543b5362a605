"""``frugalvision::adaptive_conv2d``: the adaptive convolutional kernel of Zamora Esquivel et al. (ICCV-W 2019).

For output channel o, input channel c, kernel position d (one of the kh*kw offsets) and output position p, with
``P[c, :, p]`` the zero-padded kh x kw patch of channel c that output position p sees (docs/adaptive_kernels.md
says what is reconstructed):

    K[o, c, d, p] = tanh( sum_j Q[o, c, d, j] * P[c, j, p] + b[o, c, d] )      # the adaptive kernel
    Y[o, p]       = sum_c sum_d K[o, c, d, p] * P[c, d, p]                      # the "second convolution"

i.e. per (o, c) pair ``y = x^T tanh(Q x + b)`` over the flattened patch x. The paper body is not public; this is the
reconstruction documented in ``docs/adaptive_kernels.md``. Stride, padding and dilation apply to the patch
extraction (so to both the kernel generator and the kernel application, an extension of the public code, which is
stride 1 / "same" padding only).

Parallel form (no sliding window): ``unfold`` gives every patch at once, a batched matmul per input channel evaluates
the kh*kw generator filters of all output channels at every position, then tanh, a product with the patches and a
sum over (c, d). The intermediate K has N * C_in * C_out * kh*kw * L elements, so forward and backward work in
chunks of output channels and output positions whose K stays under ``max_chunk_elements``, and the backward
recomputes K instead of storing it: memory is O(input + output + chunk), not O(K).

Registered as ``torch.library`` custom ops (a forward and one backward op) so that ``torch.compile`` sees them and
:func:`frugalvision.count_ops` counts one op per layer instead of the inner matmuls (the cost formula is
registered at the end of this module, :mod:`.cost`). Float32 and float64 compute in their own precision; float16 /
bfloat16 compute in float32 and return the input dtype. Gradients (chain rule through tanh), with K = tanh(z) and
G = dL/dY:

    dL/dz[o,c,d,p] = G[o,p] * P[c,d,p] * (1 - K[o,c,d,p]^2)
    dL/dQ[o,c,d,j] = sum_p dL/dz[o,c,d,p] * P[c,j,p];      dL/db[o,c,d] = sum_p dL/dz[o,c,d,p]
    dL/dP[c,j,p]   = sum_{o,d} dL/dz[o,c,d,p] * Q[o,c,d,j] + sum_o G[o,p] * K[o,c,j,p]     (then folded, col2im)
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import InputError, InputTypeError
from .cost import WEIGHT_LAYER, register_cost
from .utils import conv_output_size, to_pair

__all__ = [
    "DEFAULT_MAX_CHUNK_ELEMENTS",
    "adaptive_conv2d",
    "adaptive_conv2d_macs",
    "adaptive_conv2d_output_size",
    "adaptive_conv2d_reference",
]

# Largest kernel tensor K (elements) one chunk may hold: 2^24 floats = 64 MiB in float32.
DEFAULT_MAX_CHUNK_ELEMENTS = 1 << 24
_LOW_PRECISION = (torch.float16, torch.bfloat16)


def adaptive_conv2d_output_size(
    height: int, width: int, kernel_size: Sequence[int], stride: Sequence[int], padding: Sequence[int],
    dilation: Sequence[int],
) -> tuple[int, int]:
    """Output (H_out, W_out) of the patch extraction, the same arithmetic as ``nn.Conv2d``."""
    return conv_output_size(height, width, kernel_size, stride, padding, dilation)


def _kernel_hw(weight: Tensor, kernel_size: Sequence[int]) -> tuple[int, int]:
    kh, kw = int(kernel_size[0]), int(kernel_size[1])
    if weight.shape[2] != kh * kw or weight.shape[3] != kh * kw:
        raise InputError(f"weight {tuple(weight.shape)} does not match kernel_size {(kh, kw)}")
    return kh, kw


def _patches(x: Tensor, kernel_size, stride, padding, dilation) -> Tensor:
    """(N, C, H, W) -> P of shape (N, C, kh*kw, L), L = H_out * W_out."""
    n, c = x.shape[:2]
    cols = F.unfold(x, kernel_size, dilation=dilation, padding=padding, stride=stride)  # (N, C*kh*kw, L)
    return cols.view(n, c, -1, cols.shape[-1])  # (N, C, kk, L)


def _chunks(n: int, c_in: int, c_out: int, kk: int, length: int, max_elements: int) -> Iterator[tuple[slice, slice]]:
    """(output-channel slice, position slice) pairs whose kernel tensor K has at most ``max_elements`` elements."""
    per_channel_position = n * c_in * kk
    per_channel = per_channel_position * length
    if per_channel * c_out <= max_elements:
        yield slice(0, c_out), slice(0, length)
        return
    if per_channel <= max_elements:
        step = max(1, max_elements // per_channel)
        for o0 in range(0, c_out, step):
            yield slice(o0, min(o0 + step, c_out)), slice(0, length)
        return
    step = max(1, max_elements // per_channel_position)  # one output channel at a time, positions chunked
    for o0 in range(c_out):
        for l0 in range(0, length, step):
            yield slice(o0, o0 + 1), slice(l0, min(l0 + step, length))


def _generator(weight: Tensor, kernel_bias: Tensor, chunk: slice) -> tuple[Tensor, Tensor]:
    """Q and b of the output channels in ``chunk``, laid out per input channel for a batched matmul."""
    q = weight[chunk]  # (Oc, C, kk, kk)
    oc, c, kk, _ = q.shape
    q = q.permute(1, 0, 2, 3).reshape(c, oc * kk, kk)  # (C, Oc*kk, kk): rows (o, d), columns j
    b = kernel_bias[chunk].permute(1, 0, 2).reshape(c, oc * kk, 1)  # (C, Oc*kk, 1)
    return q, b


def _kernel(q: Tensor, b: Tensor, p: Tensor) -> Tensor:
    """K = tanh(Q P + b): (C, Oc*kk, kk) x (N, C, kk, Lc) -> (N, C, Oc, kk, Lc)."""
    n, c, kk, length = p.shape
    z = torch.matmul(q, p)  # (N, C, Oc*kk, Lc), broadcast over N
    z.add_(b)
    return z.tanh_().view(n, c, -1, kk, length)


def _compute_dtype(x: Tensor) -> torch.dtype:
    return torch.float32 if x.dtype in _LOW_PRECISION else x.dtype


def _forward(x, weight, kernel_bias, kernel_size, stride, padding, dilation, max_elements) -> Tensor:
    dtype = _compute_dtype(x)
    x, weight, kernel_bias = x.to(dtype), weight.to(dtype), kernel_bias.to(dtype)
    kh, kw = _kernel_hw(weight, kernel_size)
    n, c_in, height, width = x.shape
    c_out, kk = weight.shape[0], kh * kw
    h_out, w_out = adaptive_conv2d_output_size(height, width, (kh, kw), stride, padding, dilation)
    p = _patches(x, (kh, kw), stride, padding, dilation)  # (N, C, kk, L)
    length = p.shape[-1]
    out = x.new_empty(n, c_out, length)
    for o_chunk, l_chunk in _chunks(n, c_in, c_out, kk, length, max_elements):
        q, b = _generator(weight, kernel_bias, o_chunk)
        pc = p[..., l_chunk]  # (N, C, kk, Lc)
        k = _kernel(q, b, pc)  # (N, C, Oc, kk, Lc)
        out[:, o_chunk, l_chunk] = k.mul_(pc.unsqueeze(2)).sum(dim=(1, 3))  # (N, Oc, Lc)
    return out.view(n, c_out, h_out, w_out)


def _backward(grad_output, x, weight, kernel_bias, kernel_size, stride, padding, dilation, max_elements):
    dtype = _compute_dtype(x)
    xc, w, kb = x.to(dtype), weight.to(dtype), kernel_bias.to(dtype)
    kh, kw = _kernel_hw(w, kernel_size)
    n, c_in, height, width = xc.shape
    c_out, kk = w.shape[0], kh * kw
    p = _patches(xc, (kh, kw), stride, padding, dilation)  # (N, C, kk, L)
    length = p.shape[-1]
    g = grad_output.to(dtype).reshape(n, c_out, length)  # (N, O, L)
    grad_p = torch.zeros_like(p)
    grad_q = torch.zeros_like(w)
    grad_b = torch.zeros_like(kb)
    for o_chunk, l_chunk in _chunks(n, c_in, c_out, kk, length, max_elements):
        q, b = _generator(w, kb, o_chunk)  # (C, Oc*kk, kk), (C, Oc*kk, 1)
        pc = p[..., l_chunk]  # (N, C, kk, Lc)
        k = _kernel(q, b, pc)  # (N, C, Oc, kk, Lc)
        gc = g[:, o_chunk, l_chunk].unsqueeze(1).unsqueeze(3)  # (N, 1, Oc, 1, Lc)
        # input gradient through the kernel application: sum_o G[o,p] K[o,c,j,p]
        grad_pc = (k * gc).sum(dim=2)  # (N, C, kk, Lc)
        # dz = G * P * (1 - K^2) = GP - K^2 GP
        gp = pc.unsqueeze(2) * gc  # (N, C, Oc, kk, Lc)
        dz = gp.addcmul_(k.square_(), gp, value=-1)  # (N, C, Oc, kk, Lc)
        oc = dz.shape[2]
        dz = dz.view(n, c_in, oc * kk, -1)  # (N, C, Oc*kk, Lc)
        # dQ[o,c,d,j] = sum_{n,p} dz[n,c,(o,d),p] P[n,c,j,p]
        gq = torch.matmul(dz, pc.transpose(-1, -2)).sum(dim=0)  # (C, Oc*kk, kk)
        grad_q[o_chunk] += gq.view(c_in, oc, kk, kk).permute(1, 0, 2, 3)  # (Oc, C, kk, kk)
        grad_b[o_chunk] += dz.sum(dim=(0, 3)).view(c_in, oc, kk).permute(1, 0, 2)  # (Oc, C, kk)
        # input gradient through the kernel generator: sum_{o,d} dz[(o,d)] Q[o,c,d,j]
        grad_pc += torch.matmul(q.transpose(-1, -2), dz)  # (C, kk, Oc*kk) x (N, C, Oc*kk, Lc) -> (N, C, kk, Lc)
        grad_p[..., l_chunk] += grad_pc
    grad_x = F.fold(
        grad_p.view(n, c_in * kk, length), (height, width), (kh, kw), dilation=dilation, padding=padding,
        stride=stride,
    )  # (N, C*kk, L) -> (N, C, H, W)
    return grad_x.to(x.dtype), grad_q.to(weight.dtype), grad_b.to(kernel_bias.dtype)


# --------------------------------------------------------------------------------------------------------------
# Registered ops


@torch.library.custom_op("frugalvision::adaptive_conv2d", mutates_args=())
def _adaptive_conv2d_op(
    input: Tensor,
    weight: Tensor,
    kernel_bias: Tensor,
    kernel_size: Sequence[int],
    stride: Sequence[int],
    padding: Sequence[int],
    dilation: Sequence[int],
    max_chunk_elements: int,
) -> Tensor:
    out = _forward(input, weight, kernel_bias, tuple(kernel_size), tuple(stride), tuple(padding), tuple(dilation),
                   max_chunk_elements)
    return out.to(input.dtype)


@_adaptive_conv2d_op.register_fake
def _(input, weight, kernel_bias, kernel_size, stride, padding, dilation, max_chunk_elements):
    h_out, w_out = adaptive_conv2d_output_size(input.shape[2], input.shape[3], kernel_size, stride, padding, dilation)
    return input.new_empty(input.shape[0], weight.shape[0], h_out, w_out)


@torch.library.custom_op("frugalvision::adaptive_conv2d_backward", mutates_args=())
def _adaptive_conv2d_backward_op(
    grad_output: Tensor,
    input: Tensor,
    weight: Tensor,
    kernel_bias: Tensor,
    kernel_size: Sequence[int],
    stride: Sequence[int],
    padding: Sequence[int],
    dilation: Sequence[int],
    max_chunk_elements: int,
) -> tuple[Tensor, Tensor, Tensor]:
    return _backward(grad_output, input, weight, kernel_bias, tuple(kernel_size), tuple(stride), tuple(padding),
                     tuple(dilation), max_chunk_elements)


@_adaptive_conv2d_backward_op.register_fake
def _(grad_output, input, weight, kernel_bias, kernel_size, stride, padding, dilation, max_chunk_elements):
    return torch.empty_like(input), torch.empty_like(weight), torch.empty_like(kernel_bias)


def _setup_context(ctx, inputs, output):
    input, weight, kernel_bias, kernel_size, stride, padding, dilation, max_chunk_elements = inputs
    ctx.save_for_backward(input, weight, kernel_bias)
    ctx.geometry = (list(kernel_size), list(stride), list(padding), list(dilation), max_chunk_elements)


def _autograd_backward(ctx, grad_output):
    input, weight, kernel_bias = ctx.saved_tensors
    grads = torch.ops.frugalvision.adaptive_conv2d_backward(
        grad_output.contiguous(), input, weight, kernel_bias, *ctx.geometry
    )
    grad_input, grad_weight, grad_bias = (g if need else None for g, need in zip(grads, ctx.needs_input_grad[:3]))
    return grad_input, grad_weight, grad_bias, None, None, None, None, None


_adaptive_conv2d_op.register_autograd(_autograd_backward, setup_context=_setup_context)


# --------------------------------------------------------------------------------------------------------------
# Public functional API


def _pair(value: int | Sequence[int], name: str) -> tuple[int, int]:
    return to_pair(value, "adaptive_conv2d", name)


def _infer_kernel_size(weight: Tensor, kernel_size: int | Sequence[int] | None) -> tuple[int, int]:
    if kernel_size is not None:
        return _pair(kernel_size, "kernel_size")
    k = math.isqrt(weight.shape[-1])
    if k * k != weight.shape[-1]:
        raise InputError(
            f"adaptive_conv2d: weight.shape[-1]={weight.shape[-1]} is not a square; pass kernel_size=(kh, kw)"
        )
    return k, k


def _check_inputs(input, weight, kernel_bias, bias, kernel_size, stride, padding, dilation) -> None:
    if input.dim() != 4:
        raise InputError(f"adaptive_conv2d: input must be 4-D (N, C, H, W), got shape {tuple(input.shape)}")
    kk = kernel_size[0] * kernel_size[1]
    c_out, c_in = (weight.shape[0], weight.shape[1]) if weight.dim() == 4 else (-1, -1)
    if weight.dim() != 4 or weight.shape[2:] != (kk, kk):
        raise InputError(
            f"adaptive_conv2d: weight must be (C_out, C_in, {kk}, {kk}) for kernel {kernel_size}, "
            f"got {tuple(weight.shape)}"
        )
    if kernel_bias.shape != (c_out, c_in, kk):
        raise InputError(
            f"adaptive_conv2d: kernel_bias must be ({c_out}, {c_in}, {kk}), got {tuple(kernel_bias.shape)}"
        )
    if input.shape[1] != c_in:
        raise InputError(f"adaptive_conv2d: input has {input.shape[1]} channels but weight expects {c_in}")
    for name, t in (("input", input), ("weight", weight), ("kernel_bias", kernel_bias)):
        if not t.is_floating_point():
            raise InputTypeError(f"adaptive_conv2d: {name} must be a floating-point tensor, got {t.dtype}")
        if t.device != input.device:
            raise InputError(f"adaptive_conv2d: {name} is on {t.device} but input is on {input.device}")
    if min(stride) < 1 or min(dilation) < 1 or min(padding) < 0:
        raise InputError(
            f"adaptive_conv2d: need stride >= 1, dilation >= 1, padding >= 0; got {stride}, {dilation}, {padding}"
        )
    h_out, w_out = adaptive_conv2d_output_size(input.shape[2], input.shape[3], kernel_size, stride, padding, dilation)
    if h_out < 1 or w_out < 1:
        raise InputError(
            f"adaptive_conv2d: kernel {kernel_size} does not fit input {tuple(input.shape[2:])} with padding {padding}"
        )
    if bias is not None and bias.shape != (c_out,):
        raise InputError(f"adaptive_conv2d: bias must have shape ({c_out},), got {tuple(bias.shape)}")


def adaptive_conv2d(
    input: Tensor,
    weight: Tensor,
    kernel_bias: Tensor,
    bias: Tensor | None = None,
    stride: int | Sequence[int] = 1,
    padding: int | Sequence[int] = 0,
    dilation: int | Sequence[int] = 1,
    *,
    kernel_size: int | Sequence[int] | None = None,
    max_chunk_elements: int = DEFAULT_MAX_CHUNK_ELEMENTS,
) -> Tensor:
    """Adaptive convolution: ``Y[o,p] = sum_{c,d} tanh(sum_j Q[o,c,d,j] P[c,j,p] + b[o,c,d]) P[c,d,p]``.

    Args:
        input: (N, C_in, H, W).
        weight: Q, (C_out, C_in, kh*kw, kh*kw); row d generates kernel element d (row-major offsets), column j
            multiplies patch element j (row-major).
        kernel_bias: b, (C_out, C_in, kh*kw).
        bias: optional output bias (C_out,), added after the sum (not part of the paper's layer).
        stride, padding, dilation: of the patch extraction, as in ``F.conv2d`` (zero padding).
        kernel_size: (kh, kw); inferred as a square kernel from ``weight`` when omitted.
        max_chunk_elements: bound on the elements of the kernel tensor K held at once (forward and backward).

    Returns:
        (N, C_out, H_out, W_out) in the dtype of ``input``.
    """
    kernel_size = _infer_kernel_size(weight, kernel_size)
    stride, padding, dilation = _pair(stride, "stride"), _pair(padding, "padding"), _pair(dilation, "dilation")
    _check_inputs(input, weight, kernel_bias, bias, kernel_size, stride, padding, dilation)
    if max_chunk_elements < 1:
        raise InputError(f"adaptive_conv2d: max_chunk_elements must be >= 1, got {max_chunk_elements}")
    dtype = input.dtype
    out = torch.ops.frugalvision.adaptive_conv2d(
        input, weight.to(dtype), kernel_bias.to(dtype), list(kernel_size), list(stride), list(padding),
        list(dilation), int(max_chunk_elements),
    )
    if bias is not None:
        out = out + bias.to(out.dtype).view(1, -1, 1, 1)
    return out


def adaptive_conv2d_reference(
    input: Tensor,
    weight: Tensor,
    kernel_bias: Tensor,
    bias: Tensor | None = None,
    stride: int | Sequence[int] = 1,
    padding: int | Sequence[int] = 0,
    dilation: int | Sequence[int] = 1,
) -> Tensor:
    """Unchunked unfold/einsum form of the same formula, differentiated by autograd (a readable cross-check)."""
    kh, kw = _infer_kernel_size(weight, None)
    stride, padding, dilation = _pair(stride, "stride"), _pair(padding, "padding"), _pair(dilation, "dilation")
    n, _, height, width = input.shape
    p = _patches(input, (kh, kw), stride, padding, dilation)  # (N, C, kk, L)
    k = torch.tanh(torch.einsum("ocdj,ncjl->nocdl", weight, p) + kernel_bias[None, :, :, :, None])  # (N,O,C,kk,L)
    out = torch.einsum("nocdl,ncdl->nol", k, p)  # (N, O, L)
    h_out, w_out = adaptive_conv2d_output_size(height, width, (kh, kw), stride, padding, dilation)
    out = out.reshape(n, weight.shape[0], h_out, w_out)
    return out if bias is None else out + bias.view(1, -1, 1, 1)


def adaptive_conv2d_macs(input_shape: Sequence[int], weight_shape: Sequence[int], output_shape: Sequence[int]) -> int:
    """Multiply-accumulates of one call: per output element and input channel, kk^2 to generate the kernel
    (``Q P + b``) and kk to apply it, i.e. N * C_out * L * C_in * kk * (kk + 1)."""
    kk = weight_shape[-1]
    return math.prod(output_shape) * input_shape[1] * kk * (kk + 1)


def _adaptive_conv2d_cost(args, kwargs, out, module) -> tuple[str, dict[str, int]]:
    """count_ops formula: one multiplication and one addition per MAC of :func:`adaptive_conv2d_macs`.

    Per output element and input channel: kk^2 MACs for ``Q x`` (the kk additions of b take the place of the
    first accumulation of each generator row) and kk MACs to apply the kernel. The kk tanh evaluations per output
    element and input channel are not arithmetic in this table and are not counted. The optional output bias
    (added outside the op by the layer) adds one addition per output element.
    """
    x, weight = args[0], args[1]
    macs = adaptive_conv2d_macs(x.shape, weight.shape, out.shape)
    bias_adds = out.numel() if getattr(module, "bias", None) is not None else 0
    return WEIGHT_LAYER, {"mul": macs, "add": macs + bias_adds}


register_cost(torch.ops.frugalvision.adaptive_conv2d.default, _adaptive_conv2d_cost)
