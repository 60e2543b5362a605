"""``frugalvision bench quant``: the integer adder layer (``frugalvision.ops.adder2d_u8``) on the CPU, per layer.

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
  L1-resident 576-byte reduction, with the same thread count (:func:`frugalvision.bench.sad_peak.sad_peak_run`).

Timing is interleaved: every repeat times each method once (the peak loop included) in a new random order, so that
background load, clock changes, thread wake-ups and the caches the previous method left hit them alike;
medians and minima are kept. glibc keeps freed buffers of up to 32 MiB for reuse, as in a steady state, so that
page faults of fresh allocations stay out of the timings. ``terms`` counts the useful ``|a - b|`` terms
of the layer, ``N * Ho * Wo * O * C/G * kh * kw``; ``pct_of_peak`` is the layer's terms/s over the peak's terms/s
of the same run (medians).
"""

from __future__ import annotations

import argparse
import contextlib
import platform
import statistics
import warnings
from collections.abc import Callable, Sequence

from ..errors import ConfigError
from .common import (
    LayerShape,
    Target,
    format_table,
    machine_info,
    malloc_mode,
    parse_shape_sets,
    result_path,
    time_interleaved,
    write_csv,
)
from .common import threads as using_threads

__all__ = ["METHODS", "TARGET", "bench_quant_layers", "quant_machine_info", "quant_shapes", "summary_table"]

METHODS = ("adder_u8", "adder_u8_i32", "adder_f32", "conv_f32", "conv_int8", "conv_int8_cl")
_QUANT_LENET5 = ("lenet5_conv2",)  # the LeNet-5 layer with enough channels for the SAD instruction


def _measured(shape: LayerShape) -> bool:
    return shape.name.startswith("resnet20") or shape.name in _QUANT_LENET5


def quant_shapes(batch: int = 64) -> list[LayerShape]:
    """The ResNet-20 stage shapes (3 x 3, padding 1, C_in = C_out) and LeNet-5 conv2."""
    return parse_shape_sets("resnet20,lenet5", batch, keep=_measured)


def quant_machine_info() -> dict[str, str]:
    """:func:`frugalvision.bench.common.machine_info` plus the SAD backends this CPU runs, numba's target features
    and the quantized engine."""
    from ..ops.cpu import adder_u8_numba

    runnable = [n for n, w in adder_u8_numba.WIDTHS.items() if adder_u8_numba.width_rejects(w) is None]
    return machine_info(sad_backends=" ".join(runnable),
                        numba_cpu_features_avx512bw=str("avx512bw" in adder_u8_numba.cpu_features()),
                        quantized_engine="x86")


# --------------------------------------------------------------------------------------------------------------
# Measuring


def _layer_fns(shape: LayerShape, methods: Sequence[str], backend: str | None) -> dict[str, Callable[[], object]]:
    """Closures running one forward pass of each method on fixed random inputs of the layer's shape."""
    import torch
    import torch.nn.functional as F
    from torch.ao.nn.quantized import Conv2d as QuantizedConv2d

    from ..ops import adder2d, adder2d_u8, pack_adder_weight_u8, use_backend

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
    import torch

    from ..ops.dispatch import select
    from .sad_peak import peak_fn

    rows: list[dict[str, object]] = []
    malloc_mode(measure_memory=False)  # reuse freed heap memory: no page faults inside the timings
    with using_threads(threads) as used_threads, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao's quantized ops announce their deprecation on every call
        for shape in shapes:
            fns: dict[str, Callable[[], object]] = dict(_layer_fns(shape, methods, backend))
            probe = torch.zeros(1, 1, 1, shape.c_in, dtype=torch.uint8)
            sad_backend = backend or select("adder2d_u8", probe, probe).name
            peak_terms = 0
            if peak and sad_backend in ("sad512", "sad256"):
                fns["sad_peak"], peak_terms = peak_fn(sad_backend, used_threads)
            timings = time_interleaved(fns, repeats, self_timed=("sad_peak",))
            peak_times = timings.wall.pop("sad_peak", [])
            rows += _rows(shape, timings.wall, peak_times, peak_terms, sad_backend, used_threads)
            if log:
                log(f"{shape.name}: done")
    return rows


