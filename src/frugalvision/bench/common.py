"""What every benchmark target shares: the :class:`Target` interface the CLI registers, machine information, the
tidy CSV writer, plain-text tables, shape sets, default result paths and the interleaved-rounds timer.

Speed is measured here, in benchmarks that write a CSV with the machine they ran on, never in timed unit tests. On a
shared machine other processes load the cores unevenly over time, so the methods being compared are *interleaved*:
every round runs each method once, in a new random order, and medians over rounds are compared, so that background
load, clock changes and the caches the previous method left hit all methods alike.

Import-light, as every target module's declaration (name, help, options): ``frugalvision bench --help`` loads no
torch; the functions that need torch or numba import them.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import ctypes
import datetime
import os
import platform
import random
import statistics
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import ConfigError

if TYPE_CHECKING:
    from torch import Tensor, nn

__all__ = [
    "RESULTS_DIR",
    "SHAPE_SETS",
    "IntList",
    "LayerShape",
    "Target",
    "Timings",
    "format_table",
    "machine_info",
    "malloc_mode",
    "parse_shape_sets",
    "result_path",
    "threads",
    "time_interleaved",
    "with_batch_statistics",
    "write_csv",
]

RESULTS_DIR = Path("benchmarks") / "results"  # relative to the working directory, as the committed CSVs are
_SIMD_FLAGS = ("sse4_2", "avx", "avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx_vnni", "amx_int8",
               "asimd", "asimddp", "sve")


# --------------------------------------------------------------------------------------------------------------
# The target interface


@dataclass(frozen=True)
class Target:
    """One ``frugalvision bench NAME`` target.

    Attributes:
        name: the sub-command.
        help: one line for ``frugalvision bench --help``.
        description: the paragraph of ``frugalvision bench NAME --help``.
        add_arguments: adds the target's options to its parser.
        run: runs the benchmark from the parsed options; returns the exit code.
        model_arguments: ``"optional"`` or ``"required"`` (is ``--checkpoint`` needed) when the target measures a
            model the user names: the CLI then adds its model options (``--checkpoint``, ``--model``, ...) and
            ``--input-size``, and passes the loaded model to ``run`` as ``args.model_object`` and its input size
            (``--input-size``, else the model's) as ``args.model_input_size`` (the benchmark package does not
            depend on the CLI).
    """

    name: str
    help: str
    description: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]
    model_arguments: str | None = None


class IntList(argparse.Action):
    """A list of integers given either way, ``--batch-sizes 1 64`` or ``--batch-sizes 1,64``, the one parser of
    every list-valued option of the targets (declare with ``nargs="+"``)."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        items = [part.strip() for value in values for part in str(value).split(",") if part.strip()]
        try:
            numbers = [int(item) for item in items]
        except ValueError:
            parser.error(f"argument {option_string}: integers expected, got {' '.join(map(str, values))!r}")
        if not numbers:
            parser.error(f"argument {option_string}: at least one integer expected")
        setattr(namespace, self.dest, numbers)


# --------------------------------------------------------------------------------------------------------------
# Machine information


def _cpu_model_and_flags() -> tuple[str, str]:
    cpu, flags = "", ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and not cpu:
                cpu = line.split(":", 1)[1].strip()
            elif line.startswith(("flags", "Features")) and not flags:
                present = set(line.split(":", 1)[1].split())
                flags = " ".join(f for f in _SIMD_FLAGS if f in present)
    return cpu or platform.processor() or platform.machine(), flags


def machine_info(**extra: str) -> dict[str, str]:
    """CPU model and SIMD flags, core and thread counts, GPU, library versions, load averages (1 / 5 / 15 min),
    the OpenMP wait policy and the UTC date; ``extra`` entries (a target's own) are appended."""
    import numba
    import torch

    cpu, flags = _cpu_model_and_flags()
    loads = [f"{v:.2f}" for v in os.getloadavg()] if hasattr(os, "getloadavg") else ["", "", ""]
    return {
        "cpu": cpu,
        "cpu_count": str(os.cpu_count()),
        "torch_threads": str(torch.get_num_threads()),
        "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else "",
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numba": numba.__version__,
        "load_average_1m": loads[0],
        "load_average_5m": loads[1],
        "load_average_15m": loads[2],
        "cpu_flags": flags,
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", ""),
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        **extra,
    }


# --------------------------------------------------------------------------------------------------------------
# Results: CSV, tables, paths


