"""Fused AdderNet kernels for the CPU, compiled with numba (``parallel=True, fastmath=True, cache=True``).

AdderNet: H. Chen et al., CVPR 2020, arXiv 1912.13200. Notation of :mod:`frugalvision.ops.reference`.

Design:

* Activations are read from one channels-last copy with the zero border already in place (``(G, N, H + 2p,
  W + 2p, C/G)``; a padded tap holds x = 0 and so contributes ``|w|``, as in Eq. 2), so one kernel tap ``(i, j)``
  of one position is a contiguous run of input channels. Nothing the size of the batch im2col is ever built: each
  parallel task (a block of :data:`POS_BLOCK` consecutive positions of the flattened ``(n, h, w)`` index, so 1 x 1
  maps fill the tiles too) gathers its own patch rows into a small buffer ``(POS_BLOCK, K)`` that stays in L1. The
  gathers have no branch and no integer division (positions are stepped, the input gradient's taps come from small
  lookup tables): on ResNet-20 stage 1 they used to cost as much as a third of the kernel time.
* The inner kernels are register-blocked like a GEMM micro-kernel: an ``MR x NR`` tile of (positions x channels)
  keeps its ``MR * NR`` partial sums in registers while a contiguous reduction axis is streamed; with
  ``fastmath`` LLVM vectorises that reduction (8 float32 lanes under AVX2, 16 under AVX-512), so one ``|x - w|``
  costs a subtract, an and-not and an add, with ``(MR + NR) / (MR * NR)`` loads. Forward tile: 4 positions x 2
  output channels; input-gradient tile: 2 positions x 2 input channels.
* The reduction axis is zero-padded to a multiple of :data:`K_ALIGN` in both operands: ``|0 - 0| = 0`` and
  ``clamp(0 - x) * 0 = 0``, so the padding is exact and the vector loop needs no scalar tail.

Kernels:

* forward, Eq. 2: ``Y[n, o, h, w] = -sum_{i, j, c} |X_pad[n, h*s + i*d, w*s + j*d, c] - W[o, i, j, c]|``.
* input gradient, Eq. 6 without col2im: every input element gathers the output positions that read it,
  ``dX[n, c, h, w] = sum_{i, j, o} HardTanh(W[o, c, i, j] - X[n, c, h, w]) * G[n, o, (h + p - i*d)/s, ...]``
  over the taps where the division is exact and in range (the others read a zero row or column of G). ``X`` is
  constant along that reduction, so the clamp is computed as ``min(max(W, X - 1), X + 1) - X`` and the
  ``- X * sum(G)`` part is taken out of the loop (one max, one min and one fused multiply-add per term). Layers
  whose output is much smaller than their input (stride 2, a 5 x 5 kernel on a 5 x 5 map) would mostly multiply
  zeros that way; for them :func:`_grad_input_sparse_kernel` reduces each position over its runs of valid taps only.
* weight gradient: none here. Eq. 5 through the identity ``dW = G X_col^T - W * rowsum(G)`` is a convolution weight
  gradient (oneDNN) minus a rank-1 term, which the ``torch`` backend already computes that way; the numba backend
  registers that function (see :mod:`frugalvision.ops.backends`).

Thread count: :func:`sync_threads` sets numba's pool to ``torch.get_num_threads()`` (bounded by numba's maximum) on
every call.
"""

from __future__ import annotations

import numba
import numpy as np
import torch
from numba import njit, prange
from torch import Tensor

from ...omp_env import warn_if_torch_spins
from ..adder2d import compute_dtype
from ..utils import conv_output_size

__all__ = ["K_ALIGN", "POS_BLOCK", "adder2d_forward", "adder2d_grad_input", "sync_threads"]

Pair = tuple[int, int]

K_ALIGN = 32  # the reduction axis is padded to a multiple of this (LLVM runs 2 x 16 float32 lanes per step)
POS_BLOCK = 32  # positions per task (a multiple of both tiles' position counts)
_FWD_NR = 2  # forward tile: 4 output positions x 2 output channels
_BWD_NR = 4  # input channels padded for the tiles: 2 positions x 2 channels (dense), 1 x 4 (sparse)
_SPARSE_RATIO = 2.5  # input/output area ratio above which the input gradient skips invalid taps
_TASKS_PER_THREAD = 16


