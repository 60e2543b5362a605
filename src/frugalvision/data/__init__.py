"""Datasets: the embedded ``mnist5k`` sample, MNIST idx files, CIFAR-10/100, ImageNet folders and synthetic data.

Every dataset yields ``(image, label)`` pairs: a normalised float32 (C, H, W) tensor and an int. Build one with
:func:`build_dataset`; :data:`DATASETS` describes them (classes, shapes, normalisation constants, splits).
"""

from .config import DataConfig
from .datasets import MNIST5K_JSON, MNIST5K_NPZ, FakeDataset, InMemoryImageDataset, build_dataset, load_mnist5k
from .idx import load_mnist_split, read_idx
from .info import DATASETS, DataError, DatasetInfo, dataset_info
from .transforms import RandomAffine, RandomCropFlip

__all__ = [
    "DATASETS",
    "MNIST5K_JSON",
    "MNIST5K_NPZ",
    "DataConfig",
    "DataError",
    "DatasetInfo",
    "FakeDataset",
    "InMemoryImageDataset",
    "RandomAffine",
    "RandomCropFlip",
    "build_dataset",
    "dataset_info",
    "load_mnist5k",
    "load_mnist_split",
    "read_idx",
]
