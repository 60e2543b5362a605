"""Benchmark of the integer adder layer (``frugalvision.ops.adder2d_u8``) on the CPU, per layer.

Methods (one layer, forward only, batch ``N``):

* ``adder_u8``: the integer adder with the fused requantizing epilogue (uint8 NHWC in, uint8 NHWC out), automatic
  backend (``sad512`` / ``sad256`` / ``portable``); what an int8 network runs.
* ``adder_u8_i32``: the same op returning the int32 sums (no epilogue; 4x the output bytes).
* ``adder_f32``: the float32 adder :func:`frugalvision.ops.adder2d` (numba kernels), NCHW.
* ``conv_f32``: ``torch.nn.functional.conv2d`` in float32 (oneDNN), NCHW.
* ``conv_int8``: ``torch.ao.nn.quantized.Conv2d`` with the ``x86`` quantized engine, quint8 input in NCHW (how a
  quantized tensor usually arrives); ``conv_int8_cl``: the same with a channels-last input (the layout the engine
  computes in, so no conversion).
* ``sad_peak``: the SAD instruction's peak on this machine: a 4 x 4 register tile of the same intrinsic over an
  L1-resident 576-byte reduction, with the same thread count (:func:`frugalvision.ops.cpu.adder_u8_numba.sad_peak_run`).

Timing is interleaved: every repeat times each method once (the peak loop included) in a new random order, so that
background load, clock changes, thread wake-ups and the caches the previous method left hit them alike;
medians and minima are kept. glibc keeps freed buffers of up to 32 MiB for reuse, as in a steady state, so that
page faults of fresh allocations stay out of the timings. ``terms`` counts the useful ``|a - b|`` terms
of the layer, ``N * Ho * Wo * O * C/G * kh * kw``; ``pct_of_peak`` is the layer's terms/s over the peak's terms/s
of the same run (medians).
"""

from __future__ import annotations

import contextlib
import os
import random
import statistics
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import torch
import torch.nn.functional as F

from ..ops import adder2d, adder2d_u8, adder2d_u8_cost, pack_adder_weight_u8, use_backend
from ..ops.dispatch import select
from . import bench_adder
from .bench_adder import LayerShape

__all__ = [
    "METHODS",
    "bench_quant_layers",
    "format_table",
    "lenet5_conv2_shape",
    "quant_machine_info",
    "quant_shapes",
    "sad_peak",
    "write_csv",
]

METHODS = ("adder_u8", "adder_u8_i32", "adder_f32", "conv_f32", "conv_int8", "conv_int8_cl")
PEAK_REDUCTION_BYTES = 576  # a 3 x 3 x 64 patch row: the largest ResNet-20 reduction, L1-resident
PEAK_SECONDS = 2e-3  # target duration of one timed peak run
_SIMD_FLAGS = ("sse4_2", "avx", "avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx_vnni", "amx_int8",
               "asimd", "asimddp", "sve")


def lenet5_conv2_shape(batch: int = 64) -> LayerShape:
    """LeNet-5 conv2: 6 -> 16 channels, 5 x 5 on 14 x 14, no padding."""
    return next(s for s in bench_adder.lenet5_shapes(batch) if s.name == "lenet5_conv2")


def quant_shapes(batch: int = 64) -> list[LayerShape]:
    """The ResNet-20 stage shapes (3 x 3, padding 1, C_in = C_out) and LeNet-5 conv2."""
    return [*bench_adder.resnet20_shapes(batch), lenet5_conv2_shape(batch)]


# --------------------------------------------------------------------------------------------------------------
# Machine information


def _cpu_flags() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                present = set(line.split(":", 1)[1].split())
                return " ".join(f for f in _SIMD_FLAGS if f in present)
    return ""


def quant_machine_info() -> dict[str, str]:
    """:func:`frugalvision.analysis.bench_adder.machine_info` plus the CPU's SIMD flags, the SAD backends this CPU
    runs, numba's target features, the quantized engine and the 5 / 15 minute load averages."""
    from ..ops.cpu import adder_u8_numba

    info = bench_adder.machine_info()
    info.pop("memory_method", None)
    loads = os.getloadavg() if hasattr(os, "getloadavg") else ("", "", "")
    runnable = [n for n, w in adder_u8_numba.WIDTHS.items() if adder_u8_numba.width_rejects(w) is None]
    info.update({
        "load_average_5m": f"{loads[1]:.2f}" if loads[1] != "" else "",
        "load_average_15m": f"{loads[2]:.2f}" if loads[2] != "" else "",
        "cpu_flags": _cpu_flags(),
        "sad_backends": " ".join(runnable),
        "numba_cpu_features_avx512bw": str("avx512bw" in adder_u8_numba.cpu_features()),
        "quantized_engine": "x86",
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", ""),
    })
    return info


