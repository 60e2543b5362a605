"""XNOR-Net style binary convolution (Rastegari et al., ECCV 2016), the BNN twin of the AdderNet tables."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["BinaryConv2d", "binarize_activation", "binarize_weight"]


class _SignSTE(torch.autograd.Function):
    """sign(x) forward; straight-through gradient clipped to |x| <= 1 (Hubara et al.; XNOR-Net Sec. 3.2)."""

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:
        ctx.save_for_backward(x)
        # sign(0) = +1 so that every value is binary.
        return torch.where(x >= 0, torch.ones_like(x), -torch.ones_like(x))

    @staticmethod
    def backward(ctx, grad_output: Tensor) -> Tensor:
        (x,) = ctx.saved_tensors
        return grad_output * (x.abs() <= 1).to(grad_output.dtype)


def binarize_activation(x: Tensor) -> Tensor:
    """sign(x) in {-1, +1} with the clipped straight-through estimator."""
    return _SignSTE.apply(x)


def binarize_weight(weight: Tensor) -> Tensor:
    """XNOR-Net weight approximation ``alpha_o * sign(W_o)``, alpha_o = mean |W_o| per output channel.

    The gradient reaches W straight through sign(W) (clipped to |W| <= 1) and through alpha.
    """
    alpha = weight.abs().mean(dim=tuple(range(1, weight.dim())), keepdim=True)  # (C_out, 1, 1, 1)
    return alpha * binarize_activation(weight)


class BinaryConv2d(nn.Conv2d):
    """Convolution with binary weights and binary activations (XNOR + popcount on hardware).

    Computes ``conv(sign(x), alpha * sign(W))``. Zero padding stays zero (a third value, as in common BNN
    implementations). The activation scaling matrix K of XNOR-Net is omitted; the following BatchNorm absorbs a
    per-channel scale, which is the usual simplification.
    """

    def forward(self, x: Tensor) -> Tensor:
        return F.conv2d(
            binarize_activation(x), binarize_weight(self.weight), self.bias, self.stride, self.padding,
            self.dilation, self.groups,
        )
