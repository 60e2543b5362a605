"""The output modes of ``frugalvision::adder2d_u8`` on its int32 sums, in plain PyTorch: used by the ``torch``
backend (:func:`frugalvision.ops.adder_torch.adder2d_u8_forward`) and by integer modules that reduce the sums before
the epilogue (a max pool in :mod:`frugalvision.quant.modules`); the compiled kernels fuse the same arithmetic."""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["adder_u8_epilogue"]


def adder_u8_epilogue(
    sums: Tensor, scale: Tensor, bias: Tensor | None, residual: Tensor | None, residual_zero_point: int,
    residual_scale: float, output: str, qmin: int, qmax: int,
) -> Tensor:
    """The output modes of ``adder2d_u8`` applied to int32 sums S (N, Ho, Wo, O), in float32, one operation at a
    time: ``y = float32(S) * scale + bias (+ (float32(residual) - zr) * sr)``; ``"uint8"`` then rounds half to even
    and clamps to ``qmin..qmax``. A missing bias is zero."""
    y = sums.to(torch.float32) * scale.to(torch.float32)
    y = y + (bias.to(torch.float32) if bias is not None else torch.zeros_like(scale, dtype=torch.float32))
    if residual is not None:
        zr = torch.tensor(float(residual_zero_point), dtype=torch.float32)
        sr = torch.tensor(residual_scale, dtype=torch.float32)
        y = y + (residual.to(torch.float32) - zr) * sr
    if output == "float32":
        return y
    return torch.round(y).clamp(qmin, qmax).to(torch.uint8)
