"""The training engine: one loop for every model, dataset and recipe.

``train(config)`` builds everything from a :class:`~frugalvision.train.config.TrainConfig`, trains, validates and
checkpoints each epoch, and returns the final metrics. Properties it guarantees:

- Deterministic on the CPU for a given seed. Every epoch reseeds torch's RNG and the shuffling generator from
  ``(seed, epoch)``, so a resumed run draws exactly the numbers the uninterrupted run would have drawn.
- ``resume=True`` continues from the last finished epoch of the run folder (one atomically written file holds all
  of the state: see :mod:`.checkpointing`).
- AdderNet's adaptive learning rate is applied to the final gradient: after gradient accumulation, loss-scale
  removal and DDP's all-reduce, right before the optimizer step (:mod:`frugalvision.optim.alr`).
- BatchNorm statistics are re-estimated before validation and saving for models with adder layers (their
  running averages lag behind the weights; see :mod:`.batchnorm`), and the drift is logged.
- Multi-process training with ``torchrun`` (DDP; gloo on CPU, nccl on GPU): rank 0 logs and writes files.
"""

from __future__ import annotations

import contextlib
import math
import os
import shutil
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader, DistributedSampler, RandomSampler, SequentialSampler

from ..data import build_dataset, dataset_info
from ..layers.adder import Adder2d
from ..models import create_model
from ..optim import AdaptiveLR, adder_weights
from .batchnorm import recalibrate_batchnorm
from .callbacks import Callback, TrainContext
from .checkpointing import (
    LAST_FILE,
    MODEL_FILE,
    read_state_for_resume,
    write_json,
    write_metrics_csv,
    write_training_state,
)
from .config import TrainConfig

EMA_MODEL_FILE = "model_ema.safetensors"

__all__ = ["RunExistsError", "TrainResult", "evaluate", "train"]


class RunExistsError(ValueError):
    """The run folder already holds a run and neither resume nor overwrite was asked for."""


@dataclass
class TrainResult:
    run_dir: Path
    metrics: dict[str, float]  # of the last epoch
    history: list[dict[str, Any]]
    resumed_from: int | None  # epoch (1-based count of finished epochs) the run resumed after, or None
    train_seconds: float  # wall time of the epochs run in this call


# ----------------------------------------------------------------------------------------------------------------
# Building blocks


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} requested but CUDA is not available")
    return device


