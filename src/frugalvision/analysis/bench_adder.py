"""Benchmark of the adder layer: frugalvision's kernels against the reference, the official-style formulation and
``nn.Conv2d`` (time and peak extra memory), plus one end-to-end training epoch of LeNet-5-BN adder vs CNN.

Methods (one layer, forward and forward+backward):

* ``frugalvision``: :func:`frugalvision.ops.adder2d` with automatic backend selection (numba on CPU, Triton on GPU).
* ``reference``: the same op forced to the chunked plain-PyTorch backend.
* ``official``: the formulation of the official AdderNet code, re-implemented here from its equations: the whole
  batch im2col ``X_col`` (K, P) broadcast against ``W`` (O, K) into an (O, K, P) tensor, and the AdderNet backward
  (full-precision ``dW``, HardTanh ``dX``) computed on the same broadcast, folded back with ``F.fold``.
* ``conv``: ``torch.nn.functional.conv2d`` (oneDNN on CPU, cuDNN on GPU).

Timing: the methods of one shape and pass are run round-robin (so background load hits them alike) and the minimum
over the repeats is kept (the minimum CPU time of the calling thread is recorded too: with ``--threads 1`` it is the
work itself and suffers less from other processes sharing the cores).

Memory (CPU): the peak resident set size is reset through ``/proc/self/clear_refs`` before a call and read back from
``VmHWM`` after it, with glibc's mmap threshold pinned to 64 KiB (``mallopt``, only while measuring memory: timings
run with a 32 MiB threshold) so that every large buffer is mapped on allocation and unmapped when freed; "peak
extra" is that high-water mark minus the resident size before the call, with inputs already allocated, the call
warmed up, and freed heap pages handed back first (``malloc_trim``). On CUDA it is
``torch.cuda.max_memory_allocated`` minus the allocated memory before the call.
"""

from __future__ import annotations

import contextlib
import csv
import ctypes
import datetime
import os
import platform
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from ..ops import adder2d, use_backend

__all__ = [
    "METHODS",
    "LayerShape",
    "bench_epoch",
    "bench_layers",
    "format_table",
    "machine_info",
    "official_adder2d",
    "write_csv",
]

METHODS = ("frugalvision", "reference", "official", "conv")


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


def resnet20_shapes(batch: int = 64) -> list[LayerShape]:
    """The three 3x3 pad-1 stage shapes of ResNet-20 on CIFAR."""
    return [
        LayerShape("resnet20_stage1", batch, 16, 32, 32, 16, 3, 1, 1),
        LayerShape("resnet20_stage2", batch, 32, 16, 16, 32, 3, 1, 1),
        LayerShape("resnet20_stage3", batch, 64, 8, 8, 64, 3, 1, 1),
    ]


def lenet5_shapes(batch: int = 64) -> list[LayerShape]:
    """The adder layers of LeNet-5-BN on 28x28 digits (the fully connected layers are convolutions)."""
    return [
        LayerShape("lenet5_conv1", batch, 1, 28, 28, 6, 5, 1, 2),
        LayerShape("lenet5_conv2", batch, 6, 14, 14, 16, 5, 1, 0),
        LayerShape("lenet5_fc1", batch, 16, 5, 5, 120, 5, 1, 0),
        LayerShape("lenet5_fc2", batch, 120, 1, 1, 84, 1, 1, 0),
    ]



# --------------------------------------------------------------------------------------------------------------
# The official-style formulation (written from AdderNet Eq. 2, 5 and 6; the O x K x P broadcast is the point)


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


def official_adder2d(x: Tensor, weight: Tensor, stride: int = 1, padding: int = 0) -> Tensor:
    """Adder layer as the official code computes it: whole-batch unfold, (O, K, P) broadcast, fold (groups = 1)."""
    n, _, h, w = x.shape
    out_channels, _, kh, kw = weight.shape
    h_out = (h + 2 * padding - kh) // stride + 1
    w_out = (w + 2 * padding - kw) // stride + 1
    x_col = F.unfold(x, (kh, kw), padding=padding, stride=stride)  # (N, K, L)
    x_col = x_col.transpose(0, 1).reshape(x_col.shape[1], -1)  # (K, N*L)
    y = _OfficialAdder.apply(x_col, weight.reshape(out_channels, -1))  # (O, N*L)
    return y.view(out_channels, n, h_out, w_out).transpose(0, 1).contiguous()  # (N, O, Ho, Wo)


