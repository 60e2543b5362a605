"""Activations of VanillaNet (Chen et al., "VanillaNet: the Power of Minimalism in Deep Learning", NeurIPS 2023,
arXiv 2305.12972): the series-informed activation and the deep-training nonlinearity.

* :class:`SeriesActivation` (paper Sec. 3.2): ``A_s(x)[c,h,w] = sum_{i,j in -n..n} a[c,i,j] * ReLU(x)[c,h+i,w+j]
  + b[c]``, i.e. ReLU followed by a depthwise (2n+1) x (2n+1) convolution. Trained with a BatchNorm after the
  bias-free depthwise conv (BN eps 1e-6, as the official code); :meth:`SeriesActivation.switch_to_deploy` folds the
  BN into the conv, which then carries the bias ``b``. Parameter names match the official ``activation`` module
  (``weight``, ``bn.*``; deploy: ``weight``, ``bias``), so official checkpoints load. Usable in any model.
* :func:`deep_training_act` (paper Eq. 1): ``A'(x) = (1 - lam) * ReLU(x) + lam * x``, which is exactly
  ``leaky_relu(x, lam)`` for ``lam`` in [0, 1]; ``lam`` is annealed from 0 to 1 during training, after which the
  layers around it are linear and merge.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import ConfigError
from .reparam import fold_bn

__all__ = ["SeriesActivation", "deep_training_act"]

BN_EPS = 1e-6  # VanillaNet's BatchNorm eps (the official code's value, not PyTorch's 1e-5)


def deep_training_act(x: Tensor, act_learn: float) -> Tensor:
    """``(1 - act_learn) * relu(x) + act_learn * x`` (VanillaNet Eq. 1): ReLU at 0, identity at 1."""
    if act_learn == 1.0:
        return x
    return F.leaky_relu(x, negative_slope=act_learn)


class SeriesActivation(nn.Module):
    """Series-informed activation: ReLU, then a depthwise (2n+1)x(2n+1) conv, then BN (train) / bias (deploy).

    Args:
        dim: number of channels.
        act_num: n, the half-width of the neighbourhood that is stacked (n = 0 gives a per-channel affine ReLU;
            the paper's ablation covers n = 0..4 and uses n = 3, a 7x7 kernel).
        deploy: build the fused form directly (``weight`` + ``bias``, no BN).
        bn_eps: eps of the training-mode BatchNorm.

    Shape: (N, dim, H, W) -> (N, dim, H, W).
    """

    def __init__(self, dim: int, act_num: int = 3, deploy: bool = False, bn_eps: float = BN_EPS) -> None:
        super().__init__()
        if act_num < 0:
            raise ConfigError(f"act_num must be >= 0, got {act_num}")
        self.dim, self.act_num, self.deploy = dim, act_num, deploy
        kernel = 2 * act_num + 1
        self.weight = nn.Parameter(torch.empty(dim, 1, kernel, kernel))
        from timm.layers import trunc_normal_  # here, not at the top: timm imports torchvision (seconds)

        trunc_normal_(self.weight, std=0.02)
        if deploy:
            self.bias = nn.Parameter(torch.zeros(dim))
            self.bn = None
        else:
            self.bias = None
            self.bn = nn.BatchNorm2d(dim, eps=bn_eps)

    def forward(self, x: Tensor) -> Tensor:
        x = F.conv2d(F.relu(x), self.weight, self.bias, padding=self.act_num, groups=self.dim)
        return x if self.bn is None else self.bn(x)

    @torch.no_grad()
    def switch_to_deploy(self) -> None:
        """Fold the BatchNorm into the depthwise conv, in place (exact in eval mode)."""
        if self.deploy:
            return
        weight, bias = fold_bn(self.weight, None, self.bn)
        self.weight = nn.Parameter(weight)
        self.bias = nn.Parameter(bias)
        self.bn = None
        self.deploy = True

    def extra_repr(self) -> str:
        return f"{self.dim}, act_num={self.act_num}, deploy={self.deploy}"