# --------------------------------------------------------------------------------------------------------------
# Measuring


@contextlib.contextmanager
def _threads(threads: int | None) -> Iterator[int]:
    before = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        yield torch.get_num_threads()
    finally:
        torch.set_num_threads(before)


def _peak_fn(backend: str, threads: int) -> tuple[Callable[[], float], int]:
    """A closure running the peak loop once (returns its seconds) and the terms it computes."""
    from ..ops.cpu import adder_u8_numba

    width = adder_u8_numba.WIDTHS[backend]
    seconds, terms = adder_u8_numba.sad_peak_run(width, PEAK_REDUCTION_BYTES, 1000, threads)  # checked, warm
    reps = max(1, int(1000 * PEAK_SECONDS / max(seconds, 1e-9)))

    def run() -> float:
        return adder_u8_numba.sad_peak_run(width, PEAK_REDUCTION_BYTES, reps, threads)[0]

    return run, terms // 1000 * reps


def sad_peak(backends: Sequence[str] | None = None, threads: Sequence[int] | None = None, repeats: int = 20,
             ) -> list[dict[str, object]]:
    """Peak SAD throughput (|a - b| terms per second) of each backend's intrinsic, 1 thread and all threads.

    Each of ``repeats`` rounds runs every (backend, threads) configuration once; the rows give the median
    (``terms_per_s``) and the best terms/s. ``backends`` defaults to the x86 SAD backends this CPU runs."""
    from ..ops.cpu import adder_u8_numba

    if backends is None:
        backends = [n for n, w in adder_u8_numba.WIDTHS.items() if w and adder_u8_numba.width_rejects(w) is None]
    threads = list(threads or dict.fromkeys((1, torch.get_num_threads())))
    configs = {}
    for backend in backends:
        for t in threads:
            with _threads(t):
                configs[(backend, t)] = _peak_fn(backend, t)
    rates: dict[tuple[str, int], list[float]] = {key: [] for key in configs}
    for _ in range(repeats):
        for (backend, t), (run, terms) in configs.items():
            with _threads(t):
                rates[(backend, t)].append(terms / run())
    return [{"shape": f"peak_loop_{PEAK_REDUCTION_BYTES}B", "method": f"sad_peak_{b}", "threads": t,
             "sad_backend": b, "terms_per_s": round(statistics.median(r)), "max_terms_per_s": round(max(r)),
             "repeats": repeats}
            for (b, t), r in rates.items()]


def _layer_fns(shape: LayerShape, methods: Sequence[str], backend: str | None) -> dict[str, Callable[[], object]]:
    """Closures running one forward pass of each method on fixed random inputs of the layer's shape."""
    from torch.ao.nn.quantized import Conv2d as QuantizedConv2d

    gen = torch.Generator().manual_seed(0)
    n, c, h, w, o, k, s, p = shape.n, shape.c_in, shape.h, shape.w, shape.c_out, shape.k, shape.stride, shape.padding
    x_q = torch.randint(0, 256, (n, h, w, c), generator=gen, dtype=torch.uint8)
    w_q = torch.randint(96, 160, (o, c, k, k), generator=gen, dtype=torch.uint8)
    packed = pack_adder_weight_u8(w_q)
    terms = c * k * k
    scale = torch.full((o,), -1.0 / terms, dtype=torch.float32)  # -s * S, folded: y spans the uint8 range
    bias = torch.full((o,), 200.0, dtype=torch.float32)
    x_f = torch.randn(n, c, h, w, generator=gen)
    w_f = torch.randn(o, c, k, k, generator=gen)
    fns: dict[str, Callable[[], object]] = {}

    def forced() -> contextlib.AbstractContextManager:
        return use_backend(backend) if backend else contextlib.nullcontext()

    def adder_u8() -> object:
        with forced():
            return adder2d_u8(x_q, packed, s, p, zero_point=128, output="uint8", scale=scale, bias=bias, qmin=128)

    def adder_u8_i32() -> object:
        with forced():
            return adder2d_u8(x_q, packed, s, p, zero_point=128)

    fns["adder_u8"], fns["adder_u8_i32"] = adder_u8, adder_u8_i32
    fns["adder_f32"] = lambda: adder2d(x_f, w_f, stride=s, padding=p)
    fns["conv_f32"] = lambda: F.conv2d(x_f, w_f, stride=s, padding=p)
    if any(m.startswith("conv_int8") for m in methods):
        torch.backends.quantized.engine = "x86"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            qconv = QuantizedConv2d(c, o, k, stride=s, padding=p)
            w_scales = w_f.abs().amax((1, 2, 3)) / 127
            qconv.set_weight_bias(torch.quantize_per_channel(w_f, w_scales, torch.zeros(o, dtype=torch.long), 0,
                                                             torch.qint8), torch.zeros(o))
            qconv.scale, qconv.zero_point = 0.5, 128
            xq_nchw = torch.quantize_per_tensor(x_f, 0.05, 128, torch.quint8)
        xq_nhwc = xq_nchw.contiguous(memory_format=torch.channels_last)
        fns["conv_int8"] = lambda: qconv(xq_nchw)
        fns["conv_int8_cl"] = lambda: qconv(xq_nhwc)
    return {m: fns[m] for m in methods}


