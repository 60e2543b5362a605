"""Layer factory: models pick their convolution by name (``conv_type``)."""

from __future__ import annotations

import inspect
from typing import Any

from torch import nn

from ..errors import ConfigError
from ..names import CONV_TYPES
from .adaptive import AdaptiveConv2d
from .adder import Adder2d
from .binary import BinaryConv2d

__all__ = ["CONV_TYPES", "create_conv2d"]

_LAYERS: dict[str, type[nn.Module]] = {"conv": nn.Conv2d, "adder": Adder2d, "binary": BinaryConv2d,
                                       "adaptive": AdaptiveConv2d}


def create_conv2d(
    conv_type: str,
    in_channels: int,
    out_channels: int,
    kernel_size: int | tuple[int, int],
    stride: int | tuple[int, int] = 1,
    padding: int | tuple[int, int] = 0,
    dilation: int | tuple[int, int] = 1,
    groups: int = 1,
    bias: bool = False,
    **kwargs: Any,
) -> nn.Module:
    """An ``nn.Conv2d``, :class:`Adder2d` or :class:`BinaryConv2d` with the same geometry.

    Extra keyword arguments go to the layer (e.g. ``weight_grad`` for adder layers).
    """
    args = (in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias)
    layer = _LAYERS.get(conv_type)
    if layer is not None:
        unknown = sorted(set(kwargs) - set(inspect.signature(layer).parameters))
        if unknown:
            names = ", ".join(map(repr, unknown))
            raise ConfigError(f"{layer.__name__} (conv_type={conv_type!r}) has no option {names}")
    if conv_type == "conv":
        return nn.Conv2d(*args, **kwargs)
    if conv_type == "adder":
        return Adder2d(*args, **kwargs)
    if conv_type == "binary":
        return BinaryConv2d(*args, **kwargs)
    if conv_type == "adaptive":
        if groups != 1:
            raise ConfigError("conv_type='adaptive' has no groups (each (out, in) pair has its own generator)")
        return AdaptiveConv2d(*args[:5], bias, dilation=dilation, **kwargs)
    raise ConfigError(f"unknown conv_type {conv_type!r}; choose one of {', '.join(CONV_TYPES)}")
