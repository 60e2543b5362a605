"""The training engine: one loop for every model, dataset and recipe.

``train(config)`` builds everything from a :class:`~frugalvision.train.config.TrainConfig` (:mod:`.builders`), runs
the epochs (:mod:`.loop`), saves each finished epoch (:mod:`.state`) and returns the final metrics. Properties it
guarantees:

- Deterministic on the CPU for a given seed. Every epoch reseeds torch's RNG and the shuffling generator from
  ``(seed, epoch)``, so a resumed run draws exactly the numbers the uninterrupted run would have drawn.
- ``resume=True`` continues from the last finished epoch of the run folder (one atomically written file holds all
  of the state: see :mod:`frugalvision.run_dir`).
- AdderNet's adaptive learning rate is applied to the final gradient: after gradient accumulation, loss-scale
  removal and DDP's all-reduce, right before the optimizer step (:mod:`frugalvision.optim.alr`).
- BatchNorm statistics are re-estimated before validation and saving for models with adder layers (their
  running averages lag behind the weights; see :mod:`.batchnorm`), and the drift is logged.
- Multi-process training with ``torchrun`` (DDP; gloo on CPU, nccl on GPU): rank 0 logs and writes files.
"""

from __future__ import annotations

import contextlib
import shutil
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import RunExistsError, TrainingDivergedError
from ..run_dir import RunDir
from .builders import build_data, build_training
from .callbacks import Callback
from .config import TrainConfig
from .distributed import Distributed, setup_distributed
from .divergence import check_model_finite
from .loop import evaluate, train_one_epoch, validate_epoch
from .objectives import Objective
from .state import restore_run_state, save_run_state, write_run_config

__all__ = ["RunExistsError", "TrainResult", "evaluate", "prepare_run_dir", "train"]


@dataclass
class TrainResult:
    run_dir: Path
    metrics: dict[str, Any]  # of the last epoch
    history: list[dict[str, Any]]
    resumed_from: int | None  # epoch (1-based count of finished epochs) the run resumed after, or None
    train_seconds: float  # wall time of the epochs run in this call


def train(
    config: TrainConfig,
    *,
    resume: bool = False,
    overwrite: bool = False,
    callbacks: Sequence[Callback] = (),
    objective: Objective | None = None,
    progress: bool = False,
    log: Callable[[str], None] | None = print,
) -> TrainResult:
    """Train ``config.model`` on ``config.dataset``; see the module docstring for the guarantees.

    Args:
        resume: continue the run in ``config.run_dir`` from its last finished epoch (a fresh start if it has none).
        overwrite: delete an existing run folder instead of refusing to start.
        callbacks: extra callbacks (a VanillaNet deep-training callback is added from ``config.deep_training``).
        objective: the loss of one micro-batch (default: the label loss of ``config.loss``; see :mod:`.objectives`).
        progress: show a progress bar.
        log: where one-line status messages go (``None`` silences them).
    """
    dist = setup_distributed(config.device)
    say = log if (log is not None and dist.is_main) else (lambda message: None)
    _check_run_dir(config, resume=resume, overwrite=overwrite)
    data = build_data(config, dist)  # bad data, a bad teacher or model options fail here, before anything is written
    setup = build_training(config, data, dist, config.run_dir, callbacks, objective)
    run_dir = prepare_run_dir(config, dist, resume=resume, overwrite=overwrite)
    history = restore_run_state(run_dir, setup, say) if resume else []
    resumed_from = len(history) or None
    if dist.is_main:
        write_run_config(run_dir, setup)
    for callback in setup.callbacks:
        callback.on_train_start(setup.context)
    started = time.perf_counter()
    with _tensorboard(run_dir, dist.is_main) as writer, _progress(progress and dist.is_main) as bar:
        for epoch in range(len(history), config.epochs):
            try:
                row = train_one_epoch(setup, data, epoch, progress=bar)
                row.update(validate_epoch(setup, data, dist))
                for net in (setup.model, setup.ema_model):
                    if net is not None:  # never save a non-finite model (BN statistics re-estimated included)
                        check_model_finite(net, epoch=epoch, base_lr=config.lr)
            except TrainingDivergedError as error:
                raise TrainingDivergedError(f"{error}; {_kept(run_dir, len(history))}") from None
            for callback in setup.callbacks:
                callback.on_epoch_end(setup.context, row)
            row.update(setup.context.extra_metrics)
            history.append(row)
            if dist.is_main:
                save_run_state(run_dir, setup, history)
                _log_scalars(writer, row)
                say(f"{config.name} epoch {row['epoch']}/{config.epochs}: train loss {row['train_loss']:.4f}, "
                    f"val top1 {row['val_top1']:.2f}%, {row['epoch_seconds']:.1f}s")
    setup.alr.remove()
    dist.barrier()  # every rank returns once rank 0 has written the run's files (a later step may read them)
    return TrainResult(run_dir=run_dir, metrics=history[-1] if history else {}, history=history,
                       resumed_from=resumed_from, train_seconds=time.perf_counter() - started)


def _kept(run_dir: Path, finished_epochs: int) -> str:
    """What a stopped run leaves: the last finished (finite) epoch, or nothing to resume."""
    if finished_epochs:
        return (f"{run_dir} keeps epoch {finished_epochs} (finite): continue with --resume and a lower --lr, "
                "which rescales the stored schedule")
    return f"no epoch finished, so {run_dir} holds no model: run again with a lower --lr and --overwrite"


def _check_run_dir(config: TrainConfig, *, resume: bool, overwrite: bool) -> None:
    """Refuse (:class:`~frugalvision.errors.RunExistsError`) a run folder that holds a run, unless it is to be
    resumed or overwritten; writes nothing."""
    run_dir = config.run_dir
    if run_dir.exists() and any(run_dir.iterdir()) and not (resume or overwrite):
        raise RunExistsError(f"run folder {run_dir} already exists; pass --resume to continue it, --overwrite to "
                             "replace it, or choose another --output")


def prepare_run_dir(config: TrainConfig, dist: Distributed, *, resume: bool, overwrite: bool) -> Path:
    """Create ``config.run_dir`` on rank 0; an existing run is kept for ``resume``, replaced for ``overwrite``, and
    otherwise refused (:class:`~frugalvision.errors.RunExistsError`). All ranks wait until it exists."""
    run_dir = config.run_dir
    if dist.is_main:
        _check_run_dir(config, resume=resume, overwrite=overwrite)
        if run_dir.exists() and any(run_dir.iterdir()) and not resume:
            shutil.rmtree(run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
    dist.barrier()
    return run_dir


@contextlib.contextmanager
def _tensorboard(run_dir: Path, enabled: bool) -> Iterator[Any]:
    """A TensorBoard writer for rank 0 (``None`` elsewhere, or if tensorboard cannot be imported)."""
    writer = None
    if enabled:
        try:
            from torch.utils.tensorboard import SummaryWriter

            writer = SummaryWriter(str(RunDir(run_dir).tensorboard_dir))
        except ImportError:  # tensorboard is a dependency, but a broken install should not stop training
            writer = None
    try:
        yield writer
    finally:
        if writer is not None:
            writer.close()


def _log_scalars(writer: Any, row: dict[str, Any]) -> None:
    if writer is None:
        return
    for key, value in row.items():
        if key != "epoch" and isinstance(value, (int, float)):
            writer.add_scalar(key, value, row["epoch"])
    writer.flush()


def _progress(enabled: bool) -> contextlib.AbstractContextManager:
    if not enabled:
        return contextlib.nullcontext(None)
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[info]}"),
               TimeRemainingColumn())
    return Progress(*columns, transient=True)
