"""``frugalvision bench quant-model``: whole networks: the integer AdderNet against fp32 and int8 CNN twins (FX
post-training quantisation and onnxruntime static quantisation); see :mod:`frugalvision.analysis.bench_quant_model`.

Wired under ``frugalvision bench`` through :func:`add_subparser`.
"""

from __future__ import annotations

import argparse
import datetime
import os
from pathlib import Path

from ..errors import ConfigError

__all__ = ["add_subparser", "run"]

DEFAULT_DIR = Path("benchmarks") / "results"


def add_subparser(bench_subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    from ..analysis.bench_quant_model import METHODS, MODELS

    p = bench_subparsers.add_parser(
        "quant-model", help="whole networks: int8 AdderNet vs fp32 AdderNet, fp32 CNN and int8 CNNs (FX, onnxruntime)",
        description="Median forward time of each method on the same inputs, interleaved in a new random order every "
                    "round, at each batch size; prints a table with the ratios to the fp32 CNN twin and to the best "
                    "int8 CNN twin and writes a tidy CSV with machine information (needs the export extra).")
    p.add_argument("--models", default=",".join(MODELS), help=f"comma list (default {','.join(MODELS)})")
    p.add_argument("--batch-sizes", default="1,64", help="comma list (default 1,64)")
    p.add_argument("--methods", default=",".join(METHODS), help=f"comma list out of {', '.join(METHODS)}")
    p.add_argument("--repeats-1", type=int, default=200, help="timed rounds at batch 1 (default 200)")
    p.add_argument("--repeats", type=int, default=30, help="timed rounds at larger batches (default 30)")
    p.add_argument("--output", type=Path, help=f"CSV path (default {DEFAULT_DIR}/bench_quant_model_<date>.csv)")
    return p


def _comma_list(text: str, option: str) -> list[str]:
    items = [item.strip() for item in text.split(",") if item.strip()]
    if not items:
        raise ConfigError(f"{option} needs at least one entry")
    return items


def run(args: argparse.Namespace) -> int:
    from ..analysis.bench_quant import write_csv
    from ..analysis.bench_quant_model import bench_quant_models, format_table, machine_info
    from ..models import is_model

    models = _comma_list(args.models, "--models")
    unknown = [m for m in models if not is_model(m)]
    if unknown:
        raise ConfigError(f"--models: unknown model(s) {', '.join(unknown)}")
    try:
        batch_sizes = [int(b) for b in _comma_list(args.batch_sizes, "--batch-sizes")]
    except ValueError:
        raise ConfigError(f"--batch-sizes takes integers, got {args.batch_sizes!r}") from None
    if min(batch_sizes) < 1 or args.repeats < 1 or args.repeats_1 < 1:
        raise ConfigError("batch sizes and repeats must be positive")
    info_before = machine_info()
    rows = bench_quant_models(models, batch_sizes, _comma_list(args.methods, "--methods"),
                              {b: args.repeats_1 if b == 1 else args.repeats for b in batch_sizes})
    info = {**info_before, "load_average_1m_after": f"{os.getloadavg()[0]:.2f}"}
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    output = args.output or DEFAULT_DIR / f"bench_quant_model_{stamp}.csv"
    write_csv(rows, output, info)
    print(format_table(rows))
    print(f"load average (1 min) before {info['load_average_1m']}, after {info['load_average_1m_after']}; "
          f"{info['cpu']}, {info['torch_threads']} threads; wrote {output}")
    return 0
