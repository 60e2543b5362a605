"""Integer (uint8) AdderNet inference: post-training quantisation onto sum-of-absolute-differences kernels.

``frugalvision.quantize(model, calibration_data)`` (:mod:`.convert`) turns a trained AdderNet into an eval-only
integer model; :mod:`.fold` holds the arithmetic (shared scale, lossless weight clipping, folded BatchNorm),
:mod:`.observers` the range choices, :mod:`.modules` / :mod:`.networks` the integer modules.
"""

from .convert import build_integer_model, quantize
from .fold import QParams
from .modules import QuantizedAdder2d, weight_count
from .observers import OBSERVERS
from .plan import compile_plan
from .serialize import is_quantized, load_quantized, save_quantized

__all__ = ["OBSERVERS", "QParams", "QuantizedAdder2d", "build_integer_model", "compile_plan", "is_quantized",
           "load_quantized", "quantize", "save_quantized", "weight_count"]
