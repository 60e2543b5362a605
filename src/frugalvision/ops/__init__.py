"""Functional ops. Importing this package registers the ``frugalvision::`` ops with ``torch.library``."""

from . import _backends  # noqa: F401  (registers the numba / triton adder2d backends)
from ._dispatch import available_backends, use_backend
from .adder2d import adder2d, adder2d_macs

__all__ = ["adder2d", "adder2d_macs", "available_backends", "use_backend"]
