"""``frugalvision bench epoch``: wall and CPU time of plain training epochs of LeNet-5-BN on mnist5k, AdderNet
against its CNN twin (SGD, cross-entropy, batch 64).

This is how frugalvision's OpenMP wait policy was chosen (README, "Notes"): run it once with the default
(``OMP_WAIT_POLICY=PASSIVE``, set by ``import frugalvision``) and once with ``OMP_WAIT_POLICY=`` (libgomp's default,
spinning), on an idle machine and next to another job; the policy is recorded in the CSV. One untimed training step
per model first (numba's kernels load from the cache), then ``--epochs`` rounds, each timing one epoch of every
model in a new random order (:func:`frugalvision.bench.common.time_interleaved`).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from ..errors import ConfigError
from .common import Target, format_table, machine_info, result_path, time_interleaved, write_csv

if TYPE_CHECKING:
    import torch

__all__ = ["CONV_TYPES", "TARGET", "bench_epochs", "summary_table"]

CONV_TYPES = ("adder", "conv")


def _epoch_fn(conv_type: str, batch_size: int, device: torch.device, augment: bool, images: int | None,
              ) -> tuple[Callable[[], None], int]:
    """A closure training LeNet-5-BN (``conv_type``) for one epoch on mnist5k train, after one warm-up step; and the
    number of images per epoch."""
    import torch
    import torch.nn.functional as F
    from torch.utils.data import DataLoader, Subset

    from ..data import build_dataset
    from ..models import create_model

    torch.manual_seed(0)
    model = create_model("lenet5_bn", conv_type=conv_type).to(device).train()
    dataset = build_dataset("mnist5k", "train", augment=augment)
    if images is not None:
        dataset = Subset(dataset, range(min(images, len(dataset))))
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=True, generator=torch.Generator().manual_seed(0))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

    def step(x: torch.Tensor, target: torch.Tensor) -> None:
        optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(model(x.to(device)), target.to(device)).backward()
        optimizer.step()

    step(*next(iter(loader)))  # warm-up: numba's cache, the allocator

    def epoch() -> None:
        for x, target in loader:
            step(x, target)

    return epoch, len(dataset)


def bench_epochs(conv_types: Sequence[str] = CONV_TYPES, batch_size: int = 64, epochs: int = 2,
                 device: str | torch.device = "cpu", augment: bool = False, images: int | None = None,
                 ) -> list[dict[str, object]]:
    """Median and minimum wall / process CPU seconds of one epoch per conv type, one row each; ``time_vs_conv``
    compares medians of the same run.

    Args:
        epochs: timed epochs per model (interleaved rounds).
        augment: mnist5k's training augmentation (random crops).
        images: train on the first ``images`` images only (default: all 5,000).
    """
    import torch

    device = torch.device(device)
    unknown = [c for c in conv_types if c not in CONV_TYPES]
    if unknown or not conv_types:
        raise ConfigError(f"conv types {', '.join(unknown) or '(none)'}: choose from {', '.join(CONV_TYPES)}")
    fns, sizes = {}, {}
    for conv_type in conv_types:
        fns[conv_type], sizes[conv_type] = _epoch_fn(conv_type, batch_size, device, augment, images)
    sync = torch.cuda.synchronize if device.type == "cuda" else None
    timings = time_interleaved(fns, epochs, warmup=0, sync=sync)
    medians = timings.medians()
    rows = []
    for conv_type in conv_types:
        rows.append({
            "model": "lenet5_bn", "conv_type": conv_type, "dataset": "mnist5k train", "images": sizes[conv_type],
            "batch_size": batch_size, "augment": augment, "device": str(device), "epochs": epochs,
            "median_s": round(medians[conv_type], 4), "min_s": round(timings.minimum(conv_type), 4),
            "cpu_median_s": round(timings.median(conv_type, "cpu"), 4),
            "time_vs_conv": round(medians[conv_type] / medians["conv"], 4) if "conv" in medians else "",
        })
    return rows


def summary_table(rows: Sequence[dict[str, object]]) -> str:
    """One line per conv type: median / fastest wall seconds, CPU seconds, ratio to the CNN twin."""
    return format_table(["model", "images", "median s", "min s", "cpu s", "time/conv"],
                        [[f"{r['model']} {r['conv_type']}", r["images"], f"{r['median_s']:.2f}", f"{r['min_s']:.2f}",
                          f"{r['cpu_median_s']:.2f}", r["time_vs_conv"] or "-"] for r in rows])


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--conv-types", default=",".join(CONV_TYPES), help="comma list (default adder,conv)")
    parser.add_argument("--epochs", type=int, default=2, help="timed epochs per model, interleaved (default 2)")
    parser.add_argument("--batch-size", type=int, default=64, help="images per training step")
    parser.add_argument("--images", type=int, default=None, help="train on the first N images (default: all 5,000)")
    parser.add_argument("--augment", action="store_true", help="with mnist5k's training augmentation")
    parser.add_argument("--threads", type=int, default=None, help="torch and numba threads (default: torch's count)")
    parser.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N")
    parser.add_argument("--output", default=None, help="CSV path (default benchmarks/results/bench_epoch_<date>.csv)")


def run(args: argparse.Namespace) -> int:
    import torch

    if args.epochs < 1 or args.batch_size < 1 or (args.images is not None and args.images < 1) or \
            (args.threads is not None and args.threads < 1):
        raise ConfigError("--epochs, --batch-size, --images and --threads must be positive")
    conv_types = [c.strip() for c in args.conv_types.split(",") if c.strip()]
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    rows = bench_epochs(conv_types, args.batch_size, args.epochs, args.device, args.augment, args.images)
    info = machine_info()
    path = write_csv(rows, args.output or result_path("epoch"), info)
    print(summary_table(rows))
    print(f"\nOMP_WAIT_POLICY={info['omp_wait_policy'] or '(libgomp default)'}, {info['torch_threads']} threads, "
          f"load average {info['load_average_1m']}; wrote {path}")
    return 0


TARGET = Target(
    name="epoch", help="training epoch of LeNet-5-BN on mnist5k: AdderNet vs CNN twin (wall and CPU time)",
    description="Times plain training epochs (SGD, batch 64) of the LeNet-5-BN AdderNet and its CNN twin on "
                "mnist5k, interleaved; records the OpenMP wait policy (set OMP_WAIT_POLICY= to compare libgomp's "
                "spinning default with frugalvision's PASSIVE). Prints a table and writes a tidy CSV.",
    add_arguments=add_arguments, run=run)
