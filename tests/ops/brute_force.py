"""Loop-by-loop float64 transcription of the AdderNet formulas (SPEC §1), independent of frugalvision's code."""

from __future__ import annotations

import torch
from torch import Tensor


def brute_force_adder(x: Tensor, weight: Tensor, stride: int, padding: int, dilation: int, groups: int,
                      grad_output: Tensor | None = None) -> tuple[Tensor, Tensor | None, Tensor | None]:
    """Forward Y, and for a given G the input gradient (Eq. 6) and full-precision weight gradient (Eq. 5)."""
    n, c_in, height, width = x.shape
    c_out, c_per_group, kh, kw = weight.shape
    o_per_group = c_out // groups
    h_out = (height + 2 * padding - dilation * (kh - 1) - 1) // stride + 1
    w_out = (width + 2 * padding - dilation * (kw - 1) - 1) // stride + 1
    y = torch.zeros(n, c_out, h_out, w_out, dtype=torch.float64)
    grad_x_pad = torch.zeros(n, c_in, height + 2 * padding, width + 2 * padding, dtype=torch.float64)
    grad_w = torch.zeros_like(weight, dtype=torch.float64)
    x_pad = torch.nn.functional.pad(x.double(), (padding, padding, padding, padding))
    wd = weight.double()
    for o in range(c_out):
        g = o // o_per_group
        for c in range(c_per_group):
            ci = g * c_per_group + c
            for i in range(kh):
                for j in range(kw):
                    rows = slice(i * dilation, i * dilation + stride * (h_out - 1) + 1, stride)
                    cols = slice(j * dilation, j * dilation + stride * (w_out - 1) + 1, stride)
                    patch = x_pad[:, ci, rows, cols]  # (n, h_out, w_out)
                    y[:, o] -= (patch - wd[o, c, i, j]).abs()
                    if grad_output is not None:
                        go = grad_output[:, o].double()
                        grad_w[o, c, i, j] = ((patch - wd[o, c, i, j]) * go).sum()
                        grad_x_pad[:, ci, rows, cols] += (wd[o, c, i, j] - patch).clamp(-1, 1) * go
    if grad_output is None:
        return y, None, None
    grad_x = grad_x_pad[:, :, padding : padding + height, padding : padding + width]
    return y, grad_x, grad_w