def _distributed() -> tuple[int, int]:
    """(rank, world size); initialises the process group when launched by torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend)
        if torch.cuda.is_available():
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    return (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)


def _param_groups(config: TrainConfig, model: nn.Module, alr: AdaptiveLR) -> list[dict[str, Any]]:
    """Parameter groups: AdderNet's ILR group, timm's layer-wise decay groups, or bias/norm without decay."""
    if config.layer_decay:
        from timm.optim import param_groups_layer_decay

        if alr.mode == "ilr" and alr.params:
            raise ValueError("layer_decay and alr='ilr' both set per-group learning rates; choose one")
        rate, num_layers = config.layer_decay.get("rate"), config.layer_decay.get("num_layers")
        stages = getattr(model, "stages", None)
        if num_layers is not None and (stages is None or len(stages) != num_layers):
            raise ValueError(f"layer_decay.num_layers={num_layers} does not match the model's "
                             f"{'unknown' if stages is None else len(stages)} stages")
        groups = param_groups_layer_decay(model, weight_decay=config.weight_decay, layer_decay=rate)
        return [{**g, "lr": config.lr * g.pop("lr_scale", 1.0)} for g in groups]
    if not config.decay_bias_and_norm:
        from timm.optim import param_groups_weight_decay

        return [{**g, "lr": config.lr} for g in param_groups_weight_decay(model, config.weight_decay)]
    return alr.param_groups(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)


def build_optimizer(config: TrainConfig, model: nn.Module, alr: AdaptiveLR) -> torch.optim.Optimizer:
    groups = _param_groups(config, model, alr)
    if config.optimizer in ("sgd", "nesterov"):
        return torch.optim.SGD(groups, lr=config.lr, momentum=config.momentum, nesterov=config.optimizer == "nesterov")
    if config.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=config.lr)
    if config.optimizer == "lamb":
        from timm.optim import Lamb

        return Lamb(groups, lr=config.lr)
    raise ValueError(f"unknown optimizer {config.optimizer!r}; choose sgd, nesterov, adamw or lamb")


def lr_factor(config: TrainConfig, steps_per_epoch: int) -> Callable[[int], float]:
    """Multiplier of the base learning rate at optimizer step ``t``: linear warm-up then cosine to ``min_lr``."""
    total = max(1, config.epochs * steps_per_epoch)
    warmup = int(config.warmup_epochs * steps_per_epoch)
    floor = config.min_lr / config.lr if config.lr > 0 else 0.0
    if config.scheduler not in ("cosine", "constant"):
        raise ValueError(f"unknown scheduler {config.scheduler!r}; choose cosine or constant")

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        if config.scheduler == "constant":
            return 1.0
        progress = (step - warmup) / max(1, total - warmup)
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return factor


def _accuracy(logits: Tensor, target: Tensor, k: int) -> Tensor:
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
            F.cross_entropy(logits, target, reduction="sum").double(), _accuracy(logits, target, 1).double(),
            _accuracy(logits, target, 5).double(), torch.tensor(float(target.numel()), device=device).double(),
        ])
    if dist.is_initialized():
        dist.all_reduce(totals)
    model.train(was_training)
    loss, top1, top5, n = totals.tolist()
    n = max(n, 1.0)
    return {"top1": 100 * top1 / n, "top5": 100 * top5 / n, "loss": loss / n, "num_samples": int(n)}


def _needs_bn_recalibration(config: TrainConfig, model: nn.Module) -> bool:
    if config.bn_recalibration == "always":
        return True
    if config.bn_recalibration == "never":
        return False
    if config.bn_recalibration != "auto":
        raise ValueError(f"bn_recalibration must be auto, always or never, got {config.bn_recalibration!r}")
    return any(isinstance(m, Adder2d) for m in model.modules())


def _images(loader: DataLoader, limit: int) -> Iterator[Tensor]:
    for i, (images, _) in enumerate(loader):
        if i >= limit:
            return
        yield images


def _progress(enabled: bool):
    if not enabled:
        return contextlib.nullcontext(None)
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[info]}"),
               TimeRemainingColumn())
    return Progress(*columns, transient=True)


def prepare_run_dir(config: TrainConfig, *, resume: bool, overwrite: bool) -> Path:
    run_dir = config.run_dir
    if run_dir.exists() and any(run_dir.iterdir()) and not resume:
        if not overwrite:
            raise RunExistsError(
                f"run folder {run_dir} already exists; pass --resume to continue it, --overwrite to replace it, "
                "or choose another --output"
            )
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    return run_dir


# ----------------------------------------------------------------------------------------------------------------
# The loop


def train(
    config: TrainConfig,
    *,
    resume: bool = False,
    overwrite: bool = False,
    callbacks: Sequence[Callback] = (),
    progress: bool = False,
    log: Callable[[str], None] | None = print,
) -> TrainResult:
    """Train ``config.model`` on ``config.dataset``; see the module docstring for the guarantees.

    Args:
        resume: continue the run in ``config.run_dir`` from its last finished epoch (a fresh start if it has none).
        overwrite: delete an existing run folder instead of refusing to start.
        callbacks: extra callbacks (a VanillaNet deep-training callback is added from ``config.deep_training``).
        progress: show a progress bar.
        log: where one-line status messages go (``None`` silences them).
    """
    rank, world = _distributed()
    is_main = rank == 0
    say = log if (log is not None and is_main) else (lambda message: None)
    device = resolve_device(config.device)
    if world > 1 and device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    run_dir = prepare_run_dir(config, resume=resume, overwrite=overwrite) if is_main else config.run_dir
    if world > 1:
        dist.barrier()

    # -- data
    info = dataset_info(config.dataset)
    data_args = {"data_dir": config.data_dir, "download": config.download, "fake_size": config.fake_size}
    in_chans = info.in_chans
    if config.dataset == "fake" and config.fake_input_size:
        data_args["fake_input_size"] = tuple(config.fake_input_size)
        in_chans = config.fake_input_size[0]
    train_set = build_dataset(config.dataset, config.train_split, augment=config.augment,
                              randaugment=config.randaugment, reprob=config.reprob, **data_args)
    val_set = build_dataset(config.dataset, config.val_split, **data_args)
    shuffle_gen = torch.Generator()
    if world > 1:
        train_sampler = DistributedSampler(train_set, num_replicas=world, rank=rank, seed=config.seed, drop_last=True)
        val_sampler = DistributedSampler(val_set, num_replicas=world, rank=rank, shuffle=False)
    else:
        train_sampler = RandomSampler(train_set, generator=shuffle_gen)
        val_sampler = SequentialSampler(val_set)
    train_loader = DataLoader(train_set, config.batch_size, sampler=train_sampler, drop_last=len(train_set) >
                              config.batch_size, num_workers=config.num_workers, generator=shuffle_gen)
    val_loader = DataLoader(val_set, config.eval_batch_size, sampler=val_sampler, num_workers=config.num_workers)

    # -- model, optimisation
    torch.manual_seed(config.seed)
    model_kwargs = {"num_classes": info.num_classes, "in_chans": in_chans, **config.model_kwargs}
    model = create_model(config.model, **model_kwargs).to(device)
    model_cfg = dict(model.frugalvision_cfg)
    alr = AdaptiveLR(adder_weights(model), mode=config.alr, eta=config.alr_eta)
    optimizer = build_optimizer(config, model, alr)
    steps_per_epoch = max(1, len(train_loader) // config.grad_accum)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor(config, steps_per_epoch))
    use_scaler = config.amp == "fp16" and device.type == "cuda"
    scaler = torch.amp.GradScaler(device.type, enabled=use_scaler)
    autocast_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(config.amp)
    if config.amp not in ("none", "bf16", "fp16"):
        raise ValueError(f"amp must be none, bf16 or fp16, got {config.amp!r}")
    ema = None
    if config.ema_decay:
        from timm.utils import ModelEmaV3

        ema = ModelEmaV3(model, decay=config.ema_decay)
    mixup = None
    if config.mixup > 0 or config.cutmix > 0:
        from timm.data import Mixup

        mixup = Mixup(mixup_alpha=config.mixup, cutmix_alpha=config.cutmix, label_smoothing=config.label_smoothing,
                      num_classes=info.num_classes)
    callbacks = list(callbacks)
    if config.deep_training:
        from .deep_training import DeepTraining

        callbacks.insert(0, DeepTraining(**config.deep_training))
    train_model: nn.Module = model
    if world > 1:
        train_model = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda"
                                                          else None)
    ctx = TrainContext(model=model, optimizer=optimizer, config=config.to_dict(), run_dir=run_dir,
                       num_epochs=config.epochs, ema_model=ema.module if ema is not None else None)
    recalibrate = _needs_bn_recalibration(config, model)

    # -- resume
    history: list[dict[str, Any]] = []
    start_epoch, resumed_from = 0, None
    if resume:
        state = read_state_for_resume(run_dir)
        if state is not None:
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            scaler.load_state_dict(state.get("scaler") or {})
            if ema is not None and state["ema"] is not None:
                ema.module.load_state_dict(state["ema"])
            for callback, callback_state in zip(callbacks, state.get("callbacks", [])):
                callback.load_state_dict(callback_state)
            history = state["history"]
            start_epoch = resumed_from = state["epoch"]
            changed = sorted(k for k, v in config.to_dict().items() if state["config"].get(k, v) != v)
            if changed:
                say(f"Note: resuming with changed options: {', '.join(changed)} (the stored schedule state is kept)")
            say(f"Resuming {run_dir} from epoch {start_epoch + 1}/{config.epochs} ({start_epoch} finished)")
        else:
            say(f"Nothing to resume in {run_dir}: starting from epoch 1")
    if is_main:
        write_json(run_dir / "config.json", {"train": config.to_dict(), "model": model_cfg})
    writer = _tensorboard(run_dir) if is_main else None
    for callback in callbacks:
        callback.on_train_start(ctx)

    # -- epochs
    started = time.perf_counter()
    metrics: dict[str, Any] = history[-1] if history else {}
    progress_bar = _progress(progress and is_main)
    with progress_bar as bar:
        for epoch in range(start_epoch, config.epochs):
            ctx.epoch, ctx.extra_metrics = epoch, {}
            torch.manual_seed(config.seed * 100_003 + epoch)  # per-epoch RNG: augmentation, dropout, mixup
            shuffle_gen.manual_seed(config.seed * 100_003 + epoch)
            if isinstance(train_sampler, DistributedSampler):
                train_sampler.set_epoch(epoch)
            for callback in callbacks:
                callback.on_epoch_start(ctx)
            task = bar.add_task(f"epoch {epoch + 1}/{config.epochs}", total=len(train_loader), info="") if bar else None
            epoch_start = time.perf_counter()
            train_model.train()
            loss_sum, correct, seen = 0.0, 0, 0
            optimizer.zero_grad(set_to_none=True)
            for step, (images, target) in enumerate(train_loader):
                images, target = images.to(device, non_blocking=True), target.to(device, non_blocking=True)
                hard_target = target
                if mixup is not None:
                    images, target = mixup(images, target)
                last_micro = (step + 1) % config.grad_accum == 0
                sync = contextlib.nullcontext() if (last_micro or world == 1) else train_model.no_sync()
                with sync, torch.autocast(device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
                    logits = train_model(images)
                    loss = _loss(logits.float(), target, config)
                scaler.scale(loss / config.grad_accum).backward()
                if last_micro:
                    scaler.unscale_(optimizer)
                    alr.apply()  # after unscaling and all-reduce: AdderNet Eq. 13 on the final gradient
                    scaler.step(optimizer)
                    scaler.update()
                    optimizer.zero_grad(set_to_none=True)
                    scheduler.step()
                    if ema is not None:
                        ema.update(model)
                    for callback in callbacks:
                        callback.on_step_end(ctx, step // config.grad_accum)
                loss_sum += float(loss.detach()) * hard_target.numel()
                correct += int((logits.argmax(1) == hard_target).sum())
                seen += hard_target.numel()
                if bar is not None:
                    bar.update(task, advance=1, info=f"loss {loss_sum / seen:.4f}")
            if bar is not None:
                bar.remove_task(task)
            train_time = time.perf_counter() - epoch_start
            row: dict[str, Any] = {"epoch": epoch + 1, "lr": optimizer.param_groups[0]["lr"],
                                   "train_loss": loss_sum / max(seen, 1), "train_top1": 100 * correct / max(seen, 1),
                                   "epoch_seconds": round(train_time, 3)}
            if recalibrate:
                row["bn_drift"] = recalibrate_batchnorm(model, _images(train_loader, config.bn_recalibration_batches),
                                                        device)
                if ema is not None:
                    recalibrate_batchnorm(ema.module, _images(train_loader, config.bn_recalibration_batches), device)
            if world > 1:  # one set of BN statistics on every rank for validation and the checkpoint
                for net in (model, ema.module if ema is not None else None):
                    if net is not None:
                        _sync_buffers(net, world, average_bn=recalibrate)
            val = evaluate(model, val_loader, device)
            row.update({f"val_{k}": v for k, v in val.items() if k != "num_samples"})
            if ema is not None:
                row.update({f"ema_val_{k}": v for k, v in evaluate(ema.module, val_loader, device).items()
                            if k != "num_samples"})
            for callback in callbacks:
                callback.on_epoch_end(ctx, row)
            row.update(ctx.extra_metrics)
            history.append(row)
            metrics = row
            if is_main:
                _save(run_dir, model, ema, optimizer, scheduler, scaler, callbacks, history, epoch + 1, config,
                      model_cfg)
                if writer is not None:
                    for key, value in row.items():
                        if key != "epoch" and isinstance(value, (int, float)):
                            writer.add_scalar(key, value, epoch + 1)
                    writer.flush()
                say(_epoch_line(config, row))
    if writer is not None:
        writer.close()
    alr.remove()
    return TrainResult(run_dir=run_dir, metrics=metrics, history=history, resumed_from=resumed_from,
                       train_seconds=time.perf_counter() - started)


def _sync_buffers(model: nn.Module, world: int, *, average_bn: bool) -> None:
    """DDP: average the BN statistics that each rank re-estimated on its own shard (``average_bn``), or give every
    rank rank 0's buffers (what DDP's next forward would do), so that all ranks evaluate and rank 0 saves one model."""
    averaged = set()
    if average_bn:
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.running_mean is not None:
                for buffer in (m.running_mean, m.running_var):
                    dist.all_reduce(buffer)
                    buffer.div_(world)
                    averaged.add(id(buffer))
    for buffer in model.buffers():
        if id(buffer) not in averaged:
            dist.broadcast(buffer, src=0)


def _loss(logits: Tensor, target: Tensor, config: TrainConfig) -> Tensor:
    """Cross-entropy or timm's binary cross-entropy; soft (mixup / cutmix) targets already carry the smoothing."""
    if config.loss == "bce":
        from timm.loss import BinaryCrossEntropy

        return BinaryCrossEntropy(smoothing=0.0 if target.dim() == 2 else config.label_smoothing)(logits, target)
    if config.loss != "ce":
        raise ValueError(f"loss must be ce or bce, got {config.loss!r}")
    if target.dim() == 2:
        return torch.sum(-target * F.log_softmax(logits, dim=-1), dim=-1).mean()
    return F.cross_entropy(logits, target, label_smoothing=config.label_smoothing)


