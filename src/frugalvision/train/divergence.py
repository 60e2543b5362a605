"""Stopping a run whose loss or weights stop being finite numbers.

A run that diverges (a learning rate far too high, an exploding AdderNet layer) must not keep going with ``nan``
losses and then save a ``nan`` model as its result. The loop checks once per optimizer step:

- every micro-batch loss of the step is finite: the loss is already fetched to the host for the running mean, so
  this costs nothing more;
- every parameter is finite after the step (a finite loss with a huge learning rate can still step the weights to
  ``inf``): one float64 sum per parameter tensor on the device (:func:`all_finite`), fetched with the loss in the
  same host transfer.

Gradients are not checked: under fp16 AMP the loss scaler skips the steps whose gradients overflow (and lowers the
scale); such a step leaves the weights unchanged and is not a divergence. Under DDP the ranks all-reduce the
verdict, so that every rank stops at the same step (one rank alone raising would leave the others waiting in the
next all-reduce). Before a finished epoch is saved, the model's parameters and buffers (BatchNorm statistics
re-estimated after the last step included) are checked once more, so a run never writes a non-finite model.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.distributed as dist
from torch import Tensor, nn

from ..errors import TrainingDivergedError

__all__ = ["all_finite", "check_model_finite", "check_step", "divergence_hint"]


def all_finite(tensors: Iterable[Tensor]) -> Tensor:
    """A 0-d bool tensor on the tensors' device: whether every element of every floating-point tensor is finite.

    One float64 sum per tensor: a NaN or an infinity makes the sum non-finite, and finite float32/16 values cannot
    overflow a float64 sum (at most ~3.4e38 * 2**31 < 1.8e308). About 3x cheaper than ``isfinite(t).all()`` per
    tensor (two kernels each); 15 LeNet-5 tensors: ~46 us against ~210 us on the loaded 2-core machine."""
    sums = [t.detach().sum(dtype=torch.float64) for t in tensors if t.is_floating_point()]
    return torch.stack(sums).sum().isfinite() if sums else torch.tensor(True)


def divergence_hint(base_lr: float) -> str:
    return (f"lower the learning rate (--lr, now {base_lr:g}; e.g. {base_lr / 10:g}), or check the data and the "
            "loss for invalid values")


def check_step(loss_finite: bool, params_finite: bool, *, epoch: int, step: int, steps: int, lr: float,
               base_lr: float) -> None:
    """Raise :class:`TrainingDivergedError` unless the optimizer step ``step`` (from 0) of epoch ``epoch`` (from 0)
    had finite losses and left finite parameters, on every rank (one all-reduce under DDP). ``lr``: the step's
    learning rate (of the first parameter group); ``base_lr``: the configured one (``--lr``)."""
    bad = (not loss_finite) + 2 * (not params_finite)  # bit 0: a loss, bit 1: the parameters
    if dist.is_initialized() and dist.get_world_size() > 1:
        verdict = torch.tensor([float(not loss_finite), float(not params_finite)])
        if dist.get_backend() == "nccl":
            verdict = verdict.cuda()
        dist.all_reduce(verdict, op=dist.ReduceOp.MAX)  # every rank takes the same decision
        loss_bad, params_bad = verdict.tolist()
        bad = int(loss_bad > 0) + 2 * int(params_bad > 0)
    if not bad:
        return
    what = "the loss is not finite (nan or inf)" if bad & 1 else "the parameters are no longer finite after the step"
    raise TrainingDivergedError(f"training diverged at epoch {epoch + 1}, optimizer step {step + 1}/{steps} "
                                f"(learning rate {lr:.3g}): {what}; {divergence_hint(base_lr)}")


def check_model_finite(model: nn.Module, *, epoch: int, base_lr: float) -> None:
    """Raise :class:`TrainingDivergedError` if a parameter or buffer of ``model`` is not finite (before saving)."""
    names = [name for name, t in (*model.named_parameters(), *model.named_buffers())
             if t.is_floating_point() and not bool(torch.isfinite(t).all())]
    if names:
        raise TrainingDivergedError(f"training diverged in epoch {epoch + 1}: {names[0]} is not finite after the "
                                    f"epoch; {divergence_hint(base_lr)}")
