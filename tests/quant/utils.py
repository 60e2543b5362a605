"""Helpers for the quantization tests."""

from __future__ import annotations

import torch
from torch import Tensor, nn


def batch_statistics(model: nn.Module, x: Tensor) -> nn.Module:
    """Give every BatchNorm the exact statistics of ``x`` (so random models have normalised activations); eval."""
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None
    model.train()
    with torch.no_grad():
        model(x)
    return model.eval()


def relative_error(a: Tensor, b: Tensor) -> float:
    return float((a - b).norm() / b.norm())
