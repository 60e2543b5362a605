"""Images held in memory as one uint8 tensor: the dataset behind the built-in MNIST / CIFAR loaders, the mnist5k
sample and small image folders (a leaf module, so :mod:`.datasets` and :mod:`.folder` both import it)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor
from torch.utils.data import Dataset

from ..errors import InputError
from .transforms import Normalize

__all__ = ["InMemoryImageDataset"]


class InMemoryImageDataset(Dataset):
    """uint8 images held in one tensor, served as normalised float32 (C, H, W) tensors with int labels.

    Each item is ``(x - mean) / std`` with ``x`` the image scaled to 0..1 and passed through ``transform``.

    Args:
        images: uint8 tensor (N, C, H, W).
        labels: N integer labels.
        mean: per-channel mean.
        std: per-channel standard deviation.
        transform: optional augmentation on the 0..1 float image, applied before normalisation.

    Attributes:
        images: the uint8 tensor.
        targets: the labels as a list of ints (torchvision's attribute name).
    """

    def __init__(
        self,
        images: Tensor,
        labels: Sequence[int],
        mean: Sequence[float],
        std: Sequence[float],
        transform: Callable[[Tensor], Tensor] | None = None,
    ) -> None:
        if images.dtype != torch.uint8 or images.ndim != 4:
            raise InputError(f"images must be a uint8 (N, C, H, W) tensor, got {images.dtype} {tuple(images.shape)}")
        if len(labels) != images.shape[0]:
            raise InputError(f"{images.shape[0]} images but {len(labels)} labels")
        self.images = images
        self.targets = [int(v) for v in labels]
        self.transform = transform
        self.normalize = Normalize(mean, std)

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        x = self.images[index].to(torch.float32).div_(255.0)
        if self.transform is not None:
            x = self.transform(x)
        return self.normalize(x), self.targets[index]