def write_csv(rows: Sequence[Mapping[str, object]], path: str | Path, info: Mapping[str, str] | None = None) -> Path:
    """Tidy CSV: one row per measurement with the machine information (default :func:`machine_info`) repeated on
    every row. Rows with different columns are written with the union of their columns (first seen first); a
    column a row does not have is empty; where a row and the machine information share a column, the row's value
    is kept."""
    if not rows:
        raise ValueError("write_csv: no rows to write")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    info = dict(info if info is not None else machine_info())
    fields = list(dict.fromkeys([*(key for row in rows for key in row), *info]))
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields, restval="")
        writer.writeheader()
        for row in rows:
            writer.writerow({**info, **row})
    return path


def format_table(head: Sequence[str], lines: Sequence[Sequence[object]]) -> str:
    """Plain-text table: one line per entry of ``lines``, columns right-aligned under ``head``."""
    cells = [[str(c) for c in head], *([str(c) for c in line] for line in lines)]
    widths = [max(len(line[i]) for line in cells) for i in range(len(head))]
    return "\n".join("  ".join(cell.rjust(widths[i]) for i, cell in enumerate(line)) for line in cells)


def result_path(target: str, *tags: str, stamp: bool = True) -> Path:
    """Default CSV path of a target: ``benchmarks/results/bench_<target>[_<tag>...][_<date>-<time>].csv``."""
    parts = [f"bench_{target.replace('-', '_')}", *tags]
    if stamp:
        parts.append(datetime.datetime.now().strftime("%Y%m%d-%H%M%S"))
    return RESULTS_DIR / ("_".join(parts) + ".csv")


# --------------------------------------------------------------------------------------------------------------
# Layer shapes


@dataclass(frozen=True)
class LayerShape:
    """One layer: input (n, c_in, h, w), c_out filters of k x k."""

    name: str
    n: int
    c_in: int
    h: int
    w: int
    c_out: int
    k: int
    stride: int = 1
    padding: int = 0

    @property
    def input(self) -> str:
        return f"{self.n}x{self.c_in}x{self.h}x{self.w}"

    @property
    def filters(self) -> str:
        return f"{self.c_out}x{self.c_in}x{self.k}x{self.k}"


def _resnet20_shapes(batch: int) -> list[LayerShape]:
    """The three 3x3 pad-1 stage shapes of ResNet-20 on CIFAR."""
    return [
        LayerShape("resnet20_stage1", batch, 16, 32, 32, 16, 3, 1, 1),
        LayerShape("resnet20_stage2", batch, 32, 16, 16, 32, 3, 1, 1),
        LayerShape("resnet20_stage3", batch, 64, 8, 8, 64, 3, 1, 1),
    ]


def _lenet5_shapes(batch: int) -> list[LayerShape]:
    """The adder layers of LeNet-5-BN on 28x28 digits (the fully connected layers are convolutions)."""
    return [
        LayerShape("lenet5_conv1", batch, 1, 28, 28, 6, 5, 1, 2),
        LayerShape("lenet5_conv2", batch, 6, 14, 14, 16, 5, 1, 0),
        LayerShape("lenet5_fc1", batch, 16, 5, 5, 120, 5, 1, 0),
        LayerShape("lenet5_fc2", batch, 120, 1, 1, 84, 1, 1, 0),
    ]


SHAPE_SETS: dict[str, Callable[[int], list[LayerShape]]] = {"resnet20": _resnet20_shapes, "lenet5": _lenet5_shapes}


def parse_shape_sets(text: str, batch: int, keep: Callable[[LayerShape], bool] | None = None) -> list[LayerShape]:
    """The layer shapes of a comma-separated list of :data:`SHAPE_SETS` names (``--shapes``) at batch ``batch``;
    ``keep`` filters the shapes (a target that measures only some layers of a set)."""
    names = [s.strip() for s in text.split(",") if s.strip()]
    unknown = [s for s in names if s not in SHAPE_SETS]
    if unknown or not names:
        raise ConfigError(f"--shapes: unknown set(s) {', '.join(unknown) or '(none)'}; choose from "
                          f"{', '.join(SHAPE_SETS)}")
    shapes = [shape for name in names for shape in SHAPE_SETS[name](batch)]
    return [s for s in shapes if keep is None or keep(s)]


# --------------------------------------------------------------------------------------------------------------
# Timing


