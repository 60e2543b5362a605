"""Training objectives: what one micro-batch costs.

An objective is called by the loop as ``objective(model, images, target) -> StepOutput(loss, logits)``: it runs the
model itself, so objectives that need more than the student's logits (a distillation teacher, an auxiliary head)
plug in without touching the loop. The loop calls it once per micro-batch, inside autocast, after mixup.
``target`` is a class index tensor (N,) or, after mixup / cutmix, soft targets (N, classes).

:data:`LOSSES` are the label losses behind ``TrainConfig.loss``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .config import TrainConfig
from .losses import LOSSES

__all__ = [
    "LOSSES",
    "ClassificationObjective",
    "DistillationObjective",
    "Objective",
    "StepOutput",
    "build_objective",
    "distillation_loss",
]


@dataclass
class StepOutput:
    """The loss to back-propagate and the student's logits (for the running accuracy)."""

    loss: Tensor
    logits: Tensor


class Objective(Protocol):
    def __call__(self, model: nn.Module, images: Tensor, target: Tensor) -> StepOutput: ...


class ClassificationObjective:
    """The label loss of the student's float32 logits."""

    def __init__(self, loss: str = "ce", label_smoothing: float = 0.0) -> None:
        self.loss, self.label_smoothing = LOSSES[loss], label_smoothing

    def __call__(self, model: nn.Module, images: Tensor, target: Tensor) -> StepOutput:
        logits = model(images)
        return StepOutput(self.loss(logits.float(), target, self.label_smoothing), logits)


def distillation_loss(student_logits: Tensor, teacher_logits: Tensor, temperature: float) -> Tensor:
    """Hinton et al., "Distilling the Knowledge in a Neural Network" (2015): the KL divergence between the
    temperature-softened teacher and student distributions, ``T^2 * KL(softmax(t / T) || softmax(s / T))``, averaged
    over the batch. The factor T^2 keeps the gradient scale independent of T (Sec. 2 of the paper)."""
    log_student = F.log_softmax(student_logits / temperature, dim=-1)
    log_teacher = F.log_softmax(teacher_logits / temperature, dim=-1)
    return F.kl_div(log_student, log_teacher, reduction="batchmean", log_target=True) * temperature**2


class DistillationObjective:
    """Logit distillation from a frozen teacher: ``(1 - alpha) * label loss + alpha * distillation_loss``.

    The teacher (in eval mode, without gradients) sees the same micro-batch as the student, once per micro-batch
    (after mixup, inside the loop's autocast). ``teacher_input`` converts the student's normalised images to the
    teacher's normalisation when the two were trained with different mean / std (an exact per-channel affine map).
    """

    def __init__(self, teacher: nn.Module, label_objective: ClassificationObjective, alpha: float, temperature: float,
                 teacher_input: Callable[[Tensor], Tensor] | None = None) -> None:
        self.teacher, self.label_objective = teacher, label_objective
        self.alpha, self.temperature, self.teacher_input = alpha, temperature, teacher_input

    def __call__(self, model: nn.Module, images: Tensor, target: Tensor) -> StepOutput:
        out = self.label_objective(model, images, target)
        with torch.no_grad():
            teacher_logits = self.teacher(self.teacher_input(images) if self.teacher_input else images).float()
        kd = distillation_loss(out.logits.float(), teacher_logits, self.temperature)
        return StepOutput((1 - self.alpha) * out.loss + self.alpha * kd, out.logits)


def build_objective(config: TrainConfig, teacher: nn.Module | None = None,
                    teacher_input: Callable[[Tensor], Tensor] | None = None) -> Objective:
    """The label loss of ``config.loss``; with a ``teacher``, logit distillation on top of it."""
    objective = ClassificationObjective(config.loss, config.label_smoothing)
    if teacher is None:
        return objective
    return DistillationObjective(teacher, objective, config.kd_alpha, config.kd_temperature, teacher_input)
