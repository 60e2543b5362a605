"""Building what a training run needs from its :class:`~frugalvision.train.config.TrainConfig`.

Each builder does one thing and can be called on its own (the engine's unit tests do): the data loaders
(:func:`build_data`), the model (:func:`build_model`), mixed precision (:func:`build_precision`), the EMA copy
(:func:`build_ema`), mixup / cutmix (:func:`build_mixup`), the callbacks (:func:`build_callbacks`), and all of it
together (:func:`build_training`).
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler, RandomSampler, Sampler, SequentialSampler

from ..data import DataConfig, ImageFolderDataset, build_dataset, dataset_info
from ..errors import ConfigError
from ..layers.adder import Adder2d
from ..models import create_model
from ..optim import AdaptiveLR, adder_weights
from ..run_dir import TeacherRecord
from .callbacks import Callback, TrainContext
from .config import TrainConfig
from .distributed import Distributed
from .objectives import Objective, build_objective
from .optimization import build_optimizer, build_scheduler

__all__ = [
    "Precision",
    "Teacher",
    "TrainingData",
    "TrainingSetup",
    "build_callbacks",
    "build_data",
    "build_datasets",
    "build_ema",
    "build_mixup",
    "build_model",
    "build_precision",
    "build_teacher",
    "build_training",
    "epoch_seed",
]


def epoch_seed(seed: int, epoch: int) -> int:
    """The seed of epoch ``epoch`` (augmentation, dropout, mixup and shuffling): a resumed run draws exactly what the
    uninterrupted run would have drawn."""
    return seed * 100_003 + epoch


# ----------------------------------------------------------------------------------------------------------------
# Data


@dataclass
class TrainingData:
    """The loaders of a run and what the model must fit: classes and input size (C, H, W), and the preprocessing
    (``data_config``: what the run stores so that evaluation and prediction prepare images the same way; ``None``
    for fake data, which are synthetic tensors, not images)."""

    train_loader: DataLoader
    val_loader: DataLoader
    num_classes: int
    input_size: tuple[int, int, int]
    train_sampler: Sampler | None
    shuffle_generator: torch.Generator
    data_config: DataConfig | None = None

    def start_epoch(self, seed: int, epoch: int) -> None:
        """Reseed the shuffling for ``epoch``."""
        self.shuffle_generator.manual_seed(epoch_seed(seed, epoch))
        if isinstance(self.train_sampler, DistributedSampler):
            self.train_sampler.set_epoch(epoch)

    def optimizer_steps_per_epoch(self, grad_accum: int) -> int:
        return max(1, len(self.train_loader) // grad_accum)


def build_datasets(config: TrainConfig) -> tuple[Dataset, Dataset, DataConfig | None]:
    """The training and validation datasets and their preprocessing. The validation split is prepared with the
    training split's config (an image folder's statistics and class names come from its training images)."""
    common: dict[str, Any] = {"data_dir": config.data_dir, "download": config.download, "fake_size": config.fake_size}
    if config.dataset == "fake":
        common["fake_input_size"] = tuple(config.fake_input_size or dataset_info("fake").input_size)
    overrides = {"input_size": config.input_size, "mean": config.mean, "std": config.std}
    train_set = build_dataset(config.dataset, config.train_split, augment=config.augment,
                              randaugment=config.randaugment, reprob=config.reprob, **overrides, **common)
    if config.dataset == "fake":
        data_config = None  # synthetic tensors, not images: no preprocessing to record
    elif isinstance(train_set, ImageFolderDataset):
        data_config = train_set.data_config
    else:
        data_config = dataset_info(config.dataset).data_config().replace(
            **{k: tuple(v) for k, v in overrides.items() if v is not None})
    val_set = build_dataset(config.dataset, config.val_split, data_config=data_config, **common)
    return train_set, val_set, data_config


def build_data(config: TrainConfig, dist: Distributed) -> TrainingData:
    """The training and validation loaders (sharded across processes under ``torchrun``)."""
    train_set, val_set, data_config = build_datasets(config)
    shuffle_generator = torch.Generator()
    if dist.world > 1:
        train_sampler: Sampler = DistributedSampler(train_set, num_replicas=dist.world, rank=dist.rank,
                                                    seed=config.seed, drop_last=True)
        val_sampler: Sampler = DistributedSampler(val_set, num_replicas=dist.world, rank=dist.rank, shuffle=False)
    else:
        train_sampler, val_sampler = RandomSampler(train_set, generator=shuffle_generator), SequentialSampler(val_set)
    train_loader = DataLoader(train_set, config.batch_size, sampler=train_sampler,
                              drop_last=len(train_set) > config.batch_size, num_workers=config.num_workers,
                              generator=shuffle_generator)
    val_loader = DataLoader(val_set, config.eval_batch_size, sampler=val_sampler, num_workers=config.num_workers)
    if data_config is not None:
        num_classes, input_size = data_config.num_classes, data_config.input_size
    else:  # fake data
        num_classes, input_size = 10, tuple(config.fake_input_size or dataset_info("fake").input_size)
    return TrainingData(train_loader, val_loader, num_classes, tuple(input_size), train_sampler, shuffle_generator,
                        data_config)


# ----------------------------------------------------------------------------------------------------------------
# Model and its companions


def build_model(config: TrainConfig, data: TrainingData, device: torch.device) -> nn.Module:
    """The model, sized for the data (classes, input channels), seeded by ``config.seed``, on ``device``."""
    torch.manual_seed(config.seed)
    kwargs = {"num_classes": data.num_classes, "in_chans": data.input_size[0], **config.model_kwargs}
    model = create_model(config.model, **kwargs)  # unknown options: ConfigError, checked before anything is built
    if data.data_config is not None:  # what the run stores: the preprocessing it trained with
        model.data_config = data.data_config
    return model.to(device)


@dataclass
class Precision:
    """Mixed precision: the autocast dtype (``None``: float32) and the loss scaler (active for fp16 on CUDA)."""

    device_type: str
    dtype: torch.dtype | None
    scaler: torch.amp.GradScaler

    def autocast(self) -> contextlib.AbstractContextManager:
        return torch.autocast(self.device_type, dtype=self.dtype, enabled=self.dtype is not None)


def build_precision(config: TrainConfig, device: torch.device) -> Precision:
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(config.amp)
    scaler = torch.amp.GradScaler(device.type, enabled=config.amp == "fp16" and device.type == "cuda")
    return Precision(device.type, dtype, scaler)


def build_ema(config: TrainConfig, model: nn.Module) -> Any:
    """timm's ``ModelEmaV3`` of ``model`` (updated after every optimizer step), or ``None``."""
    if not config.ema_decay:
        return None
    from timm.utils import ModelEmaV3

    return ModelEmaV3(model, decay=config.ema_decay)


