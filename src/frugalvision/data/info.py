"""Dataset descriptions (classes, shapes, normalisation) and the data error type."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from ..errors import DataError

__all__ = ["DATASETS", "DataError", "DatasetInfo", "dataset_info"]


@dataclass(frozen=True)
class DatasetInfo:
    """Static facts about a dataset.

    Attributes:
        name: registry name, as accepted by ``build_dataset`` and ``--dataset``.
        num_classes: number of labels.
        in_chans: image channels.
        input_size: (C, H, W) of the tensors the dataset yields (evaluation transform for ImageNet).
        mean: per-channel normalisation mean (on the 0..1 scale).
        std: per-channel normalisation standard deviation.
        splits: split names ``build_dataset`` accepts; ``"val"`` always works and is the split to evaluate on.
        description: one line for help texts.
    """

    name: str
    num_classes: int
    in_chans: int
    input_size: tuple[int, int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    splits: tuple[str, ...]
    description: str = ""


_MNIST_MEAN = (0.1307,)
_MNIST_STD = (0.3081,)
# Official AdderNet main.py (CIFAR-10) constants; its CIFAR-100 script uses the same ones.
_CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
_CIFAR_STD = (0.2023, 0.1994, 0.2010)
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)

DATASETS: Mapping[str, DatasetInfo] = MappingProxyType(
    {
        "mnist5k": DatasetInfo(
            "mnist5k", 10, 1, (1, 28, 28), _MNIST_MEAN, _MNIST_STD, ("train", "val"),
            "5,000 MNIST training digits shipped with frugalvision (4,500 train / 500 val)",
        ),
        "mnist": DatasetInfo(
            "mnist", 10, 1, (1, 28, 28), _MNIST_MEAN, _MNIST_STD, ("train", "val", "test"),
            "MNIST from torchvision raw idx files (val = test = t10k)",
        ),
        "cifar10": DatasetInfo(
            "cifar10", 10, 3, (3, 32, 32), _CIFAR_MEAN, _CIFAR_STD, ("train", "val", "test"),
            "CIFAR-10, torchvision python layout (val = test)",
        ),
        "cifar100": DatasetInfo(
            "cifar100", 100, 3, (3, 32, 32), _CIFAR_MEAN, _CIFAR_STD, ("train", "val", "test"),
            "CIFAR-100, torchvision python layout (val = test)",
        ),
        "imagenet": DatasetInfo(
            "imagenet", 1000, 3, (3, 224, 224), _IMAGENET_MEAN, _IMAGENET_STD, ("train", "val"),
            "ImageNet-1k image folders data_dir/train and data_dir/val",
        ),
        "fake": DatasetInfo(
            "fake", 10, 3, (3, 32, 32), (0.0, 0.0, 0.0), (1.0, 1.0, 1.0), ("train", "val", "test"),
            "synthetic class-dependent patterns of any size (any split name; shape and classes configurable)",
        ),
    }
)


def dataset_info(name: str) -> DatasetInfo:
    """Returns the ``DatasetInfo`` of a registered dataset.

    Args:
        name: dataset name, e.g. ``"mnist5k"``.

    Raises:
        DataError: (a ``ValueError``) for an unknown name; the message lists the valid names.
    """
    try:
        return DATASETS[name]
    except (KeyError, TypeError):
        raise DataError(f"unknown dataset {name!r}; valid names: {', '.join(DATASETS)}") from None
