"""Independent oracles for the integer AdderNet tests: an int64 tap loop for the sum of absolute differences and a
float64 evaluation of the epilogue that rounds to float32 after every operation, as the adder2d_u8 contract
specifies (so it must agree bit for bit with any implementation of the contract)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def sad_int64(x_nhwc: Tensor, weight_q: Tensor, stride: tuple[int, int], padding: tuple[int, int],
              dilation: tuple[int, int], groups: int, zero_point: int) -> Tensor:
    """S[n,h,w,o] = sum |Xpad - Wq| with Xpad padded by the byte ``zero_point``; int64 (N, Ho, Wo, O)."""
    x = x_nhwc.permute(0, 3, 1, 2).long()  # (N, C, H, W)
    ph, pw = padding
    x = F.pad(x, (pw, pw, ph, ph), value=zero_point)
    n, _, hp, wp = x.shape
    out_channels, cg, kh, kw = weight_q.shape
    (sh, sw), (dh, dw) = stride, dilation
    ho, wo = (hp - dh * (kh - 1) - 1) // sh + 1, (wp - dw * (kw - 1) - 1) // sw + 1
    og = out_channels // groups
    out = torch.zeros(n, out_channels, ho, wo, dtype=torch.long)
    w = weight_q.long()
    for o in range(out_channels):
        g = o // og
        for c in range(cg):
            for i in range(kh):
                for j in range(kw):
                    rows = slice(i * dh, i * dh + sh * (ho - 1) + 1, sh)
                    cols = slice(j * dw, j * dw + sw * (wo - 1) + 1, sw)
                    patch = x[:, g * cg + c, rows, cols]  # (N, Ho, Wo)
                    out[:, o] += (patch - w[o, c, i, j]).abs()
    return out.permute(0, 2, 3, 1)


def _f32(t: Tensor) -> Tensor:
    return t.to(torch.float32).to(torch.float64)


def epilogue_f32_steps(acc: Tensor, scale: Tensor, bias: Tensor, residual: Tensor | None = None,
                       residual_zero_point: int = 0, residual_scale: float = 0.0) -> Tensor:
    """y = S * scale + bias (+ (r - rz) * rs), each operation rounded to float32 (float64 tensor out)."""
    y = _f32(_f32(acc.double()) * _f32(scale.double()))
    y = _f32(y + _f32(bias.double()))
    if residual is not None:
        r = _f32(_f32(residual.double()) - float(residual_zero_point))
        r = _f32(r * _f32(torch.tensor(residual_scale, dtype=torch.float64)))
        y = _f32(y + r)
    return y


def to_uint8(y: Tensor, qmin: int, qmax: int) -> Tensor:
    return torch.round(y).clamp(qmin, qmax).to(torch.uint8)
