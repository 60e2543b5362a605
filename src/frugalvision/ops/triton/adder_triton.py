"""AdderNet kernels for CUDA GPUs, written in Triton.

AdderNet: H. Chen et al., CVPR 2020, arXiv 1912.13200; notation of :mod:`frugalvision.ops.reference`.

* forward (Eq. 2) is an implicit GEMM over ``M = N * H_out * W_out`` positions and the ``O/groups`` output channels
  of one group, with rank-1 updates ``acc += |a[:, None] - b[None, :]|`` (two FADD per term on sm_90, the absolute
  value is an operand modifier). Activations stay NCHW: for one reduction index (c, i, j) consecutive positions of
  a row are consecutive addresses (stride 1), so the column loads of A coalesce and no layout copy is needed; the
  packed weight is ``(G, kh, kw, C/groups, O/groups)``, contiguous along the tile's N axis. Padded taps are loaded as
  0 and still accumulated, so they contribute ``|w|``.
* input gradient (Eq. 6) is a deterministic gather (no col2im, no atomics): each input element reduces over the
  taps ``(i, j)`` whose output position exists and over the output channels. HardTanh uses the saturate form
  ``HardTanh(w - x) = 2 * sat(w' - x') - 1`` with ``w' = w/2 + 1/2`` (packed once per call) and ``x' = x/2``
  (an identity of HardTanh), so ``dX = 2 * sum sat(w' - x') * g - sum g``.
* weight gradient (Eq. 5) is cuDNN's convolution weight gradient with TF32 off minus the rank-1 term
  ``W * sum_p G``.

Accumulation is float32 (float64 when both inputs are float64); float16 / bfloat16 inputs are loaded as they are
and converted in registers, and the outputs are float32.

Tests run these kernels on the CPU with ``TRITON_INTERPRET=1`` (set before this module is imported); block sizes
are then chosen small, and no autotuning is used (it needs a driver).
"""

from __future__ import annotations

import os

import torch
import triton
import triton.language as tl
from torch import Tensor

from .. import adder_torch
from ..utils import conv_output_size

__all__ = ["adder2d_forward", "adder2d_grad_input", "adder2d_grad_weight", "interpreted"]

Pair = tuple[int, int]


def interpreted() -> bool:
    """Whether Triton runs in its CPU interpreter (``TRITON_INTERPRET=1``)."""
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


