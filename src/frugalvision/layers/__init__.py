"""Neural-network layers."""

from .adaptive import AdaptiveConv2d
from .adder import Adder2d
from .binary import BinaryConv2d
from .create import CONV_TYPES, create_conv2d

__all__ = ["CONV_TYPES", "AdaptiveConv2d", "Adder2d", "BinaryConv2d", "create_conv2d"]
