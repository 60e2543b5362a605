"""Fused AdderNet kernels for the CPU, compiled with numba (``parallel=True, fastmath=True, cache=True``).

AdderNet: H. Chen et al., CVPR 2020, arXiv 1912.13200. Notation of :mod:`frugalvision.ops.reference`.

Design (research/kernels.md §3, §6):

* Activations are read in NHWC order, so one kernel tap ``(i, j)`` of one position is a contiguous run of input
  channels. Nothing the size of the batch im2col is ever built: each parallel task (one output row of one image)
  gathers its own patch rows into a small buffer ``(W_out, K)`` that stays in cache, with zero padding resolved
  while gathering (a padded tap holds x = 0 and so contributes ``|w|``, as in Eq. 2).
* The inner kernels are register-blocked like a GEMM micro-kernel: an ``MR x NR`` tile of (positions x channels)
  keeps its ``MR * NR`` partial sums in registers while a contiguous reduction axis is streamed; with
  ``fastmath`` LLVM vectorises that reduction (8 float32 lanes under AVX2), so one ``|x - w|`` costs a
  subtract, an and-not and an add, with ``(MR + NR) / (MR * NR)`` loads.
* The reduction axis is zero-padded to a multiple of :data:`K_ALIGN` in both operands: ``|0 - 0| = 0`` and
  ``clamp(0 - x) * 0 = 0``, so the padding is exact and the vector loop needs no scalar tail.

Kernels:

* forward, Eq. 2: ``Y[n, o, h, w] = -sum_{i, j, c} |X_pad[n, h*s + i*d, w*s + j*d, c] - W[o, i, j, c]|``.
* input gradient, Eq. 6 without col2im: every input element gathers the output positions that read it,
  ``dX[n, c, h, w] = sum_{i, j, o} HardTanh(W[o, c, i, j] - X[n, c, h, w]) * G[n, o, (h + p - i*d)/s, ...]``
  over the taps where the division is exact and in range. ``X`` is constant along that reduction, so the clamp is
  computed as ``min(max(W, X - 1), X + 1) - X`` and the ``- X * sum(G)`` part is taken out of the loop
  (one max, one min and one fused multiply-add per term).
* weight gradient, Eq. 5 through the identity ``dW = G X_col^T - W * rowsum(G)``: the convolution weight gradient
  (oneDNN) minus a rank-1 term; the sign ablation falls back to the reference.

Thread count: :func:`sync_threads` sets numba's pool to ``torch.get_num_threads()`` (bounded by numba's maximum) on
every call.
"""

from __future__ import annotations

import numba
import numpy as np
import torch
from numba import njit, prange
from torch import Tensor

from .. import reference

__all__ = ["K_ALIGN", "adder2d_forward", "adder2d_grad_input", "adder2d_grad_weight", "sync_threads"]

Pair = tuple[int, int]

K_ALIGN = 16  # the reduction axis is padded to a multiple of this (two AVX2 float32 vectors)
_FWD_MR, _FWD_NR = 4, 2  # forward tile: 4 output positions x 2 output channels
_BWD_MR, _BWD_NR = 2, 2  # input-gradient tile: 2 input positions x 2 input channels
_TASKS_PER_THREAD = 16


def sync_threads() -> int:
    """Make numba use ``torch.get_num_threads()`` threads (at most numba's pool size); returns the count."""
    threads = max(1, min(torch.get_num_threads(), numba.config.NUMBA_NUM_THREADS))
    if numba.get_num_threads() != threads:
        numba.set_num_threads(threads)
    return threads


def _round_up(value: int, multiple: int) -> int:
    return (value + multiple - 1) // multiple * multiple


# --------------------------------------------------------------------------------------------------------------
# numba kernels