def bench_quant_layers(
    shapes: Sequence[LayerShape],
    methods: Sequence[str] = METHODS,
    repeats: int = 20,
    threads: int | None = None,
    backend: str | None = None,
    peak: bool = True,
    log: Callable[[str], None] | None = None,
) -> list[dict[str, object]]:
    """Interleaved forward times of every method on every shape, one row per (shape, method), plus one
    ``sad_peak`` row per shape measured in the same rounds.

    Args:
        repeats: timed rounds (after one untimed warm-up); each round runs every method once.
        threads: torch (and numba) threads; default: torch's current count.
        backend: force an adder2d_u8 backend (``sad512``, ``sad256``, ``portable``); default: automatic.
        peak: also run the SAD peak loop in every round (needed for ``pct_of_peak``).
    """
    rows: list[dict[str, object]] = []
    bench_adder._malloc_mode(measure_memory=False)  # reuse freed heap memory: no page faults inside the timings
    with _threads(threads) as used_threads, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao's quantized ops announce their deprecation on every call
        for shape in shapes:
            fns = dict(_layer_fns(shape, methods, backend))
            for fn in fns.values():
                fn()
            probe = torch.zeros(1, 1, 1, shape.c_in, dtype=torch.uint8)
            sad_backend = backend or select("adder2d_u8", probe, probe).name
            peak_run, peak_terms = (None, 0)
            if peak and sad_backend in ("sad512", "sad256"):
                peak_run, peak_terms = _peak_fn(sad_backend, used_threads)
            times: dict[str, list[float]] = {m: [] for m in fns}
            peak_times: list[float] = []
            order = [*fns, "sad_peak"] if peak_run is not None else list(fns)
            shuffle = random.Random(0).shuffle
            for _ in range(repeats):
                shuffle(order)  # a new order every round: no method always follows the same one
                for name in order:
                    if name == "sad_peak":
                        peak_times.append(peak_run())
                        continue
                    start = time.perf_counter()
                    fns[name]()
                    times[name].append(time.perf_counter() - start)
            rows += _rows(shape, times, peak_times, peak_terms, sad_backend, used_threads)
            if log:
                log(f"{shape.name}: done")
    return rows


