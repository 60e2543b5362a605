"""Schedules by name (a leaf module: :class:`~.config.TrainConfig` validates against these registries, the engine
runs them): :data:`SCHEDULERS`, the learning-rate shapes behind ``TrainConfig.scheduler``, and :data:`SCHEDULES`,
VanillaNet's deep-training ramps of lam behind ``deep_training.schedule`` (:func:`act_learn_at`)."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from types import MappingProxyType

from ..errors import ConfigError

__all__ = ["SCHEDULERS", "SCHEDULES", "act_learn_at"]


def _cosine(progress: float) -> float:
    return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def _constant(progress: float) -> float:
    return 1.0


# name -> shape(progress in [0, 1] after warm-up) -> fraction of the way from min_lr to lr
SCHEDULERS: Mapping[str, Callable[[float], float]] = MappingProxyType({"cosine": _cosine, "constant": _constant})

# deep-training ramps of lam (VanillaNet, Chen et al., NeurIPS 2023, Sec. 3.1; see .deep_training)
SCHEDULES = ("linear", "cosine")


def act_learn_at(epoch: float, decay_epochs: int, schedule: str = "linear") -> float:
    """lam at the start of ``epoch`` (counted from 0): 0 -> 1 over ``decay_epochs`` epochs, then 1."""
    if schedule not in SCHEDULES:
        raise ConfigError(f"unknown deep-training schedule {schedule!r}; choose one of {', '.join(SCHEDULES)}")
    if decay_epochs <= 0 or epoch >= decay_epochs:
        return 1.0
    progress = max(epoch, 0) / decay_epochs
    return progress if schedule == "linear" else 0.5 * (1.0 - math.cos(math.pi * progress))
