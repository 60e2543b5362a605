"""Observers: choose the range ``[lo, hi]`` that one uint8 activation tensor is quantised over.

* ``minmax``: the smallest and largest value seen on the calibration data.
* ``percentile``: the ``percentile``-th and ``(100 - percentile)``-th percentiles of a random sample of the values
  (clips rare outliers, keeps resolution for the bulk).
* ``mse``: a search over shrunk ranges ``alpha * [lo, hi]`` (``alpha`` on a geometric grid from 1 down to 1/8)
  that minimises a caller-given error; :mod:`frugalvision.quant.convert` passes the mean squared error of the
  consuming layers' BatchNorm outputs against fp32, i.e. the layer's output error.

Tensors whose observed minimum is >= 0 (after a ReLU) keep ``lo = 0``, so their zero point is 0 and the whole byte
range covers the positive values.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from ..errors import ConfigError, InputError
from .fold import QParams

__all__ = ["OBSERVERS", "RangeStats", "minmax_range", "percentile_range", "search_range"]

OBSERVERS = ("minmax", "percentile", "mse")


class RangeStats:
    """Running minimum and maximum of a tensor stream plus a random sample of its values.

    Args:
        name: what the tensors are (e.g. ``"input of layer1.0.conv1"``), for error messages.
        sample_per_update: values drawn (with replacement, from a seeded generator) from each tensor seen.
    """

    def __init__(self, name: str = "a calibrated tensor", sample_per_update: int = 16384, seed: int = 0) -> None:
        self.name = name
        self.min = float("inf")
        self.max = float("-inf")
        self.count = 0
        self._samples: list[Tensor] = []
        self._per_update = sample_per_update
        self._generator = torch.Generator().manual_seed(seed)

    def update(self, x: Tensor) -> None:
        flat = x.detach().reshape(-1).float()
        if flat.numel() == 0:
            return
        if not torch.isfinite(flat).all():
            raise InputError(f"quantize: the float model's activations at the {self.name} are not finite (NaN or inf) "
                             "on the calibration data; check the model's weights and the images")
        self.min = min(self.min, float(flat.min()))
        self.max = max(self.max, float(flat.max()))
        self.count += flat.numel()
        index = torch.randint(flat.numel(), (min(self._per_update, flat.numel()),), generator=self._generator)
        self._samples.append(flat[index].cpu())

    @property
    def samples(self) -> Tensor:
        return torch.cat(self._samples) if self._samples else torch.zeros(0)

    @property
    def nonnegative(self) -> bool:
        return self.min >= 0.0


def minmax_range(stats: RangeStats) -> tuple[float, float]:
    """``[min, max]`` of everything seen."""
    return (0.0 if stats.nonnegative else stats.min), stats.max


def percentile_range(stats: RangeStats, percentile: float = 99.99) -> tuple[float, float]:
    """``[q_(100-p), q_p]`` of the sampled values (``lo = 0`` for non-negative tensors)."""
    if not 50.0 < percentile <= 100.0:
        raise ConfigError(f"quantize: percentile must be in (50, 100], got {percentile}")
    values = stats.samples.double()
    hi = float(torch.quantile(values, percentile / 100.0))
    lo = 0.0 if stats.nonnegative else float(torch.quantile(values, 1.0 - percentile / 100.0))
    return lo, hi


def search_range(
    stats: RangeStats, error: Callable[[QParams], float], num_candidates: int = 25
) -> tuple[tuple[float, float], list[tuple[float, float]]]:
    """The range ``alpha * [lo, hi]`` (``alpha = 2 ** (-i / 8)``, ``i < num_candidates``) of least ``error(qparams)``.

    Returns:
        The best ``(lo, hi)`` and the ``(alpha, error)`` of every candidate (for reports and tests).
    """
    lo, hi = minmax_range(stats)
    trials = []
    best, best_error = (lo, hi), float("inf")
    for i in range(num_candidates):
        alpha = 2.0 ** (-i / 8)
        candidate = (lo * alpha, hi * alpha)
        value = float(error(QParams.from_range(*candidate)))
        trials.append((alpha, value))
        if value < best_error:
            best, best_error = candidate, value
    return best, trials
