"""Temporary stand-in for ``frugalvision.ops.adder2d_u8`` (the integer adder op of issue 11, owned by the kernels
work) with the agreed signature, so that :mod:`frugalvision.quant` runs before the SAD kernels are merged. Delete
this module and import the op from :mod:`frugalvision.ops` once it exists: the calls do not change.

The sum of absolute differences of uint8 operands is computed exactly with the float adder op: every term is an
integer <= 255 and every partial sum stays below 2**24, so float32 accumulation is exact in any order.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from ..ops import adder2d
from ..ops.utils import to_pair
from .epilogue import apply_epilogue

__all__ = ["PackedAdderWeight", "adder2d_u8", "pack_adder_weight_u8"]

_K_ALIGN = 64
_FLOAT32_EXACT = 2**24


@dataclass(frozen=True)
class PackedAdderWeight:
    """uint8 weights laid out for the SAD kernels: ``data`` (G, O/G, K_pad), K ordered (i, j, c), c fastest."""

    data: Tensor
    kernel_size: tuple[int, int]
    groups: int
    in_channels: int
    out_channels: int


def pack_adder_weight_u8(weight_q: Tensor, groups: int) -> PackedAdderWeight:
    """(O, C/G, kh, kw) uint8 -> :class:`PackedAdderWeight` with the reduction axis zero-padded to a multiple of 64."""
    out_channels, cin_g, kh, kw = weight_q.shape
    k = kh * kw * cin_g
    rows = weight_q.permute(0, 2, 3, 1).reshape(groups, out_channels // groups, k)  # (G, O/G, K), (i, j, c)
    data = weight_q.new_zeros(groups, out_channels // groups, -(-k // _K_ALIGN) * _K_ALIGN)
    data[:, :, :k] = rows
    return PackedAdderWeight(data, (kh, kw), groups, cin_g * groups, out_channels)


def _unpack(weight: PackedAdderWeight) -> Tensor:
    kh, kw = weight.kernel_size
    cin_g = weight.in_channels // weight.groups
    rows = weight.data[:, :, : kh * kw * cin_g]  # (G, O/G, K)
    return rows.reshape(weight.out_channels, kh, kw, cin_g).permute(0, 3, 1, 2)  # (O, C/G, kh, kw)


def adder2d_u8(
    input_q: Tensor,
    weight: PackedAdderWeight,
    stride: int | tuple[int, int] = 1,
    padding: int | tuple[int, int] = 0,
    dilation: int | tuple[int, int] = 1,
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
) -> Tensor:
    """``S[n,h,w,o] = sum_{i,j,c} |Xq_pad[n, h*s+i*d, w*s+j*d, g*Cg+c] - Wq[o,c,i,j]|`` then the epilogue.

    ``input_q`` is uint8 (N, H, W, C) channels last, padded with the byte ``zero_point``; the result is
    (N, H_out, W_out, O) in the dtype of ``output`` (see :func:`frugalvision.quant.epilogue.apply_epilogue`).
    """
    if input_q.dtype != torch.uint8 or input_q.dim() != 4:
        raise ValueError(f"adder2d_u8: input must be uint8 (N, H, W, C), got {input_q.dtype} {tuple(input_q.shape)}")
    if input_q.shape[3] != weight.in_channels:
        raise ValueError(f"adder2d_u8: input has {input_q.shape[3]} channels, weight expects {weight.in_channels}")
    kh, kw = weight.kernel_size
    if kh * kw * (weight.in_channels // weight.groups) * 255 >= _FLOAT32_EXACT:
        raise ValueError("adder2d_u8: reduction too long for the float32 fallback")
    ph, pw = to_pair(padding, "adder2d_u8", "padding")
    x = input_q.permute(0, 3, 1, 2).to(torch.float32)  # (N, C, H, W)
    x = F.pad(x, (pw, pw, ph, ph), value=float(zero_point))
    w = _unpack(weight).to(torch.float32)
    acc = -adder2d(x, w, None, stride, 0, dilation, weight.groups)  # (N, O, Ho, Wo), exact integers
    acc = acc.permute(0, 2, 3, 1).to(torch.int32).contiguous()  # (N, Ho, Wo, O)
    return apply_epilogue(acc, scale, bias, residual, residual_zero_point, residual_scale, output, qmin, qmax)
