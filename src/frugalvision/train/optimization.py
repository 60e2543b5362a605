"""Optimizers, parameter groups and learning-rate schedules, by name.

:data:`OPTIMIZERS` (:mod:`.optimizers`) and :data:`SCHEDULERS` (:mod:`.schedules`) are the registries behind
``TrainConfig.optimizer`` / ``.scheduler`` and the command line's choices; this module builds optimizers and
learning-rate factors from them. Parameter groups: AdderNet's ILR group (adder weights at 100x the learning rate, the
paper's ablation), timm's layer-wise decay groups (VanillaNet recipes), or no weight decay on biases and norm
parameters.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from ..errors import ConfigError
from ..optim import AdaptiveLR
from .config import TrainConfig
from .optimizers import OPTIMIZERS, ParamGroups
from .schedules import SCHEDULERS

__all__ = ["OPTIMIZERS", "SCHEDULERS", "build_optimizer", "build_scheduler", "lr_factor", "param_groups"]

def param_groups(config: TrainConfig, model: nn.Module, alr: AdaptiveLR) -> ParamGroups:
    """Parameter groups: timm's layer-wise decay groups, bias/norm without decay, or AdderNet's (ILR) groups."""
    if config.layer_decay:
        from timm.optim import param_groups_layer_decay

        rate, num_layers = config.layer_decay["rate"], config.layer_decay.get("num_layers")
        stages = getattr(model, "stages", None)
        if num_layers is not None and (stages is None or len(stages) != num_layers):
            raise ConfigError(f"layer_decay.num_layers={num_layers} does not match the model's "
                              f"{'unknown' if stages is None else len(stages)} stages")
        groups = param_groups_layer_decay(model, weight_decay=config.weight_decay, layer_decay=rate)
        return [{**g, "lr": config.lr * g.pop("lr_scale", 1.0)} for g in groups]
    if not config.decay_bias_and_norm:
        from timm.optim import param_groups_weight_decay

        return [{**g, "lr": config.lr} for g in param_groups_weight_decay(model, config.weight_decay)]
    return alr.param_groups(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)


def build_optimizer(config: TrainConfig, model: nn.Module, alr: AdaptiveLR) -> torch.optim.Optimizer:
    return OPTIMIZERS[config.optimizer](param_groups(config, model, alr), config.lr, config.momentum)


def lr_factor(config: TrainConfig, steps_per_epoch: int) -> Callable[[int], float]:
    """Multiplier of the base learning rate at optimizer step ``t``: linear warm-up, then the schedule's shape from
    1 down to ``min_lr / lr``."""
    total = max(1, config.epochs * steps_per_epoch)
    warmup = int(config.warmup_epochs * steps_per_epoch)
    floor = config.min_lr / config.lr
    shape = SCHEDULERS[config.scheduler]

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return floor + (1 - floor) * shape((step - warmup) / max(1, total - warmup))

    return factor


def build_scheduler(config: TrainConfig, optimizer: torch.optim.Optimizer, steps_per_epoch: int
                    ) -> torch.optim.lr_scheduler.LambdaLR:
    """A per-optimizer-step schedule (``scheduler.step()`` after every optimizer step)."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor(config, steps_per_epoch))
