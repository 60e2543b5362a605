"""Dataset descriptions (classes, shapes, normalisation) and the data error type.

A built-in dataset's facts are static (:data:`DATASETS`); an image folder's (``"folder"``) come from its files: its
``DatasetInfo`` fields are ``None`` and :func:`frugalvision.data.folder_data_config` (or a built folder dataset's
``data_config``) gives them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from ..errors import DataError
from .config import DataConfig

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
        crop: evaluation resize/crop policy (see :class:`DataConfig`).
        crop_pct: centre-crop fraction (``crop="center"``).
        class_names: class names in label order, where known.

    ``num_classes``, ``in_chans``, ``input_size``, ``mean`` and ``std`` are ``None`` for ``"folder"``, whose facts
    depend on the files.
    """

    name: str
    num_classes: int | None
    in_chans: int | None
    input_size: tuple[int, int, int] | None
    mean: tuple[float, ...] | None
    std: tuple[float, ...] | None
    splits: tuple[str, ...]
    description: str = ""
    crop: str = "none"
    crop_pct: float = 1.0
    class_names: tuple[str, ...] | None = None

    def data_config(self) -> DataConfig:
        """The preprocessing of this dataset as a :class:`DataConfig` (what a run on it stores).

        Raises:
            DataError: for ``"folder"``, whose config comes from its files (``folder_data_config(data_dir)``).
        """
        if self.input_size is None or self.mean is None or self.std is None:
            raise DataError(f"the {self.name} dataset's input size, mean/std and classes come from its files: "
                            "use frugalvision.data.folder_data_config(data_dir) or the built dataset's data_config")
        return DataConfig(self.input_size, self.mean, self.std, crop=self.crop, crop_pct=self.crop_pct,
                          num_classes=self.num_classes, class_names=self.class_names)


_MNIST_MEAN = (0.1307,)
_MNIST_STD = (0.3081,)
# Official AdderNet main.py (CIFAR-10) constants; its CIFAR-100 script uses the same ones.
_CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
_CIFAR_STD = (0.2023, 0.1994, 0.2010)
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)
_DIGITS = tuple(str(d) for d in range(10))
_CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
# CIFAR-100 fine labels in label order (alphabetical), as listed in the dataset's "meta" file.
_CIFAR100_CLASSES = tuple("""
    apple aquarium_fish baby bear beaver bed bee beetle bicycle bottle bowl boy bridge bus butterfly camel can castle
    caterpillar cattle chair chimpanzee clock cloud cockroach couch crab crocodile cup dinosaur dolphin elephant
    flatfish forest fox girl hamster house kangaroo keyboard lamp lawn_mower leopard lion lizard lobster man maple_tree
    motorcycle mountain mouse mushroom oak_tree orange orchid otter palm_tree pear pickup_truck pine_tree plain plate
    poppy porcupine possum rabbit raccoon ray road rocket rose sea seal shark shrew skunk skyscraper snail snake spider
    squirrel streetcar sunflower sweet_pepper table tank telephone television tiger tractor train trout tulip turtle
    wardrobe whale willow_tree wolf woman worm
""".split())

DATASETS: Mapping[str, DatasetInfo] = MappingProxyType(
    {
        "mnist5k": DatasetInfo(
            "mnist5k", 10, 1, (1, 28, 28), _MNIST_MEAN, _MNIST_STD, ("train", "val"),
            "5,000 MNIST training digits shipped with frugalvision (4,500 train / 500 val)", class_names=_DIGITS,
        ),
        "mnist": DatasetInfo(
            "mnist", 10, 1, (1, 28, 28), _MNIST_MEAN, _MNIST_STD, ("train", "val", "test"),
            "MNIST from torchvision raw idx files (val = test = t10k)", class_names=_DIGITS,
        ),
        "cifar10": DatasetInfo(
            "cifar10", 10, 3, (3, 32, 32), _CIFAR_MEAN, _CIFAR_STD, ("train", "val", "test"),
            "CIFAR-10, torchvision python layout (val = test)", class_names=_CIFAR10_CLASSES,
        ),
        "cifar100": DatasetInfo(
            "cifar100", 100, 3, (3, 32, 32), _CIFAR_MEAN, _CIFAR_STD, ("train", "val", "test"),
            "CIFAR-100, torchvision python layout (val = test)", class_names=_CIFAR100_CLASSES,
        ),
        "imagenet": DatasetInfo(
            "imagenet", 1000, 3, (3, 224, 224), _IMAGENET_MEAN, _IMAGENET_STD, ("train", "val"),
            "ImageNet-1k image folders data_dir/train and data_dir/val", crop="center", crop_pct=0.875,
        ),
        "fake": DatasetInfo(
            "fake", 10, 3, (3, 32, 32), (0.0, 0.0, 0.0), (1.0, 1.0, 1.0), ("train", "val", "test"),
            "synthetic class-dependent patterns of any size (any split name; shape and classes configurable)",
        ),
        "folder": DatasetInfo(
            "folder", None, None, None, None, None, ("train", "val", "test"),
            "your images: data_dir/{train,val[,test]}/CLASS/*.{jpg,png,bmp,webp}, any size, greyscale or RGB",
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
