"""Optimizers by name: :data:`OPTIMIZERS` is the registry behind ``TrainConfig.optimizer`` (a leaf module: the
configuration validates against it, :mod:`.optimization` builds the optimizer from it)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any

import torch

__all__ = ["OPTIMIZERS", "ParamGroups"]

ParamGroups = list[dict[str, Any]]


def _sgd(groups: ParamGroups, lr: float, momentum: float) -> torch.optim.Optimizer:
    return torch.optim.SGD(groups, lr=lr, momentum=momentum)


def _nesterov(groups: ParamGroups, lr: float, momentum: float) -> torch.optim.Optimizer:
    return torch.optim.SGD(groups, lr=lr, momentum=momentum, nesterov=True)


def _adamw(groups: ParamGroups, lr: float, momentum: float) -> torch.optim.Optimizer:
    return torch.optim.AdamW(groups, lr=lr)


def _lamb(groups: ParamGroups, lr: float, momentum: float) -> torch.optim.Optimizer:
    from timm.optim import Lamb

    return Lamb(groups, lr=lr)


# name -> factory(param_groups, lr, momentum); the weight decay lives in the groups
OPTIMIZERS: Mapping[str, Callable[[ParamGroups, float, float], torch.optim.Optimizer]] = MappingProxyType(
    {"sgd": _sgd, "nesterov": _nesterov, "adamw": _adamw, "lamb": _lamb}
)
