"""Training objectives: what one micro-batch costs.

An objective is called by the loop as ``objective(model, images, target) -> StepOutput(loss, logits)``: it runs the
model itself, so objectives that need more than the student's logits (a distillation teacher, an auxiliary head)
plug in without touching the loop. The loop calls it once per micro-batch, inside autocast, after mixup.
``target`` is a class index tensor (N,) or, after mixup / cutmix, soft targets (N, classes).

:data:`LOSSES` are the label losses behind ``TrainConfig.loss``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .config import TrainConfig

__all__ = ["LOSSES", "ClassificationObjective", "Objective", "StepOutput", "build_objective"]


@dataclass
class StepOutput:
    """The loss to back-propagate and the student's logits (for the running accuracy)."""

    loss: Tensor
    logits: Tensor


class Objective(Protocol):
    def __call__(self, model: nn.Module, images: Tensor, target: Tensor) -> StepOutput: ...


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


class ClassificationObjective:
    """The label loss of the student's float32 logits."""

    def __init__(self, loss: str = "ce", label_smoothing: float = 0.0) -> None:
        self.loss, self.label_smoothing = LOSSES[loss], label_smoothing

    def __call__(self, model: nn.Module, images: Tensor, target: Tensor) -> StepOutput:
        logits = model(images)
        return StepOutput(self.loss(logits.float(), target, self.label_smoothing), logits)


def build_objective(config: TrainConfig) -> Objective:
    return ClassificationObjective(config.loss, config.label_smoothing)
