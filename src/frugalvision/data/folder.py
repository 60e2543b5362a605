"""Image-folder datasets: ``DIR/<split>/<CLASS>/<image>`` at any image size, greyscale or RGB.

Layout: ``DIR/train``, ``DIR/val`` and optionally ``DIR/test``, each with one sub-folder per class. Class names are
the sub-folder names, sorted; labels are their positions. Images are the files with extension jpg, jpeg, png, bmp or
webp (any case) directly inside a class folder; hidden files and folders (name starting with ".") and files with
other extensions are ignored. A command reads only the split it needs.

What the training split decides (:func:`folder_data_config`), unless given:

* input size: the images' own size when they all share one (channels: 3 if any image is in colour, else 1); with
  mixed sizes a :class:`~frugalvision.errors.DataError` asks for ``input_size`` (``--input-size C H W``);
* per-channel mean and standard deviation of the training images *at the model input size* (after the evaluation
  resize and channel conversion), computed exactly: integer histograms of the 8-bit pixel values per channel, then
  ``mean = S1 / (255 n)`` and ``std = sqrt(n S2 - S1^2) / (255 n)`` in Python integers (population std);
* class names.

Other splits must hold the same class folders as the training classes (a one-line error names the difference); their
images are resized to the input size by the same evaluation preprocessing.

Validation: every image of a split is decoded fully once when the dataset is built, so a truncated, corrupt or
non-image file stops the command before anything is trained or written, with a one-line error naming the file.
Small inputs (larger side <= 64 pixels, e.g. CIFAR's 32x32) are kept from that pass in memory as one uint8 tensor at
the input size, which makes an epoch as fast as the built-in CIFAR dataset; larger images are read from disk again at
each access (the verification pass costs about one extra epoch of decoding).
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from ..errors import DataError, one_line
from .config import DataConfig
from .memory import InMemoryImageDataset

__all__ = [
    "FOLDER_SPLITS",
    "IMAGE_EXTENSIONS",
    "FolderSplit",
    "ImageFolderDataset",
    "folder_data_config",
    "read_image",
    "scan_split",
]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
FOLDER_SPLITS = ("train", "val", "test")
# Largest uint8 tensor (N * C * H * W bytes) an image folder keeps in memory when the input is small.
IN_MEMORY_BYTES = 2**30
_EXIF_FORMATS = ("JPEG", "MPO", "WEBP")  # formats whose EXIF orientation is read (a PNG's may need a full decode)
_ORIENTATION_TAG = 0x0112


@dataclass(frozen=True)
class FolderSplit:
    """The files of one split: ``root`` = ``DIR/<split>``, sorted ``classes``, ``samples`` = (path, class index)."""

    root: Path
    classes: tuple[str, ...]
    samples: tuple[tuple[Path, int], ...]


def _visible(path: Path) -> bool:
    return not path.name.startswith(".")


def _data_root(data_dir: str | Path | None) -> Path:
    if data_dir is None:
        raise DataError("the folder dataset needs its folder: data_dir / --data-dir DIR holding DIR/train/CLASS/*")
    root = Path(data_dir).expanduser()
    if not root.is_dir():
        raise DataError(f"data folder {root} not found (expected {root}/train/CLASS/*, {root}/val/CLASS/*)")
    return root


def scan_split(data_dir: str | Path, split: str) -> FolderSplit:
    """Lists the classes and image files of ``DIR/<split>`` (no image is opened).

    Raises:
        DataError: unknown split name, missing folder, no or only one class folder, a class folder without images.
    """
    if split not in FOLDER_SPLITS:
        raise DataError(f"the folder dataset has no split {split!r}; valid splits: {', '.join(FOLDER_SPLITS)}")
    root = _data_root(data_dir) / split
    if not root.is_dir():
        raise DataError(f"split folder {root} not found (expected {root}/CLASS/* with one folder per class)")
    class_dirs = sorted((p for p in root.iterdir() if p.is_dir() and _visible(p)), key=lambda p: p.name)
    if not class_dirs:
        found = sum(1 for p in root.iterdir() if _visible(p))
        detail = f" (it holds {found} file(s) but no folder)" if found else " (it is empty)"
        raise DataError(f"{root} has no class folders{detail}: expected {root}/CLASS/IMAGE, one folder per class")
    if len(class_dirs) == 1:
        raise DataError(f"{root} has one class folder ({class_dirs[0].name}); a classifier needs at least two: "
                        f"{root}/CLASS_A/*, {root}/CLASS_B/*, ...")
    samples: list[tuple[Path, int]] = []
    for label, class_dir in enumerate(class_dirs):
        with os.scandir(class_dir) as entries:  # DirEntry.is_file() needs no extra system call on most systems
            files = sorted(class_dir / e.name for e in entries if not e.name.startswith(".")
                           and os.path.splitext(e.name)[1].lower() in IMAGE_EXTENSIONS and e.is_file())
        if not files:
            raise DataError(f"class folder {class_dir} holds no images ({', '.join(IMAGE_EXTENSIONS)})")
        samples.extend((path, label) for path in files)
    return FolderSplit(root, tuple(p.name for p in class_dirs), tuple(samples))


def _oriented(image, size: tuple[int, int]) -> tuple[int, int]:
    """(height, width) after the EXIF rotation that :func:`read_image` applies."""
    w, h = size
    if image.format in _EXIF_FORMATS and image.getexif().get(_ORIENTATION_TAG, 1) in (5, 6, 7, 8):
        return w, h  # rotated by 90 degrees
    return h, w


def _header(path: Path) -> tuple[int, int, bool]:
    """(height, width, colour) of an image file from its header, without decoding the pixels."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            h, w = _oriented(image, image.size)
            colour = image.mode not in ("1", "L", "LA", "La", "F") and not image.mode.startswith("I")
            return h, w, colour
    except Exception as exc:  # PIL raises many types (UnidentifiedImageError, SyntaxError, struct.error, ...)
        raise DataError(f"cannot read image {path}: {one_line(exc, limit=200)}") from None