def build_mixup(config: TrainConfig, num_classes: int) -> Any:
    """timm's ``Mixup`` (mixup / cutmix with label smoothing on the mixed targets), or ``None``."""
    if config.mixup <= 0 and config.cutmix <= 0:
        return None
    from timm.data import Mixup

    return Mixup(mixup_alpha=config.mixup, cutmix_alpha=config.cutmix, label_smoothing=config.label_smoothing,
                 num_classes=num_classes)


@dataclass
class Teacher:
    """A frozen distillation teacher and what identifies it (``record``): the absolute path of the checkpoint it came
    from and that file's SHA-256 (stored in the student's run instead of the teacher's weights, checked on resume)."""

    model: nn.Module
    record: TeacherRecord
    input_adapter: Callable[[torch.Tensor], torch.Tensor] | None = None


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _normalisation_adapter(student: DataConfig | None, teacher: DataConfig | None
                           ) -> Callable[[torch.Tensor], torch.Tensor] | None:
    """The exact per-channel affine map from the student's normalised images to the teacher's normalisation
    (``(x * std_s + mean_s - mean_t) / std_t``), or ``None`` when they agree or either is unknown."""
    if student is None or teacher is None or (student.mean, student.std) == (teacher.mean, teacher.std):
        return None
    if student.input_size != teacher.input_size:
        raise ConfigError(f"the teacher was trained at input size {teacher.input_size}, the student's data is "
                          f"{student.input_size}")
    scale = torch.tensor(student.std) / torch.tensor(teacher.std)
    shift = (torch.tensor(student.mean) - torch.tensor(teacher.mean)) / torch.tensor(teacher.std)

    def adapt(x: torch.Tensor) -> torch.Tensor:
        return x * scale.to(x)[:, None, None] + shift.to(x)[:, None, None]  # (N, C, H, W), per channel

    return adapt