@njit(parallel=True, fastmath=True, cache=True, nogil=True)
def _forward_kernel(x, w, out, kh, kw, sh, sw, ph, pw, dh, dw, groups, num_chunks):  # pragma: no cover - compiled
    """Eq. 2 on NHWC ``x`` (N, H, W, C) and packed ``w`` (G, O_pad, K_pad), K ordered (i, j, c); ``out`` NCHW."""
    n_img, height, width, channels = x.shape
    out_channels, h_out, w_out = out.shape[1], out.shape[2], out.shape[3]
    k_pad = w.shape[2]
    cg = channels // groups
    og = out_channels // groups
    num_tasks = n_img * h_out
    rows = (w_out + 3) // 4 * 4  # positions padded to a multiple of MR = 4
    for chunk in prange(num_chunks):
        buf = np.zeros((rows, k_pad), dtype=x.dtype)  # patch rows of one output row: (W_out_pad, K_pad)
        zero = buf[0, 0]
        for task in range(chunk * num_tasks // num_chunks, (chunk + 1) * num_tasks // num_chunks):
            n = task // h_out
            oh = task % h_out
            for g in range(groups):
                c0 = g * cg
                # gather the patches of output row oh: buf[ow, (i*kw + j)*cg + c] = X_pad[n, ih, iw, c0 + c]
                for i in range(kh):
                    ih = oh * sh - ph + i * dh
                    row_ok = ih >= 0 and ih < height
                    for j in range(kw):
                        k0 = (i * kw + j) * cg
                        for ow in range(w_out):
                            iw = ow * sw - pw + j * dw
                            if row_ok and iw >= 0 and iw < width:
                                for c in range(cg):
                                    buf[ow, k0 + c] = x[n, ih, iw, c0 + c]
                            else:
                                for c in range(cg):
                                    buf[ow, k0 + c] = zero
                # 4 x 2 register tile; the k loop is the vectorised reduction
                for ob in range(0, og, 2):
                    for pb in range(0, rows, 4):
                        s00 = zero
                        s01 = zero
                        s10 = zero
                        s11 = zero
                        s20 = zero
                        s21 = zero
                        s30 = zero
                        s31 = zero
                        for k in range(k_pad):
                            w0 = w[g, ob, k]
                            w1 = w[g, ob + 1, k]
                            x0 = buf[pb, k]
                            x1 = buf[pb + 1, k]
                            x2 = buf[pb + 2, k]
                            x3 = buf[pb + 3, k]
                            s00 += abs(x0 - w0)
                            s01 += abs(x0 - w1)
                            s10 += abs(x1 - w0)
                            s11 += abs(x1 - w1)
                            s20 += abs(x2 - w0)
                            s21 += abs(x2 - w1)
                            s30 += abs(x3 - w0)
                            s31 += abs(x3 - w1)
                        o = c0 // cg * og + ob
                        two = ob + 1 < og
                        out[n, o, oh, pb] = -s00
                        if two:
                            out[n, o + 1, oh, pb] = -s01
                        if pb + 1 < w_out:
                            out[n, o, oh, pb + 1] = -s10
                            if two:
                                out[n, o + 1, oh, pb + 1] = -s11
                        if pb + 2 < w_out:
                            out[n, o, oh, pb + 2] = -s20
                            if two:
                                out[n, o + 1, oh, pb + 2] = -s21
                        if pb + 3 < w_out:
                            out[n, o, oh, pb + 3] = -s30
                            if two:
                                out[n, o + 1, oh, pb + 3] = -s31


@njit(parallel=True, fastmath=True, cache=True, nogil=True)
def _grad_input_kernel(go, x, wt, grad_x, kh, kw, sh, sw, ph, pw, dh, dw, groups, num_chunks):  # pragma: no cover
    """Eq. 6 as a gather: ``go`` NHWC (N, Ho, Wo, O), ``x`` NCHW, ``wt`` (G, C_pad, R_pad) with R ordered
    (i, j, o) and ``wt[g, c, (i*kw + j)*og + o] = W[g*og + o, c, i, j]``; writes ``grad_x`` NCHW."""
    n_img, h_out, w_out, out_channels = go.shape
    channels, height, width = x.shape[1], x.shape[2], x.shape[3]
    r_pad = wt.shape[2]
    cg = channels // groups
    og = out_channels // groups
    num_tasks = n_img * height
    rows = (width + 1) // 2 * 2  # input positions padded to a multiple of MR = 2
    for chunk in prange(num_chunks):
        buf = np.zeros((rows, r_pad), dtype=x.dtype)  # gathered output gradients of one input row: (W_pad, R_pad)
        gsum = np.zeros(rows, dtype=x.dtype)  # sum over R of buf, per input position
        zero = buf[0, 0]
        one = np.ones(1, dtype=x.dtype)[0]
        for task in range(chunk * num_tasks // num_chunks, (chunk + 1) * num_tasks // num_chunks):
            n = task // height
            h = task % height
            for g in range(groups):
                o0 = g * og
                # buf[w, (i*kw + j)*og + o] = G[n, oh, ow, o0 + o] for the output positions that read X[n, :, h, w]
                for i in range(kh):
                    num_h = h + ph - i * dh
                    oh = num_h // sh
                    row_ok = num_h >= 0 and num_h % sh == 0 and oh < h_out
                    for j in range(kw):
                        r0 = (i * kw + j) * og
                        for iw in range(width):
                            num_w = iw + pw - j * dw
                            ow = num_w // sw
                            if row_ok and num_w >= 0 and num_w % sw == 0 and ow < w_out:
                                for o in range(og):
                                    buf[iw, r0 + o] = go[n, oh, ow, o0 + o]
                            else:
                                for o in range(og):
                                    buf[iw, r0 + o] = zero
                for iw in range(width):
                    acc = zero
                    for r in range(r_pad):
                        acc += buf[iw, r]
                    gsum[iw] = acc
                # 2 x 2 register tile (positions x input channels); the r loop is the vectorised reduction
                for cb in range(0, cg, 2):
                    c_a = g * cg + cb
                    c_b = c_a + 1 if cb + 1 < cg else c_a
                    for pb in range(0, rows, 2):
                        q = pb + 1 if pb + 1 < width else pb
                        xa0 = x[n, c_a, h, pb]
                        xa1 = x[n, c_a, h, q]
                        xb0 = x[n, c_b, h, pb]
                        xb1 = x[n, c_b, h, q]
                        lo_a0 = xa0 - one
                        hi_a0 = xa0 + one
                        lo_a1 = xa1 - one
                        hi_a1 = xa1 + one
                        lo_b0 = xb0 - one
                        hi_b0 = xb0 + one
                        lo_b1 = xb1 - one
                        hi_b1 = xb1 + one
                        s_a0 = zero
                        s_a1 = zero
                        s_b0 = zero
                        s_b1 = zero
                        for r in range(r_pad):
                            wa = wt[g, cb, r]
                            wb = wt[g, cb + 1, r]
                            g0 = buf[pb, r]
                            g1 = buf[pb + 1, r]
                            s_a0 += min(max(wa, lo_a0), hi_a0) * g0
                            s_a1 += min(max(wa, lo_a1), hi_a1) * g1
                            s_b0 += min(max(wb, lo_b0), hi_b0) * g0
                            s_b1 += min(max(wb, lo_b1), hi_b1) * g1
                        # HardTanh(w - x) = clamp(w, x - 1, x + 1) - x, and the -x part sums to -x * sum_r G
                        grad_x[n, c_a, h, pb] = s_a0 - xa0 * gsum[pb]
                        if pb + 1 < width:
                            grad_x[n, c_a, h, pb + 1] = s_a1 - xa1 * gsum[pb + 1]
                        if cb + 1 < cg:
                            grad_x[n, c_b, h, pb] = s_b0 - xb0 * gsum[pb]
                            if pb + 1 < width:
                                grad_x[n, c_b, h, pb + 1] = s_b1 - xb1 * gsum[pb + 1]


# --------------------------------------------------------------------------------------------------------------
# torch-facing wrappers (the kernel signatures of frugalvision.ops._dispatch)


def _compute_dtype(*tensors: Tensor) -> torch.dtype:
    return torch.float64 if all(t.dtype == torch.float64 for t in tensors) else torch.float32


def _num_chunks(num_tasks: int, threads: int) -> int:
    return max(1, min(num_tasks, threads * _TASKS_PER_THREAD))


def adder2d_forward(x: Tensor, weight: Tensor, stride: Pair, padding: Pair, dilation: Pair, groups: int) -> Tensor:
    """AdderNet Eq. 2 forward for x (N, C, H, W) and weight (O, C/groups, kh, kw); returns (N, O, Ho, Wo)."""
    dtype = _compute_dtype(x, weight)
    out_channels, cg, kh, kw = weight.shape
    og = out_channels // groups
    out_hw = reference.adder2d_output_size(x.shape[2], x.shape[3], (kh, kw), stride, padding, dilation)
    x_nhwc = x.detach().to(dtype).permute(0, 2, 3, 1).contiguous()  # (N, H, W, C)
    k = kh * kw * cg
    packed = weight.new_zeros((groups, _round_up(og, _FWD_NR), _round_up(k, K_ALIGN)), dtype=dtype)
    # (O, Cg, kh, kw) -> (G, Og, kh, kw, Cg) -> (G, Og, K) with K ordered (i, j, c) like the patch rows
    packed[:, :og, :k] = weight.detach().to(dtype).view(groups, og, cg, kh, kw).permute(0, 1, 3, 4, 2).reshape(
        groups, og, k
    )
    out = torch.empty((x.shape[0], out_channels, *out_hw), dtype=dtype)
    threads = sync_threads()
    _forward_kernel(
        x_nhwc.numpy(), packed.numpy(), out.numpy(), kh, kw, *stride, *padding, *dilation, groups,
        _num_chunks(x.shape[0] * out_hw[0], threads),
    )
    return out


def adder2d_grad_input(
    grad_output: Tensor, x: Tensor, weight: Tensor, stride: Pair, padding: Pair, dilation: Pair, groups: int
) -> Tensor:
    """AdderNet Eq. 6 input gradient (HardTanh of W - X times G, folded back) without an im2col/col2im buffer."""
    dtype = _compute_dtype(x, weight)
    out_channels, cg, kh, kw = weight.shape
    og = out_channels // groups
    go_nhwc = grad_output.detach().to(dtype).permute(0, 2, 3, 1).contiguous()  # (N, Ho, Wo, O)
    x_c = x.detach().to(dtype).contiguous()  # (N, C, H, W)
    r = kh * kw * og
    packed = weight.new_zeros((groups, _round_up(cg, _BWD_NR), _round_up(r, K_ALIGN)), dtype=dtype)
    # (O, Cg, kh, kw) -> (G, Og, Cg, kh, kw) -> (G, Cg, kh, kw, Og) -> (G, Cg, R) with R ordered (i, j, o)
    packed[:, :cg, :r] = weight.detach().to(dtype).view(groups, og, cg, kh, kw).permute(0, 2, 3, 4, 1).reshape(
        groups, cg, r
    )
    grad_x = torch.empty(x.shape, dtype=dtype)
    threads = sync_threads()
    _grad_input_kernel(
        go_nhwc.numpy(), x_c.numpy(), packed.numpy(), grad_x.numpy(), kh, kw, *stride, *padding, *dilation,
        groups, _num_chunks(x.shape[0] * x.shape[2], threads),
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
    """AdderNet Eq. 5: ``dW = conv2d_weight(X, G) - W * sum_{n,h,w} G`` (oneDNN GEMM + rank-1 term).

    ``sign=True`` (the ablation's true gradient) has no fused kernel and runs the chunked reference.
    """
    dtype = _compute_dtype(x, weight)
    args = (grad_output.detach().to(dtype), x.detach().to(dtype), weight.detach().to(dtype))
    if sign:
        return reference.adder2d_grad_weight_sign(*args, stride, padding, dilation, groups)
    return reference.adder2d_grad_weight(*args, stride, padding, dilation, groups)
