"""``frugalvision bench quant``: the integer adder layer against the float adder, fp32 and int8 convolution, per
layer, with the SAD instruction's peak on this CPU (see :mod:`frugalvision.analysis.bench_quant`).

Wired under ``frugalvision bench`` through :func:`add_subparser`.
"""

from __future__ import annotations

import argparse
import datetime
import platform
from pathlib import Path

from ..errors import ConfigError

__all__ = ["add_subparser", "run"]

DEFAULT_DIR = Path("benchmarks") / "results"
_SHAPE_SETS = ("resnet20", "lenet5")


def add_subparser(bench_subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = bench_subparsers.add_parser(
        "quant", help="integer adder layer vs float adder, fp32 and int8 convolution, and the SAD peak",
        description="Forward time of the uint8 adder op (fused requantization), its int32 form, the float32 adder, "
                    "fp32 nn.Conv2d and PyTorch's int8 convolution (x86 engine) on the ResNet-20 stage shapes and "
                    "LeNet-5 conv2, interleaved; terms/s against the SAD instruction's peak measured in the same "
                    "rounds. Prints a table and writes a tidy CSV with machine information.")
    p.add_argument("--shapes", default="resnet20,lenet5",
                   help=f"comma-separated shape sets out of {', '.join(_SHAPE_SETS)} (default: both)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--repeats", type=int, default=30, help="interleaved timed rounds (medians and minima are kept)")
    p.add_argument("--threads", type=int, default=None, help="torch and numba threads (default: torch's count)")
    p.add_argument("--backend", default=None, choices=("sad512", "sad256", "portable"),
                   help="force an adder2d_u8 backend (default: the widest this CPU runs)")
    p.add_argument("--no-peak", action="store_true", help="skip the SAD peak loop (no %% of peak)")
    p.add_argument("--output", type=Path, default=None,
                   help=f"CSV path (default: {DEFAULT_DIR}/bench_quant_<cpu>_<date>.csv)")
    return p


def run(args: argparse.Namespace) -> int:
    sets = [s.strip() for s in args.shapes.split(",") if s.strip()]
    unknown = [s for s in sets if s not in _SHAPE_SETS]
    if unknown or not sets:
        raise ConfigError(f"--shapes: unknown set(s) {', '.join(unknown) or '(none)'}; choose from "
                         f"{', '.join(_SHAPE_SETS)}")
    if args.batch_size < 1 or args.repeats < 1 or (args.threads is not None and args.threads < 1):
        raise ConfigError("--batch-size, --repeats and --threads must be positive")
    from ..analysis import bench_adder, bench_quant

    shapes = []
    if "resnet20" in sets:
        shapes += bench_adder.resnet20_shapes(args.batch_size)
    if "lenet5" in sets:
        shapes.append(bench_quant.lenet5_conv2_shape(args.batch_size))
    info = bench_quant.quant_machine_info()
    print(f"frugalvision bench quant on {info['cpu']} (SIMD: {info['cpu_flags']}; load average "
          f"{info['load_average_1m']})", flush=True)
    rows = bench_quant.bench_quant_layers(shapes, repeats=args.repeats, threads=args.threads, backend=args.backend,
                                          peak=not args.no_peak, log=lambda msg: print(msg, flush=True))
    if not args.no_peak:
        rows += bench_quant.sad_peak(threads=sorted({1, rows[0]["threads"]}), repeats=args.repeats)
    info = bench_quant.quant_machine_info()  # load average after the run too
    print()
    print(bench_quant.format_table(rows))
    if args.output:
        path = args.output
    else:
        stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
        host = f"cpu{info['cpu_count']}-{platform.machine()}-t{rows[0]['threads']}"
        path = DEFAULT_DIR / f"bench_quant_{host}_{stamp}.csv"
    bench_quant.write_csv(rows, path, info)
    print(f"\nmedian times; x vs ...: speed-up of adder_u8; time/...: adder_u8 time over that method's. Load average "
          f"{info['load_average_1m']} (1 min), {info['load_average_5m']} (5 min). Wrote {path}")
    return 0