# --------------------------------------------------------------------------------------------------------------
# Measuring


def machine_info() -> dict[str, str]:
    """CPU / GPU model, core count, thread count and library versions."""
    import numba

    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {
        "cpu": cpu,
        "cpu_count": str(os.cpu_count()),
        "torch_threads": str(torch.get_num_threads()),
        "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else "",
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numba": numba.__version__,
        "load_average_1m": f"{os.getloadavg()[0]:.2f}" if hasattr(os, "getloadavg") else "",
        "memory_method": "cpu: VmHWM - VmRSS via /proc/self/clear_refs, glibc mmap threshold 64 KiB; "
        "cuda: max_memory_allocated - memory_allocated",
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


def _malloc_mode(measure_memory: bool) -> bool:
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


def _rss_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise OSError(f"{field} not in /proc/self/status")


def peak_extra_bytes(fn: Callable[[], object], device: torch.device) -> float:
    """Peak memory the call adds on top of what is live before it (see the module docstring); NaN if unknown."""
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


def time_round_robin(fns: dict[str, Callable[[], object]], repeats: dict[str, int], device: torch.device,
                     ) -> tuple[dict[str, float], dict[str, float]]:
    """Minimum wall time and minimum CPU time of the calling thread (seconds) of each function: one untimed warm-up
    each, then round-robin repeats. With one thread (``torch.set_num_threads(1)``) the thread's CPU time is the work
    itself and is less sensitive than wall time to other processes competing for the cores; with more threads it
    only covers the calling thread's share."""
    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    best = {name: float("inf") for name in fns}
    best_cpu = {name: float("inf") for name in fns}
    for fn in fns.values():
        fn()
    for r in range(max(repeats.values())):
        for name, fn in fns.items():
            if r >= repeats[name]:
                continue
            sync()
            start, start_cpu = time.perf_counter(), time.thread_time()
            fn()
            sync()
            best[name] = min(best[name], time.perf_counter() - start)
            best_cpu[name] = min(best_cpu[name], time.thread_time() - start_cpu)
    return best, best_cpu


def _layer_fns(shape: LayerShape, method: str, device: torch.device) -> tuple[Callable, Callable, Callable]:
    """(forward, forward+backward, reset) closures for one method on fresh random inputs."""
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
            with use_backend("reference"):
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
    device = torch.device(device)
    rows: list[dict[str, object]] = []
    for shape in shapes:
        fns = {m: _layer_fns(shape, m, device) for m in methods}
        reps = {m: slow_repeats if m in ("reference", "official") else repeats for m in methods}
        results: dict[tuple[str, str], dict[str, float]] = {}
        for pass_index, pass_name in enumerate(("forward", "forward_backward")):
            cpu_memory = device.type == "cpu" and _malloc_mode(measure_memory=False)
            times, cpu_times = time_round_robin({m: f[pass_index] for m, f in fns.items()}, reps, device)
            if device.type == "cpu":
                cpu_memory = _malloc_mode(measure_memory=True)
            for m in methods:
                fns[m][2]()
                measured = device.type == "cuda" or cpu_memory
                memory = peak_extra_bytes(fns[m][pass_index], device) if measured else float("nan")
                fns[m][2]()
                results[(m, pass_name)] = {
                    "time_ms": times[m] * 1e3, "cpu_ms": cpu_times[m] * 1e3, "peak_extra_mib": memory / 2**20
                }
        for (m, pass_name), r in results.items():
            conv = results.get(("conv", pass_name))
            rows.append({
                "shape": shape.name,
                "input": f"{shape.n}x{shape.c_in}x{shape.h}x{shape.w}",
                "filters": f"{shape.c_out}x{shape.c_in}x{shape.k}x{shape.k}",
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


@contextlib.contextmanager
def _seeded(seed: int) -> Iterator[None]:
    state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        yield
    finally:
        torch.random.set_rng_state(state)


def bench_epoch(batch_size: int = 64, epochs: int = 1, device: str | torch.device = "cpu") -> list[dict[str, object]]:
    """Wall time of one training epoch (SGD, cross-entropy) of LeNet-5-BN on mnist5k, adder vs CNN twin.

    Falls back to a LeNet-5-shaped stack on random data when the model zoo or the data are not available; the
    ``workload`` column says which one ran.
    """
    device = torch.device(device)
    rows = []
    for conv_type in ("adder", "conv"):
        model, data, workload = _epoch_workload(conv_type, batch_size)
        model.to(device).train()
        opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

        def step(images: Tensor, labels: Tensor, model=model, opt=opt) -> None:
            opt.zero_grad(set_to_none=True)
            loss = F.cross_entropy(model(images.to(device)), labels.to(device))
            loss.backward()
            opt.step()

        images, labels = next(iter(data))
        step(images, labels)  # warm-up: numba loading, allocator
        best = float("inf")
        for _ in range(epochs):
            if device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            for images, labels in data:
                step(images, labels)
            if device.type == "cuda":
                torch.cuda.synchronize()
            best = min(best, time.perf_counter() - start)
        rows.append({
            "shape": "lenet5_bn_epoch",
            "input": f"{len(data.dataset)} images, batch {batch_size}",
            "filters": workload,
            "stride": "",
            "padding": "",
            "method": "frugalvision" if conv_type == "adder" else "conv",
            "pass": "train_epoch",
            "time_ms": round(best * 1e3, 2),
            "peak_extra_mib": "",
            "time_vs_conv": "",
            "cpu_ms": "",
            "cpu_vs_conv": "",
            "memory_vs_conv": "",
            "repeats": epochs,
        })
    rows[0]["time_vs_conv"] = round(float(rows[0]["time_ms"]) / float(rows[1]["time_ms"]), 4)
    rows[1]["time_vs_conv"] = 1.0
    return rows


def _epoch_workload(conv_type: str, batch_size: int):
    from torch.utils.data import DataLoader

    from .. import create_model
    from ..data import build_dataset

    with _seeded(0):
        model = create_model("lenet5_bn", conv_type=conv_type)
    dataset = build_dataset("mnist5k", "train")
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=True, drop_last=False,
                        generator=torch.Generator().manual_seed(0))
    return model, loader, "lenet5_bn on mnist5k train"


# --------------------------------------------------------------------------------------------------------------
# Reporting


def format_table(rows: Sequence[dict[str, object]]) -> str:
    """One line per shape: times (ms) per method and pass, adder/conv ratios, speed-up over official, memory."""
    by_key = {(r["shape"], r["method"], r["pass"]): r for r in rows}
    shapes = list(dict.fromkeys(r["shape"] for r in rows if r["pass"] != "train_epoch"))
    methods = [m for m in METHODS if any(r["method"] == m for r in rows)]
    head = ["shape"] + [f"{m} fwd/fb ms" for m in methods]
    head += ["fwd/conv", "fb/conv", "fb/conv cpu", "official/fv fb", "mem/conv"]
    lines = [head]

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
    widths = [max(len(line[i]) for line in lines) for i in range(len(head))]
    text = "\n".join("  ".join(cell.rjust(widths[i]) for i, cell in enumerate(line)) for line in lines)
    epoch = [r for r in rows if r["pass"] == "train_epoch"]
    if epoch:
        adder = next(r for r in epoch if r["method"] == "frugalvision")
        conv = next(r for r in epoch if r["method"] == "conv")
        text += (f"\n\nLeNet-5-BN training epoch ({adder['filters']}): adder {float(adder['time_ms']) / 1e3:.2f} s, "
                 f"CNN {float(conv['time_ms']) / 1e3:.2f} s, ratio {adder['time_vs_conv']}")
    return text


def write_csv(rows: Sequence[dict[str, object]], path: str | Path, info: dict[str, str] | None = None) -> Path:
    """Tidy CSV: one row per measurement, machine information repeated on every row."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    info = info or machine_info()
    fields = list(rows[0].keys()) + list(info.keys())
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        for row in rows:
            writer.writerow({**row, **info})
    return path
