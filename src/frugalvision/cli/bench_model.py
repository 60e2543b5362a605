"""``frugalvision bench model``: latency of a model as trained vs fused, next to torchvision ResNet-50.

Wired under ``frugalvision bench`` by :mod:`frugalvision.cli.bench` through :func:`add_subparser`.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from pathlib import Path

from ..errors import ConfigError
from .common import add_model_arguments, load_model_from_args, model_input_size, print_table

__all__ = ["add_subparser", "run"]

DEFAULT_DIR = Path("benchmarks") / "results"


def add_subparser(bench_subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = bench_subparsers.add_parser(
        "model", help="latency of a model: train-mode vs fused vs ResNet-50",
        description="Measure forward latency (median of timed runs after warm-up) of the train-mode model, its "
                    "fused deploy copy and torchvision ResNet-50, at each batch size, and write a CSV.")
    add_model_arguments(p, checkpoint="optional")
    p.add_argument("--deploy", action="store_true",
                   help="measure only the fused (deploy) model and the ResNet-50 reference, not the train-mode one")
    p.add_argument("--no-resnet", action="store_true", help="skip the torchvision ResNet-50 reference")
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 32])
    p.add_argument("--input-size", type=int, nargs=3, metavar=("C", "H", "W"),
                   help="input size (default: the model's data config, e.g. 3 224 224 for VanillaNet)")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--iters", type=int, default=10, help="timed runs per configuration (at least)")
    p.add_argument("--min-seconds", type=float, default=0.0, help="keep timing until this many seconds passed")
    p.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's choice)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--output", type=Path, help=f"CSV path (default: {DEFAULT_DIR}/bench_model_MODEL.csv)")
    p.add_argument("--json", action="store_true", help="print the results as one JSON object")
    return p


def run(args: argparse.Namespace) -> int:
    from ..analysis.bench_model import bench_model, write_csv
    from ..quant import is_quantized

    if min(args.batch_sizes) < 1 or args.iters < 1 or args.warmup < 0:
        raise ConfigError("batch sizes and --iters must be >= 1, --warmup >= 0")
    model = load_model_from_args(args)
    name = model.frugalvision_cfg["model"]
    if is_quantized(model):  # an integer model: measured as it is, on the CPU
        variants = ["quantized"]
    else:
        variants = ["fused"] if args.deploy else ["train", "fused"]
    if not args.no_resnet:
        variants.append("resnet50")
    log = None if args.json else print
    results = bench_model(name, variants=variants, batch_sizes=args.batch_sizes,
                          input_size=model_input_size(model, args.input_size), warmup=args.warmup, iters=args.iters,
                          min_seconds=args.min_seconds, threads=args.threads, device=args.device, log=log, model=model)
    output = args.output or DEFAULT_DIR / f"bench_model_{name}.csv"
    write_csv(output, results)
    train = {r.batch_size: r.median_ms for r in results if r.variant == "train"}
    if args.json:
        print(json.dumps({"csv": str(output), "results": [asdict(r) for r in results]}))
        return 0
    rows = []
    for r in results:
        speedup = f"{train[r.batch_size] / r.median_ms:.2f}x" if r.batch_size in train else "-"
        rows.append((f"{r.model} ({r.variant})", r.batch_size, f"{r.median_ms:.2f}", f"{r.min_ms:.2f}",
                     f"{r.cpu_ms:.2f}", f"{r.images_per_s:.1f}", speedup))
    columns = ("model", "batch", "median ms", "min ms", "CPU ms", "images/s", "vs train-mode")
    caption = (f"vs train-mode: median wall-clock speed-up; CPU ms: process CPU time (all threads), steadier on a "
               f"loaded machine; written to {output}")
    print_table(f"Latency on {results[0].device} ({results[0].cpu}, {results[0].threads} threads, torch "
                f"{results[0].torch})", columns, rows, caption=caption)
    return 0
