"""Run state: what a training run saves after each finished epoch and puts back when it resumes.

After every epoch rank 0 writes, through :class:`~frugalvision.run_dir.RunDir` (which names the files and writes
each atomically): the resumable state (model, EMA and optimizer tensors, epoch, schedule, loss scale, callback
states by name, metrics history, and a distillation teacher's absolute path and SHA-256, never its weights), the
model file (weights + model config + the epoch's metrics), the EMA model file when there is one, and the metrics
table. :func:`restore_run_state` puts all of it back, so that the resumed run continues exactly where the interrupted
one stopped.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..errors import CheckpointError
from ..models import model_metadata, save_model
from ..run_dir import RunDir
from .builders import TrainingSetup

__all__ = ["restore_run_state", "save_run_state", "write_run_config"]


def write_run_config(run_dir: Path, setup: TrainingSetup) -> None:
    """The run's configuration: the training options, the model's (name and options) and the teacher's record."""
    teacher = {"teacher": setup.teacher.record.to_dict()} if setup.teacher is not None else {}
    RunDir(run_dir).write_config({"train": setup.config.to_dict(), "model": model_metadata(setup.model), **teacher})


def save_run_state(run_dir: Path, setup: TrainingSetup, history: list[dict[str, Any]]) -> None:
    """Write the files of the epoch that just finished (``len(history)`` epochs done)."""
    config, epoch, files = setup.config, len(history), RunDir(run_dir)
    metadata = {"epoch": epoch, "config": config.to_dict(), "scheduler": setup.scheduler.state_dict(),
                "scaler": setup.precision.scaler.state_dict(),
                "callbacks": {c.state_name: c.state_dict() for c in setup.callbacks}, "history": history,
                "teacher": setup.teacher.record.to_dict() if setup.teacher is not None else None}
    ema_model = setup.ema_model
    files.write_training_state(model_state=setup.model.state_dict(), optimizer_state=setup.optimizer.state_dict(),
                               ema_state=ema_model.state_dict() if ema_model is not None else None, metadata=metadata)
    info = {"epoch": epoch, "dataset": config.dataset, "metrics": history[-1]}
    save_model(files.model_file, setup.model, **info)
    if ema_model is not None:
        save_model(files.ema_model_file, ema_model, **info, ema=True)
    files.write_metrics(history)


def restore_run_state(run_dir: Path, setup: TrainingSetup, say: Callable[[str], None]) -> list[dict[str, Any]]:
    """Load the last finished epoch of ``run_dir`` into ``setup``; returns the metrics history (empty: nothing to
    resume, the run starts from epoch 1)."""
    state = RunDir(run_dir).read_training_state()
    config = setup.config
    if state is None:
        say(f"Nothing to resume in {run_dir}: starting from epoch 1")
        return []
    stored_teacher = state.get("teacher")
    teacher = setup.teacher.record if setup.teacher is not None else None
    if teacher is not None and stored_teacher and stored_teacher["sha256"] != teacher.sha256:
        raise CheckpointError(f"the teacher {teacher.path} changed since {run_dir} started (sha256 "
                              f"{stored_teacher['sha256'][:12]}... then, {teacher.sha256[:12]}... now): resuming "
                              "would distil from another model")
    setup.model.load_state_dict(state["model"])
    setup.optimizer.load_state_dict(state["optimizer"])
    setup.scheduler.load_state_dict(state["scheduler"])
    setup.precision.scaler.load_state_dict(state.get("scaler") or {})
    if setup.ema is not None and state["ema"] is not None:
        setup.ema.module.load_state_dict(state["ema"])
    stored = state.get("callbacks", {})
    if isinstance(stored, list):  # runs written before callback states were stored by name
        stored = {c.state_name: s for c, s in zip(setup.callbacks, stored)}
    for callback in setup.callbacks:
        if callback.state_name in stored:
            callback.load_state_dict(stored[callback.state_name])
    changed = sorted(k for k, v in config.to_dict().items() if state["config"].get(k, v) != v)
    if changed:
        say(f"Note: resuming with changed options: {', '.join(changed)} (the stored schedule state is kept)")
    stored_lr = state["config"].get("lr", config.lr)
    if stored_lr != config.lr:  # e.g. after a divergence: the schedule continues, scaled to the new --lr
        _rescale_learning_rate(setup, config.lr / stored_lr)
        say(f"Note: learning rate {stored_lr:g} -> {config.lr:g}: the stored schedule is scaled by "
            f"{config.lr / stored_lr:g}")
    epoch = state["epoch"]
    say(f"Resuming {run_dir} from epoch {epoch + 1}/{config.epochs} ({epoch} finished)")
    return list(state["history"])


def _rescale_learning_rate(setup: TrainingSetup, factor: float) -> None:
    """Multiply every learning rate of the restored optimizer and schedule by ``factor`` (groups keep their ratios,
    the schedule its position)."""
    setup.scheduler.base_lrs = [lr * factor for lr in setup.scheduler.base_lrs]
    for group in setup.optimizer.param_groups:
        group["lr"] *= factor
        if "initial_lr" in group:
            group["initial_lr"] *= factor
    setup.scheduler._last_lr = [group["lr"] for group in setup.optimizer.param_groups]
