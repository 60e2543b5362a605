"""Run orchestration shared by ``train``, ``ablation`` and the figure commands.

* :func:`resolve_config`: the one precedence rule, **model defaults < recipe < explicit options**.
* :func:`run_status`: what a run folder holds for a configuration: nothing (``fresh``), part of the run
  (``unfinished``), all of it (``finished``) or a run with other settings (``different``).
* :func:`train_or_reuse`: train, resume or reuse according to that status.
* :func:`train_twins`: one model trained as each of several conv types (CNN / AdderNet / BNN twins).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ..errors import CheckpointError, ConfigError
from ..models import model_train_defaults
from ..run_dir import RunDir
from .config import TrainConfig

__all__ = ["resolve_config", "run_status", "train_or_reuse", "train_twins"]

# Settings that may differ between a stored run and the same run asked for again (where it runs, not what it is).
_PLACE_ONLY = ("device", "output", "num_workers")


def resolve_config(model: str, recipe: Mapping[str, Any] | None = None, **options: Any) -> TrainConfig:
    """The configuration of ``model``: its registered training defaults, overridden by ``recipe`` (a mapping of
    :class:`TrainConfig` fields, e.g. from :func:`~frugalvision.train.config.load_recipe`), overridden by
    ``options``. ``model_kwargs`` merge key by key in the same order."""
    recipe = dict(recipe or {})
    defaults = model_train_defaults(model)
    kwargs = {**defaults.get("model_kwargs", {}), **recipe.get("model_kwargs", {}), **options.get("model_kwargs", {})}
    return TrainConfig.from_dict({**defaults, **recipe, **options, "model": model, "model_kwargs": kwargs})


def run_status(config: TrainConfig) -> tuple[str, list[str]]:
    """``("fresh" | "unfinished" | "finished" | "different", names of the settings that differ)`` of
    ``config.run_dir``. A folder without a finished epoch counts as fresh."""
    run = RunDir(config.run_dir)
    if not run.config_file.is_file() or not run.last_file.is_file():
        return "fresh", []
    try:
        stored = run.read_config()["train"]
    except (CheckpointError, KeyError):
        return "fresh", []
    changed = [k for k, v in config.to_dict().items() if k not in _PLACE_ONLY and stored.get(k) != v]
    if changed:
        return "different", changed
    done = run.finished_epochs() >= config.epochs and run.model_file.is_file()
    return ("finished" if done else "unfinished"), []


def train_or_reuse(config: TrainConfig, *, retrain: bool = False, log: Callable[[str], None] | None = print,
                   **train_options: Any) -> Path:
    """Reuse a finished run with the same settings, resume an unfinished one, or train afresh (``retrain=True``
    always does). A folder holding a run with other settings is never silently replaced: ``ConfigError``."""
    from .engine import train

    status, changed = ("fresh", []) if retrain else run_status(config)
    if status == "finished":
        if log is not None:
            log(f"Reusing the finished run {config.run_dir}")
        return config.run_dir
    if status == "different":
        raise ConfigError(f"run folder {config.run_dir} holds a run with other settings ({', '.join(changed)}); "
                          "retrain to replace it or use another output folder")
    return train(config, resume=status == "unfinished", overwrite=status == "fresh", log=log,
                 **train_options).run_dir


def train_twins(
    model: str,
    *,
    conv_types: Sequence[str] = ("conv", "adder"),
    output: str | os.PathLike = "runs",
    model_kwargs: Mapping[str, Any] | None = None,
    run_prefix: str | None = None,
    retrain: bool = False,
    log: Callable[[str], None] | None = print,
    **options: Any,
) -> dict[str, Path]:
    """Train ``model`` once per conv type (default CNN and AdderNet); returns ``{conv_type: run folder}``.

    Run folders are ``output/{run_prefix or model}_{conv_type}``; finished runs are reused and unfinished ones
    resumed (:func:`train_or_reuse`). ``options`` are further :class:`TrainConfig` fields (``epochs``, ``lr``,
    ``dataset``...) over the model's training defaults.
    """
    runs = {}
    for conv_type in conv_types:
        config = resolve_config(model, None, **options, output=str(output),
                                model_kwargs={**(model_kwargs or {}), "conv_type": conv_type},
                                run_name=f"{run_prefix or model}_{conv_type}")
        runs[conv_type] = train_or_reuse(config, retrain=retrain, log=log)
    return runs