def sync_threads() -> int:
    """Make numba use ``torch.get_num_threads()`` threads (at most numba's pool size); returns the count.

    numba's OpenMP pool, when it starts (on the first ``numba.get_num_threads()``), sets OpenMP's thread count
    to its own pool size, which is the count torch reports and uses; torch's count is read first and put back.
    Warns once where torch's pool spins when idle (:func:`frugalvision.omp_env.warn_if_torch_spins`)."""
    warn_if_torch_spins()
    wanted = torch.get_num_threads()
    current = numba.get_num_threads()  # starts numba's pool on first use
    if torch.get_num_threads() != wanted:
        torch.set_num_threads(wanted)
    threads = max(1, min(wanted, numba.config.NUMBA_NUM_THREADS))
    if current != threads:
        numba.set_num_threads(threads)
    return threads


def _round_up(value: int, multiple: int) -> int:
    return (value + multiple - 1) // multiple * multiple


# --------------------------------------------------------------------------------------------------------------
# numba kernels


@njit(cache=True, inline="always")
def _next_position(n, row, col, rows, cols):  # pragma: no cover - compiled
    """The position after (n, row, col) in the flattened (n, row, col) order of ``rows x cols`` maps."""
    col += 1
    if col == cols:
        col = 0
        row += 1
        if row == rows:
            row = 0
            n += 1
    return n, row, col