def build_teacher(config: TrainConfig, data: TrainingData, device: torch.device) -> Teacher | None:
    """The frozen distillation teacher of ``config.teacher`` (eval mode, no gradients), or ``None``.

    Raises:
        ConfigError / CheckpointError: a teacher that cannot be loaded, or predicts another number of classes than
            the student's data has.
    """
    if config.teacher is None:
        return None
    from ..models import load_model, read_checkpoint_config
    from ..models.checkpoint import resolve_checkpoint_path

    path = resolve_checkpoint_path(config.teacher)
    if config.teacher_model is not None:
        teacher = create_model(config.teacher_model, checkpoint_path=config.teacher, **config.teacher_model_kwargs)
    elif read_checkpoint_config(config.teacher) is None:
        raise ConfigError(f"teacher {config.teacher} carries no frugalvision metadata: give its architecture as "
                          "teacher_model (--teacher-model)")
    else:
        teacher = load_model(config.teacher)
    teacher = teacher.eval().requires_grad_(False).to(device)
    with torch.no_grad():
        classes = teacher(torch.zeros(1, *data.input_size, device=device)).shape[-1]
    if classes != data.num_classes:
        raise ConfigError(f"the teacher {config.teacher} predicts {classes} classes, the student's data has "
                          f"{data.num_classes}")
    adapter = _normalisation_adapter(data.data_config, getattr(teacher, "data_config", None))
    # the absolute path: a relative one would name another file when read from another working folder
    record = TeacherRecord(Path(config.teacher).resolve(), file_sha256(path))
    return Teacher(teacher, record, adapter)


def build_callbacks(config: TrainConfig, callbacks: Sequence[Callback] = ()) -> list[Callback]:
    """The run's callbacks: VanillaNet's deep-training schedule first (from ``config.deep_training``), then
    ``callbacks``. Names must be unique: resumed runs give each callback its state back by name."""
    result = list(callbacks)
    if config.deep_training:
        from .deep_training import DeepTraining

        result.insert(0, DeepTraining.from_config(config.deep_training))
    names = [callback.state_name for callback in result]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise ConfigError(f"two callbacks share the state name {duplicates[0]!r}; give one a distinct state_name")
    return result


def needs_bn_recalibration(config: TrainConfig, model: nn.Module) -> bool:
    """``auto``: models with adder layers, whose BatchNorm statistics lag behind the weights (see :mod:`.batchnorm`)."""
    if config.bn_recalibration == "auto":
        return any(isinstance(m, Adder2d) for m in model.modules())
    return config.bn_recalibration == "always"


# ----------------------------------------------------------------------------------------------------------------
# Everything together


@dataclass
class TrainingSetup:
    """What the loop works with.

    Attributes:
        model: the model being trained (what checkpoints hold).
        train_model: what a training step calls: ``model``, or DDP around it under ``torchrun``.
        objective: the loss of one micro-batch (see :mod:`.objectives`).
        alr: AdderNet's adaptive learning rate (applied to the final gradient before each optimizer step).
        recalibrate_bn: re-estimate BatchNorm statistics before validation and saving.
        context: what callbacks see.
        teacher: the frozen distillation teacher, when the run has one.
    """

    config: TrainConfig
    model: nn.Module
    train_model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    alr: AdaptiveLR
    precision: Precision
    objective: Objective
    ema: Any
    mixup: Any
    callbacks: list[Callback]
    recalibrate_bn: bool
    context: TrainContext
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    teacher: Teacher | None = None

    @property
    def ema_model(self) -> nn.Module | None:
        return self.ema.module if self.ema is not None else None


def build_training(config: TrainConfig, data: TrainingData, dist: Distributed, run_dir: Path,
                   callbacks: Sequence[Callback] = (), objective: Objective | None = None) -> TrainingSetup:
    """Model, optimizer, schedule, precision, EMA, mixup, objective (with the distillation teacher of
    ``config.teacher``) and callbacks of a run."""
    teacher = build_teacher(config, data, dist.device)  # first: a bad teacher fails before anything is built
    model = build_model(config, data, dist.device)
    alr = AdaptiveLR(adder_weights(model), mode=config.alr, eta=config.alr_eta)
    optimizer = build_optimizer(config, model, alr)
    scheduler = build_scheduler(config, optimizer, data.optimizer_steps_per_epoch(config.grad_accum))
    ema = build_ema(config, model)
    context = TrainContext(model=model, optimizer=optimizer, config=config.to_dict(), run_dir=run_dir,
                           num_epochs=config.epochs, ema_model=ema.module if ema is not None else None)
    return TrainingSetup(
        config=config, model=model, train_model=dist.wrap(model), optimizer=optimizer, scheduler=scheduler, alr=alr,
        precision=build_precision(config, dist.device), ema=ema, teacher=teacher,
        objective=objective or build_objective(config, teacher.model if teacher else None,
                                               teacher.input_adapter if teacher else None),
        mixup=build_mixup(config, data.num_classes), callbacks=build_callbacks(config, callbacks),
        recalibrate_bn=needs_bn_recalibration(config, model), context=context, device=dist.device,
    )
