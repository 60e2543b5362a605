"""Helpers for the export tests."""

from __future__ import annotations

import torch
from torch import nn


def calibrated(model: nn.Module, input_size: tuple[int, ...]) -> nn.Module:
    """Gives the BatchNorms running statistics of the model's own activations (as a trained model has); eval mode."""
    torch.manual_seed(0)
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.randn(16, *input_size))
    return model.eval()
