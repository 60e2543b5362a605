"""Tests for frugalvision.data.DataConfig: validation, serialisation and the eval/train preprocessing it builds."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from frugalvision.data import DataConfig, dataset_info
from frugalvision.errors import ConfigError, FrugalVisionError

CIFAR_LIKE = DataConfig((3, 32, 32), (0.5, 0.4, 0.3), (0.2, 0.25, 0.3))


def _rgb(h: int, w: int, seed: int = 0) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8), "RGB")


def _normalised(array: np.ndarray, mean, std) -> torch.Tensor:
    """Oracle: uint8 (H, W, C) -> float64 (C, H, W) normalised tensor."""
    x = torch.from_numpy(array.astype(np.float64) / 255.0).permute(2, 0, 1)
    return (x - torch.tensor(mean, dtype=torch.float64)[:, None, None]) / torch.tensor(std, dtype=torch.float64)[
        :, None, None
    ]


# --------------------------------------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"input_size": (3, 32)}, "input_size"),
        ({"input_size": (3, 0, 32)}, "input_size"),
        ({"input_size": (2, 32, 32), "mean": (0.5, 0.5), "std": (1.0, 1.0)}, "input_size"),
        ({"input_size": (3, 32.5, 32)}, "input_size"),
        ({"input_size": "3x32x32"}, "input_size"),
        ({"mean": (0.5, 0.5)}, "mean"),
        ({"mean": (0.5, float("nan"), 0.5)}, "mean"),
        ({"std": (0.2, 0.0, 0.3)}, "std"),
        ({"std": (0.2, 0.3)}, "std"),
        ({"crop": "middle"}, "crop"),
        ({"crop_pct": 0.0}, "crop_pct"),
        ({"crop_pct": 1.5}, "crop_pct"),
        ({"interpolation": "lanczos4"}, "interpolation"),
        ({"num_classes": 0}, "num_classes"),
        ({"num_classes": 2.0}, "num_classes"),
        ({"class_names": ("a", "b", "a")}, "class_names"),
        ({"class_names": ("a", "")}, "class_names"),
        ({"class_names": ("a", "b"), "num_classes": 3}, "num_classes"),
    ],
)
def test_invalid_fields_are_one_line_errors_naming_the_field(changes: dict, field: str) -> None:
    args = {**CIFAR_LIKE.to_dict(), **changes}
    with pytest.raises(ConfigError) as err:
        DataConfig(**args)
    message = str(err.value)
    assert f"DataConfig.{field}" in message and "\n" not in message
    assert isinstance(err.value, ValueError) and isinstance(err.value, FrugalVisionError)


def test_lists_become_tuples_and_class_names_set_num_classes() -> None:
    cfg = DataConfig([1, 28, 28], [0.1307], [0.3081], class_names=["zero", "one"])
    assert cfg.input_size == (1, 28, 28) and cfg.mean == (0.1307,) and cfg.std == (0.3081,)
    assert cfg.class_names == ("zero", "one") and cfg.num_classes == 2
    assert hash(cfg) == hash(DataConfig((1, 28, 28), (0.1307,), (0.3081,), num_classes=2, class_names=("zero", "one")))
    with pytest.raises(dataclasses_frozen_error()):
        cfg.mean = (0.5,)  # type: ignore[misc]


def dataclasses_frozen_error() -> type[Exception]:
    import dataclasses

    return dataclasses.FrozenInstanceError


def test_dict_round_trip_through_json() -> None:
    cfg = DataConfig((3, 40, 48), (0.1, 0.2, 0.3), (0.4, 0.5, 0.6), crop="center", crop_pct=0.875,
                     interpolation="bicubic", class_names=("cat", "dog", "émeu"))
    data = json.loads(json.dumps(cfg.to_dict()))
    assert data["input_size"] == [3, 40, 48] and data["num_classes"] == 3
    assert DataConfig.from_dict(data) == cfg
    assert DataConfig.from_dict(CIFAR_LIKE.to_dict()) == CIFAR_LIKE  # class_names None survives too
    with pytest.raises(ConfigError, match=r"unknown data config key.*resize"):
        DataConfig.from_dict({**data, "resize": 256})
    with pytest.raises(ConfigError, match="lacks std"):
        DataConfig.from_dict({"input_size": [1, 8, 8], "mean": [0.5]})
    with pytest.raises(ConfigError, match="mapping"):
        DataConfig.from_dict([("input_size", (1, 8, 8))])  # type: ignore[arg-type]


def test_replace_validates() -> None:
    cfg = CIFAR_LIKE.replace(mean=(0.0, 0.0, 0.0), input_size=(3, 64, 48))
    assert cfg.mean == (0.0, 0.0, 0.0) and cfg.input_size == (3, 64, 48) and cfg.std == CIFAR_LIKE.std
    assert CIFAR_LIKE.mean == (0.5, 0.4, 0.3)  # the original is untouched
    with pytest.raises(ConfigError, match=r"DataConfig\.mean has 3 values for 1 channels"):
        CIFAR_LIKE.replace(input_size=(1, 32, 32))
    with pytest.raises(ConfigError, match="unknown data config field"):
        CIFAR_LIKE.replace(size=(3, 8, 8))
    assert CIFAR_LIKE.is_small and not CIFAR_LIKE.replace(input_size=(3, 65, 32)).is_small


# ------------------------------------------------------------------------------------------------------ eval_transform


def test_eval_transform_same_size_is_plain_normalisation() -> None:
    image = _rgb(32, 32)
    x = CIFAR_LIKE.eval_transform()(image)
    assert x.dtype == torch.float32 and x.shape == (3, 32, 32)
    expected = _normalised(np.asarray(image), CIFAR_LIKE.mean, CIFAR_LIKE.std)
    assert torch.allclose(x.double(), expected, atol=1e-5)


def test_eval_transform_converts_channels() -> None:
    rgb = _rgb(8, 6, seed=3)
    grey_cfg = DataConfig((1, 8, 6), (0.5,), (0.25,))
    x = grey_cfg.eval_transform()(rgb)
    r, g, b = (np.asarray(rgb)[..., i].astype(np.int64) for i in range(3))
    luma = (r * 299 + g * 587 + b * 114) / 1000.0  # ITU-R 601-2, the conversion PIL documents
    assert x.shape == (1, 8, 6)
    assert torch.allclose(x[0].double(), torch.from_numpy((luma / 255.0 - 0.5) / 0.25), atol=1.01 / 255 / 0.25)
    grey = Image.fromarray(np.arange(48, dtype=np.uint8).reshape(8, 6) * 5, "L")
    y = CIFAR_LIKE.replace(input_size=(3, 8, 6)).eval_transform()(grey)
    raw = np.repeat(np.asarray(grey)[..., None], 3, axis=2)
    assert torch.allclose(y.double(), _normalised(raw, CIFAR_LIKE.mean, CIFAR_LIKE.std), atol=1e-5)
    rgba = Image.fromarray(np.dstack([np.asarray(rgb), np.full((8, 6), 7, np.uint8)]), "RGBA")
    assert torch.equal(CIFAR_LIKE.replace(input_size=(3, 8, 6)).eval_transform()(rgba),
                       CIFAR_LIKE.replace(input_size=(3, 8, 6)).eval_transform()(rgb))


def test_eval_transform_scales_16_bit_greyscale(tmp_path) -> None:
    values = np.array([[0, 257, 32768, 65535]], dtype=np.uint16)
    Image.fromarray(values).save(tmp_path / "deep.png")  # a 16-bit greyscale PNG
    image = Image.open(tmp_path / "deep.png")
    assert image.mode.startswith("I")
    x = DataConfig((1, 1, 4), (0.0,), (1.0,)).eval_transform()(image)
    assert torch.allclose(x[0, 0], torch.tensor([0.0, 1.0, 128.0, 255.0]) / 255.0, atol=1e-6)


@pytest.mark.parametrize("hw", [(40, 30), (30, 40), (24, 24), (17, 50)])
def test_eval_transform_none_resizes_to_input_size(hw: tuple[int, int]) -> None:
    from torchvision.transforms import v2

    image = _rgb(*hw, seed=hw[0])
    cfg = CIFAR_LIKE.replace(input_size=(3, 20, 24))
    oracle = v2.Compose([v2.Resize((20, 24), antialias=True), v2.PILToTensor()])
    expected = _normalised(oracle(image).permute(1, 2, 0).numpy(), cfg.mean, cfg.std)
    assert torch.allclose(cfg.eval_transform()(image).double(), expected, atol=1e-5)


@pytest.mark.parametrize("hw", [(300, 260), (375, 500), (500, 375), (240, 240), (120, 600)])
@pytest.mark.parametrize("interpolation", ["bilinear", "bicubic"])
def test_eval_transform_center_matches_torchvision_resize_center_crop(hw: tuple[int, int], interpolation: str) -> None:
    from torchvision.transforms import InterpolationMode, v2

    cfg = DataConfig((3, 224, 224), (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), crop="center", crop_pct=0.875,
                     interpolation=interpolation)
    mode = InterpolationMode.BILINEAR if interpolation == "bilinear" else InterpolationMode.BICUBIC
    oracle = v2.Compose([v2.Resize(256, interpolation=mode, antialias=True), v2.CenterCrop(224), v2.PILToTensor()])
    image = _rgb(*hw, seed=hw[1])
    expected = _normalised(oracle(image).permute(1, 2, 0).numpy(), cfg.mean, cfg.std)
    out = cfg.eval_transform()(image)
    assert out.shape == (3, 224, 224)
    assert torch.allclose(out.double(), expected, atol=1e-5)
    if interpolation == "bilinear":  # the ImageNet evaluation pipeline is this config
        assert dataset_info("imagenet").data_config().replace(num_classes=None) == cfg


def test_eval_transform_center_non_square_target_covers_both_sides() -> None:
    cfg = DataConfig((3, 32, 64), (0.0,) * 3, (1.0,) * 3, crop="center", crop_pct=1.0)
    for hw in [(100, 100), (40, 200), (200, 40)]:
        out = cfg.eval_transform()(_rgb(*hw))
        assert out.shape == (3, 32, 64)
    # An image already at the target size passes through unchanged.
    image = _rgb(32, 64, seed=9)
    assert torch.allclose(cfg.eval_transform()(image).double(), _normalised(np.asarray(image), cfg.mean, cfg.std),
                          atol=1e-6)


# ----------------------------------------------------------------------------------------------------- train_transform


def _window(image: torch.Tensor, top: int, left: int, flip: bool) -> torch.Tensor:
    out = image[:, top : top + 32, left : left + 32]
    return out.flip(-1) if flip else out


def test_train_transform_small_is_padded_crop_and_flip_of_the_eval_image() -> None:
    image = _rgb(32, 32, seed=5)
    train, reference = CIFAR_LIKE.train_transform(), CIFAR_LIKE.eval_transform()(image)
    padded = torch.nn.functional.pad(reference * torch.tensor(CIFAR_LIKE.std)[:, None, None]
                                     + torch.tensor(CIFAR_LIKE.mean)[:, None, None], (4, 4, 4, 4))  # 0..1, zero pad
    windows = {(top, left, f) for top in range(9) for left in range(9) for f in (False, True)}
    torch.manual_seed(0)
    seen_flip = seen_shift = False
    for _ in range(20):
        out = train(image)
        assert out.shape == (3, 32, 32) and out.dtype == torch.float32
        raw = out * torch.tensor(CIFAR_LIKE.std)[:, None, None] + torch.tensor(CIFAR_LIKE.mean)[:, None, None]
        hits = [(top, left, f) for top, left, f in windows if torch.allclose(_window(padded, top, left, f), raw,
                                                                            atol=1e-5)]
        assert hits, "a training sample is not a padded crop (maybe flipped) of the image"
        seen_flip |= any(f for _, _, f in hits)
        seen_shift |= all((top, left) != (4, 4) for top, left, _ in hits)
    assert seen_flip and seen_shift
    torch.manual_seed(11)
    first = [train(image) for _ in range(3)]
    torch.manual_seed(11)
    assert all(torch.equal(a, train(image)) for a in first)


def test_train_transform_large_is_random_resized_crop() -> None:
    cfg = DataConfig((3, 96, 80), (0.5,) * 3, (0.5,) * 3)
    train = cfg.train_transform()
    assert not train.small
    image = _rgb(150, 200, seed=2)
    torch.manual_seed(1)
    outs = [train(image) for _ in range(6)]
    assert all(o.shape == (3, 96, 80) and o.dtype == torch.float32 for o in outs)
    assert all(o.min() >= -1.0 - 1e-6 and o.max() <= 1.0 + 1e-6 for o in outs)  # (x - 0.5) / 0.5 of 0..1 pixels
    assert len({o.sum().item() for o in outs}) == 6  # a new crop each time
    torch.manual_seed(1)
    assert all(torch.equal(o, train(image)) for o in outs)
    grey = DataConfig((1, 96, 96), (0.5,), (0.5,)).train_transform()(image)
    assert grey.shape == (1, 96, 96)