def _rows(shape: LayerShape, times: dict[str, list[float]], peak_times: list[float], peak_terms: int,
          sad_backend: str, threads: int) -> list[dict[str, object]]:
    terms = adder2d_u8_cost((shape.n, shape.h, shape.w, shape.c_in), shape.c_out, shape.k, 1, shape.stride,
                            shape.padding)["abs_diff"]
    peak_rate = peak_terms / statistics.median(peak_times) if peak_times else float("nan")
    base = {"shape": shape.name, "input": f"{shape.n}x{shape.c_in}x{shape.h}x{shape.w}",
            "filters": f"{shape.c_out}x{shape.c_in}x{shape.k}x{shape.k}", "stride": shape.stride,
            "padding": shape.padding, "threads": threads, "sad_backend": sad_backend, "terms": terms}
    median = {m: statistics.median(t) for m, t in times.items()}
    rows = []
    for method, samples in times.items():
        rate = terms / median[method]
        row = {**base, "method": method, "median_ms": round(median[method] * 1e3, 4),
               "min_ms": round(min(samples) * 1e3, 4), "repeats": len(samples),
               "terms_per_s": round(rate), "pct_of_peak": round(100 * rate / peak_rate, 1) if peak_times else "",
               "peak_terms_per_s": round(peak_rate) if peak_times else ""}
        for other in ("conv_f32", "conv_int8", "conv_int8_cl", "adder_f32"):
            row[f"time_vs_{other}"] = round(median[method] / median[other], 4) if other in median else ""
        rows.append(row)
    if peak_times:
        rows.append({**base, "method": "sad_peak", "median_ms": round(statistics.median(peak_times) * 1e3, 4),
                     "min_ms": round(min(peak_times) * 1e3, 4), "repeats": len(peak_times),
                     "terms_per_s": round(peak_rate), "pct_of_peak": 100.0, "peak_terms_per_s": round(peak_rate),
                     **{f"time_vs_{o}": "" for o in ("conv_f32", "conv_int8", "conv_int8_cl", "adder_f32")},
                     "terms": peak_terms})
    return rows


# --------------------------------------------------------------------------------------------------------------
# Reporting


def format_table(rows: Sequence[dict[str, object]]) -> str:
    """One line per shape: median ms per method, then the int8 adder's terms/s and % of the SAD peak, its speed-up
    over fp32 conv and fp32 adder, and its time relative to PyTorch's int8 conv (NCHW input / channels-last)."""
    peaks = [r for r in rows if str(r["method"]).startswith("sad_peak_")]
    rows = [r for r in rows if r not in peaks]
    by_key = {(r["shape"], r["method"]): r for r in rows}
    shapes = list(dict.fromkeys(r["shape"] for r in rows))
    methods = [m for m in METHODS if any(r["method"] == m for r in rows)]
    head = ["shape", *[f"{m} ms" for m in methods], "adder_u8 G terms/s", "peak G/s", "% peak",
            "x vs conv_f32", "x vs adder_f32", "time/conv_int8", "time/conv_int8_cl"]
    lines = [head]

    def value(shape: str, method: str, key: str) -> float | None:
        row = by_key.get((shape, method))
        return float(row[key]) if row is not None and row.get(key, "") != "" else None

    def fmt(v: float | None, digits: int = 2) -> str:
        return "-" if v is None or v != v else f"{v:.{digits}f}"

    for shape in shapes:
        line = [shape, *[fmt(value(shape, m, "median_ms"), 3) for m in methods]]
        vs_conv, vs_adder = value(shape, "adder_u8", "time_vs_conv_f32"), value(shape, "adder_u8", "time_vs_adder_f32")
        rate, peak = value(shape, "adder_u8", "terms_per_s"), value(shape, "sad_peak", "terms_per_s")
        line += [fmt(rate / 1e9 if rate else None, 0), fmt(peak / 1e9 if peak else None, 0),
                 fmt(value(shape, "adder_u8", "pct_of_peak"), 1),
                 fmt(1 / vs_conv if vs_conv else None), fmt(1 / vs_adder if vs_adder else None),
                 fmt(value(shape, "adder_u8", "time_vs_conv_int8")),
                 fmt(value(shape, "adder_u8", "time_vs_conv_int8_cl"))]
        lines.append(line)
    widths = [max(len(line[i]) for line in lines) for i in range(len(head))]
    text = "\n".join("  ".join(cell.rjust(widths[i]) for i, cell in enumerate(line)) for line in lines)
    for peak in peaks:
        median, best = float(peak["terms_per_s"]) / 1e9, float(peak["max_terms_per_s"]) / 1e9
        text += f"\nSAD peak ({peak['sad_backend']}, {peak['threads']} thread(s)): {median:.0f} G terms/s median, " \
                f"{best:.0f} best"
    return text


def write_csv(rows: Sequence[dict[str, object]], path: str | Path, info: dict[str, str] | None = None) -> Path:
    """Tidy CSV (:func:`frugalvision.analysis.bench_adder.write_csv`) with :func:`quant_machine_info` on every row.
    Rows with different columns (layers, peaks) are written with the union of their columns."""
    fields = list(dict.fromkeys(key for row in rows for key in row))
    return bench_adder.write_csv([{f: row.get(f, "") for f in fields} for row in rows], path,
                                 info or quant_machine_info())

