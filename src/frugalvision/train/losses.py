"""Label losses by name: :data:`LOSSES` is the registry behind ``TrainConfig.loss`` (a leaf module: the configuration
validates against it, :mod:`.objectives` builds objectives from it)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["LOSSES", "binary_cross_entropy", "cross_entropy"]


def cross_entropy(logits: Tensor, target: Tensor, label_smoothing: float) -> Tensor:
    """Cross-entropy on class indices (with label smoothing) or on soft targets (mixup / cutmix carry their own)."""
    if target.dim() == 2:
        return torch.sum(-target * F.log_softmax(logits, dim=-1), dim=-1).mean()
    return F.cross_entropy(logits, target, label_smoothing=label_smoothing)


def binary_cross_entropy(logits: Tensor, target: Tensor, label_smoothing: float) -> Tensor:
    """timm's BinaryCrossEntropy (the VanillaNet recipes); soft targets already carry their smoothing."""
    from timm.loss import BinaryCrossEntropy

    return BinaryCrossEntropy(smoothing=0.0 if target.dim() == 2 else label_smoothing)(logits, target)


# name -> loss(logits, target, label_smoothing)
LOSSES: Mapping[str, Callable[[Tensor, Tensor, float], Tensor]] = MappingProxyType(
    {"ce": cross_entropy, "bce": binary_cross_entropy}
)
