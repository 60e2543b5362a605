"""Training callbacks: small objects the engine calls at fixed points of the loop.

A callback's :meth:`~Callback.state_dict` (JSON-serialisable) is stored in every checkpoint and handed back to
:meth:`~Callback.load_state_dict` on ``--resume``, so schedules continue where they stopped.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

__all__ = ["Callback", "TrainContext"]


@dataclass
class TrainContext:
    """What callbacks may look at (and adjust) during training.

    Attributes:
        model: the model being trained (unwrapped from DDP).
        ema_model: the exponential-moving-average copy, when the run keeps one.
        optimizer: the optimizer.
        config: the run's configuration (a plain dict).
        run_dir: the run folder.
        epoch: the current epoch, counted from 0.
        num_epochs: total epochs of the run.
        extra_metrics: values a callback wants logged with the epoch's metrics (e.g. ``act_learn``).
    """

    model: nn.Module
    optimizer: Any
    config: dict[str, Any]
    run_dir: Path
    num_epochs: int
    ema_model: nn.Module | None = None
    epoch: int = 0
    extra_metrics: dict[str, float] = field(default_factory=dict)


class Callback:
    """Base class; override what you need. Methods are called in the order of the engine's callback list.

    A resumed run hands each callback the state it saved, found by :attr:`state_name` (the class name unless set):
    callbacks of one run need distinct names.
    """

    @property
    def state_name(self) -> str:
        """The key of this callback's state in checkpoints."""
        return type(self).__name__

    def on_train_start(self, ctx: TrainContext) -> None:
        """After the model, optimizer and (on resume) state are ready, before the first epoch runs."""

    def on_epoch_start(self, ctx: TrainContext) -> None:
        """Before the first step of epoch ``ctx.epoch``."""

    def on_step_end(self, ctx: TrainContext, step: int) -> None:
        """After each optimizer step (``step`` counts from 0 within the epoch)."""

    def on_epoch_end(self, ctx: TrainContext, metrics: dict[str, float]) -> None:
        """After validation of epoch ``ctx.epoch``, before the checkpoint is written."""

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""
