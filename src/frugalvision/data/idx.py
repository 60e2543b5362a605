"""MNIST idx-file reader for the torchvision raw layout (plain or ``.gz``), written with numpy only.

An idx file is a big-endian header followed by the raw array: a 4-byte magic number ``0x0000TTNN`` (``TT`` the
element type, ``0x08`` for unsigned bytes; ``NN`` the number of dimensions), then one unsigned 32-bit size per
dimension. MNIST images have magic 2051 (``0x00000803``: uint8, 3 dims N x 28 x 28) and labels 2049
(``0x00000801``: uint8, 1 dim N).
"""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import numpy as np

from .info import DataError

__all__ = ["MNIST_FILES", "find_mnist_files", "load_mnist_split", "read_idx"]

IMAGES_MAGIC = 2051
LABELS_MAGIC = 2049

# split -> (images stem, labels stem); "val" and "test" both mean the t10k files.
MNIST_FILES: dict[str, tuple[str, str]] = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def _variants(stem: str) -> list[str]:
    """File names accepted for one idx file: the torchvision name, LeCun's dotted name, each plain or gzipped."""
    dotted = stem.replace("-idx", ".idx")
    return [stem, f"{stem}.gz", dotted, f"{dotted}.gz"]


def _search_dirs(data_dir: Path) -> list[Path]:
    """Folders searched for the idx files, in order."""
    return [data_dir, data_dir / "MNIST" / "raw"]


def read_idx(path: str | Path, expected_magic: int | None = None) -> np.ndarray:
    """Reads one idx file (plain or gzip-compressed, decided by the gzip signature) into a uint8 array.

    Args:
        path: the file.
        expected_magic: if given, the magic number the file must carry (2051 images, 2049 labels).

    Returns:
        The array, shaped by the header's dimensions.

    Raises:
        DataError: unreadable file, bad gzip stream, wrong magic, or a payload size that does not match the header.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(f"cannot read idx file {path}: {exc}") from None
    if len(raw) < 4:
        raise DataError(f"malformed idx file {path}: {len(raw)} bytes, shorter than the 4-byte header")
    magic = int.from_bytes(raw[:4], "big")
    dtype_code, ndim = (magic >> 8) & 0xFF, magic & 0xFF
    if magic >> 16 != 0 or dtype_code != 0x08 or ndim == 0 or (expected_magic is not None and magic != expected_magic):
        want = f"{expected_magic}" if expected_magic is not None else "a uint8 idx magic"
        raise DataError(f"malformed idx file {path}: magic number {magic}, expected {want}")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"malformed idx file {path}: truncated header ({len(raw)} bytes, {ndim} dimensions)")
    dims = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected = header + int(np.prod(dims, dtype=np.int64))
    if len(raw) != expected:
        state = "truncated" if len(raw) < expected else "trailing bytes"
        raise DataError(f"malformed idx file {path}: {state}, {len(raw)} bytes for dims {dims} ({expected} expected)")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def find_mnist_files(data_dir: str | Path, split: str) -> tuple[Path, Path] | None:
    """Finds the images and labels idx files of one split in ``data_dir`` or ``data_dir/MNIST/raw``.

    Args:
        data_dir: folder holding the idx files directly, or a torchvision root with ``MNIST/raw`` inside.
        split: ``"train"`` or ``"test"``.

    Returns:
        ``(images_path, labels_path)`` from the first folder holding both, or ``None``.
    """
    image_stem, label_stem = MNIST_FILES[split]
    for folder in _search_dirs(Path(data_dir)):
        found = []
        for stem in (image_stem, label_stem):
            hit = next((folder / n for n in _variants(stem) if (folder / n).is_file()), None)
            found.append(hit)
        if found[0] is not None and found[1] is not None:
            return found[0], found[1]
    return None


def missing_message(data_dir: Path, split: str) -> str:
    """One-line error message naming the files expected for ``split`` and the folders searched."""
    image_stem, label_stem = MNIST_FILES[split]
    where = " or ".join(str(d) for d in _search_dirs(data_dir))
    return (
        f"MNIST {split} files not found: expected {image_stem}[.gz] and {label_stem}[.gz] in {where} "
        "(download=True fetches them through torchvision)"
    )


def load_mnist_split(data_dir: str | Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Loads one MNIST split from idx files.

    Args:
        data_dir: folder holding the idx files directly, or a torchvision root with ``MNIST/raw`` inside.
        split: ``"train"`` (60k files) or ``"test"`` (t10k files).

    Returns:
        ``(images, labels)``: uint8 arrays (N, 28, 28) and (N,).

    Raises:
        DataError: missing files (the message names them and the folders searched) or malformed content.
    """
    data_dir = Path(data_dir).expanduser()
    paths = find_mnist_files(data_dir, split)
    if paths is None:
        raise DataError(missing_message(data_dir, split))
    images = read_idx(paths[0], IMAGES_MAGIC)
    labels = read_idx(paths[1], LABELS_MAGIC)
    if images.shape[1:] != (28, 28):
        raise DataError(f"malformed idx file {paths[0]}: images are {images.shape[1:]}, expected 28x28")
    if images.shape[0] != labels.shape[0]:
        raise DataError(
            f"MNIST {split} count mismatch: {images.shape[0]} images in {paths[0].name} "
            f"but {labels.shape[0]} labels in {paths[1].name}"
        )
    if labels.size and int(labels.max()) > 9:
        raise DataError(f"malformed idx file {paths[1]}: label {int(labels.max())} outside 0..9")
    return images, labels
