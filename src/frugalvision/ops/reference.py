"""Executable specification of the adder ops: the paper's equations transcribed literally, in plain PyTorch.

For the tests and the documentation only: nothing in ``src/frugalvision`` imports this module (a test checks it);
the library runs the backends registered in :mod:`.backends`, which the tests compare with these functions. Each
function builds the whole broadcast at once (no chunking, readability before memory), so it is meant for tiny
shapes.

AdderNet: H. Chen et al., "AdderNet: Do We Really Need Multiplications in Deep Learning?", CVPR 2020,
arXiv 1912.13200.

Notation (per group g of ``groups``; the kernels' docstrings use the same):
    X_col  (K, P)  zero-padded im2col of the input, K = C_in/groups * kh * kw, P = N * H_out * W_out
    W      (O, K)  weights, O = C_out/groups
    G      (O, P)  gradient of the loss with respect to the output

    forward (Eq. 2):      Y[o, p]      = - sum_k |X_col[k, p] - W[o, k]|        (padding counts as x = 0)
    weight grad (Eq. 5):  dW[o, k]     =   sum_p (X_col[k, p] - W[o, k]) * G[o, p]
    input grad (Eq. 6):   dX_col[k, p] =   sum_o HardTanh(W[o, k] - X_col[k, p]) * G[o, p], folded back (col2im)
    sign ablation:        dW[o, k]     =   sum_p sign(X_col[k, p] - W[o, k]) * G[o, p]   (the true gradient of Eq. 2)

The integer op (:func:`adder2d_u8_reference`) is Eq. 2 on bytes that share one scale and zero point, followed by
the float32 requantisation of :mod:`frugalvision.ops.adder2d_u8`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "adder2d_forward",
    "adder2d_grad_input",
    "adder2d_grad_weight",
    "adder2d_grad_weight_sign",
    "adder2d_u8_reference",
]

IntPair = int | tuple[int, int]


def _pair(value: IntPair) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else (int(value[0]), int(value[1]))


def _x_col(x: Tensor, kernel: tuple[int, int], stride: IntPair, padding: IntPair, dilation: IntPair,
           groups: int) -> Tensor:
    """X_col of every group and sample: (N, C, H, W) -> (N, groups, K, L), L = H_out * W_out."""
    cols = F.unfold(x, kernel, dilation=dilation, padding=padding, stride=stride)  # (N, C * kh * kw, L)
    return cols.view(x.shape[0], groups, -1, cols.shape[-1])


def _difference(x: Tensor, weight: Tensor, stride: IntPair, padding: IntPair, dilation: IntPair,
                groups: int) -> Tensor:
    """X_col[k, p] - W[o, k] for every sample, group, output channel, k and position: (N, groups, O, K, L)."""
    x_col = _x_col(x, weight.shape[2:], stride, padding, dilation, groups)  # (N, groups, K, L)
    w = weight.reshape(groups, weight.shape[0] // groups, -1)  # (groups, O, K)
    return x_col[:, :, None, :, :] - w[None, :, :, :, None]


def _grad_rows(grad_output: Tensor, groups: int) -> Tensor:
    """G of every sample and group, broadcast over k: (N, groups * O, H_out, W_out) -> (N, groups, O, 1, L)."""
    n, out_channels = grad_output.shape[:2]
    return grad_output.reshape(n, groups, out_channels // groups, 1, -1)


def adder2d_forward(x: Tensor, weight: Tensor, stride: IntPair = 1, padding: IntPair = 0, dilation: IntPair = 1,
                    groups: int = 1) -> Tensor:
    """Eq. 2: ``Y = -sum_k |X_col - W|``; x (N, C, H, W), weight (C_out, C/groups, kh, kw) -> (N, C_out, Ho, Wo)."""
    y = -_difference(x, weight, stride, padding, dilation, groups).abs().sum(3)  # (N, groups, O, L)
    (sh, _), (ph, _), (dh, _) = _pair(stride), _pair(padding), _pair(dilation)
    h_out = (x.shape[2] + 2 * ph - dh * (weight.shape[2] - 1) - 1) // sh + 1  # the rows of nn.Conv2d's output
    return y.reshape(x.shape[0], weight.shape[0], h_out, -1)  # (N, groups * O, Ho, Wo)


def adder2d_grad_weight(grad_output: Tensor, x: Tensor, weight: Tensor, stride: IntPair = 1, padding: IntPair = 0,
                        dilation: IntPair = 1, groups: int = 1) -> Tensor:
    """Eq. 5, the full-precision weight gradient: ``dW = sum_p (X_col - W) * G``."""
    diff = _difference(x, weight, stride, padding, dilation, groups)  # (N, groups, O, K, L)
    return (diff * _grad_rows(grad_output, groups)).sum((0, 4)).reshape(weight.shape)


def adder2d_grad_weight_sign(grad_output: Tensor, x: Tensor, weight: Tensor, stride: IntPair = 1,
                             padding: IntPair = 0, dilation: IntPair = 1, groups: int = 1) -> Tensor:
    """The sign ablation, the true gradient of Eq. 2: ``dW = sum_p sign(X_col - W) * G``."""
    diff = _difference(x, weight, stride, padding, dilation, groups)  # (N, groups, O, K, L)
    return (torch.sign(diff) * _grad_rows(grad_output, groups)).sum((0, 4)).reshape(weight.shape)


def adder2d_grad_input(grad_output: Tensor, x: Tensor, weight: Tensor, stride: IntPair = 1, padding: IntPair = 0,
                       dilation: IntPair = 1, groups: int = 1) -> Tensor:
    """Eq. 6: ``dX_col = sum_o HardTanh(W - X_col) * G``, folded back onto x (padded positions are dropped)."""
    diff = _difference(x, weight, stride, padding, dilation, groups)  # (N, groups, O, K, L)
    grad_col = (F.hardtanh(-diff) * _grad_rows(grad_output, groups)).sum(2)  # (N, groups, K, L)
    grad_col = grad_col.reshape(x.shape[0], -1, grad_col.shape[-1])  # (N, C * kh * kw, L)
    return F.fold(grad_col, x.shape[2:], weight.shape[2:], dilation=dilation, padding=padding, stride=stride)


def adder2d_u8_reference(
    input_q: Tensor,
    weight: Tensor,
    stride: IntPair = 1,
    padding: IntPair = 0,
    dilation: IntPair = 1,
    *,
    zero_point: int,
    scale: Tensor | None = None,
    bias: Tensor | None = None,
    residual: Tensor | None = None,
    residual_zero_point: int = 0,
    residual_scale: float = 0.0,
    output: str = "int32",
    qmin: int = 0,
    qmax: int = 255,
    groups: int = 1,
) -> Tensor:
    """``frugalvision::adder2d_u8`` on a uint8 (N, H, W, C) input and uint8 (O, C/groups, kh, kw) weights.

    ``S[n, h, w, o] = sum_{i, j, c} |Xq_pad[n, h*s_h + i*d_h, w*s_w + j*d_w, g*Cg + c] - Wq[o, c, i, j]|`` (Eq. 2 on
    the bytes; ``Xq_pad`` is the input padded with the byte ``zero_point``, i.e. x = 0; ``g = o // (O/groups)``),
    then, in float32 one rounded operation at a time:

        "int32":   S
        "float32": y = S * scale[o] + bias[o] (+ (residual - residual_zero_point) * residual_scale)
        "uint8":   clamp(round_half_to_even(y), qmin, qmax)

    Returns (N, Ho, Wo, O) of the output's dtype.
    """
    (sh, sw), (ph, pw), (dh, dw) = _pair(stride), _pair(padding), _pair(dilation)
    out_channels, cg, kh, kw = weight.shape
    x_pad = F.pad(input_q.to(torch.int64), (0, 0, pw, pw, ph, ph), value=zero_point)  # (N, H + 2ph, W + 2pw, C)
    # sliding windows of the dilated kernel's span, then every d-th row and column of each: (N, Ho, Wo, C, kh, kw)
    windows = x_pad.unfold(1, dh * (kh - 1) + 1, sh).unfold(2, dw * (kw - 1) + 1, sw)[..., ::dh, ::dw]
    n, h_out, w_out = windows.shape[:3]
    patches = windows.reshape(n, h_out, w_out, groups, 1, cg, kh, kw)
    w = weight.to(torch.int64).reshape(groups, out_channels // groups, cg, kh, kw)
    sums = (patches - w).abs().sum((5, 6, 7)).reshape(n, h_out, w_out, out_channels).to(torch.int32)
    if output == "int32":
        return sums
    y = sums.to(torch.float32) * scale
    if bias is not None:
        y = y + bias
    if residual is not None:
        residual_scale_f32 = torch.tensor(residual_scale, dtype=torch.float32)
        y = y + (residual.to(torch.float32) - float(residual_zero_point)) * residual_scale_f32
    if output == "float32":
        return y
    return torch.round(y).clamp(qmin, qmax).to(torch.uint8)
