"""Functional ops. Importing this package registers the ``frugalvision::`` ops with ``torch.library``."""

from . import backends  # noqa: F401  (registers the numba / triton adder2d backends)
from .adaptive_conv import adaptive_conv2d, adaptive_conv2d_macs
from .adder2d import adder2d, adder2d_macs
from .adder2d_u8 import PackedAdderWeight, adder2d_u8, adder2d_u8_cost, pack_adder_weight_u8
from .dispatch import available_backends, use_backend
from .quantize_u8 import quantize_u8_nhwc, quantize_u8_nhwc_eager

__all__ = [
    "PackedAdderWeight",
    "adaptive_conv2d",
    "adaptive_conv2d_macs",
    "adder2d",
    "adder2d_macs",
    "adder2d_u8",
    "adder2d_u8_cost",
    "available_backends",
    "pack_adder_weight_u8",
    "quantize_u8_nhwc",
    "quantize_u8_nhwc_eager",
    "use_backend",
]
