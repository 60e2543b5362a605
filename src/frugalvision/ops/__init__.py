"""Functional ops. Importing this package registers the ``frugalvision::`` ops with ``torch.library``."""

from . import backends  # noqa: F401  (registers the numba / triton adder2d backends)
from .adaptive_conv import adaptive_conv2d, adaptive_conv2d_macs
from .adder2d import adder2d, adder2d_macs
from .dispatch import available_backends, use_backend

__all__ = ["adaptive_conv2d", "adaptive_conv2d_macs", "adder2d", "adder2d_macs", "available_backends", "use_backend"]
