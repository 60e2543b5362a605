"""``frugalvision bench adder``: the adder layer: frugalvision's kernels against the reference, the official-style
formulation and ``nn.Conv2d`` (time and peak extra memory), plus one end-to-end training epoch of LeNet-5-BN adder vs
CNN.

Methods (one layer, forward and forward+backward):

* ``frugalvision``: :func:`frugalvision.ops.adder2d` with automatic backend selection (numba on CPU, Triton on GPU).
* ``reference``: the same op forced to the chunked plain-PyTorch backend (``use_backend("torch")``).
* ``official``: the formulation of the official AdderNet code, re-implemented here from its equations: the whole
  batch im2col ``X_col`` (K, P) broadcast against ``W`` (O, K) into an (O, K, P) tensor, and the AdderNet backward
  (full-precision ``dW``, HardTanh ``dX``) computed on the same broadcast, folded back with ``F.fold``.
* ``conv``: ``torch.nn.functional.conv2d`` (oneDNN on CPU, cuDNN on GPU).

Timing: the methods of one shape and pass are interleaved (:func:`frugalvision.bench.common.time_interleaved`, so
background load hits them alike) and the minimum over the repeats is kept (the minimum CPU time of the calling thread
is recorded too: with ``--threads 1`` it is the work itself and suffers less from other processes sharing the cores).

Memory (CPU): the peak resident set size is reset through ``/proc/self/clear_refs`` before a call and read back from
``VmHWM`` after it, with glibc's mmap threshold pinned to 64 KiB (``mallopt``, only while measuring memory: timings
run with a 32 MiB threshold) so that every large buffer is mapped on allocation and unmapped when freed; "peak
extra" is that high-water mark minus the resident size before the call, with inputs already allocated, the call
warmed up, and freed heap pages handed back first (``malloc_trim``). On CUDA it is
``torch.cuda.max_memory_allocated`` minus the allocated memory before the call.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import functools
import platform
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

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
from .epoch import bench_epochs

if TYPE_CHECKING:
    import torch
    from torch import Tensor

__all__ = ["METHODS", "TARGET", "bench_epoch", "bench_layers", "official_adder2d", "summary_table"]

METHODS = ("frugalvision", "reference", "official", "conv")
MEMORY_METHOD = ("cpu: VmHWM - VmRSS via /proc/self/clear_refs, glibc mmap threshold 64 KiB; "
                 "cuda: max_memory_allocated - memory_allocated")


# --------------------------------------------------------------------------------------------------------------
# The official-style formulation (written from AdderNet Eq. 2, 5 and 6; the O x K x P broadcast is the point)


@functools.cache
def _official_adder_function() -> type[torch.autograd.Function]:
    """The autograd function of the official formulation, defined on first use (this module loads without torch)."""
    import torch

    class _OfficialAdder(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x_col: Tensor, w_col: Tensor) -> Tensor:  # x_col (K, P), w_col (O, K)
            ctx.save_for_backward(x_col, w_col)
            return -(w_col.unsqueeze(2) - x_col.unsqueeze(0)).abs().sum(1)  # (O, K, P) -> (O, P)

        @staticmethod
        def backward(ctx, grad_output: Tensor) -> tuple[Tensor, Tensor]:  # grad_output (O, P)
            x_col, w_col = ctx.saved_tensors
            diff = x_col.unsqueeze(0) - w_col.unsqueeze(2)  # (O, K, P)
            grad_w = (diff * grad_output.unsqueeze(1)).sum(2)  # Eq. 5: (O, K)
            grad_x = (-diff).clamp(-1, 1).mul(grad_output.unsqueeze(1)).sum(0)  # Eq. 6: (K, P)
            return grad_x, grad_w

    return _OfficialAdder


def official_adder2d(x: Tensor, weight: Tensor, stride: int = 1, padding: int = 0) -> Tensor:
    """Adder layer as the official code computes it: whole-batch unfold, (O, K, P) broadcast, fold (groups = 1)."""
    import torch.nn.functional as F

    n, _, h, w = x.shape
    out_channels, _, kh, kw = weight.shape
    h_out = (h + 2 * padding - kh) // stride + 1
    w_out = (w + 2 * padding - kw) // stride + 1
    x_col = F.unfold(x, (kh, kw), padding=padding, stride=stride)  # (N, K, L)
    x_col = x_col.transpose(0, 1).reshape(x_col.shape[1], -1)  # (K, N*L)
    y = _official_adder_function().apply(x_col, weight.reshape(out_channels, -1))  # (O, N*L)
    return y.view(out_channels, n, h_out, w_out).transpose(0, 1).contiguous()  # (N, O, Ho, Wo)


# --------------------------------------------------------------------------------------------------------------
# Measuring


def _rss_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise OSError(f"{field} not in /proc/self/status")


def peak_extra_bytes(fn: Callable[[], object], device: torch.device) -> float:
    """Peak memory the call adds on top of what is live before it (see the module docstring); NaN if unknown."""
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        fn()
        torch.cuda.synchronize()
        return float(torch.cuda.max_memory_allocated() - base)
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)  # give freed heap pages back, so that reusing them counts again
    try:
        Path("/proc/self/clear_refs").write_text("5")
        base = _rss_kib("VmRSS")
    except OSError:
        return float("nan")
    fn()
    return float(_rss_kib("VmHWM") - base) * 1024.0


def _layer_fns(shape: LayerShape, method: str, device: torch.device) -> tuple[Callable, Callable, Callable]:
    """(forward, forward+backward, reset) closures for one method on fresh random inputs."""
    import torch
    import torch.nn.functional as F

    from ..ops import adder2d, use_backend

    gen = torch.Generator().manual_seed(0)
    x = torch.randn(shape.n, shape.c_in, shape.h, shape.w, generator=gen).to(device).requires_grad_(True)
    w = torch.randn(shape.c_out, shape.c_in, shape.k, shape.k, generator=gen).to(device).requires_grad_(True)
    s, p = shape.stride, shape.padding

    def run() -> Tensor:
        if method == "conv":
            return F.conv2d(x, w, stride=s, padding=p)
        if method == "official":
            return official_adder2d(x, w, s, p)
        if method == "reference":
            with use_backend("torch"):
                return adder2d(x, w, stride=s, padding=p)
        return adder2d(x, w, stride=s, padding=p)

    def forward() -> None:
        with torch.no_grad():
            run()

    def forward_backward() -> None:
        x.grad = w.grad = None
        y = run()
        y.backward(torch.ones_like(y))

    def reset() -> None:
        x.grad = w.grad = None

    return forward, forward_backward, reset


def bench_layers(
    shapes: Sequence[LayerShape],
    methods: Sequence[str] = METHODS,
    repeats: int = 10,
    slow_repeats: int = 2,
    device: str | torch.device = "cpu",
    log: Callable[[str], None] | None = None,
) -> list[dict[str, object]]:
    """Times and peak extra memory of every method on every shape: one row per (shape, method, pass).

    ``reference`` and ``official`` get ``slow_repeats`` timed runs, the others ``repeats``.
    """
    import torch

    device = torch.device(device)
    sync = torch.cuda.synchronize if device.type == "cuda" else None
    rows: list[dict[str, object]] = []
    for shape in shapes:
        fns = {m: _layer_fns(shape, m, device) for m in methods}
        reps = {m: slow_repeats if m in ("reference", "official") else repeats for m in methods}
        results: dict[tuple[str, str], dict[str, float]] = {}
        for pass_index, pass_name in enumerate(("forward", "forward_backward")):
            cpu_memory = device.type == "cpu" and malloc_mode(measure_memory=False)
            timings = time_interleaved({m: f[pass_index] for m, f in fns.items()}, max(reps.values()),
                                       repeats=reps, cpu_clock="thread", sync=sync)
            if device.type == "cpu":
                cpu_memory = malloc_mode(measure_memory=True)
            for m in methods:
                fns[m][2]()
                measured = device.type == "cuda" or cpu_memory
                memory = peak_extra_bytes(fns[m][pass_index], device) if measured else float("nan")
                fns[m][2]()
                results[(m, pass_name)] = {"time_ms": timings.minimum(m) * 1e3,
                                           "cpu_ms": timings.minimum(m, "cpu") * 1e3, "peak_extra_mib": memory / 2**20}
        for (m, pass_name), r in results.items():
            conv = results.get(("conv", pass_name))
            rows.append({
                "shape": shape.name,
                "input": shape.input,
                "filters": shape.filters,
                "stride": shape.stride,
                "padding": shape.padding,
                "method": m,
                "pass": pass_name,
                "time_ms": round(r["time_ms"], 4),
                "peak_extra_mib": round(r["peak_extra_mib"], 3),
                "time_vs_conv": round(r["time_ms"] / conv["time_ms"], 4) if conv else "",
                "cpu_ms": round(r["cpu_ms"], 4),
                "cpu_vs_conv": round(r["cpu_ms"] / conv["cpu_ms"], 4) if conv and conv["cpu_ms"] > 0 else "",
                "memory_vs_conv": round(r["peak_extra_mib"] / conv["peak_extra_mib"], 4)
                if conv and conv["peak_extra_mib"] > 0 else "",
                "repeats": reps[m],
            })
        if log:
            log(f"{shape.name}: done")
    return rows


def bench_epoch(batch_size: int = 64, epochs: int = 1, device: str | torch.device = "cpu",
                images: int | None = None) -> list[dict[str, object]]:
    """One training epoch of LeNet-5-BN on mnist5k, adder vs CNN twin (:func:`frugalvision.bench.epoch.bench_epochs`;
    fastest of ``epochs``), as rows with this target's columns."""
    rows = []
    for r in bench_epochs(("adder", "conv"), batch_size, epochs, device, images=images):
        rows.append({
            "shape": "lenet5_bn_epoch", "input": f"{r['images']} images, batch {batch_size}",
            "filters": "lenet5_bn on mnist5k train", "stride": "", "padding": "",
            "method": "frugalvision" if r["conv_type"] == "adder" else "conv", "pass": "train_epoch",
            "time_ms": round(float(r["min_s"]) * 1e3, 2), "peak_extra_mib": "", "time_vs_conv": "", "cpu_ms": "",
            "cpu_vs_conv": "", "memory_vs_conv": "", "repeats": epochs,
        })
    rows[0]["time_vs_conv"] = round(float(rows[0]["time_ms"]) / float(rows[1]["time_ms"]), 4)
    rows[1]["time_vs_conv"] = 1.0
    return rows



