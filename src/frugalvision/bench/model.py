"""``frugalvision bench model``: wall-clock latency of whole models on this machine: train-mode vs fused (deploy)
vs a ResNet-50 reference.

VanillaNet's claim (Chen et al., NeurIPS 2023, arXiv 2305.12972, Table 3) is batch-1 GPU latency of the *fused*
network; its authors say it suits CPUs less and that the advantage shrinks at larger batches (official issues #6,
#26). This module measures what a user's CPU (or GPU) actually does, for the train-mode structure, the fused copy
from :func:`frugalvision.reparameterize_model`, and torchvision's ResNet-50, at several batch sizes. At each batch
size the variants are timed interleaved (:func:`frugalvision.bench.common.time_interleaved`: every round runs each
once, in a new random order), so that load from other processes hits them alike.
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

from ..errors import ConfigError
from .common import IntList, Target, format_table, machine_info, result_path, time_interleaved, write_csv
from .common import threads as using_threads

if TYPE_CHECKING:
    from torch import nn

__all__ = ["TARGET", "VARIANTS", "LatencyResult", "bench_model"]

VARIANTS = ("train", "fused", "quantized", "resnet50")


@dataclass
class LatencyResult:
    """One measured configuration; times are per forward pass of the whole batch, in milliseconds."""

    model: str
    variant: str
    batch_size: int
    input_size: str
    median_ms: float
    mean_ms: float
    min_ms: float
    cpu_ms: float  # median process CPU time per pass (all threads): robust to other load on a shared machine
    images_per_s: float
    iters: int
    threads: int
    device: str
    torch: str
    cpu: str


def _builders(name: str, variants: Iterable[str], model: nn.Module | None = None
              ) -> dict[str, Callable[[], nn.Module]]:
    from ..layers.reparam import reparameterize_model
    from ..models import create_model

    def source() -> nn.Module:
        return model if model is not None else create_model(name)

    builders: dict[str, Callable[[], nn.Module]] = {}
    for variant in variants:
        if variant in ("train", "quantized"):
            builders[variant] = lambda: source().eval()
        elif variant == "fused":
            builders[variant] = lambda: reparameterize_model(source())
        elif variant == "resnet50":
            from torchvision.models import resnet50

            builders[variant] = lambda: resnet50(weights=None).eval()
        else:
            raise ConfigError(f"unknown variant {variant!r}; choose from {', '.join(VARIANTS)}")
    return builders


def bench_model(
    name: str,
    *,
    variants: Sequence[str] = VARIANTS,
    batch_sizes: Sequence[int] = (1, 32),
    input_size: Sequence[int] = (3, 224, 224),
    warmup: int = 3,
    iters: int = 10,
    min_seconds: float = 0.0,
    threads: int | None = None,
    device: str = "cpu",
    log: Callable[[str], None] | None = None,
    model: nn.Module | None = None,
) -> list[LatencyResult]:
    """Latency of ``name`` as train-mode / fused model and of torchvision ResNet-50, per batch size.

    Args:
        threads: ``torch.set_num_threads`` for the measurement (restored afterwards); default: leave as is.
        model: the model to measure (e.g. loaded from a checkpoint; an integer model as variant ``"quantized"``);
            default ``create_model(name)``.
    """
    import torch

    device = torch.device(device)
    sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else None
    cpu = machine_info()["cpu"]
    results = []
    with using_threads(threads or None), torch.inference_mode():
        models = {variant: build().eval().to(device) for variant, build in _builders(name, variants, model).items()}
        for batch_size in batch_sizes:
            x = torch.randn(batch_size, *input_size, device=device)
            timings = time_interleaved({v: (lambda m=m, x=x: m(x)) for v, m in models.items()}, iters, warmup=warmup,
                                       min_seconds=min_seconds, sync=sync)
            for variant, times in timings.wall.items():
                median = statistics.median(times)
                results.append(LatencyResult(
                    model="resnet50" if variant == "resnet50" else name, variant=variant, batch_size=batch_size,
                    input_size="x".join(map(str, input_size)), median_ms=round(median * 1e3, 3),
                    mean_ms=round(statistics.fmean(times) * 1e3, 3), min_ms=round(min(times) * 1e3, 3),
                    cpu_ms=round(timings.median(variant, "cpu") * 1e3, 3), images_per_s=round(batch_size / median, 2),
                    iters=len(times), threads=torch.get_num_threads(), device=str(device), torch=torch.__version__,
                    cpu=cpu))
                if log is not None:
                    log(f"{results[-1].model} {variant} batch {batch_size}: {results[-1].median_ms:.2f} ms median")
    order = list(models)
    results.sort(key=lambda r: order.index(r.variant))  # variant by variant, batch sizes in the order given
    return results


# --------------------------------------------------------------------------------------------------------------
# Command


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--deploy", action="store_true", help="measure only the fused (deploy) model and the "
                        "ResNet-50 reference, not the train-mode one")
    parser.add_argument("--no-resnet", action="store_true", help="skip the torchvision ResNet-50 reference")
    parser.add_argument("--batch-sizes", nargs="+", action=IntList, default=[1, 32],
                        help="batch sizes, space- or comma-separated")
    parser.add_argument("--warmup", type=int, default=3, help="untimed runs per configuration first")
    parser.add_argument("--iters", type=int, default=10, help="timed runs per configuration (at least)")
    parser.add_argument("--min-seconds", type=float, default=0.0, help="keep timing until this many seconds passed")
    parser.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's choice)")
    parser.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N")
    parser.add_argument("--output", default=None,
                        help="CSV path (default: benchmarks/results/bench_model_MODEL.csv)")
    parser.add_argument("--json", action="store_true", help="print the results as one JSON object")


def run(args: argparse.Namespace) -> int:
    """``args.model_object``, ``args.model_input_size``: the model to measure and its input size (set by the CLI from
    its model options, see :class:`frugalvision.bench.common.Target`)."""
    from ..quant import is_quantized

    if min(args.batch_sizes) < 1 or args.iters < 1 or args.warmup < 0:
        raise ConfigError("batch sizes and --iters must be >= 1, --warmup >= 0")
    model = args.model_object
    name = model.frugalvision_cfg["model"]
    if is_quantized(model):  # an integer model: measured as it is, on the CPU
        variants = ["quantized"]
    else:
        variants = ["fused"] if args.deploy else ["train", "fused"]
    if not args.no_resnet:
        variants.append("resnet50")
    log = None if args.json else print
    results = bench_model(name, variants=variants, batch_sizes=args.batch_sizes,
                          input_size=args.model_input_size, warmup=args.warmup, iters=args.iters,
                          min_seconds=args.min_seconds, threads=args.threads, device=args.device, log=log, model=model)
    output = write_csv([asdict(r) for r in results], args.output or result_path("model", name, stamp=False))
    train = {r.batch_size: r.median_ms for r in results if r.variant == "train"}
    if args.json:
        print(json.dumps({"csv": str(output), "results": [asdict(r) for r in results]}))
        return 0
    rows = []
    for r in results:
        speedup = f"{train[r.batch_size] / r.median_ms:.2f}x" if r.batch_size in train else "-"
        rows.append((f"{r.model} ({r.variant})", r.batch_size, f"{r.median_ms:.2f}", f"{r.min_ms:.2f}",
                     f"{r.cpu_ms:.2f}", f"{r.images_per_s:.1f}", speedup))
    first = results[0]
    print(f"Latency on {first.device} ({first.cpu}, {first.threads} threads, torch {first.torch})")
    print(format_table(("model", "batch", "median ms", "min ms", "CPU ms", "images/s", "vs train-mode"), rows))
    print(f"vs train-mode: median wall-clock speed-up; CPU ms: process CPU time (all threads), steadier on a loaded "
          f"machine; wrote {output}")
    return 0


TARGET = Target(
    name="model", help="latency of a model: train-mode vs fused vs ResNet-50",
    description="Measure forward latency (median of timed runs after warm-up) of the train-mode model, its fused "
                "deploy copy and torchvision ResNet-50, at each batch size, and write a CSV.",
    add_arguments=add_arguments, run=run, model_arguments="optional")
