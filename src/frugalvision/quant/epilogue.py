"""The epilogue of the integer adder op in plain PyTorch: BatchNorm, residual, ReLU and requantisation in float32.

Integer AdderNet layer (AdderNet, Chen et al. CVPR 2020, Eq. 2, on uint8 operands sharing one scale ``s``): the op
accumulates ``S = sum |q(x) - q(w)|`` in int32 and the float output is ``-s * S`` (plus constants). Everything that
follows the layer up to the next layer's uint8 input is one per-channel affine map of ``S`` (see
:mod:`frugalvision.quant.fold`), evaluated here exactly as the ``frugalvision::adder2d_u8`` contract specifies:

    y = float32(S) * scale[o] + bias[o]  (+ (float32(residual) - residual_zero_point) * residual_scale)
    uint8 output: clamp(round_half_to_even(y), qmin, qmax)

in float32, one operation at a time (no fused multiply-add), so that any kernel implementing the contract gives
bit-identical results. Used where the epilogue cannot run inside the op (a max-pool between an adder layer and its
BatchNorm, as in VGG-small).
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["OUTPUT_MODES", "apply_epilogue"]

OUTPUT_MODES = ("int32", "float32", "uint8")


def apply_epilogue(
    acc: Tensor,
    scale: Tensor | None = None,
    bias: Tensor | None = None,
    residual: Tensor | None = None,
    residual_zero_point: int = 0,
    residual_scale: float = 0.0,
    output: str = "int32",
    qmin: int = 0,
    qmax: int = 255,
) -> Tensor:
    """Apply the contract's epilogue to an int32 accumulator ``acc`` of shape (N, H, W, O) (channels last).

    Args:
        acc: int32 sums of absolute differences, (N, H, W, O).
        scale, bias: float32 (O,), the folded per-channel affine map (required unless ``output="int32"``).
        residual: optional uint8 (N, H, W, O) added as ``(residual - residual_zero_point) * residual_scale``.
        output: ``"int32"`` (``acc`` unchanged), ``"float32"`` (``y``) or ``"uint8"`` (``y`` rounded and clamped).
        qmin, qmax: clamp bounds of the uint8 output (a fused ReLU is ``qmin = zero point of the output``).
    """
    if output not in OUTPUT_MODES:
        raise ValueError(f"adder2d_u8: output must be one of {', '.join(OUTPUT_MODES)}, got {output!r}")
    if output == "int32":
        return acc
    if scale is None or bias is None:
        raise ValueError(f"adder2d_u8: output={output!r} needs scale and bias")
    y = acc.to(torch.float32) * scale.to(torch.float32)
    y = y + bias.to(torch.float32)
    if residual is not None:
        r = residual.to(torch.float32) - float(residual_zero_point)  # (N, H, W, O)
        r = r * torch.tensor(residual_scale, dtype=torch.float32)
        y = y + r
    if output == "float32":
        return y
    return torch.round(y).clamp_(qmin, qmax).to(torch.uint8)
