"""``frugalvision::quantize_u8_nhwc``: float (N, C, H, W) -> uint8 (N, H, W, C), the entry into the integer domain.

Registered with ``torch.library`` (with a fake implementation) so that :func:`frugalvision.count_ops` can run
integer models on the meta device and ``torch.compile`` can trace them; counted as one multiplication (by ``1/s``)
and one addition (``+ z``) per element, like a BatchNorm.
"""

from __future__ import annotations

import warnings

import torch
from torch import Tensor

from .cost import NORM, register_cost

__all__ = ["quantize_u8_nhwc", "quantize_u8_nhwc_eager"]


def _silence_quantized_tensor_notice() -> None:
    """torch.quantize_per_tensor is the one fused float -> uint8 pass PyTorch offers; its deprecation notice (about
    the quantized tensor type, of which only ``int_repr()``, a plain uint8 tensor, is used here) is a warn-once in
    PyTorch's C++ code: trigger it here, silently, so that users never see it."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.quantize_per_tensor(torch.zeros(1), 1.0, 0, torch.quint8)


_silence_quantized_tensor_notice()


def quantize_u8_nhwc_eager(input: Tensor, scale: float, zero_point: int) -> Tensor:
    """``clamp(round(x / scale) + zero_point, 0, 255)`` as uint8, channels last: (N, C, H, W) -> (N, H, W, C)
    (the op's body, called directly by compiled plans: ``torch.library`` adds ~10 us per call)."""
    x = input.float().contiguous(memory_format=torch.channels_last)  # then the permute below is free
    return torch.quantize_per_tensor(x, scale, zero_point, torch.quint8).int_repr().permute(0, 2, 3, 1)


@torch.library.custom_op("frugalvision::quantize_u8_nhwc", mutates_args=())
def quantize_u8_nhwc(input: Tensor, scale: float, zero_point: int) -> Tensor:
    """``clamp(round(x / scale) + zero_point, 0, 255)`` as uint8, channels last: (N, C, H, W) -> (N, H, W, C)."""
    return quantize_u8_nhwc_eager(input, scale, zero_point)


@quantize_u8_nhwc.register_fake
def _(input: Tensor, scale: float, zero_point: int) -> Tensor:
    n, c, h, w = input.shape
    return input.new_empty((n, h, w, c), dtype=torch.uint8)


def _count_quantize(args, kwargs, out, module):
    return NORM, {"mul": out.numel(), "add": out.numel(), "precision": "fp32"}


register_cost(torch.ops.frugalvision.quantize_u8_nhwc.default, _count_quantize)
