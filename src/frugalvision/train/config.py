"""Training configuration: one dataclass, filled from model defaults, a YAML recipe and command-line flags."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

__all__ = ["TrainConfig", "load_recipe"]


@dataclass
class TrainConfig:
    """Everything a training run depends on; stored in the run folder and the checkpoints.

    The defaults are the AdderNet recipe (SGD, momentum 0.9, weight decay 5e-4, cosine schedule, ALR eta = 0.2).
    """

    model: str = "lenet5_bn"
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    dataset: str = "mnist5k"
    data_dir: str | None = None
    download: bool = False
    train_split: str = "train"
    val_split: str = "val"
    augment: bool = True
    fake_size: int = 1024
    fake_input_size: list[int] | None = None  # (C, H, W) of the fake dataset; default (3, 32, 32)
    epochs: int = 20
    batch_size: int = 128
    eval_batch_size: int = 500
    optimizer: str = "sgd"  # sgd | nesterov | adamw | lamb (timm)
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    scheduler: str = "cosine"  # cosine | constant
    warmup_epochs: float = 0.0
    min_lr: float = 0.0
    alr: str = "alr"  # AdderNet adaptive learning rate: alr | official | ilr | none
    alr_eta: float = 0.2
    grad_accum: int = 1
    decay_bias_and_norm: bool = True  # weight decay on biases and norm parameters too (AdderNet: yes; timm: no)
    layer_decay: dict[str, Any] | None = None  # {"rate": float, "num_layers": int}: timm layer-wise LR decay
    loss: str = "ce"  # ce | bce (timm BinaryCrossEntropy)
    label_smoothing: float = 0.0
    randaugment: str | None = None  # timm RandAugment string, e.g. "rand-m7-mstd0.5-inc1" (ImageNet)
    reprob: float = 0.0  # timm random-erasing probability (ImageNet)
    mixup: float = 0.0
    cutmix: float = 0.0
    ema_decay: float | None = None
    deep_training: dict[str, Any] | None = None  # VanillaNet: {"decay_epochs": int, "schedule": "linear"|"cosine"}
    bn_recalibration: str = "auto"  # auto (models with adder layers) | always | never
    bn_recalibration_batches: int = 40
    amp: str = "none"  # none | bf16 | fp16 (CUDA)
    seed: int = 0
    device: str = "auto"
    num_workers: int = 0
    output: str = "runs"
    run_name: str | None = None

    @property
    def name(self) -> str:
        """The run folder's name: ``{model}_{conv_type}`` for models with a conv type, else ``{model}``."""
        if self.run_name:
            return self.run_name
        conv_type = self.model_kwargs.get("conv_type")
        return f"{self.model}_{conv_type}" if conv_type else self.model

    @property
    def run_dir(self) -> Path:
        return Path(self.output) / self.name

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown training option(s): {', '.join(unknown)}")
        return cls(**values)

    def replace(self, **changes: Any) -> TrainConfig:
        return TrainConfig.from_dict({**self.to_dict(), **changes})


def load_recipe(path: str | Path) -> dict[str, Any]:
    """Read a YAML recipe into a dict of :class:`TrainConfig` fields (validated)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file not found: {path}")
    try:
        values = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as error:
        raise ValueError(f"config file {path} is not valid YAML: {str(error).splitlines()[0]}") from None
    if not isinstance(values, dict):
        raise ValueError(f"config file {path} must hold a mapping of options, got {type(values).__name__}")
    values = _flatten_sections(values)
    try:
        TrainConfig.from_dict(values)  # validate the keys now, with the file's name in the error
    except (TypeError, ValueError) as error:
        raise ValueError(f"config file {path}: {error}") from None
    return values


# Recipes may group options in sections; each maps to flat TrainConfig fields.
_SECTIONS = {
    "optimizer": {"name": "optimizer", "lr": "lr", "momentum": "momentum", "weight_decay": "weight_decay"},
    "scheduler": {"name": "scheduler", "warmup_epochs": "warmup_epochs", "min_lr": "min_lr"},
    "ema": {"decay": "ema_decay"},
}


def _flatten_sections(values: dict[str, Any]) -> dict[str, Any]:
    flat = {}
    for key, value in values.items():
        if key in _SECTIONS and isinstance(value, dict):
            for inner, inner_value in value.items():
                if inner not in _SECTIONS[key]:
                    raise ValueError(f"unknown option {key}.{inner}")
                flat[_SECTIONS[key][inner]] = inner_value
        else:
            flat[key] = value
    return flat
