"""Asking a trained model what is in image files: :func:`predict`.

Images are prepared by the model's :class:`~frugalvision.data.DataConfig` (a run's stored config, or the model's
default data config for official checkpoints): the same evaluation preprocessing as ``eval`` and training-time
validation, so a prediction sees exactly what the model saw.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from .data import IMAGE_EXTENSIONS, DataConfig, read_image
from .errors import ConfigError, DataError

__all__ = ["Prediction", "find_images", "predict"]


@dataclass
class Prediction:
    """The ``top_k`` classes of one image, most probable first: ``(class name, class index, probability)``."""

    image: str
    top_k: list[tuple[str, int, float]] = field(default_factory=list)

    def to_dict(self) -> dict[str, object]:
        return {"image": self.image, "top_k": [{"class": name, "index": index, "probability": probability}
                                               for name, index, probability in self.top_k]}


def find_images(sources: Sequence[str | os.PathLike]) -> list[Path]:
    """Image files named by ``sources``: files as given, folders searched recursively for image files (sorted).

    Raises:
        DataError: a source that does not exist, or no image found at all.
    """
    found: list[Path] = []
    for source in sources:
        path = Path(source)
        if path.is_dir():
            found += sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS
                            and not any(part.startswith(".") for part in p.relative_to(path).parts))
        elif path.is_file():
            found.append(path)
        else:
            raise DataError(f"image or folder not found: {path}")
    if not found:
        raise DataError(f"no image files ({', '.join(IMAGE_EXTENSIONS)}) in {', '.join(map(str, sources))}")
    return found


@torch.no_grad()
def predict(
    model: nn.Module,
    images: Iterable[str | os.PathLike],
    *,
    data_config: DataConfig | None = None,
    top_k: int = 5,
    batch_size: int = 64,
    device: torch.device | str = "cpu",
) -> list[Prediction]:
    """Top-``top_k`` classes and softmax probabilities of each image file.

    Args:
        model: a classifier (put in eval mode here).
        images: image file paths.
        data_config: the preprocessing; default ``model.data_config``. Its ``class_names`` name the classes (else
            the class index is the name).
        top_k: how many classes per image (at most the number of classes).
        batch_size: images per forward pass.

    Raises:
        ConfigError: no data config, or ``top_k`` < 1.
        DataError: an unreadable image (the message names it).
    """
    config = data_config if data_config is not None else getattr(model, "data_config", None)
    if config is None:
        raise ConfigError("the model has no data config: give data_config (input size, mean, std) to prepare images")
    if top_k < 1:
        raise ConfigError(f"top_k must be >= 1, got {top_k}")
    preprocess = config.eval_transform()
    model = model.eval().to(device)
    paths = [Path(p) for p in images]
    predictions = []
    for start in range(0, len(paths), batch_size):
        batch = paths[start:start + batch_size]
        inputs = torch.stack([preprocess(read_image(path)) for path in batch]).to(device)  # (B, C, H, W)
        probabilities = model(inputs).float().softmax(dim=1)  # (B, classes)
        k = min(top_k, probabilities.shape[1])
        values, indices = probabilities.topk(k, dim=1)
        names = config.class_names
        for path, row_values, row_indices in zip(batch, values.tolist(), indices.tolist()):
            predictions.append(Prediction(str(path), [
                (names[i] if names is not None and i < len(names) else str(i), i, p)
                for p, i in zip(row_values, row_indices)
            ]))
    return predictions