def read_image(path: str | Path):
    """Opens and fully decodes an image file (EXIF orientation applied for JPEG and WebP) -> ``PIL.Image``.

    Decoding everything at once is what catches a truncated file: PIL reads pixels lazily and would otherwise fail
    (or, with ``ImageFile.LOAD_TRUNCATED_IMAGES``, silently fill grey) later.

    Raises:
        DataError: a missing, unreadable, truncated or non-image file; the message names the file.
    """
    from PIL import Image, ImageOps

    path = Path(path)
    try:
        with Image.open(path) as image:
            image.load()
            # A new image either way: closing the file destroys the decoded one.
            return ImageOps.exif_transpose(image) if image.format in _EXIF_FORMATS else image.copy()
    except Exception as exc:
        raise DataError(f"cannot read image {path}: {one_line(exc, limit=200)}") from None


def _detect_input_size(split: FolderSplit) -> tuple[int, int, int]:
    """The size every image of ``split`` shares, with 3 channels if any is in colour; mixed sizes are an error."""
    sizes: dict[tuple[int, int], Path] = {}
    colour = False
    for path, _ in split.samples:
        h, w, is_colour = _header(path)
        colour |= is_colour
        if (h, w) not in sizes:
            sizes[(h, w)] = path
            if len(sizes) > 1:
                (s1, p1), (s2, p2) = list(sizes.items())[:2]
                raise DataError(
                    f"images in {split.root} have different sizes ({p1.relative_to(split.root)}: {s1[0]}x{s1[1]}, "
                    f"{p2.relative_to(split.root)}: {s2[0]}x{s2[1]}); give the model input size with "
                    f"--input-size C H W (input_size=(C, H, W))"
                )
    ((h, w),) = sizes
    return (3 if colour else 1), h, w


def _workers(config: DataConfig) -> int:
    """Decoding threads: one for small images (Python overhead dominates: measured 1.6 s for 9,000 32x32 JPEGs
    with one thread, 2.5 s with two), up to four for large ones (PIL releases the GIL while decoding)."""
    if config.is_small:
        return 1
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, min(4, cpus))


def _decode_split(split: FolderSplit, config: DataConfig, *, keep: bool, histogram: bool
                  ) -> tuple[Tensor | None, np.ndarray | None]:
    """Decodes every image of ``split`` once (the validation pass).

    Returns the uint8 (N, C, H, W) tensor at the input size when ``keep``, and the per-channel histograms of the
    8-bit values at the input size, an int64 (C, 256) array, when ``histogram``.
    """
    to_uint8 = config.eval_transform().to_uint8
    channels, height, width = config.input_size
    images = torch.empty(len(split.samples), channels, height, width, dtype=torch.uint8) if keep else None
    counts = np.zeros((channels, 256), dtype=np.int64) if histogram else None

    per_image_histograms = counts is not None and images is None

    def work(index: int) -> np.ndarray | None:
        pixels = to_uint8(read_image(split.samples[index][0]))  # (C, H, W) uint8
        if images is not None:
            images[index] = pixels
        if not per_image_histograms:
            return None
        flat = pixels.numpy().reshape(channels, -1)
        return np.stack([np.bincount(flat[c], minlength=256) for c in range(channels)])

    workers = _workers(config)
    # Threads: PIL releases the GIL while decoding. map() keeps the order, so the first bad file raises first.
    with ThreadPoolExecutor(workers) if workers > 1 else _Serial() as pool:
        for hist in pool.map(work, range(len(split.samples))):
            if hist is not None:
                counts += hist
    if counts is not None and images is not None:  # one pass over the kept tensor
        per_channel = images.transpose(0, 1).reshape(channels, -1).numpy()  # (C, N*H*W)
        for c in range(channels):
            counts[c] = np.bincount(per_channel[c], minlength=256)
    return images, counts


