"""Training configuration: one dataclass, filled from model defaults, a YAML recipe and command-line flags.

Every field is checked when a :class:`TrainConfig` is constructed (``__post_init__``): a misspelled choice, a
negative learning rate or an impossible combination fails at once, with a one-line
:class:`~frugalvision.errors.ConfigError` naming the field, before any data is read. The valid choices come from
the registries that implement them (models, datasets, conv types, optimizers, schedulers, losses, AdderNet LR
modes, deep-training schedules), so the configuration, the engine and the command line never disagree.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..data import DATASETS
from ..errors import ConfigError, one_line
from ..layers import CONV_TYPES
from ..models import is_model, model_entry, model_train_defaults
from ..optim import ALR_MODES
from .losses import LOSSES
from .optimizers import OPTIMIZERS
from .schedules import SCHEDULERS, SCHEDULES

__all__ = [
    "AMP_MODES",
    "BN_RECALIBRATION_MODES",
    "DeepTrainingConfig",
    "TrainConfig",
    "load_recipe",
]

AMP_MODES = ("none", "bf16", "fp16")
BN_RECALIBRATION_MODES = ("auto", "always", "never")
_DEVICE = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")


@dataclass(frozen=True)
class DeepTrainingConfig:
    """VanillaNet's deep-training schedule (Chen et al., NeurIPS 2023, Sec. 3.1): lam goes 0 -> 1 over
    ``decay_epochs`` epochs (``linear`` or ``cosine``), then stays 1; ``decay_epochs = 0`` turns it off."""

    decay_epochs: int
    schedule: str = "linear"

    def __post_init__(self) -> None:
        _check_int("deep_training.decay_epochs", self.decay_epochs, minimum=0)
        _check_choice("deep_training.schedule", self.schedule, SCHEDULES)

    @classmethod
    def from_dict(cls, section: Mapping[str, Any]) -> DeepTrainingConfig:
        """The one way to build it from a recipe's ``deep_training`` section (unknown keys are errors)."""
        if not isinstance(section, Mapping):
            raise ConfigError(f"deep_training must be a mapping with decay_epochs and schedule, got {section!r}")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(section) - names)
        if unknown:
            raise ConfigError(f"deep_training: unknown key(s) {', '.join(unknown)}; valid: {', '.join(sorted(names))}")
        if "decay_epochs" not in section:
            raise ConfigError("deep_training needs decay_epochs")
        return cls(**section)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class TrainConfig:
    """Everything a training run depends on; stored in the run folder and the checkpoints.

    The defaults are the AdderNet recipe (SGD, momentum 0.9, weight decay 5e-4, cosine schedule, ALR eta = 0.2).
    Construction validates every field (see the module docstring).
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
    input_size: list[int] | None = None  # (C, H, W) the images are resized to (folder, imagenet); default: theirs
    mean: list[float] | None = None  # per-channel normalisation; default: the dataset's (a folder's: its train split's)
    std: list[float] | None = None
    epochs: int = 20
    batch_size: int = 128
    eval_batch_size: int = 500
    optimizer: str = "sgd"  # see frugalvision.train.optimizers.OPTIMIZERS
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    scheduler: str = "cosine"  # see frugalvision.train.schedules.SCHEDULERS
    warmup_epochs: float = 0.0
    min_lr: float = 0.0
    alr: str = "alr"  # AdderNet adaptive learning rate, see frugalvision.optim.ALR_MODES
    alr_eta: float = 0.2
    grad_accum: int = 1
    decay_bias_and_norm: bool = True  # weight decay on biases and norm parameters too (AdderNet: yes; timm: no)
    layer_decay: dict[str, Any] | None = None  # {"rate": float, "num_layers": int}: timm layer-wise LR decay
    loss: str = "ce"  # see frugalvision.train.losses.LOSSES
    label_smoothing: float = 0.0
    randaugment: str | None = None  # timm RandAugment string, e.g. "rand-m7-mstd0.5-inc1" (ImageNet)
    reprob: float = 0.0  # timm random-erasing probability (ImageNet)
    mixup: float = 0.0
    cutmix: float = 0.0
    ema_decay: float | None = None
    deep_training: dict[str, Any] | None = None  # VanillaNet: see DeepTrainingConfig
    teacher: str | None = None  # knowledge distillation: the teacher's run folder or checkpoint file (frozen)
    teacher_model: str | None = None  # the teacher's architecture, for checkpoints without frugalvision metadata
    teacher_model_kwargs: dict[str, Any] = field(default_factory=dict)  # e.g. {conv_type: conv} with teacher_model
    kd_alpha: float = 0.5  # weight of the distillation term; 1 - kd_alpha weighs the label loss
    kd_temperature: float = 4.0  # softmax temperature of the distillation term (Hinton et al. 2015)
    bn_recalibration: str = "auto"  # auto (models with adder layers) | always | never
    bn_recalibration_batches: int = 40
    amp: str = "none"  # none | bf16 | fp16 (CUDA only)
    seed: int = 0
    device: str = "auto"
    num_workers: int = 0
    output: str = "runs"
    run_name: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.model, str) or not is_model(self.model):
            model_entry(str(self.model))  # raises the one-line error with suggestions
        if not isinstance(self.model_kwargs, dict):
            raise ConfigError(f"model_kwargs must be a mapping of model options, got {self.model_kwargs!r}")
        if "conv_type" in self.model_kwargs:
            _check_choice("model_kwargs.conv_type", self.model_kwargs["conv_type"], CONV_TYPES)
        _check_choice("dataset", self.dataset, tuple(DATASETS))
        _check_optional_str("data_dir", self.data_dir)
        for name in ("download", "augment", "decay_bias_and_norm"):
            _check_bool(name, getattr(self, name))
        for name in ("train_split", "val_split"):
            _check_str(name, getattr(self, name))
        _check_int("fake_size", self.fake_size, minimum=1)
        for name in ("fake_input_size", "input_size"):
            size = getattr(self, name)
            if size is None:
                continue
            if not isinstance(size, (list, tuple)) or len(size) != 3 or not all(_is_int(v) and v >= 1 for v in size):
                raise ConfigError(f"{name} must be three positive integers (C, H, W), got {size!r}")
            setattr(self, name, [int(v) for v in size])
        if self.input_size is not None and self.dataset not in ("folder", "imagenet"):
            raise ConfigError(f"input_size applies to image folders and imagenet; {self.dataset} images have a fixed "
                              "size (fake data: fake_input_size)")
        for name in ("mean", "std"):
            values = getattr(self, name)
            if values is None:
                continue
            if not isinstance(values, (list, tuple)) or not values or not all(
                    isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in values):
                raise ConfigError(f"{name} must be a list of numbers, one per channel, got {values!r}")
            if name == "std" and min(values) <= 0:
                raise ConfigError(f"std must be positive, got {values!r}")
            setattr(self, name, [float(v) for v in values])
        for name in ("epochs", "batch_size", "eval_batch_size", "grad_accum", "bn_recalibration_batches"):
            _check_int(name, getattr(self, name), minimum=1)
        for name in ("seed", "num_workers"):
            _check_int(name, getattr(self, name), minimum=0)
        _check_choice("optimizer", self.optimizer, tuple(OPTIMIZERS))
        _check_choice("scheduler", self.scheduler, tuple(SCHEDULERS))
        _check_choice("alr", self.alr, ALR_MODES)
        _check_choice("loss", self.loss, tuple(LOSSES))
        _check_choice("amp", self.amp, AMP_MODES)
        _check_choice("bn_recalibration", self.bn_recalibration, BN_RECALIBRATION_MODES)
        _check_float("lr", self.lr, above=0.0)
        _check_float("alr_eta", self.alr_eta, above=0.0)
        _check_float("momentum", self.momentum, minimum=0.0, below=1.0)
        for name in ("weight_decay", "warmup_epochs", "min_lr", "mixup", "cutmix"):
            _check_float(name, getattr(self, name), minimum=0.0)
        _check_float("label_smoothing", self.label_smoothing, minimum=0.0, below=1.0)
        _check_float("reprob", self.reprob, minimum=0.0, maximum=1.0)
        if self.ema_decay is not None:
            _check_float("ema_decay", self.ema_decay, above=0.0, below=1.0)
        if self.min_lr > self.lr:
            raise ConfigError(f"min_lr ({self.min_lr:g}) must not exceed lr ({self.lr:g})")
        if self.warmup_epochs >= self.epochs and self.warmup_epochs > 0:
            raise ConfigError(f"warmup_epochs ({self.warmup_epochs:g}) must be shorter than epochs ({self.epochs})")
        if self.layer_decay is not None:
            self._check_layer_decay()
        if self.deep_training is not None:
            self.deep_training = DeepTrainingConfig.from_dict(self.deep_training).to_dict()
        _check_optional_str("teacher", self.teacher)
        _check_optional_str("teacher_model", self.teacher_model)
        if not isinstance(self.teacher_model_kwargs, dict):
            raise ConfigError(f"teacher_model_kwargs must be a mapping, got {self.teacher_model_kwargs!r}")
        if self.teacher is None and (self.teacher_model is not None or self.teacher_model_kwargs):
            raise ConfigError("teacher_model / teacher_model_kwargs describe a teacher checkpoint: give teacher too")
        if self.teacher_model is not None:
            model_entry(self.teacher_model)  # the one-line error for unknown names
        _check_float("kd_alpha", self.kd_alpha, minimum=0.0, maximum=1.0)
        _check_float("kd_temperature", self.kd_temperature, above=0.0)
        _check_optional_str("randaugment", self.randaugment)
        if (self.randaugment or self.reprob) and self.dataset not in ("imagenet", "folder"):
            raise ConfigError(f"randaugment / reprob are ImageNet-style augmentations; dataset {self.dataset} has its "
                              "own (augment: true)")
        _check_str("device", self.device)
        if not _DEVICE.match(self.device):
            raise ConfigError(f"device must be auto, cpu, cuda or cuda:N, got {self.device!r}")
        if self.amp == "fp16" and not self._cuda_requested_and_available():
            raise ConfigError("amp=fp16 needs a CUDA device (fp16 autocast with a loss scaler); on the CPU use bf16")
        if self.device.startswith("cuda") and not _cuda_available():
            raise ConfigError(f"device {self.device!r} requested but CUDA is not available")
        _check_str("output", self.output)
        _check_optional_str("run_name", self.run_name)
        if self.run_name is not None and (not self.run_name or "/" in self.run_name or self.run_name in (".", "..")):
            raise ConfigError(f"run_name must be a plain folder name, got {self.run_name!r}")

    def _check_layer_decay(self) -> None:
        section = self.layer_decay
        if not isinstance(section, dict) or set(section) - {"rate", "num_layers"} or "rate" not in section:
            raise ConfigError(f"layer_decay must be a mapping {{rate: float, num_layers: int}}, got {section!r}")
        _check_float("layer_decay.rate", section["rate"], above=0.0, maximum=1.0)
        if section.get("num_layers") is not None:
            _check_int("layer_decay.num_layers", section["num_layers"], minimum=1)
        if self.alr == "ilr":
            raise ConfigError("layer_decay and alr=ilr both set per-group learning rates; choose one")

    def _cuda_requested_and_available(self) -> bool:
        return self.device != "cpu" and _cuda_available()

    @property
    def name(self) -> str:
        """The run folder's name: ``run_name``, else ``{model}_{conv_type}`` for models with a conv type, else
        ``{model}``, with ``_kd`` appended for distillation runs."""
        if self.run_name:
            return self.run_name
        conv_type = self.model_kwargs.get("conv_type")
        name = f"{self.model}_{conv_type}" if conv_type else self.model
        return f"{name}_kd" if self.teacher else name

    @property
    def run_dir(self) -> Path:
        return Path(self.output) / self.name

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> TrainConfig:
        """Build from a mapping of field values; unknown names are errors (with the closest valid name)."""
        known = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(values) - set(known))
        if unknown:
            import difflib

            hints = [difflib.get_close_matches(name, known, n=1) for name in unknown]
            described = ", ".join(f"{name} (did you mean {hint[0]}?)" if hint else name
                                  for name, hint in zip(unknown, hints))
            raise ConfigError(f"unknown training option(s): {described}")
        return cls(**values)

    def replace(self, **changes: Any) -> TrainConfig:
        return TrainConfig.from_dict({**self.to_dict(), **changes})


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


# ----------------------------------------------------------------------------------------------------------------
# Field checks: each raises a one-line ConfigError naming the field


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_int(name: str, value: Any, *, minimum: int | None = None) -> None:
    if not _is_int(value):
        raise ConfigError(f"{name} must be an integer, got {value!r}")
    if minimum is not None and value < minimum:
        raise ConfigError(f"{name} must be >= {minimum}, got {value}")


def _check_float(name: str, value: Any, *, minimum: float | None = None, maximum: float | None = None,
                 above: float | None = None, below: float | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(f"{name} must be a finite number, got {value!r}")
    if minimum is not None and value < minimum:
        raise ConfigError(f"{name} must be >= {minimum:g}, got {value:g}")
    if maximum is not None and value > maximum:
        raise ConfigError(f"{name} must be <= {maximum:g}, got {value:g}")
    if above is not None and value <= above:
        raise ConfigError(f"{name} must be > {above:g}, got {value:g}")
    if below is not None and value >= below:
        raise ConfigError(f"{name} must be < {below:g}, got {value:g}")


def _check_choice(name: str, value: Any, choices: Sequence[Any]) -> None:
    if value not in choices:
        raise ConfigError(f"{name} must be one of {', '.join(map(str, choices))}; got {value!r}")


def _check_bool(name: str, value: Any) -> None:
    if not isinstance(value, bool):
        raise ConfigError(f"{name} must be true or false, got {value!r}")


def _check_str(name: str, value: Any) -> None:
    if not isinstance(value, str):
        raise ConfigError(f"{name} must be a string, got {value!r}")


def _check_optional_str(name: str, value: Any) -> None:
    if value is not None:
        _check_str(name, value)


# ----------------------------------------------------------------------------------------------------------------
# Recipes


def load_recipe(path: str | Path) -> dict[str, Any]:
    """Read a YAML recipe into a dict of :class:`TrainConfig` fields, validated as a whole config (with the model's
    defaults filling what the recipe leaves out) so that a bad recipe fails before anything else happens."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        values = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as error:
        raise ConfigError(f"config file {path} is not valid YAML: {one_line(error)}") from None
    if not isinstance(values, dict):
        raise ConfigError(f"config file {path} must hold a mapping of options, got {type(values).__name__}")
    try:
        values = _flatten_sections(values)
        TrainConfig.from_dict({**model_train_defaults(values.get("model", TrainConfig.model)), **values})
    except ConfigError as error:
        raise ConfigError(f"config file {path}: {error}") from None
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
                    raise ConfigError(f"unknown option {key}.{inner}; valid: {', '.join(_SECTIONS[key])}")
                flat[_SECTIONS[key][inner]] = inner_value
        else:
            flat[key] = value
    return flat
