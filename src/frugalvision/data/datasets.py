"""Dataset construction: the embedded mnist5k sample, MNIST idx files, CIFAR, ImageNet, image folders, fake data."""

from __future__ import annotations

import functools
import math
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import Dataset

from ..errors import one_line
from .config import DataConfig
from .folder import ImageFolderDataset
from .idx import load_mnist_split
from .info import DataError, dataset_info
from .memory import InMemoryImageDataset
from .transforms import tensor_train_transform, timm_train_transform

__all__ = ["MNIST5K_JSON", "MNIST5K_NPZ", "FakeDataset", "build_dataset", "load_mnist5k"]

MNIST5K_NPZ = Path(__file__).resolve().parent / "mnist5k.npz"
MNIST5K_JSON = Path(__file__).resolve().parent / "mnist5k.json"

_CIFAR_FOLDERS = {"cifar10": "cifar-10-batches-py", "cifar100": "cifar-100-python"}


class FakeDataset(Dataset):
    """Deterministic synthetic images: a smooth per-class pattern plus Gaussian noise.

    Item ``i`` of a split is generated from a seed made of the split name and ``i``, so it is the same on every call
    and in every process; the class patterns depend only on the class, so what a model learns on ``"train"``
    transfers to ``"val"``.

    Args:
        size: number of items.
        num_classes: number of labels.
        input_size: (C, H, W) of the images.
        split: split name; any string.
        noise: standard deviation of the per-item noise (the patterns have unit variance).
    """

    def __init__(
        self,
        size: int = 1024,
        num_classes: int = 10,
        input_size: Sequence[int] = (3, 32, 32),
        split: str = "train",
        noise: float = 0.5,
    ) -> None:
        if size < 0 or num_classes < 1 or len(input_size) != 3 or min(input_size) < 1:
            raise DataError(f"bad fake dataset: size={size}, num_classes={num_classes}, input_size={input_size}")
        self.size = int(size)
        self.num_classes = int(num_classes)
        self.input_size = tuple(int(v) for v in input_size)
        self.split = split
        self.noise = float(noise)
        # Keep the class patterns only while they stay small (16M floats); recompute them otherwise.
        self._patterns: dict[int, Tensor] | None = {} if num_classes * math.prod(self.input_size) <= 2**24 else None

    def __len__(self) -> int:
        return self.size

    def _pattern(self, label: int) -> Tensor:
        """The class pattern: 4x4 Gaussian noise per channel, bilinearly upsampled; independent of the split."""
        if self._patterns is not None and label in self._patterns:
            return self._patterns[label]
        c, h, w = self.input_size
        g = torch.Generator().manual_seed(1_000_003 * (label + 1))
        coarse = torch.randn(1, c, 4, 4, generator=g)
        pattern = F.interpolate(coarse, size=(h, w), mode="bilinear", align_corners=False)[0]
        if self._patterns is not None:
            self._patterns[label] = pattern
        return pattern

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        if not 0 <= index < self.size:
            raise IndexError(f"index {index} out of range for a fake dataset of {self.size} items")
        # torch's CPU generator keeps only 32 bits of a seed, so hash split and index together into 32 bits.
        g = torch.Generator().manual_seed(zlib.crc32(f"{self.split}/{index}".encode()))
        label = int(torch.randint(self.num_classes, (1,), generator=g))
        x = torch.randn(self.input_size, generator=g).mul_(self.noise).add_(self._pattern(label))
        return x, label