@contextlib.contextmanager
def threads(count: int | None) -> Iterator[int]:
    """Run with ``count`` torch (and so numba) threads, restored afterwards; ``None`` keeps the current count.
    Yields the count in use."""
    import torch

    before = torch.get_num_threads()
    if count is not None:
        torch.set_num_threads(count)
    try:
        yield torch.get_num_threads()
    finally:
        torch.set_num_threads(before)


@dataclass
class Timings:
    """Seconds of every timed call, per method: ``wall`` (``time.perf_counter``) and ``cpu`` (the CPU time of the
    chosen clock)."""

    wall: dict[str, list[float]] = field(default_factory=dict)
    cpu: dict[str, list[float]] = field(default_factory=dict)

    def median(self, method: str, clock: str = "wall") -> float:
        return statistics.median(getattr(self, clock)[method])

    def minimum(self, method: str, clock: str = "wall") -> float:
        return min(getattr(self, clock)[method])

    def medians(self, clock: str = "wall") -> dict[str, float]:
        return {m: statistics.median(t) for m, t in getattr(self, clock).items()}


def time_interleaved(
    fns: Mapping[str, Callable[[], object]],
    rounds: int,
    *,
    warmup: int = 1,
    repeats: Mapping[str, int] | None = None,
    cpu_clock: str = "process",
    self_timed: Sequence[str] = (),
    sync: Callable[[], None] | None = None,
    min_seconds: float = 0.0,
    seed: int = 0,
) -> Timings:
    """Interleaved rounds: ``warmup`` untimed calls of each function, then ``rounds`` rounds that each call every
    function once in a new random order (seeded), so that no method always follows the same one.

    Args:
        repeats: a smaller number of rounds for some methods (slow ones): they sit out the later rounds.
        cpu_clock: ``"process"`` (all threads; leaves out time spent waiting for a core) or ``"thread"`` (the
            calling thread only; with one thread, the work itself).
        self_timed: methods whose function returns its own seconds (it leaves its set-up out); their CPU time is
            not recorded.
        sync: called before and after each timed call (``torch.cuda.synchronize`` on a GPU).
        min_seconds: run more rounds until this many seconds have passed since the first timed round.
    """
    if rounds < 1:
        raise ValueError("time_interleaved: rounds must be >= 1")
    cpu_time = time.process_time if cpu_clock == "process" else time.thread_time
    done = sync or (lambda: None)
    timings = Timings({name: [] for name in fns}, {name: [] for name in fns})
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    order, shuffle = list(fns), random.Random(seed).shuffle
    r, started = 0, time.perf_counter()
    while r < rounds or time.perf_counter() - started < min_seconds:
        shuffle(order)
        for name in order:
            if repeats is not None and r >= repeats.get(name, rounds):
                continue
            done()
            start, start_cpu = time.perf_counter(), cpu_time()
            result = fns[name]()
            done()
            wall, cpu = time.perf_counter() - start, cpu_time() - start_cpu
            if name in self_timed:
                timings.wall[name].append(float(result))  # type: ignore[arg-type]
                continue
            timings.wall[name].append(wall)
            timings.cpu[name].append(cpu)
        r += 1
    return timings


def malloc_mode(measure_memory: bool) -> bool:
    """Switch glibc between memory measurement and timing.

    ``measure_memory=True`` maps every allocation above 64 KiB with mmap and unmaps it on free, so RSS tracks live
    buffers (each new buffer then page-faults, which would distort timings); ``False`` serves allocations up to
    32 MiB (glibc's largest dynamic threshold) from the reused heap, as glibc does in steady state.
    Returns whether ``mallopt`` is available.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3
    mmap_bytes, trim_bytes = (64 * 2**10, 128 * 2**10) if measure_memory else (32 * 2**20, 64 * 2**20)
    ok = libc.mallopt(m_mmap_threshold, mmap_bytes) == 1
    return ok and libc.mallopt(m_trim_threshold, trim_bytes) == 1



# --------------------------------------------------------------------------------------------------------------
# Workloads


def with_batch_statistics(model: nn.Module, images: Tensor) -> nn.Module:
    """Set every BatchNorm's running statistics to those of ``images`` (random weights, realistic activations:
    time does not depend on the weights' values, but an uncalibrated AdderNet's activations are far out of range).
    Returns the model in eval mode."""
    import torch
    from torch import nn

    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # cumulative average over the batches below
    model.train()
    with torch.no_grad():
        for x in images.split(64):
            model(x)
    for norm in norms:
        norm.momentum = 0.1
    return model.eval()
