"""Training augmentations on (C, H, W) float tensors, plus the ImageNet PIL pipelines.

The tensor transforms draw every random number from torch's global generator, so ``torch.manual_seed`` at the start of
an epoch makes that epoch's augmentation reproducible (with ``num_workers=0``). They are written for small images kept
in memory (MNIST, CIFAR): one ``torch.rand`` call and one ``grid_sample`` per sample for the affine warp, about five
times faster than ``torchvision.transforms.v2.RandomAffine`` on a 28x28 digit.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["Compose", "RandomAffine", "RandomCropFlip", "imagenet_transform", "tensor_train_transform"]


class Compose:
    """Applies tensor transforms in order."""

    def __init__(self, transforms: Sequence[Callable[[Tensor], Tensor]]) -> None:
        self.transforms = list(transforms)

    def __call__(self, x: Tensor) -> Tensor:
        for t in self.transforms:
            x = t(x)
        return x

    def __repr__(self) -> str:
        return f"Compose({self.transforms!r})"


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
        size: output height and width.
        padding: zero padding added on every side before cropping.
        flip: whether to flip at random.
    """

    def __init__(self, size: int, padding: int = 4, flip: bool = True) -> None:
        self.size = int(size)
        self.padding = int(padding)
        self.flip = flip

    def __call__(self, x: Tensor) -> Tensor:
        """Crops (and maybe flips) one (C, H, W) image."""
        p = self.padding
        padded = F.pad(x, (p, p, p, p)) if p else x
        h, w = padded.shape[-2:]
        top, left, coin = torch.randint(0, 2**31 - 1, (3,)).tolist()
        top %= h - self.size + 1
        left %= w - self.size + 1
        out = padded[..., top : top + self.size, left : left + self.size]
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


def imagenet_transform(train: bool, mean: Sequence[float], std: Sequence[float], *, randaugment: str | None = None,
                       reprob: float = 0.0) -> Callable:
    """ImageNet pipeline from a PIL image to a normalised float tensor.

    Args:
        train: ``RandomResizedCrop(224)`` + horizontal flip if true, else ``Resize(256)`` + ``CenterCrop(224)``.
        mean: normalisation mean.
        std: normalisation standard deviation.

        randaugment: a timm RandAugment policy (training only); with it or ``reprob`` the training pipeline is timm's
            ``create_transform`` (bicubic RandomResizedCrop, flip, RandAugment, normalise, random erasing), as the
            VanillaNet recipe uses.
        reprob: timm random-erasing probability (training only).

    Returns:
        A torchvision v2 transform (its random draws use torch's global generator), or timm's pipeline.
    """
    from torchvision.transforms import v2

    if train and (randaugment or reprob):
        from timm.data import create_transform

        return create_transform(224, is_training=True, auto_augment=randaugment, re_prob=reprob,
                                interpolation="bicubic", mean=tuple(mean), std=tuple(std))

    if train:
        head = [v2.RandomResizedCrop(224, antialias=True), v2.RandomHorizontalFlip()]
    else:
        head = [v2.Resize(256, antialias=True), v2.CenterCrop(224)]
    tail = [v2.ToImage(), v2.ToDtype(torch.float32, scale=True), v2.Normalize(list(mean), list(std)), v2.ToPureTensor()]
    return v2.Compose(head + tail)