class _Serial:
    """A stand-in for ThreadPoolExecutor that maps in the calling thread."""

    def __enter__(self) -> _Serial:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    @staticmethod
    def map(fn, items):
        return map(fn, items)


def _statistics(counts: np.ndarray, root: Path) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Exact per-channel mean and population std on the 0..1 scale from (C, 256) histograms of 8-bit values."""
    values = np.arange(256, dtype=np.int64)
    means, stds = [], []
    for channel, hist in enumerate(counts):
        n = int(hist.sum())
        s1 = int((hist * values).sum())
        s2 = int((hist * values * values).sum())
        spread = n * s2 - s1 * s1  # n^2 * 255^2 * variance, an exact integer
        if spread <= 0:
            raise DataError(f"channel {channel} of the training images in {root} is constant (std 0); give --std")
        means.append(s1 / (255.0 * n))
        stds.append(math.sqrt(spread) / (255.0 * n))
    return tuple(means), tuple(stds)


def _placeholder(input_size: Sequence[int]) -> DataConfig:
    """A config with the geometry only (normalisation not known yet)."""
    channels = int(input_size[0]) if len(input_size) else 0
    return DataConfig(tuple(input_size), (0.0,) * channels, (1.0,) * channels)


def _check_channels(input_size: Sequence[int] | None) -> None:
    if input_size is not None and (len(input_size) != 3 or input_size[0] not in (1, 3)):
        raise DataError(f"input size {tuple(input_size)} must be (C, H, W) with C = 1 (greyscale) or 3 (RGB)")


def _resolve_config(data_dir: str | Path, split: str, data_config: DataConfig | None,
                    input_size: Sequence[int] | None, mean: Sequence[float] | None, std: Sequence[float] | None,
                    keep_train: bool) -> tuple[DataConfig, FolderSplit | None, bool, Tensor | None]:
    """The config of a folder dataset: ``data_config`` with overrides, or computed from the training split.

    Returns the config, the scanned training split (when it was read), whether the statistics pass decoded (and so
    validated) every training image, and those images as uint8 (when ``keep_train`` and they fit in memory), so that
    building the training split decodes once.
    """
    _check_channels(input_size)
    overrides = {k: tuple(v) for k, v in (("input_size", input_size), ("mean", mean), ("std", std)) if v is not None}
    if data_config is not None:
        return (data_config.replace(**overrides) if overrides else data_config), None, False, None
    root = _data_root(data_dir)
    train_dir = root / "train"
    if not train_dir.is_dir():
        missing = [name for name, value in (("mean", mean), ("std", std)) if value is None]
        if missing:
            raise DataError(
                f"{train_dir} not found: a folder dataset's {' and '.join(missing)} come from its training split; "
                f"evaluate a checkpoint trained on it (its config has them) or give --mean and --std"
            )
        if input_size is None:  # no training split: the split itself must show one size
            input_size = _detect_input_size(scan_split(root, split))
        return DataConfig(tuple(input_size), tuple(mean), tuple(std)), None, False, None
    train = scan_split(root, "train")
    if input_size is None:
        input_size = _detect_input_size(train)
    geometry = _placeholder(input_size)
    kept, decoded = None, False
    if mean is None or std is None:
        keep = keep_train and _fits_memory(geometry, len(train.samples))
        kept, counts = _decode_split(train, geometry, keep=keep, histogram=True)
        decoded = True
        found_mean, found_std = _statistics(counts, train.root)
        mean = found_mean if mean is None else mean
        std = found_std if std is None else std
    config = DataConfig(tuple(input_size), tuple(mean), tuple(std), class_names=train.classes)
    return config, train, decoded, kept


def _fits_memory(config: DataConfig, count: int) -> bool:
    return config.is_small and count * math.prod(config.input_size) <= IN_MEMORY_BYTES


def folder_data_config(data_dir: str | Path, *, input_size: Sequence[int] | None = None,
                       mean: Sequence[float] | None = None, std: Sequence[float] | None = None) -> DataConfig:
    """The :class:`DataConfig` of an image folder, from its training split ``DIR/train``.

    Input size: ``input_size`` or the size all training images share; mean and std: given or computed on the
    training images at that size (one decoding pass over ``DIR/train``); class names: the training class folders.
    Crop policy ``"none"`` (images are resized to the input size), bilinear interpolation; change them with
    :meth:`DataConfig.replace`.

    Raises:
        DataError: a missing or malformed folder, mixed image sizes without ``input_size``, an unreadable image.
    """
    config, _, _, _ = _resolve_config(data_dir, "train", None, input_size, mean, std, keep_train=False)
    return config


class ImageFolderDataset(Dataset):
    """One split of an image folder, yielding ``(normalised float32 (C, H, W) tensor, int label)``.

    Args:
        data_dir: the folder holding ``train/``, ``val/`` (and ``test/``).
        split: ``"train"``, ``"val"`` or ``"test"``.
        data_config: the preprocessing (a run's stored config, or :func:`folder_data_config`'s); ``None`` computes
            it from ``DIR/train`` (then :attr:`data_config` holds the result). Its ``class_names`` fix the labels;
            without names, the split's own sorted class folders are used.
        input_size: (C, H, W) override; C must be 1 or 3.
        mean: per-channel mean override.
        std: per-channel std override.
        augment: training augmentation (:meth:`DataConfig.train_transform`); used on the ``"train"`` split only.
        in_memory: keep the decoded images as one uint8 tensor; default: when the input is small (<= 64 pixels) and
            the tensor fits in 1 GiB. Large inputs with augmentation need the originals (``False``).

    Attributes:
        data_config: the :class:`DataConfig` in use (with class names).
        classes: class names in label order; ``targets``: the labels; ``samples``: (path, label) pairs.

    Raises:
        DataError: one line naming the bad folder or file (see the module docstring).
    """

    def __init__(self, data_dir: str | Path | None, split: str, data_config: DataConfig | None = None, *,
                 input_size: Sequence[int] | None = None, mean: Sequence[float] | None = None,
                 std: Sequence[float] | None = None, augment: bool = False, in_memory: bool | None = None) -> None:
        if split not in FOLDER_SPLITS:
            raise DataError(f"the folder dataset has no split {split!r}; valid splits: {', '.join(FOLDER_SPLITS)}")
        root = _data_root(data_dir)
        config, train_scan, train_decoded, train_images = _resolve_config(
            root, split, data_config, input_size, mean, std, keep_train=split == "train" and in_memory is not False)
        own_train = split == "train" and train_scan is not None  # this split was read to make the config
        scan = train_scan if own_train else scan_split(root, split)
        if config.class_names is None:
            if config.num_classes is not None and config.num_classes != len(scan.classes):
                raise DataError(f"{scan.root} has {len(scan.classes)} class folders but the data config expects "
                                f"{config.num_classes} classes")
            config = config.replace(class_names=scan.classes)
        elif scan.classes != config.class_names:
            _raise_class_mismatch(scan, config.class_names)
        self.root, self.split, self.data_config = root, split, config
        self.classes = config.class_names
        self.class_to_idx = {name: i for i, name in enumerate(self.classes)}
        self.samples = list(scan.samples)
        self.targets = [label for _, label in self.samples]
        self.augment = augment and split == "train"

        fits = _fits_memory(config, len(self.samples))
        if in_memory and self.augment and not config.is_small:
            raise DataError(f"input size {config.input_size} is not small (> 64 pixels): its augmentation crops the "
                            "original images, so it cannot run from memory (in_memory=False)")
        self.in_memory = fits if in_memory is None else bool(in_memory)
        self._memory: InMemoryImageDataset | None = None
        if self.in_memory:
            images = train_images if own_train else None
            if images is None:
                images, _ = _decode_split(scan, config, keep=True, histogram=False)
            augmentation = config.train_transform().augment if self.augment else None
            self._memory = InMemoryImageDataset(images, self.targets, config.mean, config.std, augmentation)
            self.transform = None
        else:
            if not (own_train and train_decoded):
                _decode_split(scan, config, keep=False, histogram=False)  # validation pass
            self.transform = config.train_transform() if self.augment else config.eval_transform()

    @property
    def images(self) -> Tensor | None:
        """The uint8 (N, C, H, W) images when held in memory, else ``None``."""
        return self._memory.images if self._memory is not None else None

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        if self._memory is not None:
            return self._memory[index]
        path, label = self.samples[index]
        return self.transform(read_image(path)), label

    def __repr__(self) -> str:
        where = "in memory" if self.in_memory else "from disk"
        return (f"ImageFolderDataset({self.root / self.split}, {len(self)} images, {len(self.classes)} classes, "
                f"input {self.data_config.input_size}, {where}{', augmented' if self.augment else ''})")


def _raise_class_mismatch(scan: FolderSplit, expected: Sequence[str]) -> None:
    missing = [c for c in expected if c not in scan.classes]
    extra = [c for c in scan.classes if c not in expected]
    parts = []
    if missing:
        parts.append(f"missing {', '.join(missing)}")
    if extra:
        parts.append(f"extra {', '.join(extra)}")
    if not parts:  # same names, another order (a config whose names are not sorted)
        parts.append(f"order {', '.join(scan.classes)} instead of {', '.join(expected)}")
    raise DataError(f"the class folders of {scan.root} differ from the training classes: {'; '.join(parts)}")
