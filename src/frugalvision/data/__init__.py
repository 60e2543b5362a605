"""Datasets: the embedded ``mnist5k`` sample, MNIST idx files, CIFAR-10/100, ImageNet, image folders and fake data.

Every dataset yields ``(image, label)`` pairs: a normalised float32 (C, H, W) tensor and an int. Build one with
:func:`build_dataset`; :data:`DATASETS` describes them (classes, shapes, normalisation constants, splits).
:class:`DataConfig` is how images are prepared for a model (size, mean/std, crop policy, classes); its
:meth:`~DataConfig.eval_transform` is the one evaluation preprocessing. An image folder's config comes from its
training split (:func:`folder_data_config`).
"""

from .config import DataConfig
from .datasets import MNIST5K_JSON, MNIST5K_NPZ, FakeDataset, build_dataset, load_mnist5k
from .folder import IMAGE_EXTENSIONS, ImageFolderDataset, folder_data_config, read_image
from .idx import load_mnist_split, read_idx
from .info import DATASETS, DataError, DatasetInfo, dataset_info
from .memory import InMemoryImageDataset
from .transforms import RandomAffine, RandomCropFlip

__all__ = [
    "DATASETS",
    "IMAGE_EXTENSIONS",
    "MNIST5K_JSON",
    "MNIST5K_NPZ",
    "DataConfig",
    "DataError",
    "DatasetInfo",
    "FakeDataset",
    "ImageFolderDataset",
    "InMemoryImageDataset",
    "RandomAffine",
    "RandomCropFlip",
    "build_dataset",
    "dataset_info",
    "folder_data_config",
    "load_mnist5k",
    "load_mnist_split",
    "read_idx",
    "read_image",
]
