"""Re-estimating BatchNorm statistics.

BatchNorm after an adder layer sees outputs of order -1e3 whose mean moves by tens per step while the weights train
(the released ResNet-20 has running means of -213...-3221 with standard deviations of 2-15). The exponential
running average (momentum 0.1) then lags far behind the current weights, and eval-mode accuracy falls well below
train-mode accuracy. The cure is cheap: before evaluating or saving, reset the statistics and re-estimate them
with a cumulative average over a few training batches with the current weights.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable

import torch
from torch import Tensor, nn

from ..errors import InputError

__all__ = ["batchnorm_layers", "recalibrate_batchnorm"]


def batchnorm_layers(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]


@torch.no_grad()
def recalibrate_batchnorm(model: nn.Module, batches: Iterable[Tensor], device: torch.device | str | None = None
                          ) -> float:
    """Replace the running statistics of every BatchNorm by their exact average over ``batches``.

    Only BatchNorm layers run in training mode (dropout and the rest stay in eval mode); weights do not change.

    Returns:
        The drift: the largest ``|old_mean - new_mean| / sqrt(new_var + eps)`` over all channels and layers, i.e.
        how many standard deviations the stale statistics were off (0 when nothing changed).
    """
    layers = batchnorm_layers(model)
    batches = iter(batches)
    first = next(batches, None)
    if first is None:
        raise InputError("recalibrate_batchnorm needs at least one batch")
    if not layers:
        return 0.0
    was_training = model.training
    old = [(m.running_mean.clone(), m.momentum) for m in layers]
    model.eval()
    for m in layers:
        m.reset_running_stats()
        m.momentum = None  # cumulative moving average: every batch weighs the same
        m.train()
    for x in itertools.chain([first], batches):
        model(x.to(device) if device is not None else x)
    drift = 0.0
    for m, (old_mean, momentum) in zip(layers, old):
        m.momentum = momentum
        shift = (old_mean - m.running_mean).abs() / (m.running_var + m.eps).sqrt()
        drift = max(drift, float(shift.max()))
    model.train(was_training)
    return drift
