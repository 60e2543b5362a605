"""``frugalvision bench``: ``bench adder`` (speed and memory of the adder layer against convolution, see
:mod:`frugalvision.analysis.bench_adder`), ``bench model`` (see :mod:`frugalvision.cli.bench_model`) and ``bench quant``
(the integer adder layer against fp32 and int8 convolution, see :mod:`frugalvision.cli.bench_quant`)."""

from __future__ import annotations

import argparse
import datetime
import platform
from pathlib import Path

from ..errors import ConfigError
from . import bench_model, bench_quant, bench_quant_model

__all__ = ["add_parser", "run"]

_SHAPE_SETS = ("resnet20", "lenet5")


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    bench = subparsers.add_parser("bench", help="benchmarks: adder kernels, model latency",
                                  description="Benchmarks; see `frugalvision bench TARGET --help`.")
    targets = bench.add_subparsers(dest="bench_target", metavar="TARGET", required=True)
    _add_adder_parser(targets).set_defaults(_bench_run=_run_adder)
    bench_model.add_subparser(targets).set_defaults(_bench_run=bench_model.run)
    bench_quant.add_subparser(targets).set_defaults(_bench_run=bench_quant.run)
    bench_quant_model.add_subparser(targets).set_defaults(_bench_run=bench_quant_model.run)
    return bench


def run(args: argparse.Namespace) -> int:
    return int(args._bench_run(args) or 0)


def _add_adder_parser(targets: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = targets.add_parser(
        "adder", help="adder layer vs reference, official formulation and nn.Conv2d",
        description="Forward and forward+backward time and peak extra memory of the frugalvision adder kernel, the "
                    "reference op, the official-style unfold formulation and nn.Conv2d on ResNet-20 and LeNet-5 "
                    "layer shapes, plus a LeNet-5-BN training epoch (adder vs CNN twin). Prints a table and writes "
                    "a tidy CSV.",
    )
    p.add_argument("--shapes", default="resnet20,lenet5",
                   help=f"comma-separated shape sets out of {', '.join(_SHAPE_SETS)} (default: both)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--repeats", type=int, default=10, help="timed runs of the fast methods (minimum is kept)")
    p.add_argument("--slow-repeats", type=int, default=2, help="timed runs of the reference and official methods")
    p.add_argument("--skip", default="", help="comma-separated methods to leave out: reference, official")
    p.add_argument("--no-epoch", action="store_true", help="skip the LeNet-5-BN training-epoch comparison")
    p.add_argument("--epochs", type=int, default=1, help="timed training epochs per model (minimum is kept)")
    p.add_argument("--threads", type=int, default=None,
                   help="torch (and numba) threads; 1 makes the recorded CPU time insensitive to other processes")
    p.add_argument("--device", default="cpu")
    p.add_argument("--output", default=None,
                   help="CSV path (default benchmarks/results/bench_adder_<device>_<date>.csv)")
    return p


def _run_adder(args: argparse.Namespace) -> int:
    from ..analysis import bench_adder

    sets = [s.strip() for s in args.shapes.split(",") if s.strip()]
    unknown = [s for s in sets if s not in _SHAPE_SETS]
    if unknown or not sets:
        names = ", ".join(unknown) or "(none)"
        raise ConfigError(f"--shapes: unknown set(s) {names}; choose from {', '.join(_SHAPE_SETS)}")
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    if skip - {"reference", "official"}:
        raise ConfigError(f"--skip: only reference and official can be left out, got {', '.join(sorted(skip))}")
    if args.batch_size < 1 or args.repeats < 1 or args.slow_repeats < 1 or args.epochs < 1:
        raise ConfigError("--batch-size, --repeats, --slow-repeats and --epochs must be positive")
    import torch

    if args.threads is not None:
        if args.threads < 1:
            raise ConfigError("--threads must be positive")
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda: CUDA is not available")
    shapes = []
    if "resnet20" in sets:
        shapes += bench_adder.resnet20_shapes(args.batch_size)
    if "lenet5" in sets:
        shapes += bench_adder.lenet5_shapes(args.batch_size)
    methods = [m for m in bench_adder.METHODS if m not in skip]
    info = bench_adder.machine_info()
    gpu = f" / {info['gpu']}" if info["gpu"] else ""
    print(f"frugalvision bench adder on {info['cpu']} ({info['torch_threads']} threads){gpu}")
    rows = bench_adder.bench_layers(shapes, methods, args.repeats, args.slow_repeats, device,
                                    log=lambda msg: print(msg, flush=True))
    if not args.no_epoch:
        rows += bench_adder.bench_epoch(args.batch_size, args.epochs, device)
    print()
    print(bench_adder.format_table(rows))
    if args.output:
        path = Path(args.output)
    else:
        stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
        cpu = f"cpu{info['cpu_count']}-{platform.machine()}"
        host = ("cuda" if device.type == "cuda" else cpu) + f"-t{info['torch_threads']}"
        path = Path("benchmarks/results") / f"bench_adder_{host}_{stamp}.csv"
    bench_adder.write_csv(rows, path, info)
    print(f"\nwrote {path}")
    return 0
