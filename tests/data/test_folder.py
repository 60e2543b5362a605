"""Tests for image-folder datasets (frugalvision.data.folder): layout, statistics, preprocessing and bad folders."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, features
from torch.utils.data import DataLoader

from frugalvision.data import (
    DataConfig,
    DataError,
    ImageFolderDataset,
    build_dataset,
    dataset_info,
    folder_data_config,
    read_image,
)
from frugalvision.errors import FrugalVisionError

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


def _pixels(rng: np.random.Generator, h: int, w: int, channels: int) -> np.ndarray:
    shape = (h, w) if channels == 1 else (h, w, channels)
    return rng.integers(0, 256, shape, dtype=np.uint8)


def _write(path: Path, array: np.ndarray, fmt: str | None = None, **save_args) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, format=fmt, **save_args)
    return path


def make_folder(root: Path, splits=("train", "val"), classes=("cat", "dog", "emu"), per_class: int = 3,
                size: tuple[int, int] = (12, 10), channels: int = 3, ext: str = ".png", seed: int = 0) -> Path:
    """DIR/<split>/<class>/<i><ext> with random pixels (lossless PNG by default)."""
    rng = np.random.default_rng(seed)
    for split in splits:
        for cls in classes:
            for i in range(per_class):
                _write(root / split / cls / f"{i}{ext}", _pixels(rng, *size, channels))
    return root


def _oracle_stats(arrays: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """float64 per-channel mean and population std of (H, W, C) uint8 arrays on the 0..1 scale."""
    stacked = torch.from_numpy(np.stack(arrays).astype(np.float64) / 255.0)  # (N, H, W, C)
    flat = stacked.reshape(-1, stacked.shape[-1])
    return flat.mean(0).numpy(), flat.std(0, unbiased=False).numpy()


def _rgb_arrays(paths) -> list[np.ndarray]:
    return [np.asarray(Image.open(p).convert("RGB")) for p in paths]


# -------------------------------------------------------------------------------------------------------- happy paths


def test_train_split_config_labels_and_items(tmp_path: Path) -> None:
    make_folder(tmp_path)
    train = build_dataset("folder", "train", tmp_path)
    assert isinstance(train, ImageFolderDataset) and train.in_memory
    cfg = train.data_config
    assert cfg.input_size == (3, 12, 10) and cfg.class_names == ("cat", "dog", "emu") and cfg.num_classes == 3
    assert len(train) == 9 and train.targets == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    paths = [p for p, _ in train.samples]
    assert [p.parent.name for p in paths] == ["cat"] * 3 + ["dog"] * 3 + ["emu"] * 3
    mean, std = _oracle_stats(_rgb_arrays(paths))
    assert np.allclose(cfg.mean, mean, rtol=0, atol=1e-12) and np.allclose(cfg.std, std, rtol=0, atol=1e-12)
    for i in (0, 4, 8):
        x, y = train[i]
        raw = torch.from_numpy(np.array(Image.open(paths[i])).astype(np.float64) / 255.0).permute(2, 0, 1)
        expected = (raw - torch.tensor(mean)[:, None, None]) / torch.tensor(std)[:, None, None]
        assert x.dtype == torch.float32 and x.shape == (3, 12, 10) and y == train.targets[i]
        assert torch.allclose(x.double(), expected, atol=1e-5)
    assert folder_data_config(tmp_path) == cfg  # the same config without building the dataset


def test_items_equal_the_eval_transform_of_the_file(tmp_path: Path) -> None:
    """What training and evaluation see is exactly what predict computes from the file (bit for bit)."""
    make_folder(tmp_path, size=(9, 14))
    val = build_dataset("folder", "val", tmp_path)
    disk = ImageFolderDataset(tmp_path, "val", val.data_config, in_memory=False)
    assert val.in_memory and not disk.in_memory
    transform = val.data_config.eval_transform()
    for i in range(len(val)):
        from_file = transform(read_image(val.samples[i][0]))
        assert torch.equal(val[i][0], from_file) and torch.equal(disk[i][0], from_file)
        assert val[i][1] == disk[i][1]


def test_augmentation_in_memory_equals_from_disk(tmp_path: Path) -> None:
    make_folder(tmp_path, size=(16, 16))
    memory = build_dataset("folder", "train", tmp_path, augment=True)
    disk = ImageFolderDataset(tmp_path, "train", memory.data_config, augment=True, in_memory=False)
    plain = build_dataset("folder", "train", tmp_path, data_config=memory.data_config)
    torch.manual_seed(3)
    a = [memory[i][0] for i in range(len(memory))]
    torch.manual_seed(3)
    b = [disk[i][0] for i in range(len(disk))]
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert sum(not torch.equal(x, plain[i][0]) for i, x in enumerate(a)) >= 6
    val = build_dataset("folder", "val", tmp_path, augment=True, data_config=memory.data_config)
    assert torch.equal(val[0][0], val[0][0]) and not val.augment  # augmentation is for the train split only


def test_greyscale_colour_mixing_and_channel_choice(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    grey = _write(tmp_path / "train" / "a" / "g.png", _pixels(rng, 8, 8, 1))
    _write(tmp_path / "train" / "a" / "h.png", _pixels(rng, 8, 8, 1))
    colour = _write(tmp_path / "train" / "b" / "c.png", _pixels(rng, 8, 8, 3))
    ds = build_dataset("folder", "train", tmp_path)
    assert ds.data_config.input_size == (3, 8, 8)  # one colour image makes the input RGB
    grey_item = ds.images[0]
    assert torch.equal(grey_item[0], grey_item[1]) and torch.equal(grey_item[1], grey_item[2])
    assert torch.equal(grey_item[0], torch.from_numpy(np.array(Image.open(grey))))
    as_grey = build_dataset("folder", "train", tmp_path, input_size=(1, 8, 8))
    assert as_grey.images.shape == (3, 1, 8, 8)
    luma = np.array(Image.open(colour).convert("L"))
    assert torch.equal(as_grey.images[2, 0], torch.from_numpy(luma))
    colour.unlink()
    _write(tmp_path / "train" / "b" / "c.png", _pixels(rng, 8, 8, 1))
    assert folder_data_config(tmp_path).input_size == (1, 8, 8)  # all greyscale: one channel


def test_statistics_are_computed_at_the_input_size(tmp_path: Path) -> None:
    from torchvision.transforms import v2

    rng = np.random.default_rng(2)
    paths = [_write(tmp_path / "train" / c / f"{i}.png", _pixels(rng, h, w, 3))
             for i, (c, h, w) in enumerate([("a", 20, 30), ("a", 16, 16), ("b", 9, 40), ("b", 32, 8)])]
    cfg = folder_data_config(tmp_path, input_size=(3, 16, 16))
    resize = v2.Resize((16, 16), antialias=True)  # independent implementation of the "none" crop policy
    resized = [np.asarray(resize(Image.open(p).convert("RGB"))) for p in paths]
    mean, std = _oracle_stats(resized)
    assert np.allclose(cfg.mean, mean, atol=1e-12) and np.allclose(cfg.std, std, atol=1e-12)
    given = folder_data_config(tmp_path, input_size=(3, 16, 16), mean=(0.1, 0.2, 0.3))
    assert given.mean == (0.1, 0.2, 0.3) and np.allclose(given.std, std, atol=1e-12)


def test_file_types_hidden_files_and_extensions(tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    cls = tmp_path / "train" / "x"
    written = [
        _write(cls / "a.PNG", _pixels(rng, 6, 6, 3)),
        _write(cls / "b.bmp", _pixels(rng, 6, 6, 3)),
        _write(cls / "c.JPEG", _pixels(rng, 6, 6, 3), "JPEG"),
        _write(cls / "d.jpg", _pixels(rng, 6, 6, 3), quality=95),
    ]
    if features.check("webp"):
        written.append(_write(cls / "e.webp", _pixels(rng, 6, 6, 3), lossless=True))
    (cls / ".DS_Store").write_bytes(b"\0\1garbage")
    (cls / "notes.txt").write_text("not an image")
    (cls / "._d.jpg").write_bytes(b"resource fork")  # hidden: ignored although it has an image extension
    (tmp_path / "train" / ".hidden_class").mkdir()
    _write(tmp_path / "train" / "y" / "f.png", _pixels(rng, 6, 6, 3))
    ds = build_dataset("folder", "train", tmp_path)
    assert ds.classes == ("x", "y")
    assert [p.name for p, _ in ds.samples] == [*sorted(p.name for p in written), "f.png"]
    for i, (path, _) in enumerate(ds.samples):
        assert torch.equal(ds.images[i], torch.from_numpy(np.array(Image.open(path).convert("RGB"))).permute(2, 0, 1))


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    pixels = _pixels(rng, 6, 10, 3)  # stored 6 high, 10 wide
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    path = _write(tmp_path / "train" / "a" / "photo.jpg", pixels, "JPEG", quality=100, exif=exif.tobytes())
    _write(tmp_path / "train" / "b" / "upright.jpg", _pixels(rng, 10, 6, 3), "JPEG", quality=100)
    assert read_image(path).size == (6, 10)  # (width, height) after the rotation
    assert folder_data_config(tmp_path).input_size == (3, 10, 6)
    stored = np.asarray(Image.open(path).convert("RGB"))
    assert np.array_equal(np.asarray(read_image(path)), np.rot90(stored, k=-1))


def test_large_images_are_read_from_disk_with_random_resized_crop(tmp_path: Path) -> None:
    make_folder(tmp_path, per_class=2, size=(80, 72), ext=".jpg")
    train = build_dataset("folder", "train", tmp_path, augment=True)
    assert not train.in_memory and train.images is None and train.data_config.input_size == (3, 80, 72)
    assert not train.transform.small
    torch.manual_seed(0)
    first = [train[i][0] for i in range(2)]
    torch.manual_seed(0)
    assert all(torch.equal(x, train[i][0]) for i, x in enumerate(first))
    val = build_dataset("folder", "val", tmp_path, data_config=train.data_config.replace(input_size=(3, 48, 48)))
    assert val.in_memory and val[0][0].shape == (3, 48, 48)
    with pytest.raises(DataError, match="in_memory=False"):
        ImageFolderDataset(tmp_path, "train", train.data_config, augment=True, in_memory=True)
    loader = DataLoader(train, batch_size=4)
    images, labels = next(iter(loader))
    assert images.shape == (4, 3, 80, 72) and labels.tolist() == [0, 0, 1, 1]


def test_run_config_round_trip_and_test_only_folder(tmp_path: Path) -> None:
    """The engine flow: config from train, stored as JSON; later a folder holding only test/ is evaluated."""
    train_dir = make_folder(tmp_path / "data", splits=("train",), seed=7)
    config = build_dataset("folder", "train", train_dir).data_config
    stored = DataConfig.from_dict(config.to_dict())
    test_dir = make_folder(tmp_path / "elsewhere", splits=("test",), seed=8)
    test = build_dataset("folder", "test", test_dir, data_config=stored)
    assert test.data_config == config and len(test) == 9
    x, _ = test[0]
    raw = torch.from_numpy(np.array(Image.open(test.samples[0][0])).astype(np.float64) / 255).permute(2, 0, 1)
    expected = (raw - torch.tensor(config.mean)[:, None, None]) / torch.tensor(config.std)[:, None, None]
    assert torch.allclose(x.double(), expected, atol=1e-5)  # training's statistics, not the test images'
    # Without a stored config: mean and std given on the command line, size and classes from test/ itself.
    given = build_dataset("folder", "test", test_dir, mean=(0.5,) * 3, std=(0.25,) * 3)
    assert given.data_config.input_size == (3, 12, 10) and given.classes == ("cat", "dog", "emu")
    # A model config without class names: labels follow the split's sorted folders, the count must match.
    unnamed = DataConfig((3, 12, 10), (0.5,) * 3, (0.25,) * 3, num_classes=3)
    assert build_dataset("folder", "test", test_dir, data_config=unnamed).classes == ("cat", "dog", "emu")
    with pytest.raises(DataError, match="expects 4 classes"):
        build_dataset("folder", "test", test_dir, data_config=unnamed.replace(num_classes=4))


def test_overrides_on_a_given_config(tmp_path: Path) -> None:
    make_folder(tmp_path)
    config = folder_data_config(tmp_path)
    ds = build_dataset("folder", "val", tmp_path, data_config=config, mean=(0.0,) * 3, std=(1.0,) * 3)
    assert ds.data_config.mean == (0.0,) * 3 and ds.data_config.class_names == config.class_names
    raw = np.asarray(Image.open(ds.samples[1][0])).astype(np.float32) / 255
    assert torch.allclose(ds[1][0], torch.from_numpy(raw).permute(2, 0, 1), atol=1e-6)


def test_registry_entry() -> None:
    info = dataset_info("folder")
    assert info.splits == ("train", "val", "test") and info.num_classes is None


# ------------------------------------------------------------------------------------------------------- bad folders


def _truncated(path: Path, fmt: str, cut: int = 40) -> Path:
    """A 12x10 image (the size of make_folder's) without its last ``cut`` bytes: header intact, pixels incomplete."""
    buffer = io.BytesIO()
    Image.fromarray(_pixels(np.random.default_rng(9), 12, 10, 3)).save(buffer, format=fmt)
    data = buffer.getvalue()
    path.write_bytes(data[: len(data) - cut])
    Image.open(path)  # the header still reads: only decoding the pixels can find the damage
    return path


def _bad_no_dir(root: Path) -> tuple[dict, str]:
    return {"data_dir": root / "nope"}, str(root / "nope")


def _bad_none(root: Path) -> tuple[dict, str]:
    return {"data_dir": None}, "--data-dir"


def _bad_no_split(root: Path) -> tuple[dict, str]:
    make_folder(root, splits=("train",))
    return {"split": "val"}, str(root / "val")


def _bad_unknown_split(root: Path) -> tuple[dict, str]:
    make_folder(root)
    return {"split": "holdout"}, "valid splits"


def _bad_files_no_classes(root: Path) -> tuple[dict, str]:
    _write(root / "train" / "loose.png", np.zeros((4, 4), np.uint8))
    return {}, f"{root / 'train'} has no class folders"


def _bad_empty_split(root: Path) -> tuple[dict, str]:
    (root / "train").mkdir(parents=True)
    return {}, "is empty"


def _bad_single_class(root: Path) -> tuple[dict, str]:
    make_folder(root, classes=("cat",))
    return {}, "one class folder (cat)"


def _bad_empty_class(root: Path) -> tuple[dict, str]:
    make_folder(root)
    (root / "train" / "ghost").mkdir()
    (root / "train" / "ghost" / "readme.txt").write_text("no images here")
    (root / "train" / "ghost" / ".hidden.png").write_bytes(b"x")
    return {}, str(root / "train" / "ghost")


def _bad_nested_class(root: Path) -> tuple[dict, str]:
    make_folder(root)
    _write(root / "train" / "owl" / "deeper" / "0.png", np.zeros((12, 10, 3), np.uint8))
    return {}, str(root / "train" / "owl")


def _bad_truncated_jpeg(root: Path) -> tuple[dict, str]:
    make_folder(root)
    return {}, str(_truncated(root / "train" / "dog" / "cut.jpg", "JPEG"))


def _bad_jpeg_without_end_marker(root: Path) -> tuple[dict, str]:
    make_folder(root)
    return {}, str(_truncated(root / "train" / "dog" / "no_eoi.jpg", "JPEG", cut=2))


def _bad_five_bytes(root: Path) -> tuple[dict, str]:
    make_folder(root)
    path = root / "train" / "dog" / "fragment.jpg"
    path.write_bytes((root / "train" / "dog" / "0.png").read_bytes()[:5])  # not even a full header
    return {}, str(path)


def _bad_truncated_png(root: Path) -> tuple[dict, str]:
    make_folder(root)
    return {}, str(_truncated(root / "train" / "emu" / "zz.png", "PNG"))


def _bad_not_an_image(root: Path) -> tuple[dict, str]:
    make_folder(root)
    path = root / "train" / "cat" / "fake.jpg"
    path.write_text("<html>a web page saved as .jpg</html>")
    return {}, str(path)


def _bad_empty_file(root: Path) -> tuple[dict, str]:
    make_folder(root)
    path = root / "train" / "cat" / "empty.png"
    path.write_bytes(b"")
    return {}, str(path)


def _bad_mixed_sizes(root: Path) -> tuple[dict, str]:
    make_folder(root)
    _write(root / "train" / "dog" / "big.png", np.zeros((20, 20, 3), np.uint8))
    return {}, "--input-size"


def _bad_val_missing_class(root: Path) -> tuple[dict, str]:
    make_folder(root, splits=("train",))
    make_folder(root, splits=("val",), classes=("cat", "dog"))
    return {"split": "val"}, "missing emu"


def _bad_val_extra_class(root: Path) -> tuple[dict, str]:
    make_folder(root, splits=("train",))
    make_folder(root, splits=("val",), classes=("cat", "dog", "emu", "yak"))
    return {"split": "val"}, "extra yak"


def _bad_truncated_in_val(root: Path) -> tuple[dict, str]:
    make_folder(root)
    return {"split": "val"}, str(_truncated(root / "val" / "cat" / "9.jpg", "JPEG"))


def _bad_two_channels(root: Path) -> tuple[dict, str]:
    make_folder(root)
    return {"input_size": (2, 12, 10)}, "C = 1 (greyscale) or 3 (RGB)"


def _bad_four_channels(root: Path) -> tuple[dict, str]:
    make_folder(root)
    return {"input_size": (4, 12, 10)}, "C = 1 (greyscale) or 3 (RGB)"


def _bad_constant_images(root: Path) -> tuple[dict, str]:
    for cls in ("a", "b"):
        _write(root / "train" / cls / "0.png", np.full((5, 5, 3), 128, np.uint8))
    return {}, "std 0"


def _bad_test_only_without_stats(root: Path) -> tuple[dict, str]:
    make_folder(root, splits=("test",))
    return {"split": "test"}, f"{root / 'train'} not found"


def _bad_test_only_without_std(root: Path) -> tuple[dict, str]:
    make_folder(root, splits=("test",))
    return {"split": "test", "mean": (0.5,) * 3}, "std come from its training split"


def _bad_data_dir_is_a_file(root: Path) -> tuple[dict, str]:
    (root / "data.zip").write_bytes(b"PK")
    return {"data_dir": root / "data.zip"}, str(root / "data.zip")


BAD_FOLDERS = [
    _bad_no_dir, _bad_none, _bad_data_dir_is_a_file, _bad_no_split, _bad_unknown_split, _bad_files_no_classes,
    _bad_empty_split, _bad_single_class, _bad_empty_class, _bad_nested_class, _bad_truncated_jpeg,
    _bad_jpeg_without_end_marker, _bad_five_bytes, _bad_truncated_png, _bad_not_an_image, _bad_empty_file,
    _bad_mixed_sizes, _bad_val_missing_class, _bad_val_extra_class, _bad_truncated_in_val, _bad_two_channels,
    _bad_four_channels, _bad_constant_images, _bad_test_only_without_stats, _bad_test_only_without_std,
]


@pytest.mark.parametrize("case", BAD_FOLDERS, ids=lambda f: f.__name__[5:])
def test_bad_folder_is_a_one_line_data_error(tmp_path: Path, case) -> None:
    root = tmp_path / "data"
    root.mkdir()
    overrides, expected = case(root)
    kwargs = {"data_dir": root, "split": "train", **overrides}
    with pytest.raises(DataError) as err:
        build_dataset("folder", kwargs.pop("split"), kwargs.pop("data_dir"), **kwargs)
    message = str(err.value)
    assert "\n" not in message and len(message) < 400, message
    assert expected in message, message
    assert isinstance(err.value, ValueError) and isinstance(err.value, FrugalVisionError)


def test_bad_folder_cases_also_fail_folder_data_config(tmp_path: Path) -> None:
    root = make_folder(tmp_path)
    bad = _truncated(root / "train" / "cat" / "5.jpg", "JPEG")
    with pytest.raises(DataError, match=f"cannot read image {bad}"):
        folder_data_config(root)
    given = folder_data_config(root, mean=(0.5,) * 3, std=(0.5,) * 3)  # nothing to compute: headers only
    assert given.input_size == (3, 12, 10)
    with pytest.raises(DataError, match="cannot read image"):  # building the split decodes every image
        build_dataset("folder", "train", root, data_config=given)
    with pytest.raises(DataError, match="cannot read image"):
        ImageFolderDataset(root, "train", DataConfig((3, 80, 80), (0.5,) * 3, (0.5,) * 3), in_memory=False)
    with pytest.raises(DataError, match="cannot read image"):  # statistics given: no statistics pass, still checked
        ImageFolderDataset(root, "train", mean=(0.5,) * 3, std=(0.5,) * 3, in_memory=False)
    large = make_folder(tmp_path / "large", per_class=1, size=(70, 70), ext=".jpg")
    _truncated(large / "train" / "dog" / "cut.jpg", "JPEG")
    with pytest.raises(DataError, match="cannot read image"):  # decoded at build although read from disk later
        build_dataset("folder", "train", large, mean=(0.5,) * 3, std=(0.5,) * 3, input_size=(3, 70, 70))


def _train_argv(root: Path, overrides: dict) -> list[str] | None:
    """``frugalvision train`` arguments for a bad-folder case (train reads the train and val splits), or None for
    the cases only ``eval`` can reach (another split, statistics given on the command line)."""
    if overrides.get("split", "train") not in ("train", "val"):
        return None
    argv = ["train", "--model", "lenet5_bn", "--conv-type", "conv", "--dataset", "folder", "--epochs", "1"]
    data_dir = overrides.get("data_dir", root)
    if data_dir is not None:
        argv += ["--data-dir", str(data_dir)]
    if "input_size" in overrides:
        argv += ["--input-size", *map(str, overrides["input_size"])]
    return argv


# A checkpoint carries its statistics, so the test-only cases are errors of the library call only (eval succeeds).
CLI_BAD_FOLDERS = [c for c in BAD_FOLDERS if c not in (_bad_test_only_without_stats, _bad_test_only_without_std)]


@pytest.mark.parametrize("case", CLI_BAD_FOLDERS, ids=lambda f: f.__name__[5:])
def test_bad_folder_on_the_command_line_exits_2_with_one_line_and_writes_nothing(tmp_path: Path, case, capsys
                                                                                ) -> None:
    from frugalvision import create_model
    from frugalvision.cli.main import main
    from frugalvision.models import save_model

    root = tmp_path / "data"
    root.mkdir()
    overrides, expected = case(root)
    argv = _train_argv(root, overrides)
    if argv is None:  # eval of a saved model on the split the case names
        checkpoint = tmp_path / "model.safetensors"
        save_model(checkpoint, create_model("lenet5_bn", conv_type="conv", in_chans=3))
        argv = ["eval", "--checkpoint", str(checkpoint), "--dataset", "folder", "--data-dir", str(root), "--split",
                overrides["split"]]
    runs = tmp_path / "runs"
    assert main([*argv, "--output", str(runs)] if argv[0] == "train" else argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith(f"frugalvision {argv[0]}: error: "), err
    assert expected in err, err
    assert not runs.exists()  # nothing written


# ----------------------------------------------------------------------------------------------- shared CIFAR sample


def test_shared_sample_layout_and_a_few_images(tmp_path: Path, shared_data) -> None:
    sample = shared_data("cifar10_jpeg_10k")
    sums = {}
    for line in (sample / "SHA256SUMS").read_text().splitlines():
        digest, name = line.split(maxsplit=1)
        sums[name.split()[0].lstrip("*")] = digest
    # A small copy: three files per class of each split, checked against SHA256SUMS.
    for split in ("train", "val"):
        for cls in CIFAR10_CLASSES:
            files = sorted((sample / split / cls).iterdir())[:3]
            for f in files:
                rel = f"{split}/{cls}/{f.name}"
                data = f.read_bytes()
                assert hashlib.sha256(data).hexdigest() == sums[rel], rel
                (tmp_path / split / cls).mkdir(parents=True, exist_ok=True)
                (tmp_path / split / cls / f.name).write_bytes(data)
    train = build_dataset("folder", "train", tmp_path, augment=True)
    val = build_dataset("folder", "val", tmp_path, data_config=train.data_config)
    assert train.classes == CIFAR10_CLASSES and train.data_config.input_size == (3, 32, 32)
    assert len(train) == 30 and len(val) == 30 and val.targets == [i // 3 for i in range(30)]
    paths = [p for p, _ in train.samples]
    mean, std = _oracle_stats(_rgb_arrays(paths))
    assert np.allclose(train.data_config.mean, mean, atol=1e-12) and np.allclose(train.data_config.std, std, atol=1e-12)
    for i, (path, _) in enumerate(val.samples):
        decoded = torch.from_numpy(np.array(Image.open(path).convert("RGB"))).permute(2, 0, 1)
        assert torch.equal(val.images[i], decoded)


def test_shared_sample_scan_counts(shared_data) -> None:
    from frugalvision.data.folder import scan_split

    sample = shared_data("cifar10_jpeg_10k")
    train, val = scan_split(sample, "train"), scan_split(sample, "val")
    assert train.classes == CIFAR10_CLASSES and val.classes == CIFAR10_CLASSES
    assert np.bincount([label for _, label in train.samples]).tolist() == [900] * 10
    assert np.bincount([label for _, label in val.samples]).tolist() == [100] * 10


@pytest.mark.slow
def test_shared_sample_full_build(shared_data) -> None:
    sample = shared_data("cifar10_jpeg_10k")
    train = build_dataset("folder", "train", sample, augment=True)
    val = build_dataset("folder", "val", sample, data_config=train.data_config)
    assert train.in_memory and train.images.shape == (9000, 3, 32, 32) and val.images.shape == (1000, 3, 32, 32)
    pixels = train.images.permute(1, 0, 2, 3).reshape(3, -1).double() / 255.0
    assert np.allclose(train.data_config.mean, pixels.mean(1).numpy(), atol=1e-12)
    assert np.allclose(train.data_config.std, pixels.std(1, unbiased=False).numpy(), atol=1e-12)
    # JPEG-compressed CIFAR-10 training images: statistics close to the dataset's well-known ones.
    assert np.allclose(train.data_config.mean, (0.4914, 0.4822, 0.4465), atol=0.01)
