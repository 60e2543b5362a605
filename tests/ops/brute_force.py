"""Independent float64 oracles for the frugalvision ops: the papers' formulas (AdderNet Eq. 2-6, adaptive kernels)
written out loop by loop.

Nothing here uses frugalvision, ``unfold``/``fold``, convolutions or matmuls: each oracle loops over the output
channel, input channel and kernel tap, and reads the padded input through a strided slice (one tap of every output
position at once), so a mistake in the library's im2col, grouping, padding or tiling cannot be repeated here.
Every float kernel is compared with them, never with itself; so is the executable spec
(:mod:`frugalvision.ops.reference`), which in turn is the oracle of the integer kernels (checked against the loop
formula of test_adder_u8.py) and, chunk by chunk, of the portable ``torch`` backend.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["brute_force_adaptive_conv2d", "brute_force_adder", "output_size", "pair"]


def pair(value: int | tuple[int, int]) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else (int(value[0]), int(value[1]))


def _tap(i: int, j: int, out_hw: tuple[int, int], stride, dilation) -> tuple[slice, slice]:
    """Rows and columns of the padded input that kernel tap (i, j) reads at every output position."""
    rows = slice(i * dilation[0], i * dilation[0] + stride[0] * (out_hw[0] - 1) + 1, stride[0])
    cols = slice(j * dilation[1], j * dilation[1] + stride[1] * (out_hw[1] - 1) + 1, stride[1])
    return rows, cols


def output_size(height: int, width: int, kernel: tuple[int, int], stride, padding, dilation) -> tuple[int, int]:
    """(H_out, W_out) of a sliding window over the zero-padded input (the arithmetic of ``nn.Conv2d``)."""
    return ((height + 2 * padding[0] - dilation[0] * (kernel[0] - 1) - 1) // stride[0] + 1,
            (width + 2 * padding[1] - dilation[1] * (kernel[1] - 1) - 1) // stride[1] + 1)


def brute_force_adder(
    x: Tensor,
    weight: Tensor,
    stride: int | tuple[int, int] = 1,
    padding: int | tuple[int, int] = 0,
    dilation: int | tuple[int, int] = 1,
    groups: int = 1,
    grad_output: Tensor | None = None,
    weight_grad: str = "full",
) -> tuple[Tensor, Tensor | None, Tensor | None]:
    """AdderNet (Chen et al., CVPR 2020) in float64: forward Y (Eq. 2) and, for a given G, dX (Eq. 6) and dW.

    ``Y[n,o,h,w] = -sum_{c,i,j} |X_pad[n, g*C_g + c, h*s + i*d, w*s + j*d] - W[o,c,i,j]|`` (padding counts as 0);
    ``dW[o,c,i,j] = sum_{n,h,w} (X_pad - W) G`` (Eq. 5, ``weight_grad="full"``) or ``sum sign(X_pad - W) G``
    (``"sign"``, the true gradient of the ablation); ``dX = sum HardTanh(W - X) G`` over the taps that read X
    (padded taps have no input gradient). Returns ``(Y, dX, dW)``, the last two ``None`` without ``grad_output``.
    """
    stride, padding, dilation = pair(stride), pair(padding), pair(dilation)
    n, _, height, width = x.shape
    c_out, c_per_group, kh, kw = weight.shape
    o_per_group = c_out // groups
    out_hw = output_size(height, width, (kh, kw), stride, padding, dilation)
    x_pad = torch.nn.functional.pad(x.double(), (padding[1], padding[1], padding[0], padding[0]))
    wd = weight.double()
    y = torch.zeros(n, c_out, *out_hw, dtype=torch.float64)
    grad_x_pad = torch.zeros_like(x_pad)
    grad_w = torch.zeros_like(wd)
    for o in range(c_out):
        g = o // o_per_group
        go = None if grad_output is None else grad_output[:, o].double()  # (n, Ho, Wo)
        for c in range(c_per_group):
            ci = g * c_per_group + c
            for i in range(kh):
                for j in range(kw):
                    rows, cols = _tap(i, j, out_hw, stride, dilation)
                    diff = x_pad[:, ci, rows, cols] - wd[o, c, i, j]  # (n, Ho, Wo)
                    y[:, o] -= diff.abs()
                    if go is not None:
                        grad_w[o, c, i, j] = ((diff if weight_grad == "full" else diff.sign()) * go).sum()
                        grad_x_pad[:, ci, rows, cols] += (-diff).clamp(-1, 1) * go
    if grad_output is None:
        return y, None, None
    grad_x = grad_x_pad[:, :, padding[0] : padding[0] + height, padding[1] : padding[1] + width]
    return y, grad_x, grad_w


def brute_force_adaptive_conv2d(
    x: Tensor,
    q: Tensor,
    b: Tensor,
    stride: int | tuple[int, int] = 1,
    padding: int | tuple[int, int] = 0,
    dilation: int | tuple[int, int] = 1,
    kernel_size: tuple[int, int] | None = None,
) -> Tensor:
    """Adaptive convolution (Zamora Esquivel et al.) in float64, differentiable by autograd.

    ``Y[n,o,p] = sum_c sum_d tanh(sum_j Q[o,c,d,j] P[n,c,j,p] + b[o,c,d]) P[n,c,d,p]`` with ``P[n,c,j,p]`` the
    zero-padded input under kernel tap j (row-major) at output position p. The op's gradients are the true
    gradients of this formula, so ``torch.autograd.grad`` through this function is their oracle.
    """
    stride, padding, dilation = pair(stride), pair(padding), pair(dilation)
    n, c_in, height, width = x.shape
    c_out, kk = q.shape[0], q.shape[-1]
    kh, kw = kernel_size or (round(kk**0.5),) * 2
    out_hw = output_size(height, width, (kh, kw), stride, padding, dilation)
    x_pad = torch.nn.functional.pad(x.double(), (padding[1], padding[1], padding[0], padding[0]))
    taps = [_tap(i, j, out_hw, stride, dilation) for i in range(kh) for j in range(kw)]
    outputs = []
    for o in range(c_out):
        total = torch.zeros(n, *out_hw, dtype=torch.float64)
        for c in range(c_in):
            patch = [x_pad[:, c, rows, cols] for rows, cols in taps]  # kk x (n, Ho, Wo)
            for d in range(kk):
                z = b[o, c, d].double() + sum(q[o, c, d, j].double() * patch[j] for j in range(kk))
                total = total + torch.tanh(z) * patch[d]
        outputs.append(total)
    return torch.stack(outputs, dim=1)  # (n, C_out, Ho, Wo)