def _rows(shape: LayerShape, times: dict[str, list[float]], peak_times: list[float], peak_terms: int,
          sad_backend: str, threads: int) -> list[dict[str, object]]:
    from ..ops import adder2d_u8_cost

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


def summary_table(rows: Sequence[dict[str, object]]) -> str:
    """One line per shape: median ms per method, then the int8 adder's terms/s and % of the SAD peak, its speed-up
    over fp32 conv and fp32 adder, and its time relative to PyTorch's int8 conv (NCHW input / channels-last)."""
    peaks = [r for r in rows if str(r["method"]).startswith("sad_peak_")]
    rows = [r for r in rows if r not in peaks]
    by_key = {(r["shape"], r["method"]): r for r in rows}
    shapes = list(dict.fromkeys(r["shape"] for r in rows))
    methods = [m for m in METHODS if any(r["method"] == m for r in rows)]
    head = ["shape", *[f"{m} ms" for m in methods], "adder_u8 G terms/s", "peak G/s", "% peak",
            "x vs conv_f32", "x vs adder_f32", "time/conv_int8", "time/conv_int8_cl"]
    lines = []

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
    text = format_table(head, lines)
    for peak in peaks:
        median, best = float(peak["terms_per_s"]) / 1e9, float(peak["max_terms_per_s"]) / 1e9
        text += f"\nSAD peak ({peak['sad_backend']}, {peak['threads']} thread(s)): {median:.0f} G terms/s median, " \
                f"{best:.0f} best"
    return text



# --------------------------------------------------------------------------------------------------------------
# Command


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--shapes", default="resnet20,lenet5",
                        help="comma-separated shape sets out of resnet20, lenet5 (default: both; of LeNet-5, conv2)")
    parser.add_argument("--batch-size", type=int, default=64, help="batch of the layer shapes")
    parser.add_argument("--repeats", type=int, default=30,
                        help="interleaved timed rounds (medians and minima are kept)")
    parser.add_argument("--threads", type=int, default=None, help="torch and numba threads (default: torch's count)")
    parser.add_argument("--backend", default=None, choices=("sad512", "sad256", "portable"),
                        help="force an adder2d_u8 backend (default: the widest this CPU runs)")
    parser.add_argument("--no-peak", action="store_true", help="skip the SAD peak loop (no %% of peak)")
    parser.add_argument("--output", default=None,
                        help="CSV path (default: benchmarks/results/bench_quant_<cpu>_<date>.csv)")


def run(args: argparse.Namespace) -> int:
    if args.batch_size < 1 or args.repeats < 1 or (args.threads is not None and args.threads < 1):
        raise ConfigError("--batch-size, --repeats and --threads must be positive")
    shapes = parse_shape_sets(args.shapes, args.batch_size, keep=_measured)
    info = quant_machine_info()
    print(f"frugalvision bench quant on {info['cpu']} (SIMD: {info['cpu_flags']}; load average "
          f"{info['load_average_1m']})", flush=True)
    rows = bench_quant_layers(shapes, repeats=args.repeats, threads=args.threads, backend=args.backend,
                              peak=not args.no_peak, log=lambda msg: print(msg, flush=True))
    if not args.no_peak:
        from .sad_peak import sad_peak

        rows += sad_peak(threads=sorted({1, int(rows[0]["threads"])}), repeats=args.repeats)
    info = quant_machine_info()  # load average after the run too
    print()
    print(summary_table(rows))
    host = f"cpu{info['cpu_count']}-{platform.machine()}-t{rows[0]['threads']}"
    path = write_csv(rows, args.output or result_path("quant", host), info)
    print(f"\nmedian times; x vs ...: speed-up of adder_u8; time/...: adder_u8 time over that method's. Load average "
          f"{info['load_average_1m']} (1 min), {info['load_average_5m']} (5 min). Wrote {path}")
    return 0


TARGET = Target(
    name="quant", help="integer adder layer vs float adder, fp32 and int8 convolution, and the SAD peak",
    description="Forward time of the uint8 adder op (fused requantization), its int32 form, the float32 adder, fp32 "
                "nn.Conv2d and PyTorch's int8 convolution (x86 engine) on the ResNet-20 stage shapes and LeNet-5 "
                "conv2, interleaved; terms/s against the SAD instruction's peak measured in the same rounds. Prints "
                "a table and writes a tidy CSV with machine information.",
    add_arguments=add_arguments, run=run)
