"""Image transforms: tensor augmentations for in-memory datasets and PIL pipelines for image files.

Two families, one pipeline per purpose:

* Tensor transforms on (C, H, W) float images in 0..1 (:class:`RandomAffine`, :class:`RandomCropFlip`), written for
  small images kept in memory (MNIST, CIFAR, small image folders): one ``torch.rand`` call and one ``grid_sample``
  per sample for the affine warp, about five times faster than ``torchvision.transforms.v2.RandomAffine`` on a 28x28
  digit.
* PIL pipelines from a decoded image to a normalised float32 (C, H, W) tensor: :class:`EvalPreprocess` (the one
  evaluation preprocessing of frugalvision, built by :meth:`frugalvision.data.DataConfig.eval_transform`) and
  :class:`TrainPreprocess` (augmentation scaled to the input size).

Every random number is drawn from torch's global generator, so ``torch.manual_seed`` at the start of an epoch makes
that epoch's augmentation reproducible (with ``num_workers=0``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import ConfigError

if TYPE_CHECKING:
    from PIL import Image as PILImage

__all__ = [
    "CROP_MODES",
    "INTERPOLATIONS",
    "SMALL_IMAGE_MAX",
    "EvalPreprocess",
    "Normalize",
    "RandomAffine",
    "RandomCropFlip",
    "TrainPreprocess",
    "eval_resize_size",
    "pil_to_uint8",
    "tensor_train_transform",
    "timm_train_transform",
    "to_channels",
]

INTERPOLATIONS = ("nearest", "bilinear", "bicubic")
CROP_MODES = ("none", "center")
# Inputs whose larger side is at most this many pixels are "small": augmented by a padded random crop (the CIFAR
# recipe) and, in image folders, decoded once into memory. Larger ones use a random-resized crop (the ImageNet recipe).
SMALL_IMAGE_MAX = 64


class Normalize:
    """``(x - mean) / std`` per channel on a (C, H, W) float tensor (computed as a multiplication by ``1 / std``).

    Every frugalvision pipeline normalises through this class, so an image decoded into memory and the same image
    read from disk give bit-identical tensors.
    """

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        self.mean = torch.tensor(tuple(mean), dtype=torch.float32).view(-1, 1, 1)
        self.inv_std = 1.0 / torch.tensor(tuple(std), dtype=torch.float32).view(-1, 1, 1)

    def __call__(self, x: Tensor) -> Tensor:
        return (x - self.mean).mul_(self.inv_std)

    def __repr__(self) -> str:
        return f"Normalize(mean={self.mean.flatten().tolist()}, std={(1.0 / self.inv_std).flatten().tolist()})"


class RandomAffine:
    """Random rotation, isotropic scaling and translation with bilinear sampling and zero fill.

    Args:
        degrees: rotation angle drawn uniformly from [-degrees, degrees].
        translate: shift drawn uniformly from [-translate, translate] times the width (x) and height (y).
        scale: (low, high) range of the uniformly drawn scale factor.
    """

    def __init__(self, degrees: float = 10.0, translate: float = 0.1, scale: tuple[float, float] = (0.9, 1.1)) -> None:
        self.degrees = float(degrees)
        self.translate = float(translate)
        self.scale = (float(scale[0]), float(scale[1]))

    def __call__(self, x: Tensor) -> Tensor:
        """Warps one (C, H, W) float image."""
        r_angle, r_scale, r_tx, r_ty = torch.rand(4).tolist()
        angle = math.radians((2.0 * r_angle - 1.0) * self.degrees)
        s = self.scale[0] + r_scale * (self.scale[1] - self.scale[0])
        # Normalised coordinates span 2 units across the image, so a shift of f * width is 2 * f units.
        tx = (2.0 * r_tx - 1.0) * 2.0 * self.translate
        ty = (2.0 * r_ty - 1.0) * 2.0 * self.translate
        h, w = x.shape[-2:]
        cos, sin = math.cos(angle) / s, math.sin(angle) / s
        # affine_grid maps output to input coordinates: the inverse of "rotate, scale, then shift by t".
        # The aspect factors keep rotations rigid on non-square images.
        ar = w / h
        theta = torch.tensor(
            [[[cos, sin / ar, -(cos * tx + sin / ar * ty)], [-sin * ar, cos, -(-sin * ar * tx + cos * ty)]]],
            dtype=x.dtype,
        )
        grid = F.affine_grid(theta, [1, *x.shape], align_corners=False)
        return F.grid_sample(x.unsqueeze(0), grid, mode="bilinear", padding_mode="zeros", align_corners=False)[0]

    def __repr__(self) -> str:
        return f"RandomAffine(degrees={self.degrees}, translate={self.translate}, scale={self.scale})"


class RandomCropFlip:
    """Zero-pads by ``padding``, takes a random ``size`` crop, then flips horizontally with probability 0.5.

    Same result distribution as ``RandomCrop(size, padding)`` followed by ``RandomHorizontalFlip()`` (the official
    AdderNet CIFAR recipe), done with tensor slicing.

    Args:
        size: output size: ``int`` for a square, or ``(height, width)``.
        padding: zero padding added on every side before cropping.
        flip: whether to flip at random.
    """

    def __init__(self, size: int | Sequence[int], padding: int = 4, flip: bool = True) -> None:
        self.size = int(size) if isinstance(size, int) else (int(size[0]), int(size[1]))
        self.padding = int(padding)
        self.flip = flip

    def __call__(self, x: Tensor) -> Tensor:
        """Crops (and maybe flips) one (C, H, W) image."""
        out_h, out_w = (self.size, self.size) if isinstance(self.size, int) else self.size
        p = self.padding
        padded = F.pad(x, (p, p, p, p)) if p else x
        h, w = padded.shape[-2:]
        top, left, coin = torch.randint(0, 2**31 - 1, (3,)).tolist()
        top %= h - out_h + 1
        left %= w - out_w + 1
        out = padded[..., top : top + out_h, left : left + out_w]
        if self.flip and coin % 2:
            out = out.flip(-1)
        return out.contiguous()

    def __repr__(self) -> str:
        return f"RandomCropFlip(size={self.size}, padding={self.padding}, flip={self.flip})"


def tensor_train_transform(name: str) -> Callable[[Tensor], Tensor] | None:
    """Training augmentation for an in-memory dataset, applied to 0..1 float images before normalisation.

    Args:
        name: ``"mnist"``/``"mnist5k"`` (mild affine warp) or ``"cifar10"``/``"cifar100"`` (crop 32 pad 4 + flip).

    Returns:
        The transform, or ``None`` for a dataset without augmentation.
    """
    if name in ("mnist", "mnist5k"):
        return RandomAffine(degrees=10.0, translate=0.1, scale=(0.9, 1.1))
    if name in ("cifar10", "cifar100"):
        return RandomCropFlip(32, padding=4, flip=True)
    return None


def _resample(interpolation: str) -> int:
    from PIL import Image

    return {"nearest": Image.Resampling.NEAREST, "bilinear": Image.Resampling.BILINEAR,
            "bicubic": Image.Resampling.BICUBIC}[interpolation]


def to_channels(image: PILImage.Image, channels: int) -> PILImage.Image:
    """Converts a decoded PIL image to 1 (greyscale, ``"L"``) or 3 (``"RGB"``) channels.

    Colour becomes greyscale by PIL's ITU-R 601-2 luma; greyscale becomes RGB by repeating it; an alpha channel is
    dropped; palette images are expanded. 16-bit greyscale (PIL modes ``"I;16*"`` and ``"I"``) is scaled to 8 bits
    (``v * 255 / 65535``) instead of being clipped at 255 as PIL's own conversion does.
    """
    from PIL import Image

    if channels not in (1, 3):
        raise ConfigError(f"images can be converted to 1 (greyscale) or 3 (RGB) channels, not {channels}")
    mode = "L" if channels == 1 else "RGB"
    if image.mode == mode:
        return image
    if image.mode.startswith("I"):  # 16-bit (or 32-bit integer) greyscale
        values = np.asarray(image, dtype=np.float64)
        image = Image.fromarray(np.clip(np.rint(values * (255.0 / 65535.0)), 0, 255).astype(np.uint8), "L")
        return image if mode == "L" else image.convert(mode)
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")  # PIL warns when a palette image with transparency goes straight to RGB
    return image.convert(mode)


def eval_resize_size(image_hw: tuple[int, int], size: tuple[int, int], crop: str, crop_pct: float) -> tuple[int, int]:
    """(height, width) an image of ``image_hw`` is resized to before the centre crop of ``size``.

    ``"none"``: ``size`` itself (the aspect ratio may change). ``"center"``: the side that binds (for a square
    ``size``, the shorter image side) becomes ``round(side / crop_pct)`` of the target and the other follows the
    aspect ratio, truncated as torchvision's ``Resize(int)`` does, and never below the target.
    """
    if crop == "none":
        return size
    (h, w), (out_h, out_w) = image_hw, size
    if out_h * w >= out_w * h:  # height binds: out_h / h >= out_w / w
        new_h = round(out_h / crop_pct)
        return new_h, max(out_w, int(new_h * w / h))
    new_w = round(out_w / crop_pct)
    return max(out_h, int(new_w * h / w)), new_w


def pil_to_uint8(image: PILImage.Image) -> Tensor:
    """A decoded ``"L"`` or ``"RGB"`` PIL image -> contiguous uint8 (C, H, W) tensor."""
    array = np.asarray(image, dtype=np.uint8)
    if array.ndim == 2:
        array = array[:, :, None]
    return torch.from_numpy(array.transpose(2, 0, 1).copy())  # (H, W, C) -> (C, H, W)


class EvalPreprocess:
    """Evaluation preprocessing: decoded PIL image -> normalised float32 (C, H, W) tensor.

    Steps: convert to ``channels`` (:func:`to_channels`); resize to :func:`eval_resize_size` when the size differs
    (PIL's resampling, which low-pass filters when shrinking, the same call as torchvision's ``Resize`` on PIL
    images); with ``crop="center"`` take the centre ``size`` crop (torchvision's anchor rounding); scale to 0..1;
    :class:`Normalize`. :meth:`to_uint8` stops before the scaling, which is what image folders keep in memory.

    Args:
        channels: 1 or 3.
        size: (height, width) of the output.
        crop: ``"none"`` (resize to ``size``) or ``"center"`` (resize, then centre crop).
        crop_pct: fraction of the resized image the centre crop keeps (``"center"`` only), e.g. 0.875 = 224 / 256.
        interpolation: ``"nearest"``, ``"bilinear"`` or ``"bicubic"``.
        mean: per-channel normalisation mean (0..1 scale).
        std: per-channel normalisation standard deviation.
    """

    def __init__(self, channels: int, size: Sequence[int], crop: str, crop_pct: float, interpolation: str,
                 mean: Sequence[float], std: Sequence[float]) -> None:
        self.channels = int(channels)
        self.size = (int(size[0]), int(size[1]))
        self.crop, self.crop_pct, self.interpolation = crop, float(crop_pct), interpolation
        self.normalize = Normalize(mean, std)

    def geometry(self, image: PILImage.Image) -> PILImage.Image:
        """Channel conversion, resize and crop on the PIL image."""
        image = to_channels(image, self.channels)
        h, w = image.height, image.width
        resized = eval_resize_size((h, w), self.size, self.crop, self.crop_pct)
        if resized != (h, w):
            image = image.resize((resized[1], resized[0]), _resample(self.interpolation))
        if resized != self.size:
            top = round((resized[0] - self.size[0]) / 2.0)
            left = round((resized[1] - self.size[1]) / 2.0)
            image = image.crop((left, top, left + self.size[1], top + self.size[0]))
        return image

    def to_uint8(self, image: PILImage.Image) -> Tensor:
        """uint8 (C, H, W) tensor of the preprocessed image, before scaling and normalisation."""
        return pil_to_uint8(self.geometry(image))

    def __call__(self, image: PILImage.Image) -> Tensor:
        return self.normalize(self.to_uint8(image).to(torch.float32).div_(255.0))

    def __repr__(self) -> str:
        return (f"EvalPreprocess(channels={self.channels}, size={self.size}, crop={self.crop!r}, "
                f"crop_pct={self.crop_pct}, interpolation={self.interpolation!r}, {self.normalize!r})")


class TrainPreprocess:
    """Training augmentation scaled to the input: decoded PIL image -> normalised float32 (C, H, W) tensor.

    Small inputs (larger side <= :data:`SMALL_IMAGE_MAX`): the evaluation geometry, then :class:`RandomCropFlip`
    with zero padding ``max(1, min(H, W) // 8)`` (4 for 32x32, the CIFAR recipe). Larger inputs: torchvision's
    ``RandomResizedCrop`` (scale 0.08..1, aspect 3/4..4/3) to ``size`` and a random horizontal flip (the ImageNet
    recipe). Both draw from torch's global generator.

    Args: as :class:`EvalPreprocess`.
    """

    def __init__(self, channels: int, size: Sequence[int], crop: str, crop_pct: float, interpolation: str,
                 mean: Sequence[float], std: Sequence[float]) -> None:
        self.eval = EvalPreprocess(channels, size, crop, crop_pct, interpolation, mean, std)
        out_h, out_w = self.eval.size
        self.small = max(out_h, out_w) <= SMALL_IMAGE_MAX
        if self.small:
            self.augment: Callable = RandomCropFlip((out_h, out_w), padding=max(1, min(out_h, out_w) // 8))
        else:
            from torchvision.transforms import InterpolationMode, v2

            mode = {"nearest": InterpolationMode.NEAREST, "bilinear": InterpolationMode.BILINEAR,
                    "bicubic": InterpolationMode.BICUBIC}[interpolation]
            self.augment = v2.Compose([v2.RandomResizedCrop((out_h, out_w), interpolation=mode, antialias=True),
                                       v2.RandomHorizontalFlip()])

    def __call__(self, image: PILImage.Image) -> Tensor:
        if self.small:
            x = self.augment(self.eval.to_uint8(image).to(torch.float32).div_(255.0))
        else:
            x = pil_to_uint8(self.augment(to_channels(image, self.eval.channels))).to(torch.float32).div_(255.0)
        return self.eval.normalize(x)

    def __repr__(self) -> str:
        return f"TrainPreprocess({self.augment!r}, {self.eval!r})"


def timm_train_transform(size: Sequence[int], mean: Sequence[float], std: Sequence[float], *,
                         randaugment: str | None = None, reprob: float = 0.0) -> Callable:
    """timm's training pipeline (bicubic RandomResizedCrop, flip, RandAugment, normalise, random erasing), as the
    VanillaNet ImageNet recipe uses; the plain ImageNet augmentation is :class:`TrainPreprocess`.

    Args:
        size: (height, width) of the output.
        mean: normalisation mean.
        std: normalisation standard deviation.
        randaugment: a timm RandAugment policy, e.g. ``"rand-m7-mstd0.5-inc1"``.
        reprob: random-erasing probability.
    """
    from timm.data import create_transform

    return create_transform(tuple(size), is_training=True, auto_augment=randaugment, re_prob=reprob,
                            interpolation="bicubic", mean=tuple(mean), std=tuple(std))
