"""Training: configuration, builders, the loop, run state and run orchestration (see :mod:`.engine`)."""

from .callbacks import Callback, TrainContext
from .config import TrainConfig, load_recipe
from .engine import TrainResult, train
from .loop import evaluate
from .objectives import ClassificationObjective, Objective, StepOutput
from .runs import resolve_config, run_status, train_or_reuse, train_twins

__all__ = [
    "Callback",
    "ClassificationObjective",
    "Objective",
    "StepOutput",
    "TrainConfig",
    "TrainContext",
    "TrainResult",
    "evaluate",
    "load_recipe",
    "resolve_config",
    "run_status",
    "train",
    "train_or_reuse",
    "train_twins",
]
