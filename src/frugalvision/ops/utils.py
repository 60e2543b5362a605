"""Argument helpers shared by the frugalvision ops."""

from __future__ import annotations

from collections.abc import Sequence

from ..errors import InputError

__all__ = ["conv_output_size", "to_pair"]


def conv_output_size(
    height: int, width: int, kernel_size: Sequence[int], stride: Sequence[int], padding: Sequence[int],
    dilation: Sequence[int],
) -> tuple[int, int]:
    """Spatial output size of a sliding-window op, the same arithmetic as ``nn.Conv2d``."""
    sizes = [(size + 2 * p - d * (k - 1) - 1) // s + 1
             for size, k, s, p, d in zip((height, width), kernel_size, stride, padding, dilation)]
    return sizes[0], sizes[1]


def to_pair(value: int | Sequence[int], op: str, name: str) -> tuple[int, int]:
    """``3 -> (3, 3)``; a pair is checked and returned as a tuple of ints."""
    if isinstance(value, int):
        return value, value
    pair = tuple(int(v) for v in value)
    if len(pair) != 2:
        raise InputError(f"{op}: {name} must be an int or a pair, got {value}")
    return pair[0], pair[1]
