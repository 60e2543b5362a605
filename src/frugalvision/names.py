"""The vocabulary of frugalvision: the names a user picks from (conv types, learning-rate modes, datasets, energy
tables), defined here once, with no dependency, so that the command line can offer and document them without
importing torch (``frugalvision --help`` starts in a fraction of a second). The library modules that implement each
name import its list from here (:mod:`frugalvision.layers.create`, :mod:`frugalvision.optim.alr`,
:mod:`frugalvision.data.info`, :mod:`frugalvision.analysis.counting`).
"""

from __future__ import annotations

__all__ = ["ALR_MODES", "CONV_TYPES", "DATASET_NAMES", "ENERGY_TABLE_NAMES"]

CONV_TYPES = ("conv", "adder", "binary", "adaptive")
"""Kinds of convolution a model can be built with (``conv_type``): multiply-accumulate, AdderNet (negative L1
distance), binary (sign weights and inputs), adaptive kernels."""

ALR_MODES = ("alr", "official", "ilr", "none")
"""Learning-rate scaling of adder layers: adaptive (AdderNet Eq. 13), as the official code, a plain per-layer
constant (ILR), none."""

DATASET_NAMES = ("mnist5k", "mnist", "cifar10", "cifar100", "imagenet", "fake", "folder")
"""Datasets :func:`frugalvision.data.build_dataset` serves, described by :data:`frugalvision.data.DATASETS`."""

ENERGY_TABLE_NAMES = ("fp32", "int8")
"""Precisions :func:`frugalvision.count_ops` prices operations at
(:data:`frugalvision.analysis.counting.ENERGY_TABLES`)."""
