"""Helpers shared by the CLI commands when they run: tables, and the one way commands load a model (their options
are declared in :mod:`.options`)."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch
    from torch import nn

__all__ = [
    "data_config_from_args",
        "load_model_from_args",
    "model_input_size",
    "print_comparison",
    "print_table",
    "run_device",
]


def print_table(title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]], caption: str | None = None) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title, caption=caption, caption_justify="left")
    for i, column in enumerate(columns):
        table.add_column(column, justify="left" if i == 0 else "right")
    for row in rows:
        table.add_row(*(str(v) for v in row))
    Console(width=max(120, sum(len(c) for c in columns) + 40)).print(table)


def print_comparison(results: Sequence[tuple[Any, Any, dict[str, Any]]]) -> None:
    """Side-by-side table of trained runs: accuracy and per-image cost."""
    from ..analysis.counting import ENERGY_TABLES, human

    if not results:
        return
    rows = []
    for config, result, costs in results:
        metrics = result.metrics
        epoch_s = [row["epoch_seconds"] for row in result.history]
        rows.append((
            config.name, f"{metrics['val_top1']:.2f}", human(costs["params"]), human(costs["mul"]), human(costs["add"]),
            f"{costs['energy_pj'] / 1e6:.3f}", f"{costs['latency_cycles'] / 1e6:.2f}",
            f"{sum(epoch_s) / max(len(epoch_s), 1):.1f}",
        ))
    config, result, _ = results[0]
    hint = " Evaluate on the MNIST test set: frugalvision eval --checkpoint RUN_FOLDER --dataset mnist --data-dir DIR"
    print_table(
        f"Trained on {config.dataset}; accuracy on its {config.val_split} split ({result.history[-1]['epoch']} epochs)",
        ("run", "val top-1 %", "params", "mul", "add", "energy µJ", "latency Mcyc", "s/epoch"),
        rows,
        caption="Per image, one forward pass, every layer incl. BatchNorm (1 mul + 1 add per element). "
        + ENERGY_TABLES["fp32"].caption() + (hint if config.dataset == "mnist5k" else ""),
    )
    print("Run folders: " + ", ".join(str(result.run_dir) for _, result, _ in results))


def run_device(model: nn.Module, requested: str = "auto") -> torch.device:
    """The device a command runs ``model`` on: an integer model (:func:`frugalvision.quantize`) on the CPU, the only
    place its kernels run, whatever was asked; any other model on ``requested`` (``auto``: CUDA when available)."""
    import torch

    from ..quant import is_quantized
    from ..train.distributed import resolve_device

    return torch.device("cpu") if is_quantized(model) else resolve_device(requested)


# ----------------------------------------------------------------------------------------------------------------
# Models from checkpoints: one code path for every command that reads one (eval, predict, count, deploy, plot)


def _model_options(args: argparse.Namespace) -> dict[str, Any]:
    import yaml

    from ..errors import ConfigError

    options: dict[str, Any] = {}
    for item in args.model_option:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--model-option takes KEY=VALUE, got {item!r}")
        options[key.strip()] = yaml.safe_load(value)
    if args.conv_type is not None:
        options["conv_type"] = args.conv_type
    if args.num_classes is not None:
        options["num_classes"] = args.num_classes
    return options


def load_model_from_args(args: argparse.Namespace, checkpoint: str | None = None) -> nn.Module:
    """The model a command works on, in eval mode: a frugalvision checkpoint (run folder or file) rebuilds itself;
    a file without metadata is loaded into ``--model`` (+ options) through the model's official-checkpoint filter;
    with no checkpoint at all, ``--model`` is built freshly initialised."""
    from ..errors import ConfigError
    from ..models import create_model, load_model, read_checkpoint_config, read_state_dict

    path = checkpoint if checkpoint is not None else args.checkpoint
    options = _model_options(args)
    if args.model is None:
        if path is None:
            raise ConfigError("give --checkpoint RUN_OR_FILE or --model NAME")
        if options or args.ema:
            raise ConfigError("--conv-type, --num-classes, --model-option and --ema describe an official checkpoint: "
                              "give its architecture with --model")
        if read_checkpoint_config(path) is None:
            read_state_dict(path)  # a file that is no checkpoint at all says so here
            raise ConfigError(f"{path} carries no frugalvision metadata: name its architecture with --model NAME "
                              "(and --conv-type, --num-classes as released)")
        return load_model(path)
    return create_model(args.model, checkpoint_path=path, checkpoint_ema=args.ema, **options).eval()


def data_config_from_args(args: argparse.Namespace, model: nn.Module) -> Any:
    """The model's data config (its checkpoint's, or its default) with ``--input-size`` / ``--mean`` / ``--std``."""
    from ..data import DataConfig
    from ..errors import ConfigError

    config = getattr(model, "data_config", None)
    overrides = {k: tuple(v) for k in ("input_size", "mean", "std") if (v := getattr(args, k, None)) is not None}
    if config is None:
        missing = [f"--{k.replace('_', '-')}" for k in ("input_size", "mean", "std") if k not in overrides]
        if missing:
            raise ConfigError(f"the model has no data config: give {', '.join(missing)}")
        return DataConfig(overrides["input_size"], overrides["mean"], overrides["std"])
    return config.replace(**overrides) if overrides else config


def model_input_size(model: nn.Module, override: Sequence[int] | None = None) -> tuple[int, int, int]:
    """``override``, else the input size of the model's data config, else its ``default_input_size``."""
    from ..errors import ConfigError

    data_config = getattr(model, "data_config", None)
    size = override or (data_config.input_size if data_config is not None else None) \
        or getattr(model, "default_input_size", None)
    if size is None:
        raise ConfigError("--input-size C H W is needed for this model")
    return tuple(size)
