"""The training loop: one epoch of optimizer steps, the end-of-epoch BatchNorm re-estimation, and evaluation.

Each function works on a :class:`~frugalvision.train.builders.TrainingSetup` and can be called on its own, so one
step or one epoch can be tested without a whole run.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Iterator
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader

from .batchnorm import recalibrate_batchnorm
from .builders import TrainingData, TrainingSetup, epoch_seed
from .distributed import Distributed, sync_buffers
from .divergence import all_finite, check_step

__all__ = ["evaluate", "train_one_epoch", "train_step", "validate_epoch"]


def train_step(setup: TrainingSetup, images: Tensor, target: Tensor, *, last_micro_batch: bool = True
               ) -> tuple[Tensor, Tensor]:
    """Forward and backward of one micro-batch; after the last micro-batch of an accumulation, the optimizer step.

    The optimizer step, in order: remove the loss scale, AdderNet's adaptive learning rate on the final (accumulated,
    unscaled, all-reduced) gradient (Eq. 13), step, update the scale, zero the gradients, advance the schedule and
    the EMA copy. Returns ``(loss, logits)`` of the micro-batch (detached).
    """
    config, precision = setup.config, setup.precision
    synced = last_micro_batch or not hasattr(setup.train_model, "no_sync")
    with (contextlib.nullcontext() if synced else setup.train_model.no_sync()), precision.autocast():
        out = setup.objective(setup.train_model, images, target)
    precision.scaler.scale(out.loss / config.grad_accum).backward()
    if last_micro_batch:
        precision.scaler.unscale_(setup.optimizer)
        setup.alr.apply()
        precision.scaler.step(setup.optimizer)
        precision.scaler.update()
        setup.optimizer.zero_grad(set_to_none=True)
        setup.scheduler.step()
        if setup.ema is not None:
            setup.ema.update(setup.model)
    return out.loss.detach(), out.logits.detach()


def train_one_epoch(setup: TrainingSetup, data: TrainingData, epoch: int, *, progress: Any = None
                    ) -> dict[str, Any]:
    """Epoch ``epoch`` (from 0) of optimizer steps; returns its row of metrics (loss and accuracy on the training
    batches, learning rate at the end, wall time). Seeds torch's generator and the shuffling from the epoch, and
    runs the callbacks' ``on_epoch_start`` / ``on_step_end``."""
    config, ctx = setup.config, setup.context
    ctx.epoch, ctx.extra_metrics = epoch, {}
    torch.manual_seed(epoch_seed(config.seed, epoch))  # augmentation, dropout, mixup
    data.start_epoch(config.seed, epoch)
    for callback in setup.callbacks:
        callback.on_epoch_start(ctx)
    task = progress.add_task(f"epoch {epoch + 1}/{config.epochs}", total=len(data.train_loader), info="") \
        if progress is not None else None
    started = time.perf_counter()
    setup.train_model.train()
    loss_sum, correct, seen = 0.0, 0, 0
    losses_finite = True  # of the micro-batches of the current optimizer step
    batches = len(data.train_loader)
    steps = math.ceil(batches / config.grad_accum)  # a trailing partial accumulation counts as a step here
    setup.optimizer.zero_grad(set_to_none=True)
    for step, (images, target) in enumerate(data.train_loader):
        images, target = images.to(setup.device, non_blocking=True), target.to(setup.device, non_blocking=True)
        hard_target = target
        if setup.mixup is not None:
            images, target = setup.mixup(images, target)
        last_micro_batch = (step + 1) % config.grad_accum == 0
        lr = setup.optimizer.param_groups[0]["lr"]  # of this step (the schedule advances after it)
        loss, logits = train_step(setup, images, target, last_micro_batch=last_micro_batch)
        if last_micro_batch or step == batches - 1:  # the loss and the parameters' verdict in one host transfer
            loss_value, params_finite = torch.stack([loss.float(), all_finite(setup.model.parameters())]).tolist()
            losses_finite = losses_finite and math.isfinite(loss_value)
            check_step(losses_finite, bool(params_finite), epoch=epoch, step=step // config.grad_accum, steps=steps,
                       lr=lr, base_lr=config.lr)
            losses_finite = True
        else:
            loss_value = float(loss)
            losses_finite = losses_finite and math.isfinite(loss_value)
        if last_micro_batch:
            for callback in setup.callbacks:
                callback.on_step_end(ctx, step // config.grad_accum)
        loss_sum += loss_value * hard_target.numel()
        correct += int((logits.argmax(1) == hard_target).sum())
        seen += hard_target.numel()
        if task is not None:
            progress.update(task, advance=1, info=f"loss {loss_sum / seen:.4f}")
    if task is not None:
        progress.remove_task(task)
    return {"epoch": epoch + 1, "lr": setup.optimizer.param_groups[0]["lr"], "train_loss": loss_sum / max(seen, 1),
            "train_top1": 100 * correct / max(seen, 1), "epoch_seconds": round(time.perf_counter() - started, 3)}


def _images(loader: DataLoader, limit: int) -> Iterator[Tensor]:
    for i, (images, _) in enumerate(loader):
        if i >= limit:
            return
        yield images


def validate_epoch(setup: TrainingSetup, data: TrainingData, dist_info: Distributed) -> dict[str, Any]:
    """End of an epoch: re-estimate BatchNorm statistics (adder models), make every rank's buffers equal, evaluate the
    model (and its EMA copy) on the validation split. Returns ``bn_drift`` (when re-estimated) and ``val_*``."""
    config, row = setup.config, {}
    if setup.recalibrate_bn:
        batches = config.bn_recalibration_batches
        row["bn_drift"] = recalibrate_batchnorm(setup.model, _images(data.train_loader, batches), setup.device)
        if setup.ema is not None:
            recalibrate_batchnorm(setup.ema_model, _images(data.train_loader, batches), setup.device)
    if dist_info.world > 1:  # one set of BN statistics on every rank for validation and the checkpoint
        for net in (setup.model, setup.ema_model):
            if net is not None:
                sync_buffers(net, dist_info.world, average_bn=setup.recalibrate_bn)
    val = evaluate(setup.model, data.val_loader, setup.device)
    row.update({f"val_{k}": v for k, v in val.items() if k != "num_samples"})
    if setup.ema is not None:
        ema_val = evaluate(setup.ema_model, data.val_loader, setup.device)
        row.update({f"ema_val_{k}": v for k, v in ema_val.items() if k != "num_samples"})
    return row


def _correct_in_top(logits: Tensor, target: Tensor, k: int) -> Tensor:
    top = logits.topk(min(k, logits.shape[1]), dim=1).indices
    return (top == target[:, None]).any(dim=1).sum()


@torch.no_grad()
def evaluate(model: nn.Module, loader: DataLoader, device: torch.device | str = "cpu") -> dict[str, float]:
    """Top-1 / top-5 accuracy (%) and mean cross-entropy over ``loader`` (summed over all ranks under DDP)."""
    was_training = model.training
    model.eval()
    totals = torch.zeros(4, dtype=torch.float64, device=device)  # loss sum, top1, top5, samples
    for images, target in loader:
        images, target = images.to(device), target.to(device)
        logits = model(images).float()
        totals += torch.stack([
            F.cross_entropy(logits, target, reduction="sum").double(), _correct_in_top(logits, target, 1).double(),
            _correct_in_top(logits, target, 5).double(), torch.tensor(float(target.numel()), device=device).double(),
        ])
    if dist.is_initialized():
        dist.all_reduce(totals)
    model.train(was_training)
    loss, top1, top5, n = totals.tolist()
    n = max(n, 1.0)
    return {"top1": 100 * top1 / n, "top5": 100 * top5 / n, "loss": loss / n, "num_samples": int(n)}