@functools.lru_cache(maxsize=1)
def load_mnist5k() -> dict[str, np.ndarray]:
    """Loads the embedded mnist5k arrays (read-only): ``train_images`` (4500, 28, 28) uint8, ``train_labels``,
    ``val_images`` (500, 28, 28), ``val_labels``, and the source-row indices ``train_source_rows``/``val_source_rows``.
    """
    with np.load(MNIST5K_NPZ, allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    for arr in arrays.values():
        arr.setflags(write=False)
    return arrays


def _check_split(name: str, split: str, valid: Sequence[str]) -> None:
    if split not in valid:
        raise DataError(f"dataset {name!r} has no split {split!r}; valid splits: {', '.join(valid)}")


def _require_dir(name: str, data_dir: str | Path | None) -> Path:
    if data_dir is None:
        raise DataError(f"dataset {name!r} needs a data folder (data_dir / --data-dir)")
    return Path(data_dir).expanduser()


def _uint8_images(array: np.ndarray, channels_last: bool) -> Tensor:
    """(N, H, W) or (N, H, W, C) uint8 numpy array -> contiguous (N, C, H, W) uint8 tensor."""
    array = np.ascontiguousarray(array)
    if not array.flags.writeable:  # np.frombuffer / cached arrays: torch wants writable memory
        array = array.copy()
    t = torch.from_numpy(array)
    t = t.permute(0, 3, 1, 2) if channels_last else t.unsqueeze(1)
    return t.contiguous()


def _build_mnist(data_dir: Path, split: str, download: bool) -> tuple[np.ndarray, np.ndarray]:
    file_split = "train" if split == "train" else "test"
    try:
        return load_mnist_split(data_dir, file_split)
    except DataError:
        if not download:
            raise
    from torchvision.datasets import MNIST

    try:
        # Downloads and unpacks the four idx files into data_dir/MNIST/raw.
        MNIST(str(data_dir), train=file_split == "train", download=True)
    except Exception as exc:  # network errors come in many types
        raise DataError(f"MNIST download into {data_dir} failed: {one_line(exc, with_type=True)}") from None
    return load_mnist_split(data_dir, file_split)


def _build_cifar(name: str, data_dir: Path, split: str, download: bool) -> tuple[np.ndarray, list[int]]:
    folder = data_dir / _CIFAR_FOLDERS[name]
    if not folder.is_dir() and not download:
        raise DataError(
            f"{name} not found: expected the folder {folder} (torchvision python layout); download=True fetches it"
        )
    from torchvision.datasets import CIFAR10, CIFAR100

    cls = CIFAR10 if name == "cifar10" else CIFAR100
    try:
        # torchvision unpickles the batch files: pickle is CIFAR's own distribution format.
        ds = cls(str(data_dir), train=split == "train", download=download)
    except Exception as exc:  # torchvision raises RuntimeError for corrupt data, URLError etc. when downloading
        raise DataError(f"cannot load {name} from {folder}: {one_line(exc, with_type=True)}") from None
    return ds.data, list(ds.targets)


def _built_in_config(name: str, data_config: DataConfig | None, input_size: Sequence[int] | None,
                     mean: Sequence[float] | None, std: Sequence[float] | None) -> DataConfig:
    """The dataset's own :class:`DataConfig`, or ``data_config``, with the given overrides; the input size of a
    dataset held as fixed-size arrays (MNIST, CIFAR) cannot change."""
    info = dataset_info(name)
    config = data_config if data_config is not None else info.data_config()
    overrides = {k: tuple(v) for k, v in (("input_size", input_size), ("mean", mean), ("std", std)) if v is not None}
    if overrides:
        config = config.replace(**overrides)
    if name != "imagenet" and config.input_size != info.input_size:
        raise DataError(f"{name} images are {info.input_size}, not {config.input_size}; to train at another size, "
                        "put the images in a folder and use --dataset folder")
    return config


def build_dataset(
    name: str,
    split: str,
    data_dir: str | Path | None = None,
    *,
    augment: bool = False,
    download: bool = False,
    data_config: DataConfig | None = None,
    input_size: Sequence[int] | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    fake_size: int = 1024,
    fake_num_classes: int = 10,
    fake_input_size: Sequence[int] = (3, 32, 32),
    randaugment: str | None = None,
    reprob: float = 0.0,
) -> Dataset:
    """Builds a dataset yielding ``(image, label)``: a normalised float32 (C, H, W) tensor and an int.

    Args:
        name: one of ``DATASETS``: ``mnist5k``, ``mnist``, ``cifar10``, ``cifar100``, ``imagenet``, ``folder``,
            ``fake``.
        split: ``"train"`` or ``"val"`` for every dataset. ``mnist``, CIFAR and ``folder`` also take ``"test"`` (for
            MNIST and CIFAR the same data as ``"val"``); ``mnist5k`` has no test split (use ``mnist``); ``fake`` takes
            any name.
        data_dir: folder of the real datasets: MNIST idx files (directly or under ``MNIST/raw``), the CIFAR python
            folders, ImageNet's ``train``/``val`` folders, or an image folder ``DIR/{train,val,test}/CLASS/*``.
            Ignored by ``mnist5k`` and ``fake``.
        augment: training augmentation; applied to the ``"train"`` split only, ignored for evaluation splits.
        download: let torchvision fetch MNIST or CIFAR into ``data_dir`` if missing. Never downloads otherwise.
        data_config: preprocessing to use instead of the dataset's own (e.g. a run's stored config). For ``folder``
            it also fixes the class names; without it a folder's config is computed from ``DIR/train``
            (:func:`frugalvision.data.folder_data_config`) and is available as the dataset's ``data_config``.
            MNIST and CIFAR take its mean and std (their size is fixed); ``fake`` ignores it.
        input_size: (C, H, W) override (``folder``, ``imagenet``).
        mean: per-channel mean override.
        std: per-channel standard deviation override.
        fake_size: number of items of the ``fake`` dataset.
        fake_num_classes: classes of the ``fake`` dataset.
        fake_input_size: (C, H, W) of the ``fake`` dataset.
        randaugment: timm RandAugment policy string (ImageNet training only), e.g. ``"rand-m7-mstd0.5-inc1"``.
        reprob: timm random-erasing probability (ImageNet training only).

    Returns:
        A map-style ``torch.utils.data.Dataset``; for ``folder`` an
        :class:`~frugalvision.data.folder.ImageFolderDataset` with ``data_config`` and ``classes``.

    Raises:
        DataError: (a ``ValueError``) unknown name or split, missing or malformed files; the message is one line.
    """
    info = dataset_info(name)
    train_aug = augment and split == "train"
    if (randaugment or reprob) and name != "imagenet":
        raise DataError(f"randaugment / reprob are ImageNet augmentations; {name} has its own (augment=True)")

    if name == "fake":
        return FakeDataset(fake_size, fake_num_classes, fake_input_size, split)

    if name == "folder":
        return ImageFolderDataset(data_dir, split, data_config, input_size=input_size, mean=mean, std=std,
                                  augment=augment)

    config = _built_in_config(name, data_config, input_size, mean, std)
    if name == "mnist5k":
        if split == "test":
            raise DataError(
                "mnist5k has no test split (it is a sample of the MNIST training set); "
                "evaluate on its 'val' split or on the MNIST test set with --dataset mnist"
            )
        _check_split(name, split, info.splits)
        arrays = load_mnist5k()
        images, labels = arrays[f"{split}_images"], arrays[f"{split}_labels"]
        transform = tensor_train_transform(name) if train_aug else None
        return InMemoryImageDataset(_uint8_images(images, False), labels.tolist(), config.mean, config.std, transform)

    _check_split(name, split, info.splits)
    root = _require_dir(name, data_dir)

    if name == "mnist":
        images, labels = _build_mnist(root, split, download)
        transform = tensor_train_transform(name) if train_aug else None
        return InMemoryImageDataset(_uint8_images(images, False), labels.tolist(), config.mean, config.std, transform)

    if name in _CIFAR_FOLDERS:
        images, targets = _build_cifar(name, root, split, download)
        transform = tensor_train_transform(name) if train_aug else None
        return InMemoryImageDataset(_uint8_images(images, True), targets, config.mean, config.std, transform)

    # imagenet
    folder = root / split
    if not folder.is_dir():
        raise DataError(f"imagenet {split} folder not found: expected {folder} with one sub-folder per class")
    from torchvision.datasets import ImageFolder

    if train_aug and (randaugment or reprob):
        transform = timm_train_transform(config.input_size[1:], config.mean, config.std, randaugment=randaugment,
                                         reprob=reprob)
    else:
        transform = config.train_transform() if train_aug else config.eval_transform()
    try:
        return ImageFolder(str(folder), transform=transform)
    except (OSError, FileNotFoundError) as exc:
        raise DataError(f"cannot read imagenet {split} folder {folder}: {one_line(exc, with_type=True)}") from None
