"""``frugalvision bench startup``: how long the package and the command line take to start.

Each measurement runs in a fresh interpreter (``sys.executable``), so nothing is cached in memory but what the
operating system keeps (file pages: the first round warms them and is not counted). The commands are interleaved:
every round runs each once, in a new random order (see :func:`.common.time_interleaved`), and the CSV gives the median
and the minimum over rounds. Targets of the issue that asked for it: ``--help`` under 0.5 s, ``import frugalvision``
at most 0.5 s over ``import torch``.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
from collections.abc import Callable

from ..errors import ConfigError
from .common import Target, format_table, machine_info, result_path, time_interleaved, write_csv

__all__ = ["COMMANDS", "TARGET", "startup_times"]

# what is timed: name -> the interpreter's arguments
COMMANDS: dict[str, list[str]] = {
    "python": ["-c", "pass"],
    "import torch": ["-c", "import torch"],
    "import frugalvision": ["-c", "import frugalvision"],
    "frugalvision --help": ["-m", "frugalvision", "--help"],
    "frugalvision train --help": ["-m", "frugalvision", "train", "--help"],
    "frugalvision bench quant-model --help": ["-m", "frugalvision", "bench", "quant-model", "--help"],
}


def _runner(arguments: list[str]) -> Callable[[], None]:
    def run() -> None:
        result = subprocess.run([sys.executable, *arguments], capture_output=True, text=True)
        if result.returncode != 0:
            raise RuntimeError(f"`python {' '.join(arguments)}` failed: {result.stderr.strip()[-300:]}")

    return run


def startup_times(rounds: int = 5, commands: dict[str, list[str]] | None = None) -> list[dict[str, object]]:
    """One row per command: median and minimum wall seconds over ``rounds`` fresh interpreters (after one warm-up
    run each), and the median minus that of ``import torch`` (the overhead frugalvision adds to torch)."""
    commands = commands or COMMANDS
    timings = time_interleaved({name: _runner(args) for name, args in commands.items()}, rounds, warmup=1)
    medians = timings.medians()
    torch_median = medians.get("import torch")
    return [{"command": name, "rounds": rounds, "median_s": round(medians[name], 4),
             "min_s": round(timings.minimum(name), 4),
             "stdev_s": round(statistics.stdev(timings.wall[name]), 4) if rounds > 1 else 0.0,
             "over_import_torch_s": round(medians[name] - torch_median, 4) if torch_median is not None else ""}
            for name in commands]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rounds", type=int, default=5, help="fresh interpreters per command (median reported)")
    parser.add_argument("--output", default=None,
                        help="CSV path (default benchmarks/results/bench_startup_<date>.csv)")


def run(args: argparse.Namespace) -> int:
    if args.rounds < 1:
        raise ConfigError("--rounds must be >= 1")
    rows = startup_times(args.rounds)
    info = machine_info()
    path = write_csv(rows, args.output or result_path("startup"), info)
    print(format_table(("command", "median s", "min s", "over import torch s"),
                       [(r["command"], f"{r['median_s']:.3f}", f"{r['min_s']:.3f}",
                         f"{r['over_import_torch_s']:+.3f}") for r in rows]))
    print(f"\n{args.rounds} fresh interpreters each, interleaved; load average {info['load_average_1m']} "
          f"(1 min) on {info['cpu_count']} cores; wrote {path}")
    return 0


TARGET = Target(
    name="startup",
    help="start-up time: import torch, import frugalvision, --help, train --help, bench quant-model --help",
    description="Times fresh interpreters running `import torch`, `import frugalvision`, `frugalvision --help`, "
                "`frugalvision train --help` and `frugalvision bench quant-model --help` (interleaved rounds, "
                "median and minimum), and writes a tidy CSV with the machine information (load average included: "
                "on a busy machine start-up is slower).",
    add_arguments=add_arguments, run=run)