# --------------------------------------------------------------------------------------------------------------
# Reporting


def summary_table(rows: Sequence[dict[str, object]]) -> str:
    """One line per shape: times (ms) per method and pass, adder/conv ratios, speed-up over official, memory."""
    by_key = {(r["shape"], r["method"], r["pass"]): r for r in rows}
    shapes = list(dict.fromkeys(r["shape"] for r in rows if r["pass"] != "train_epoch"))
    methods = [m for m in METHODS if any(r["method"] == m for r in rows)]
    head = ["shape"] + [f"{m} fwd/fb ms" for m in methods]
    head += ["fwd/conv", "fb/conv", "fb/conv cpu", "official/fv fb", "mem/conv"]
    lines = []

    def get(shape: str, method: str, pass_name: str, key: str) -> float | None:
        row = by_key.get((shape, method, pass_name))
        return float(row[key]) if row and row[key] != "" else None

    def fmt(v: float | None, digits: int = 2) -> str:
        return "-" if v is None or v != v else f"{v:.{digits}f}"

    for shape in shapes:
        line = [shape]
        for m in methods:
            fwd, fb = get(shape, m, "forward", "time_ms"), get(shape, m, "forward_backward", "time_ms")
            line.append(f"{fmt(fwd)}/{fmt(fb)}")
        fv_fb = get(shape, "frugalvision", "forward_backward", "time_ms")
        off_fb = get(shape, "official", "forward_backward", "time_ms")
        line += [
            fmt(get(shape, "frugalvision", "forward", "time_vs_conv")),
            fmt(get(shape, "frugalvision", "forward_backward", "time_vs_conv")),
            fmt(get(shape, "frugalvision", "forward_backward", "cpu_vs_conv")),
            fmt(off_fb / fv_fb if off_fb and fv_fb else None, 1),
            fmt(get(shape, "frugalvision", "forward_backward", "memory_vs_conv")),
        ]
        lines.append(line)
    text = format_table(head, lines) if lines else ""
    epoch = [r for r in rows if r["pass"] == "train_epoch"]
    if epoch:
        adder = next(r for r in epoch if r["method"] == "frugalvision")
        conv = next(r for r in epoch if r["method"] == "conv")
        text += (f"\n\nLeNet-5-BN training epoch ({adder['filters']}): adder {float(adder['time_ms']) / 1e3:.2f} s, "
                 f"CNN {float(conv['time_ms']) / 1e3:.2f} s, ratio {adder['time_vs_conv']}")
    return text


