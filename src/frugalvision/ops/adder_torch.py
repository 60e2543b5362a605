"""The ``torch`` backend of the adder ops: portable, memory-bounded plain PyTorch for every device and dtype.

:mod:`.backends` registers it with the lowest priority, so it runs whatever no fast kernel accepts (a GPU
without Triton, a CPU without numba, another device) and can be forced with ``use_backend("torch")``. Its weight
gradient is also the numba and Triton backends' one. The formulas are AdderNet's (H. Chen et al., CVPR 2020,
arXiv 1912.13200) in the notation of :mod:`.reference`, the executable spec that the tests compare this module
with.

The full weight gradient (Eq. 5) goes through the identity
``dW = G X_col^T - W * rowsum(G)``: a convolution weight gradient (the device's conv kernel) minus a rank-1 term.

Memory: no function here materialises the (O, K, P) broadcast for the whole batch. Work is split into batch
chunks (bounding the im2col buffer) and column chunks (bounding the broadcast temporary), each kept under
``chunk_bytes``.

Dtypes: the float kernels compute in :func:`.adder2d.compute_dtype` of their inputs (float64, else float32); the
integer forward computes int32 sums of the uint8 bytes, then the output mode of :func:`.adder_u8_epilogue`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from .adder2d import compute_dtype
from .adder2d_u8 import PackedAdderWeight
from .adder2d_u8_epilogue import adder_u8_epilogue
from .utils import conv_output_size

__all__ = ["DEFAULT_CHUNK_BYTES", "adder2d_forward", "adder2d_grad_input", "adder2d_grad_weight", "adder2d_u8_forward"]

DEFAULT_CHUNK_BYTES = 64 * 2**20  # budget of one temporary: 64 MiB

Pair = tuple[int, int]


def _batch_chunk(num_samples: int, bytes_per_sample: int, chunk_bytes: int) -> int:
    return max(1, min(num_samples, chunk_bytes // max(1, bytes_per_sample)))


def _im2col(x: Tensor, kernel_size: Pair, stride: Pair, padding: Pair, dilation: Pair, groups: int) -> Tensor:
    """Zero-padded im2col of a batch chunk, columns ordered (n, l): returns (groups, K, n * L)."""
    n = x.shape[0]
    cols = F.unfold(x, kernel_size, dilation=dilation, padding=padding, stride=stride)  # (n, C*kh*kw, L)
    length = cols.shape[-1]
    cols = cols.view(n, groups, -1, length)  # (n, G, K, L)
    return cols.permute(1, 2, 0, 3).reshape(groups, -1, n * length)  # (G, K, n*L)


def _group_rows(t: Tensor, groups: int) -> Tensor:
    """(n, G*O, Ho, Wo) -> (G, O, n*Ho*Wo) with the same (n, l) column order as :func:`_im2col`."""
    n = t.shape[0]
    t = t.reshape(n, groups, t.shape[1] // groups, -1)  # (n, G, O, L)
    return t.permute(1, 2, 0, 3).reshape(groups, t.shape[2], -1)  # (G, O, n*L)


def _ungroup_rows(t: Tensor, n: int, out_hw: Pair) -> Tensor:
    """Inverse of :func:`_group_rows`: (G, O, n*L) -> (n, G*O, Ho, Wo)."""
    groups, rows = t.shape[0], t.shape[1]
    t = t.view(groups, rows, n, out_hw[0] * out_hw[1]).permute(2, 0, 1, 3)  # (n, G, O, L)
    return t.reshape(n, groups * rows, out_hw[0], out_hw[1])


def adder2d_forward(
    x: Tensor,
    weight: Tensor,
    stride: Pair = (1, 1),
    padding: Pair = (0, 0),
    dilation: Pair = (1, 1),
    groups: int = 1,
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
) -> Tensor:
    """Y = -sum |X_col - W| (AdderNet Eq. 2) for x (N, C, H, W) and weight (O, C/groups, kh, kw)."""
    dtype = compute_dtype(x, weight)
    x, weight = x.to(dtype), weight.to(dtype)
    n, _, height, width = x.shape
    out_channels, _, kh, kw = weight.shape
    out_hw = conv_output_size(height, width, (kh, kw), stride, padding, dilation)
    length = out_hw[0] * out_hw[1]
    w_col = weight.reshape(groups, out_channels // groups, -1)  # (G, O, K)
    rows, k = w_col.shape[1], w_col.shape[2]
    item = x.element_size()
    out = x.new_empty(n, out_channels, out_hw[0], out_hw[1])
    batch = _batch_chunk(n, groups * k * length * item, chunk_bytes)
    cols_per_chunk = max(1, chunk_bytes // (rows * k * item))
    for n0 in range(0, n, batch):
        x_col = _im2col(x[n0 : n0 + batch], (kh, kw), stride, padding, dilation, groups)  # (G, K, P)
        y = x_col.new_empty(groups, rows, x_col.shape[-1])  # (G, O, P)
        for g in range(groups):
            for p0 in range(0, x_col.shape[-1], cols_per_chunk):
                block = x_col[g, None, :, p0 : p0 + cols_per_chunk]  # (1, K, p)
                y[g, :, p0 : p0 + cols_per_chunk] = -(block - w_col[g, :, :, None]).abs().sum(1)  # (O, K, p) -> (O, p)
        out[n0 : n0 + batch] = _ungroup_rows(y, y.shape[-1] // length, out_hw)
    return out


def adder2d_grad_weight(
    grad_output: Tensor,
    x: Tensor,
    weight: Tensor,
    stride: Pair = (1, 1),
    padding: Pair = (0, 0),
    dilation: Pair = (1, 1),
    groups: int = 1,
    sign: bool = False,
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
) -> Tensor:
    """Weight gradient: the full-precision one of Eq. 5, or with ``sign`` the true gradient (the ablation)."""
    dtype = compute_dtype(x, weight)
    args = (grad_output.to(dtype), x.to(dtype), weight.to(dtype), stride, padding, dilation, groups)
    return _grad_weight_sign(*args, chunk_bytes) if sign else _grad_weight_full(*args)


def _grad_weight_full(
    grad_output: Tensor, x: Tensor, weight: Tensor, stride: Pair, padding: Pair, dilation: Pair, groups: int
) -> Tensor:
    """Full-precision weight gradient (Eq. 5) through the GEMM identity dW = G X_col^T - W * rowsum(G).

    ``G X_col^T`` is exactly the convolution weight gradient (zero padding), so the backend's conv kernel does the
    heavy part; the rank-1 correction needs one reduction of G per output channel.
    """
    conv_grad = torch.nn.grad.conv2d_weight(x, weight.shape, grad_output, stride, padding, dilation, groups)
    row_sum = grad_output.sum(dim=(0, 2, 3))  # (O,)
    return conv_grad - weight * row_sum.view(-1, 1, 1, 1)


def _grad_weight_sign(
    grad_output: Tensor, x: Tensor, weight: Tensor, stride: Pair, padding: Pair, dilation: Pair, groups: int,
    chunk_bytes: int,
) -> Tensor:
    """True (sign) weight gradient dW = sum_p sign(X_col - W) G, used only by the optimisation ablation."""
    n = x.shape[0]
    out_channels, _, kh, kw = weight.shape
    w_col = weight.reshape(groups, out_channels // groups, -1)  # (G, O, K)
    rows, k = w_col.shape[1], w_col.shape[2]
    item = x.element_size()
    length = grad_output.shape[2] * grad_output.shape[3]
    grad_w = torch.zeros_like(w_col)
    batch = _batch_chunk(n, groups * (k + rows) * length * item, chunk_bytes)
    cols_per_chunk = max(1, chunk_bytes // (rows * k * item))
    for n0 in range(0, n, batch):
        x_col = _im2col(x[n0 : n0 + batch], (kh, kw), stride, padding, dilation, groups)  # (G, K, P)
        g_rows = _group_rows(grad_output[n0 : n0 + batch], groups)  # (G, O, P)
        for g in range(groups):
            for p0 in range(0, x_col.shape[-1], cols_per_chunk):
                block = x_col[g, None, :, p0 : p0 + cols_per_chunk]  # (1, K, p)
                sign = torch.sign(block - w_col[g, :, :, None])  # (O, K, p)
                grad_w[g] += (sign * g_rows[g, :, None, p0 : p0 + cols_per_chunk]).sum(-1)
    return grad_w.view_as(weight)


def adder2d_grad_input(
    grad_output: Tensor,
    x: Tensor,
    weight: Tensor,
    stride: Pair = (1, 1),
    padding: Pair = (0, 0),
    dilation: Pair = (1, 1),
    groups: int = 1,
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
) -> Tensor:
    """Input gradient (Eq. 6): dX_col = sum_o HardTanh(W - X_col) G, folded back; padded positions are dropped."""
    dtype = compute_dtype(x, weight)
    grad_output, x, weight = grad_output.to(dtype), x.to(dtype), weight.to(dtype)
    n, _, height, width = x.shape
    out_channels, _, kh, kw = weight.shape
    w_col = weight.reshape(groups, out_channels // groups, -1)  # (G, O, K)
    rows, k = w_col.shape[1], w_col.shape[2]
    item = x.element_size()
    length = grad_output.shape[2] * grad_output.shape[3]
    grad_x = torch.empty_like(x, memory_format=torch.contiguous_format)
    batch = _batch_chunk(n, groups * (2 * k + rows) * length * item, chunk_bytes)
    cols_per_chunk = max(1, chunk_bytes // (rows * k * item))
    for n0 in range(0, n, batch):
        chunk = x[n0 : n0 + batch]
        x_col = _im2col(chunk, (kh, kw), stride, padding, dilation, groups)  # (G, K, P)
        g_rows = _group_rows(grad_output[n0 : n0 + batch], groups)  # (G, O, P)
        grad_col = torch.empty_like(x_col)
        for g in range(groups):
            for p0 in range(0, x_col.shape[-1], cols_per_chunk):
                block = x_col[g, None, :, p0 : p0 + cols_per_chunk]  # (1, K, p)
                hard_tanh = (w_col[g, :, :, None] - block).clamp_(-1.0, 1.0)  # (O, K, p)
                g_block = g_rows[g, :, None, p0 : p0 + cols_per_chunk]  # (O, 1, p)
                grad_col[g, :, p0 : p0 + cols_per_chunk] = (hard_tanh * g_block).sum(0)
        nb = chunk.shape[0]
        grad_col = grad_col.view(groups, k, nb, length).permute(2, 0, 1, 3).reshape(nb, groups * k, length)
        grad_x[n0 : n0 + nb] = F.fold(
            grad_col, (height, width), (kh, kw), dilation=dilation, padding=padding, stride=stride
        )
    return grad_x


# --------------------------------------------------------------------------------------------------------------
# Integer adder (AdderNet Eq. 2 on uint8 with one shared scale and zero point; see frugalvision.ops.adder2d_u8)


def adder2d_u8_forward(
    input_q: Tensor, weight_data: Tensor, out_channels: int, kernel_size: Pair, stride: Pair, padding: Pair,
    dilation: Pair, zero_point: int, scale: Tensor | None, bias: Tensor | None, residual: Tensor | None,
    residual_zero_point: int, residual_scale: float, output: str, qmin: int, qmax: int,
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
) -> Tensor:
    """The ``frugalvision::adder2d_u8`` forward (arguments checked by :func:`frugalvision.ops.adder2d_u8.adder2d_u8`)
    in int32 PyTorch arithmetic, in batch chunks of at most ``chunk_bytes`` of broadcast temporary.

    ``S[n, h, w, o] = sum_{i, j, c} |Xq_pad[n, h*s_h + i*d_h, w*s_w + j*d_w, g*Cg + c] - Wq[o, c, i, j]|`` with
    ``Xq_pad`` the NHWC uint8 input padded with the byte ``zero_point`` and ``g = o // (O/G)``, then the output mode
    of :func:`adder_u8_epilogue`. ``weight_data`` is :attr:`PackedAdderWeight.data`, uint8 (G, B, S, 8, 8).
    Returns (N, Ho, Wo, O): int32, float32 or uint8.
    """
    groups = weight_data.shape[0]
    weight = PackedAdderWeight(weight_data, kernel_size, groups, input_q.shape[3], out_channels).unpack()
    sh, sw = stride
    ph, pw = padding
    dh, dw = dilation
    n, height, width, channels = input_q.shape
    cg, (kh, kw) = channels // groups, kernel_size
    og = out_channels // groups
    h_out, w_out = conv_output_size(height, width, kernel_size, stride, padding, dilation)
    x_pad = torch.full((n, height + 2 * ph, width + 2 * pw, channels), zero_point, dtype=torch.int32)
    x_pad[:, ph : ph + height, pw : pw + width] = input_q.to(torch.int32)
    # (O, Cg, kh, kw) -> (G, Og, kh, kw, Cg) -> (G, Og, K), K ordered (i, j, c)
    w_col = weight.to(torch.int32).view(groups, og, cg, kh, kw).permute(0, 1, 3, 4, 2).reshape(groups, og, -1)
    k = w_col.shape[-1]
    sums = torch.empty((n, h_out, w_out, out_channels), dtype=torch.int32)
    per_image = h_out * w_out * out_channels * k * 4
    batch = _batch_chunk(n, per_image, chunk_bytes)
    for n0 in range(0, n, batch):
        # taps (i, j): (nb, Ho, Wo, C) slices of the padded input -> (nb, Ho, Wo, kh, kw, C)
        taps = [x_pad[n0 : n0 + batch, i * dh : i * dh + sh * (h_out - 1) + 1 : sh,
                      j * dw : j * dw + sw * (w_out - 1) + 1 : sw] for i in range(kh) for j in range(kw)]
        patches = torch.stack(taps, dim=3).view(-1, h_out, w_out, kh, kw, groups, cg)
        for g in range(groups):
            cols = patches[..., g, :].reshape(-1, h_out, w_out, 1, k)  # (nb, Ho, Wo, 1, K), K ordered (i, j, c)
            sums[n0 : n0 + batch, ..., g * og : (g + 1) * og] = (cols - w_col[g]).abs().sum(-1, dtype=torch.int32)
    if output == "int32":
        return sums
    return adder_u8_epilogue(sums, scale, bias, residual, residual_zero_point, residual_scale, output, qmin, qmax)
