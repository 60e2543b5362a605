"""Neural-network layers."""

from .adder import Adder2d
from .binary import BinaryConv2d
from .create import CONV_TYPES, create_conv2d

__all__ = ["CONV_TYPES", "Adder2d", "BinaryConv2d", "create_conv2d"]