# --------------------------------------------------------------------------------------------------------------
# Command


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--shapes", default="resnet20,lenet5",
                        help="comma-separated shape sets out of resnet20, lenet5 (default: both)")
    parser.add_argument("--batch-size", type=int, default=64, help="batch of the layer shapes")
    parser.add_argument("--repeats", type=int, default=10, help="timed runs of the fast methods (minimum is kept)")
    parser.add_argument("--slow-repeats", type=int, default=2, help="timed runs of the reference and official methods")
    parser.add_argument("--skip", default="", help="comma-separated methods to leave out: reference, official")
    parser.add_argument("--no-epoch", action="store_true", help="skip the LeNet-5-BN training-epoch comparison")
    parser.add_argument("--epochs", type=int, default=1, help="timed training epochs per model (minimum is kept)")
    parser.add_argument("--epoch-images", type=int, default=None,
                        help="train on the first N mnist5k images in the epoch comparison (default: all)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch (and numba) threads; 1 makes the recorded CPU time insensitive to other processes")
    parser.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N")
    parser.add_argument("--output", default=None,
                        help="CSV path (default benchmarks/results/bench_adder_<device>_<date>.csv)")


def run(args: argparse.Namespace) -> int:
    import torch

    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    if skip - {"reference", "official"}:
        raise ConfigError(f"--skip: only reference and official can be left out, got {', '.join(sorted(skip))}")
    if args.batch_size < 1 or args.repeats < 1 or args.slow_repeats < 1 or args.epochs < 1:
        raise ConfigError("--batch-size, --repeats, --slow-repeats and --epochs must be positive")
    if args.epoch_images is not None and args.epoch_images < 1:
        raise ConfigError("--epoch-images must be positive")
    shapes = parse_shape_sets(args.shapes, args.batch_size)
    if args.threads is not None:
        if args.threads < 1:
            raise ConfigError("--threads must be positive")
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda: CUDA is not available")
    methods = [m for m in METHODS if m not in skip]
    info = machine_info(memory_method=MEMORY_METHOD)
    gpu = f" / {info['gpu']}" if info["gpu"] else ""
    print(f"frugalvision bench adder on {info['cpu']} ({info['torch_threads']} threads){gpu}")
    rows = bench_layers(shapes, methods, args.repeats, args.slow_repeats, device,
                        log=lambda msg: print(msg, flush=True))
    if not args.no_epoch:
        rows += bench_epoch(args.batch_size, args.epochs, device, args.epoch_images)
    print()
    print(summary_table(rows))
    host = ("cuda" if device.type == "cuda" else f"cpu{info['cpu_count']}-{platform.machine()}") + \
        f"-t{info['torch_threads']}"
    path = write_csv(rows, args.output or result_path("adder", host), info)
    print(f"\nwrote {path}")
    return 0


TARGET = Target(
    name="adder", help="adder layer vs reference, official formulation and nn.Conv2d",
    description="Forward and forward+backward time and peak extra memory of the frugalvision adder kernel, the "
                "reference op, the official-style unfold formulation and nn.Conv2d on ResNet-20 and LeNet-5 layer "
                "shapes, plus a LeNet-5-BN training epoch (adder vs CNN twin). Prints a table and writes a tidy CSV.",
    add_arguments=add_arguments, run=run)
