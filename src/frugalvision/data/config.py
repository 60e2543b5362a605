"""How a model's input images are prepared: :class:`DataConfig` and the one preprocessing built from it.

A ``DataConfig`` records everything needed to turn an image file into the tensor a model was trained on: input size,
per-channel mean and standard deviation, resize/crop policy, interpolation, and the classes. It plays the role of
timm's ``pretrained_cfg`` data fields. Every model carries a default one (used when a checkpoint has none); a
training run stores its own (for image folders: the statistics and class names found in the training split), so that
``eval``, ``predict`` and ``quantize`` preprocess exactly as training did. :meth:`DataConfig.eval_transform` is the
single evaluation pipeline of frugalvision; :meth:`DataConfig.train_transform` adds augmentation scaled to the input.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import ConfigError
from .transforms import CROP_MODES, INTERPOLATIONS, SMALL_IMAGE_MAX, EvalPreprocess, TrainPreprocess

__all__ = ["DataConfig"]


def _tuple_of(value: Any, kind: type, field: str) -> tuple:
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise ConfigError(f"DataConfig.{field} must be a sequence, got {value!r}")
    out = []
    for v in value:
        if kind is int:
            if isinstance(v, bool) or not isinstance(v, int):
                raise ConfigError(f"DataConfig.{field} must hold integers, got {value!r}")
            out.append(int(v))
        elif kind is float:
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise ConfigError(f"DataConfig.{field} must hold finite numbers, got {value!r}")
            out.append(float(v))
        else:
            if not isinstance(v, str) or not v:
                raise ConfigError(f"DataConfig.{field} must hold non-empty strings, got {value!r}")
            out.append(v)
    return tuple(out)


@dataclass(frozen=True)
class DataConfig:
    """Input preprocessing of a model: size, normalisation, resize/crop policy and classes.

    Lists (from JSON or YAML) are accepted and stored as tuples; invalid values raise a one-line
    :class:`~frugalvision.errors.ConfigError` (a ``ValueError``) naming the field.

    Attributes:
        input_size: (C, H, W) of the model input; C is 1 (greyscale) or 3 (RGB).
        mean: per-channel mean on the 0..1 scale, C values.
        std: per-channel standard deviation, C positive values.
        crop: ``"none"``: resize the image to (H, W) when its size differs (small images, CIFAR-style);
            ``"center"``: resize the shorter side to ``round(H / crop_pct)`` (aspect kept), then take the centre
            H x W (ImageNet-style).
        crop_pct: fraction of the resized image the centre crop keeps, in (0, 1]; ImageNet's 224 of 256 is 0.875.
        interpolation: ``"nearest"``, ``"bilinear"`` or ``"bicubic"``.
        num_classes: number of classes, when known; filled from ``class_names`` when only those are given.
        class_names: the class names in label order, when known.
    """

    input_size: tuple[int, int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    crop: str = "none"
    crop_pct: float = 1.0
    interpolation: str = "bilinear"
    num_classes: int | None = None
    class_names: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        def put(name: str, value: Any) -> None:
            object.__setattr__(self, name, value)

        size = _tuple_of(self.input_size, int, "input_size")
        if len(size) != 3 or min(size) < 1:
            raise ConfigError(f"DataConfig.input_size must be three positive integers (C, H, W), got {self.input_size}")
        if size[0] not in (1, 3):
            raise ConfigError(f"DataConfig.input_size has {size[0]} channels; images have 1 (greyscale) or 3 (RGB)")
        put("input_size", size)
        for name in ("mean", "std"):
            values = _tuple_of(getattr(self, name), float, name)
            if len(values) != size[0]:
                raise ConfigError(f"DataConfig.{name} has {len(values)} values for {size[0]} channels: {values}")
            put(name, values)
        if min(self.std) <= 0:
            raise ConfigError(f"DataConfig.std must be positive, got {self.std}")
        if self.crop not in CROP_MODES:
            raise ConfigError(f"DataConfig.crop must be one of {', '.join(CROP_MODES)}, got {self.crop!r}")
        if isinstance(self.crop_pct, bool) or not isinstance(self.crop_pct, (int, float)) \
                or not 0.0 < self.crop_pct <= 1.0:
            raise ConfigError(f"DataConfig.crop_pct must be in (0, 1], got {self.crop_pct!r}")
        put("crop_pct", float(self.crop_pct))
        if self.interpolation not in INTERPOLATIONS:
            raise ConfigError(
                f"DataConfig.interpolation must be one of {', '.join(INTERPOLATIONS)}, got {self.interpolation!r}"
            )
        if self.num_classes is not None and (isinstance(self.num_classes, bool) or not isinstance(self.num_classes, int)
                                             or self.num_classes < 1):
            raise ConfigError(f"DataConfig.num_classes must be a positive integer or None, got {self.num_classes!r}")
        if self.class_names is not None:
            names = _tuple_of(self.class_names, str, "class_names")
            if len(set(names)) != len(names):
                duplicates = sorted({n for n in names if names.count(n) > 1})
                raise ConfigError(f"DataConfig.class_names repeats {', '.join(duplicates)}")
            if self.num_classes is not None and self.num_classes != len(names):
                raise ConfigError(
                    f"DataConfig.num_classes is {self.num_classes} but class_names has {len(names)} names"
                )
            put("class_names", names)
            put("num_classes", len(names))

    # ------------------------------------------------------------------------------------------------ conversions

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict (lists, numbers, strings, None); :meth:`from_dict` inverts it."""
        out: dict[str, Any] = {}
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            out[field.name] = list(value) if isinstance(value, tuple) else value
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DataConfig:
        """Builds a config from :meth:`to_dict`'s output (or a YAML/JSON mapping); unknown keys are an error."""
        if not isinstance(data, Mapping):
            raise ConfigError(f"a data config must be a mapping, got {type(data).__name__}")
        names = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(data) - set(names))
        if unknown:
            raise ConfigError(f"unknown data config key(s) {', '.join(map(str, unknown))}; valid: {', '.join(names)}")
        missing = [n for n in ("input_size", "mean", "std") if n not in data]
        if missing:
            raise ConfigError(f"data config lacks {', '.join(missing)}")
        return cls(**dict(data))

    def replace(self, **changes: Any) -> DataConfig:
        """A copy with ``changes`` applied and validated (e.g. ``--mean``/``--std``/``--input-size`` overrides)."""
        unknown = sorted(set(changes) - {f.name for f in dataclasses.fields(self)})
        if unknown:
            raise ConfigError(f"unknown data config field(s) {', '.join(unknown)}")
        return dataclasses.replace(self, **changes)

    # ------------------------------------------------------------------------------------------------- transforms

    @property
    def is_small(self) -> bool:
        """Whether the input's larger side is at most 64 pixels (padded-crop augmentation, in-memory folders)."""
        return max(self.input_size[1:]) <= SMALL_IMAGE_MAX

    def eval_transform(self) -> EvalPreprocess:
        """The evaluation preprocessing: decoded PIL image -> normalised float32 (C, H, W) tensor.

        Converts to C channels, resizes and crops by :attr:`crop` / :attr:`crop_pct` with :attr:`interpolation`,
        scales to 0..1 and normalises by :attr:`mean` / :attr:`std`. Training-time evaluation, ``eval``,
        ``predict`` and ``quantize`` calibration all use this one function.
        """
        return EvalPreprocess(self.input_size[0], self.input_size[1:], self.crop, self.crop_pct, self.interpolation,
                              self.mean, self.std)

    def train_transform(self) -> TrainPreprocess:
        """Training preprocessing with augmentation scaled to the input.

        Small inputs (larger side <= 64): the evaluation geometry, then a random crop with zero padding H/8 and a
        horizontal flip (the CIFAR recipe). Larger inputs: a random-resized crop to (H, W) and a horizontal flip
        (the ImageNet recipe). Random numbers come from torch's global generator.
        """
        return TrainPreprocess(self.input_size[0], self.input_size[1:], self.crop, self.crop_pct, self.interpolation,
                               self.mean, self.std)