def _tensorboard(run_dir: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # tensorboard is a dependency, but a broken install should not stop training
        return None
    return SummaryWriter(str(run_dir / "tensorboard"))


def _epoch_line(config: TrainConfig, row: dict[str, Any]) -> str:
    return (f"{config.name} epoch {row['epoch']}/{config.epochs}: train loss {row['train_loss']:.4f}, "
            f"val top1 {row['val_top1']:.2f}%, {row['epoch_seconds']:.1f}s")


def _save(run_dir: Path, model: nn.Module, ema: Any, optimizer: torch.optim.Optimizer, scheduler: Any, scaler: Any,
          callbacks: Sequence[Callback], history: list[dict[str, Any]], epoch: int, config: TrainConfig,
          model_cfg: dict[str, Any]) -> None:
    from ..models.checkpoint import save_model_file

    metadata = {"epoch": epoch, "config": config.to_dict(), "scheduler": scheduler.state_dict(),
                "scaler": scaler.state_dict(), "callbacks": [c.state_dict() for c in callbacks], "history": history}
    write_training_state(run_dir / LAST_FILE, model_state=model.state_dict(), optimizer_state=optimizer.state_dict(),
                         ema_state=ema.module.state_dict() if ema is not None else None, metadata=metadata)
    info = {**model_cfg, "epoch": epoch, "dataset": config.dataset, "metrics": history[-1]}
    save_model_file(run_dir / MODEL_FILE, model.state_dict(), info)
    if ema is not None:
        save_model_file(run_dir / EMA_MODEL_FILE, ema.module.state_dict(), {**info, "ema": True})
    write_metrics_csv(run_dir / "metrics.csv", history)
