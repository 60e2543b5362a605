"""Quantisation arithmetic of an integer AdderNet layer: shared scale, lossless weight clipping, folded epilogue.

Scheme (issue 11; AdderNet, Chen et al. CVPR 2020, Eq. 2). The input activations ``x`` of an adder layer and its
weights ``w`` share one scale ``s`` and one zero point ``z``: ``q(v) = clamp(round(v / s) + z, 0, 255)``, so that
``|q(x) - q(w)| ~= |x - w| / s`` (``z`` cancels) and a zero-padded tap (``x = 0``, the byte ``z``) contributes
``|z - q(w)|`` as Eq. 2 requires.

Lossless weight clipping. The bytes represent ``[lo, hi] = [-z s, (255 - z) s]``, an interval that holds 0 and every
quantised activation. For a weight outside it, ``|x - w| = |x - clip(w)| + |w - clip(w)|`` for every ``x`` in
``[lo, hi]`` (both terms have the same sign), so clipping the weights to ``[lo, hi]`` changes each output channel by
the constant ``C[o] = sum_k |w[o, k] - clip(w[o, k])|``, which folds into the bias. AdderNet weights span about
-60..70 in the released ResNet-20 while activations after BN-ReLU span 0..~10: the activations alone set ``s``.

Folding. With ``S[o] = sum_k |q(x_k) - q(w_ok)|`` (int32), the float adder output is ``Y[o] ~= -(s S[o] + C[o]) + b[o]``
and its BatchNorm ``g[o] (Y[o] - mean[o]) + beta[o]`` with ``g = gamma / sqrt(var + eps)``, so
``y[o] = a[o] S[o] + c[o]`` with ``a = -g s`` and ``c = beta + g (b - C - mean)``. The next layer's input
``q'(y) = round(y / s') + z'`` is the same affine map divided by ``s'`` plus ``z'``; a ReLU is the clamp at ``z'``; a
uint8 residual ``r`` with ``(s_r, z_r)`` adds ``(r - z_r) s_r / s'``. These per-channel multipliers are float32
(requantisation in float, one multiplication per output element, as a BatchNorm costs).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ..errors import InputError

__all__ = [
    "QMAX",
    "QParams",
    "batch_norm_affine",
    "clip_and_quantize_weight",
    "fold_adder_affine",
    "requantize_affine",
]

QMAX = 255  # uint8
_MIN_SCALE = 1e-8


@dataclass(frozen=True)
class QParams:
    """Per-tensor affine uint8 quantisation ``q(v) = clamp(round(v / scale) + zero_point, 0, 255)``.

    ``scale`` is a float32 value (stored as a Python float) so that every use of it agrees bit for bit.
    """

    scale: float
    zero_point: int

    @classmethod
    def from_range(cls, lo: float, hi: float) -> QParams:
        """The uint8 grid that covers ``[min(lo, 0), max(hi, 0)]`` (0 must be exact: it is the padding value)."""
        lo, hi = min(float(lo), 0.0), max(float(hi), 0.0)
        if not (math.isfinite(lo) and math.isfinite(hi)):
            raise InputError(f"quantize: non-finite activation range [{lo}, {hi}]")
        scale = max((hi - lo) / QMAX, _MIN_SCALE)
        scale = float(torch.tensor(scale, dtype=torch.float32))
        zero_point = int(min(max(round(-lo / scale), 0), QMAX))
        return cls(scale, zero_point)

    @property
    def lo(self) -> float:
        """Smallest representable value, ``-z s``."""
        return -self.zero_point * self.scale

    @property
    def hi(self) -> float:
        """Largest representable value, ``(255 - z) s``."""
        return (QMAX - self.zero_point) * self.scale

    def quantize(self, x: Tensor) -> Tensor:
        """float tensor -> uint8 tensor of the same shape (round half to even)."""
        return torch.round(x / self.scale).add_(self.zero_point).clamp_(0, QMAX).to(torch.uint8)

    def dequantize(self, q: Tensor) -> Tensor:
        return (q.to(torch.float32) - self.zero_point) * self.scale

    def fake_quantize(self, x: Tensor) -> Tensor:
        """``dequantize(quantize(x))`` in float, for calibration searches."""
        return self.dequantize(self.quantize(x))


def batch_norm_affine(norm: nn.BatchNorm2d | None, channels: int) -> tuple[Tensor, Tensor]:
    """Inference BatchNorm as ``g * y + h`` (float64, per channel); identity when ``norm`` is None."""
    if norm is None:
        return torch.ones(channels, dtype=torch.float64), torch.zeros(channels, dtype=torch.float64)
    if norm.running_mean is None or norm.running_var is None:
        raise InputError("quantize: BatchNorm without running statistics (track_running_stats=False) cannot be folded")
    var = norm.running_var.detach().double()
    mean = norm.running_mean.detach().double()
    gamma = norm.weight.detach().double() if norm.weight is not None else torch.ones_like(var)
    beta = norm.bias.detach().double() if norm.bias is not None else torch.zeros_like(var)
    g = gamma / torch.sqrt(var + norm.eps)
    return g, beta - g * mean


def clip_and_quantize_weight(weight: Tensor, qparams: QParams) -> tuple[Tensor, Tensor]:
    """Clip adder weights (O, C/G, kh, kw) to the representable range and quantise them.

    Returns:
        ``weight_q`` uint8 of the same shape, and ``clip_cost`` float64 (O,): ``C[o] = sum_k |w - clip(w)|``, exact
        for activations inside the range (module docstring).
    """
    w = weight.detach().double()
    clipped = w.clamp(qparams.lo, qparams.hi)
    clip_cost = (w - clipped).abs().flatten(1).sum(1)
    weight_q = torch.round(clipped / qparams.scale).add_(qparams.zero_point).clamp_(0, QMAX).to(torch.uint8)
    return weight_q, clip_cost


def fold_adder_affine(
    qparams: QParams, clip_cost: Tensor, adder_bias: Tensor | None, norm: nn.BatchNorm2d | None
) -> tuple[Tensor, Tensor]:
    """``y = a * S + c``: the adder layer (shared scale ``s``, clip constant ``C``, optional bias) and its BatchNorm
    as one per-channel affine map of the integer sum ``S`` (float64; module docstring)."""
    channels = clip_cost.shape[0]
    g, h = batch_norm_affine(norm, channels)
    b = adder_bias.detach().double() if adder_bias is not None else torch.zeros(channels, dtype=torch.float64)
    return -g * qparams.scale, h + g * (b - clip_cost)


def requantize_affine(a: Tensor, c: Tensor, out: QParams) -> tuple[Tensor, Tensor]:
    """The map ``S -> y / s' + z'`` that the kernel rounds to the next layer's uint8 input (float64)."""
    return a / out.scale, c / out.scale + out.zero_point