@triton.jit
def _forward_kernel(
    x_ptr, w_ptr, y_ptr,
    num_pos, height, width, channels, h_out, w_out, out_channels, og, cg,
    kh, kw, sh, sw, ph, pw, dh, dw,
    BM: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr, F64: tl.constexpr,
):
    """y[n, g*og + o, oh, ow] = -sum_{i,j,c} |x[n, g*cg + c, ih, iw] - w_packed[g, i, j, c, o]| (Eq. 2), NCHW."""
    pid_m = tl.program_id(0)
    pid_n = tl.program_id(1)
    g = tl.program_id(2)
    offs_m = pid_m * BM + tl.arange(0, BM)  # output positions (n, oh, ow)
    offs_n = pid_n * BN + tl.arange(0, BN)  # output channels of group g
    m_ok = offs_m < num_pos
    n_ok = offs_n < og
    ow = offs_m % w_out
    oh = (offs_m // w_out) % h_out
    nb = offs_m // (w_out * h_out)
    if F64:
        acc = tl.zeros((BM, BN), dtype=tl.float64)
    else:
        acc = tl.zeros((BM, BN), dtype=tl.float32)
    w_group = w_ptr + g * (kh * kw * cg * og)
    for i in range(kh):
        ih = oh * sh - ph + i * dh
        for j in range(kw):
            iw = ow * sw - pw + j * dw
            ok = m_ok & (ih >= 0) & (ih < height) & (iw >= 0) & (iw < width)
            a_ptrs = x_ptr + (nb * channels + g * cg) * (height * width) + ih * width + iw  # (BM,) channel 0
            b_ptrs = w_group + (i * kw + j) * cg * og + offs_n  # (BN,)
            for c0 in range(0, cg, BK):
                for cc in tl.static_range(BK):
                    c = c0 + cc
                    a = tl.load(a_ptrs + c * (height * width), mask=ok & (c < cg), other=0.0).to(acc.dtype)
                    b = tl.load(b_ptrs + c * og, mask=n_ok & (c < cg), other=0.0).to(acc.dtype)
                    acc += tl.abs(a[:, None] - b[None, :])
    y_chan = nb[:, None] * out_channels + g * og + offs_n[None, :]  # (BM, BN) index n*O + o of the NCHW output
    y_ptrs = y_ptr + (y_chan * h_out + oh[:, None]) * w_out + ow[:, None]
    tl.store(y_ptrs, -acc, mask=m_ok[:, None] & n_ok[None, :])


@triton.jit
def _grad_input_kernel(
    go_ptr, x_ptr, w_ptr, dx_ptr,
    num_pos, height, width, channels, h_out, w_out, out_channels, og, cg,
    kh, kw, sh, sw, ph, pw, dh, dw,
    BM: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr, F64: tl.constexpr,
):
    """dx[n, g*cg + c, h, w] = sum_{i,j,o} HardTanh(W[o, c, i, j] - x) * G[n, o, oh, ow] (Eq. 6), gathered.

    ``w_ptr`` holds ``w' = W/2 + 1/2`` packed as (G, kh, kw, og, cg); ``go_ptr`` and ``x_ptr`` are NCHW, so the
    gradient loads of one output channel coalesce along the row.
    """
    pid_m = tl.program_id(0)
    pid_n = tl.program_id(1)
    g = tl.program_id(2)
    offs_m = pid_m * BM + tl.arange(0, BM)  # input positions (n, h, w)
    offs_n = pid_n * BN + tl.arange(0, BN)  # input channels of group g
    m_ok = offs_m < num_pos
    n_ok = offs_n < cg
    iw = offs_m % width
    ih = (offs_m // width) % height
    nb = offs_m // (width * height)
    x_chan = nb[:, None] * channels + g * cg + offs_n[None, :]  # (BM, BN) index n*C + c
    x_ptrs = x_ptr + x_chan * (height * width) + ih[:, None] * width + iw[:, None]
    x_tile = tl.load(x_ptrs, mask=m_ok[:, None] & n_ok[None, :], other=0.0)  # (BM, BN)
    if F64:
        x_half = x_tile.to(tl.float64) * 0.5
        acc = tl.zeros((BM, BN), dtype=tl.float64)
        g_sum = tl.zeros((BM,), dtype=tl.float64)
    else:
        x_half = x_tile.to(tl.float32) * 0.5
        acc = tl.zeros((BM, BN), dtype=tl.float32)
        g_sum = tl.zeros((BM,), dtype=tl.float32)
    w_group = w_ptr + g * (kh * kw * og * cg)
    for i in range(kh):
        num_h = ih + ph - i * dh
        oh = num_h // sh
        ok_h = (num_h >= 0) & (num_h % sh == 0) & (oh < h_out)
        for j in range(kw):
            num_w = iw + pw - j * dw
            ow = num_w // sw
            ok = m_ok & ok_h & (num_w >= 0) & (num_w % sw == 0) & (ow < w_out)
            g_ptrs = go_ptr + (nb * out_channels + g * og) * (h_out * w_out) + oh * w_out + ow  # (BM,) channel 0
            b_ptrs = w_group + (i * kw + j) * og * cg + offs_n  # (BN,)
            for o0 in range(0, og, BK):
                for oo in tl.static_range(BK):
                    o = o0 + oo
                    gv = tl.load(g_ptrs + o * (h_out * w_out), mask=ok & (o < og), other=0.0).to(acc.dtype)
                    wv = tl.load(b_ptrs + o * cg, mask=n_ok & (o < og), other=0.0).to(acc.dtype)
                    sat = tl.minimum(tl.maximum(wv[None, :] - x_half, 0.0), 1.0)
                    acc += sat * gv[:, None]
                    g_sum += gv
    dx = 2.0 * acc - g_sum[:, None]
    dx_ptrs = dx_ptr + x_chan * (height * width) + ih[:, None] * width + iw[:, None]
    tl.store(dx_ptrs, dx, mask=m_ok[:, None] & n_ok[None, :])


def _acc_dtype(*tensors: Tensor) -> torch.dtype:
    return torch.float64 if all(t.dtype == torch.float64 for t in tensors) else torch.float32


def _blocks(n_size: int) -> tuple[int, int, int, int]:
    """(BM, BN, BK, num_warps): 128 x 64 tiles on the GPU, tiny ones interpreted."""
    bn = max(16, min(64, triton.next_power_of_2(n_size)))
    if interpreted():
        return 16, min(bn, 16), 4, 1
    return 128, bn, 8, 4


def _low_precision_ok(t: Tensor) -> Tensor:
    # keep float16 / bfloat16 / float32 / float64 as loaded types; anything else becomes float32
    return t if t.dtype in (torch.float16, torch.bfloat16, torch.float32, torch.float64) else t.float()


def adder2d_forward(x: Tensor, weight: Tensor, stride: Pair, padding: Pair, dilation: Pair, groups: int) -> Tensor:
    """Eq. 2 forward as a Triton implicit GEMM; returns (N, O, Ho, Wo) in float32 (float64 for float64 inputs)."""
    acc = _acc_dtype(x, weight)
    n, channels, height, width = x.shape
    out_channels, cg, kh, kw = weight.shape
    og = out_channels // groups
    h_out, w_out = conv_output_size(height, width, (kh, kw), stride, padding, dilation)
    x_c = _low_precision_ok(x.detach()).contiguous()  # (N, C, H, W)
    # (O, cg, kh, kw) -> (G, og, cg, kh, kw) -> (G, kh, kw, cg, og): B operand contiguous along output channels
    w_packed = weight.detach().to(acc).view(groups, og, cg, kh, kw).permute(0, 3, 4, 2, 1).contiguous()
    out = torch.empty((n, out_channels, h_out, w_out), dtype=acc, device=x.device)
    bm, bn, bk, warps = _blocks(og)
    num_pos = n * h_out * w_out
    grid = (triton.cdiv(num_pos, bm), triton.cdiv(og, bn), groups)
    _forward_kernel[grid](
        x_c, w_packed, out,
        num_pos, height, width, channels, h_out, w_out, out_channels, og, cg,
        kh, kw, *stride, *padding, *dilation,
        BM=bm, BN=bn, BK=bk, F64=acc == torch.float64, num_warps=warps,
    )
    return out


def adder2d_grad_input(
    grad_output: Tensor, x: Tensor, weight: Tensor, stride: Pair, padding: Pair, dilation: Pair, groups: int
) -> Tensor:
    """Eq. 6 input gradient as a Triton gather kernel (saturate form of HardTanh); returns (N, C, H, W)."""
    acc = _acc_dtype(x, weight)
    n, channels, height, width = x.shape
    out_channels, cg, kh, kw = weight.shape
    og = out_channels // groups
    h_out, w_out = grad_output.shape[2], grad_output.shape[3]
    go_c = _low_precision_ok(grad_output.detach()).contiguous()  # (N, O, Ho, Wo)
    x_c = _low_precision_ok(x.detach()).contiguous()  # (N, C, H, W)
    # w' = W/2 + 1/2, (O, cg, kh, kw) -> (G, og, cg, kh, kw) -> (G, kh, kw, og, cg): contiguous along input channels
    w_half = weight.detach().to(acc) * 0.5 + 0.5
    w_packed = w_half.view(groups, og, cg, kh, kw).permute(0, 3, 4, 1, 2).contiguous()
    grad_x = torch.empty((n, channels, height, width), dtype=acc, device=x.device)
    bm, bn, bk, warps = _blocks(cg)
    num_pos = n * height * width
    grid = (triton.cdiv(num_pos, bm), triton.cdiv(cg, bn), groups)
    _grad_input_kernel[grid](
        go_c, x_c, w_packed, grad_x,
        num_pos, height, width, channels, h_out, w_out, out_channels, og, cg,
        kh, kw, *stride, *padding, *dilation,
        BM=bm, BN=bn, BK=bk, F64=acc == torch.float64, num_warps=warps,
    )
    return grad_x


def adder2d_grad_weight(
    grad_output: Tensor,
    x: Tensor,
    weight: Tensor,
    stride: Pair,
    padding: Pair,
    dilation: Pair,
    groups: int,
    sign: bool,
) -> Tensor:
    """Eq. 5 through ``dW = conv2d_weight(X, G) - W * sum_p G`` with cuDNN, TF32 off (strict float32 parity).

    ``sign=True`` (ablation only) runs the chunked plain-PyTorch kernel of :mod:`..adder_torch`.
    """
    acc = _acc_dtype(x, weight)
    args = (grad_output.detach().to(acc), x.detach().to(acc), weight.detach().to(acc), stride, padding, dilation,
            groups, sign)
    if sign:
        return adder_torch.adder2d_grad_weight(*args)
    saved = torch.backends.cudnn.allow_tf32
    torch.backends.cudnn.allow_tf32 = False
    try:
        return adder_torch.adder2d_grad_weight(*args)
    finally:
        torch.backends.cudnn.allow_tf32 = saved
