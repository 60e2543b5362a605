"""Deep training (VanillaNet, Chen et al., NeurIPS 2023, arXiv 2305.12972, Sec. 3.1): anneal lam from 0 to 1.

Each deep-training activation computes ``(1 - lam) * ReLU(x) + lam * x``. Training starts with lam = 0 (a deeper
network: two nonlinear layers per block) and ends with lam = 1, where the two convs of each block are linear and
fuse into one. The official code sets, at the start of epoch ``e``, ``lam = e / decay_epochs`` (or the cosine ramp
``(1 - cos(pi * e / decay_epochs)) / 2``) and 1 after ``decay_epochs``; the EMA copy gets the same lam. The direction
0 -> 1 was confirmed by the authors (official repo, issue #20; the paper text says the reverse).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import nn

from ..errors import ConfigError
from .callbacks import Callback, TrainContext
from .config import DeepTrainingConfig
from .schedules import act_learn_at

__all__ = ["DeepTraining", "act_learn_at"]


def _set(model: nn.Module | None, value: float) -> bool:
    if model is None:
        return False
    target = getattr(model, "module", model)  # timm's ModelEma* keep the copy in .module; DDP wraps it there too
    setter = getattr(target, "set_act_learn", None)
    if setter is None:
        return False
    setter(value)
    return True


class DeepTraining(Callback):
    """Drive ``model.set_act_learn(lam)`` (and the EMA copy's) from the epoch, per the deep-training schedule.

    Args:
        decay_epochs: lam reaches 1 at this epoch (100 in the paper's 300-epoch recipes). 0 turns deep training off
            (lam = 1 throughout: the ablation "without deep training").
        schedule: ``"linear"`` (official default) or ``"cosine"``.

    The value is logged as ``act_learn`` in ``ctx.extra_metrics``. The callback's state (schedule and the last lam)
    is stored in checkpoints; on resume, lam is recomputed from the resumed epoch, which gives the same value.
    """

    def __init__(self, decay_epochs: int, schedule: str = "linear") -> None:
        config = DeepTrainingConfig(decay_epochs, schedule)  # the one validating constructor
        self.decay_epochs, self.schedule = config.decay_epochs, config.schedule
        self.act_learn = act_learn_at(0, self.decay_epochs, schedule)

    @classmethod
    def from_config(cls, section: Mapping[str, Any]) -> DeepTraining:
        """Build from a run config's ``deep_training`` section: ``{decay_epochs: int, schedule: linear|cosine}``."""
        config = DeepTrainingConfig.from_dict(section)
        return cls(config.decay_epochs, config.schedule)

    def apply(self, ctx: TrainContext) -> float:
        self.act_learn = act_learn_at(ctx.epoch, self.decay_epochs, self.schedule)
        if not _set(ctx.model, self.act_learn):
            raise ConfigError(f"deep_training needs a model with set_act_learn (e.g. VanillaNet), "
                             f"not {type(ctx.model).__name__}")
        _set(ctx.ema_model, self.act_learn)
        ctx.extra_metrics["act_learn"] = self.act_learn
        return self.act_learn

    def on_train_start(self, ctx: TrainContext) -> None:
        self.apply(ctx)

    def on_epoch_start(self, ctx: TrainContext) -> None:
        self.apply(ctx)

    def state_dict(self) -> dict[str, Any]:
        return {"decay_epochs": self.decay_epochs, "schedule": self.schedule, "act_learn": self.act_learn}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.decay_epochs = int(state.get("decay_epochs", self.decay_epochs))
        self.schedule = state.get("schedule", self.schedule)
        self.act_learn = float(state.get("act_learn", self.act_learn))