@njit(parallel=True, fastmath=True, cache=True, nogil=True)
def _forward_kernel(x_pad, w, out, h_out, w_out, kh, kw, sh, sw, dh, dw, num_chunks):  # pragma: no cover - compiled
    """Eq. 2 on the zero-padded input ``x_pad`` (G, N, Hp, Wp, Cg) and packed ``w`` (G, O_pad, K_pad), K ordered
    (i, j, c).

    ``out`` is the NCHW output viewed as (N, O, Ho*Wo). A task is a block of :data:`POS_BLOCK` consecutive output
    positions of the flattened (n, oh, ow) index, so small feature maps (down to 1 x 1) fill the tiles too. The
    padding is already in ``x_pad``: the gather has no branch and no division.
    """
    groups, n_img, _, _, cg = x_pad.shape
    out_channels = out.shape[1]
    k_pad = w.shape[2]
    og = out_channels // groups
    hw_out = h_out * w_out
    num_pos = n_img * hw_out
    num_tasks = (num_pos + POS_BLOCK - 1) // POS_BLOCK
    for chunk in prange(num_chunks):
        buf = np.zeros((POS_BLOCK, k_pad), dtype=x_pad.dtype)  # patch rows of one block of positions: (PB, K_pad)
        pos_n = np.zeros(POS_BLOCK, dtype=np.int64)  # image index of each position of the block
        pos_m = np.zeros(POS_BLOCK, dtype=np.int64)  # oh * w_out + ow of each position
        zero = buf[0, 0]
        for task in range(chunk * num_tasks // num_chunks, (chunk + 1) * num_tasks // num_chunks):
            p0 = task * POS_BLOCK
            count = min(POS_BLOCK, num_pos - p0)
            for g in range(groups):
                # gather: buf[q, (i*kw + j)*cg + c] = X_pad[n, oh*sh + i*dh, ow*sw + j*dw, g*cg + c] for the
                # position p0 + q = (n, oh, ow), stepped without divisions
                n = p0 // hw_out
                oh = p0 % hw_out // w_out
                ow = p0 % w_out
                for q in range(count):
                    pos_n[q] = n
                    pos_m[q] = oh * w_out + ow
                    for i in range(kh):
                        ih = oh * sh + i * dh
                        for j in range(kw):
                            iw = ow * sw + j * dw
                            k0 = (i * kw + j) * cg
                            for c in range(cg):
                                buf[q, k0 + c] = x_pad[g, n, ih, iw, c]
                    n, oh, ow = _next_position(n, oh, ow, h_out, w_out)
                # 4 x 2 register tile (positions x output channels); the k loop is the vectorised reduction.
                # Rows >= count hold stale patches: their sums are computed and dropped.
                for ob in range(0, og, 2):
                    o = g * og + ob
                    two = ob + 1 < og
                    for pb in range(0, count, 4):
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
                        for q in range(min(4, count - pb)):
                            a = s00
                            b = s01
                            if q == 1:
                                a = s10
                                b = s11
                            elif q == 2:
                                a = s20
                                b = s21
                            elif q == 3:
                                a = s30
                                b = s31
                            n = pos_n[pb + q]
                            rem = pos_m[pb + q]
                            out[n, o, rem] = -a
                            if two:
                                out[n, o + 1, rem] = -b


@njit(parallel=True, fastmath=True, cache=True, nogil=True)
def _grad_input_kernel(go_pad, x, wt, grad_x, row_of, col_of, num_chunks):  # pragma: no cover - compiled
    """Eq. 6 as a gather. ``go_pad`` (G, N, Ho + 1, Wo + 1, Og) is G with a zero last row and column; ``x`` and
    ``grad_x`` are NCHW viewed as (N, C, H*W); ``wt`` (G, C_pad, R_pad) with R ordered (i, j, o),
    ``wt[g, c, (i*kw + j)*og + o] = W[g*og + o, c, i, j]``.

    ``row_of[h, i]`` is the output row that reads input row h through kernel row i (the zero row Ho where none
    does), ``col_of[w, j]`` the same for columns: the gather has no branch and no division.
    A task is a block of :data:`POS_BLOCK` consecutive input positions of the flattened (n, h, w) index.
    """
    groups, n_img, _, _, og = go_pad.shape
    height, kh = row_of.shape
    width, kw = col_of.shape
    channels = x.shape[1]
    r_pad = wt.shape[2]
    cg = channels // groups
    hw = height * width
    num_pos = n_img * hw
    num_tasks = (num_pos + POS_BLOCK - 1) // POS_BLOCK
    for chunk in prange(num_chunks):
        buf = np.zeros((POS_BLOCK, r_pad), dtype=x.dtype)  # gathered output gradients of a block: (PB, R_pad)
        gsum = np.zeros(POS_BLOCK, dtype=x.dtype)  # sum over R of buf, per position
        pos_n = np.zeros(POS_BLOCK, dtype=np.int64)  # image index of each position of the block
        pos_m = np.zeros(POS_BLOCK, dtype=np.int64)  # h * width + w of each position
        zero = buf[0, 0]
        one = np.ones(1, dtype=x.dtype)[0]
        for task in range(chunk * num_tasks // num_chunks, (chunk + 1) * num_tasks // num_chunks):
            p0 = task * POS_BLOCK
            count = min(POS_BLOCK, num_pos - p0)
            for g in range(groups):
                # buf[q, (i*kw + j)*og + o] = G[n, oh, ow, g*og + o] for the output positions that read X[n, :, h, w]
                # (zero where none does), position p0 + q = (n, h, w) stepped without divisions
                n = p0 // hw
                h = p0 % hw // width
                iw = p0 % width
                for q in range(count):
                    pos_n[q] = n
                    pos_m[q] = h * width + iw
                    for i in range(kh):
                        oh = row_of[h, i]
                        for j in range(kw):
                            ow = col_of[iw, j]
                            r0 = (i * kw + j) * og
                            for o in range(og):
                                buf[q, r0 + o] = go_pad[g, n, oh, ow, o]
                    acc = zero
                    for r in range(r_pad):
                        acc += buf[q, r]
                    gsum[q] = acc
                    n, h, iw = _next_position(n, h, iw, height, width)
                # 2 x 2 register tile (positions x input channels); the r loop is the vectorised reduction
                for cb in range(0, cg, 2):
                    c_a = g * cg + cb
                    two = cb + 1 < cg
                    c_b = c_a + 1 if two else c_a
                    for pb in range(0, count, 2):
                        last = pb + 1 if pb + 1 < count else pb
                        n0 = pos_n[pb]
                        m0 = pos_m[pb]
                        n1 = pos_n[last]
                        m1 = pos_m[last]
                        xa0 = x[n0, c_a, m0]
                        xa1 = x[n1, c_a, m1]
                        xb0 = x[n0, c_b, m0]
                        xb1 = x[n1, c_b, m1]
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
                        grad_x[n0, c_a, m0] = s_a0 - xa0 * gsum[pb]
                        if two:
                            grad_x[n0, c_b, m0] = s_b0 - xb0 * gsum[pb]
                        if pb + 1 < count:
                            grad_x[n1, c_a, m1] = s_a1 - xa1 * gsum[pb + 1]
                            if two:
                                grad_x[n1, c_b, m1] = s_b1 - xb1 * gsum[pb + 1]


@njit(parallel=True, fastmath=True, cache=True, nogil=True)
def _grad_input_sparse_kernel(go, x, wt, grad_x, height, width, kh, kw, sh, sw, ph, pw, dh, dw, groups,
                              num_chunks):  # pragma: no cover - compiled
    """Eq. 6 gather like :func:`_grad_input_kernel`, for layers whose output is much smaller than their input
    (stride > 1, large kernels on small maps): each input position reduces only over the runs of consecutive valid
    taps ``(i, j_first..j_last)``, which are contiguous ranges of R, with a 1 x 4 tile (position x channels)."""
    n_img, h_out, w_out, out_channels = go.shape
    channels = x.shape[1]
    r_pad = wt.shape[2]
    cg = channels // groups
    og = out_channels // groups
    hw = height * width
    num_pos = n_img * hw
    num_tasks = (num_pos + POS_BLOCK - 1) // POS_BLOCK
    for chunk in prange(num_chunks):
        buf = np.zeros(r_pad, dtype=x.dtype)  # gathered output gradients of one position (valid taps only)
        run_lo = np.zeros(kh * kw, dtype=np.int64)  # runs of valid taps, as ranges of R
        run_hi = np.zeros(kh * kw, dtype=np.int64)
        zero = buf[0]
        one = np.ones(1, dtype=x.dtype)[0]
        for task in range(chunk * num_tasks // num_chunks, (chunk + 1) * num_tasks // num_chunks):
            p0 = task * POS_BLOCK
            for p in range(p0, min(p0 + POS_BLOCK, num_pos)):
                n = p // hw
                m = p % hw
                h = m // width
                iw = m % width
                for g in range(groups):
                    o0 = g * og
                    runs = 0
                    g_total = zero
                    for i in range(kh):
                        num_h = h + ph - i * dh
                        oh = num_h // sh
                        if num_h < 0 or num_h % sh != 0 or oh >= h_out:
                            continue
                        for j in range(kw):
                            num_w = iw + pw - j * dw
                            ow = num_w // sw
                            if num_w < 0 or num_w % sw != 0 or ow >= w_out:
                                continue
                            r0 = (i * kw + j) * og
                            for o in range(og):
                                v = go[n, oh, ow, o0 + o]
                                buf[r0 + o] = v
                                g_total += v
                            if runs > 0 and run_hi[runs - 1] == r0:
                                run_hi[runs - 1] = r0 + og
                            else:
                                run_lo[runs] = r0
                                run_hi[runs] = r0 + og
                                runs += 1
                    for cb in range(0, cg, 4):
                        c_base = g * cg + cb
                        xs0 = x[n, c_base, m]
                        xs1 = x[n, min(c_base + 1, channels - 1), m]
                        xs2 = x[n, min(c_base + 2, channels - 1), m]
                        xs3 = x[n, min(c_base + 3, channels - 1), m]
                        lo0 = xs0 - one
                        hi0 = xs0 + one
                        lo1 = xs1 - one
                        hi1 = xs1 + one
                        lo2 = xs2 - one
                        hi2 = xs2 + one
                        lo3 = xs3 - one
                        hi3 = xs3 + one
                        s0 = zero
                        s1 = zero
                        s2 = zero
                        s3 = zero
                        for run in range(runs):
                            for r in range(run_lo[run], run_hi[run]):
                                gv = buf[r]
                                s0 += min(max(wt[g, cb, r], lo0), hi0) * gv
                                s1 += min(max(wt[g, cb + 1, r], lo1), hi1) * gv
                                s2 += min(max(wt[g, cb + 2, r], lo2), hi2) * gv
                                s3 += min(max(wt[g, cb + 3, r], lo3), hi3) * gv
                        grad_x[n, c_base, m] = s0 - xs0 * g_total
                        if cb + 1 < cg:
                            grad_x[n, c_base + 1, m] = s1 - xs1 * g_total
                        if cb + 2 < cg:
                            grad_x[n, c_base + 2, m] = s2 - xs2 * g_total
                        if cb + 3 < cg:
                            grad_x[n, c_base + 3, m] = s3 - xs3 * g_total


# --------------------------------------------------------------------------------------------------------------
# torch-facing wrappers (the kernel signatures of frugalvision.ops.dispatch)


def _num_chunks(num_tasks: int, threads: int) -> int:
    return max(1, min(num_tasks, threads * _TASKS_PER_THREAD))


def _tap_table(size: int, out_size: int, k: int, stride: int, padding: int, dilation: int) -> Tensor:
    """``table[p, t]``: the output index that reads input index p through kernel tap t (-1 where none does)."""
    reach = torch.arange(size)[:, None] + padding - torch.arange(k)[None, :] * dilation  # (size, k): out * stride
    valid = (reach >= 0) & (reach % stride == 0) & (reach // stride < out_size)
    return torch.where(valid, reach // stride, -1)


def _grouped_channels_last(t: Tensor, groups: int, dtype: torch.dtype, before: Pair, after: Pair) -> Tensor:
    """(N, C, H, W) -> zero-bordered (G, N, before + H + after, before + W + after, C/G) copy in ``dtype``."""
    n, channels, height, width = t.shape
    out = t.new_zeros(
        (groups, n, before[0] + height + after[0], before[1] + width + after[1], channels // groups), dtype=dtype
    )
    # (N, C, H, W) -> (N, G, C/G, H, W) -> (G, N, H, W, C/G), written inside the zero border
    grouped = t.detach().reshape(n, groups, channels // groups, height, width)
    out[:, :, before[0] : before[0] + height, before[1] : before[1] + width] = grouped.permute(1, 0, 3, 4, 2)
    return out


def adder2d_forward(x: Tensor, weight: Tensor, stride: Pair, padding: Pair, dilation: Pair, groups: int) -> Tensor:
    """AdderNet Eq. 2 forward for x (N, C, H, W) and weight (O, C/groups, kh, kw); returns (N, O, Ho, Wo)."""
    dtype = compute_dtype(x, weight)
    out_channels, cg, kh, kw = weight.shape
    og = out_channels // groups
    n, _, height, width = x.shape
    out_hw = conv_output_size(height, width, (kh, kw), stride, padding, dilation)
    x_pad = _grouped_channels_last(x, groups, dtype, padding, padding)  # (G, N, H + 2ph, W + 2pw, Cg)
    k = kh * kw * cg
    packed = weight.new_zeros((groups, _round_up(og, _FWD_NR), _round_up(k, K_ALIGN)), dtype=dtype)
    # (O, Cg, kh, kw) -> (G, Og, kh, kw, Cg) -> (G, Og, K) with K ordered (i, j, c) like the patch rows
    packed[:, :og, :k] = weight.detach().to(dtype).view(groups, og, cg, kh, kw).permute(0, 1, 3, 4, 2).reshape(
        groups, og, k
    )
    out = torch.empty((n, out_channels, *out_hw), dtype=dtype)
    threads = sync_threads()
    num_tasks = -(-n * out_hw[0] * out_hw[1] // POS_BLOCK)
    _forward_kernel(
        x_pad.numpy(), packed.numpy(), out.view(n, out_channels, -1).numpy(), *out_hw, kh, kw, *stride, *dilation,
        _num_chunks(num_tasks, threads),
    )
    return out


def adder2d_grad_input(
    grad_output: Tensor, x: Tensor, weight: Tensor, stride: Pair, padding: Pair, dilation: Pair, groups: int
) -> Tensor:
    """AdderNet Eq. 6 input gradient (HardTanh of W - X times G, folded back) without an im2col/col2im buffer."""
    dtype = compute_dtype(x, weight)
    out_channels, cg, kh, kw = weight.shape
    og = out_channels // groups
    n, channels, height, width = x.shape
    h_out, w_out = grad_output.shape[2], grad_output.shape[3]
    x_c = x.detach().to(dtype).contiguous()  # (N, C, H, W)
    grad_x = torch.empty(x.shape, dtype=dtype)
    threads = sync_threads()
    num_chunks = _num_chunks(-(-n * height * width // POS_BLOCK), threads)
    r = kh * kw * og
    packed = weight.new_zeros((groups, _round_up(cg, _BWD_NR), _round_up(r, K_ALIGN)), dtype=dtype)
    # (O, Cg, kh, kw) -> (G, Og, Cg, kh, kw) -> (G, Cg, kh, kw, Og) -> (G, Cg, R) with R ordered (i, j, o)
    packed[:, :cg, :r] = weight.detach().to(dtype).view(groups, og, cg, kh, kw).permute(0, 2, 3, 4, 1).reshape(
        groups, cg, r
    )
    if height * width > _SPARSE_RATIO * h_out * w_out:
        go_nhwc = grad_output.detach().to(dtype).permute(0, 2, 3, 1).contiguous()  # (N, Ho, Wo, O)
        _grad_input_sparse_kernel(
            go_nhwc.numpy(), x_c.view(n, channels, -1).numpy(), packed.numpy(), grad_x.view(n, channels, -1).numpy(),
            height, width, kh, kw, *stride, *padding, *dilation, groups, num_chunks,
        )
        return grad_x
    go_pad = _grouped_channels_last(grad_output, groups, dtype, (0, 0), (1, 1))  # (G, N, Ho + 1, Wo + 1, Og)
    row_of = _tap_table(height, h_out, kh, stride[0], padding[0], dilation[0])
    col_of = _tap_table(width, w_out, kw, stride[1], padding[1], dilation[1])
    _grad_input_kernel(
        go_pad.numpy(), x_c.view(n, channels, -1).numpy(), packed.numpy(), grad_x.view(n, channels, -1).numpy(),
        torch.where(row_of < 0, h_out, row_of).numpy(), torch.where(col_of < 0, w_out, col_of).numpy(), num_chunks,
    )
    return grad_x
