"""The SAD instruction's peak on this CPU: the yardstick of ``frugalvision bench quant`` (its ``pct_of_peak``).

The timed loop runs the kernels' own LLVM intrinsic (:data:`frugalvision.ops.cpu.adder_u8_numba.sad_peak_loop`: a
4 x 4 register tile of ``vpsadbw`` over L1-resident rows) on every thread at once, so the peak counts exactly the
instruction the integer adder layers run, with nothing around it but the loop.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence

import numpy as np
import torch
from numba import njit, prange

from ..ops.cpu import adder_u8_numba
from ..ops.cpu.adder_numba import sync_threads
from ..ops.cpu.adder_u8_numba import PEAK_ROW_STRIDE, PEAK_TILE, WIDTHS, WIDTHS_BYTES, _unique_name, sad_peak_loop
from .common import threads as using_threads

__all__ = ["PEAK_REDUCTION_BYTES", "PEAK_SECONDS", "peak_fn", "sad_peak", "sad_peak_run"]

PEAK_REDUCTION_BYTES = 576  # a 3 x 3 x 64 patch row: the largest ResNet-20 reduction, L1-resident
PEAK_SECONDS = 2e-3  # target duration of one timed peak run


def _make_peak_kernel(width: int):
    def _peak_kernel(x, w, vectors, reps, threads):  # pragma: no cover - compiled
        """The peak loop on each of ``threads`` parallel tasks, each with its own copy of the rows."""
        totals = np.zeros(threads, dtype=np.int64)
        for t in prange(threads):
            xt = x.copy()
            wt = w.copy()
            totals[t] = sad_peak_loop(width, xt, wt, vectors, reps)
        return totals.sum()

    # a name per width: same-named closures compiled in different processes can share a symbol (see _unique_name)
    return njit(parallel=True, cache=True, nogil=True)(_unique_name(_peak_kernel, f"_peak_kernel_width{width}"))


_PEAK_KERNELS = {vec: _make_peak_kernel(vec) for vec in WIDTHS.values()}


def sad_peak_run(width: int, reduction_bytes: int, reps: int, threads: int, seed: int = 0) -> tuple[float, int]:
    """One timed run of the peak loop: seconds and the number of ``|a - b|`` terms it computed.

    Each of ``threads`` tasks runs ``reps`` passes of a 4 x 4 register tile over a ``reduction_bytes`` reduction
    (L1-resident: 8 rows of that many bytes), i.e. ``16 * reduction_bytes * reps`` terms per task. The result is
    checked against numpy once, so a miscompiled loop cannot report a speed."""
    vector = WIDTHS_BYTES[width]
    vectors = reduction_bytes // vector
    rng = np.random.default_rng(seed)
    rows = max(PEAK_TILE)
    x = rng.integers(0, 256, rows * PEAK_ROW_STRIDE + vector, dtype=np.uint8)
    w = rng.integers(0, 256, rows * PEAK_ROW_STRIDE + vector, dtype=np.uint8)
    kernel = _PEAK_KERNELS[width]
    sync_threads()
    got = kernel(x, w, vectors, 1, 1)
    span = vectors * vector
    xs = [x[a * PEAK_ROW_STRIDE : a * PEAK_ROW_STRIDE + span].astype(np.int64) for a in range(PEAK_TILE[0])]
    ws = [w[c * PEAK_ROW_STRIDE : c * PEAK_ROW_STRIDE + span].astype(np.int64) for c in range(PEAK_TILE[1])]
    expected = sum(int(np.abs(xa - wc).sum()) for xa in xs for wc in ws)
    if got != expected:
        raise RuntimeError(f"SAD peak loop ({width}) computed {got}, numpy {expected}")
    start = time.perf_counter()
    kernel(x, w, vectors, reps, threads)
    seconds = time.perf_counter() - start
    return seconds, threads * reps * PEAK_TILE[0] * PEAK_TILE[1] * span


def peak_fn(backend: str, threads: int) -> tuple[Callable[[], float], int]:
    """A closure running the peak loop of ``backend`` once for about :data:`PEAK_SECONDS` (returns its seconds) and
    the terms one run computes."""
    width = WIDTHS[backend]
    seconds, terms = sad_peak_run(width, PEAK_REDUCTION_BYTES, 1000, threads)  # checked, warm
    reps = max(1, int(1000 * PEAK_SECONDS / max(seconds, 1e-9)))

    def run() -> float:
        return sad_peak_run(width, PEAK_REDUCTION_BYTES, reps, threads)[0]

    return run, terms // 1000 * reps


def sad_peak(backends: Sequence[str] | None = None, threads: Sequence[int] | None = None, repeats: int = 20,
             ) -> list[dict[str, object]]:
    """Peak SAD throughput (|a - b| terms per second) of each backend's intrinsic, 1 thread and all threads.

    Each of ``repeats`` rounds runs every (backend, threads) configuration once; the rows give the median
    (``terms_per_s``) and the best terms/s. ``backends`` defaults to the x86 SAD backends this CPU runs."""
    if backends is None:
        backends = [n for n, w in WIDTHS.items() if w and adder_u8_numba.width_rejects(w) is None]
    threads = list(threads or dict.fromkeys((1, torch.get_num_threads())))
    configs = {}
    for backend in backends:
        for t in threads:
            with using_threads(t):
                configs[(backend, t)] = peak_fn(backend, t)
    rates: dict[tuple[str, int], list[float]] = {key: [] for key in configs}
    for _ in range(repeats):
        for (backend, t), (run, terms) in configs.items():
            with using_threads(t):
                rates[(backend, t)].append(terms / run())
    return [{"shape": f"peak_loop_{PEAK_REDUCTION_BYTES}B", "method": f"sad_peak_{b}", "threads": t,
             "sad_backend": b, "terms_per_s": round(statistics.median(r)), "max_terms_per_s": round(max(r)),
             "repeats": repeats}
            for (b, t), r in rates.items()]
