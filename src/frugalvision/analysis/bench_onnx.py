"""Latency of an exported ONNX model in onnxruntime next to the same model in PyTorch (frugalvision's kernels).

The two runtimes are timed *interleaved* (one PyTorch pass, one onnxruntime pass, alternating which goes first), so
load from other processes on a shared machine hits both alike; medians are reported with the load average before and
after, as well as the fastest pass (closest to an idle machine) and the process CPU time per pass. Both use the same
number of threads (PyTorch's intra-op pool, which frugalvision's numba kernels follow, and onnxruntime's intra-op
pool). onnxruntime's idle workers spin by default, which steals the CPU from the PyTorch pass that follows in an
interleaved run; the benchmark turns spinning off (``spin=False``), as frugalvision sets ``OMP_WAIT_POLICY=PASSIVE``
for its own pools.
"""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

__all__ = ["OnnxLatency", "bench_onnx_vs_torch"]


@dataclass
class OnnxLatency:
    """One runtime's timing; times per forward pass of the whole batch, in milliseconds."""

    model: str
    runtime: str
    batch_size: int
    input_size: str
    median_ms: float
    min_ms: float
    cpu_ms: float  # median process CPU time per pass (all threads): less sensitive to other load than wall time
    iters: int
    threads: int
    load_before: float
    load_after: float
    torch: str
    onnxruntime: str
    cpu: str


def bench_onnx_vs_torch(model: nn.Module, onnx_path: str | Path, input_size: Sequence[int], *, batch_size: int = 1,
                        threads: int = 2, rounds: int = 50, warmup: int = 5, label: str = "",
                        spin: bool = False) -> list[OnnxLatency]:
    """Times ``model`` in PyTorch and ``onnx_path`` in onnxruntime (CPUExecutionProvider) on the same random batch.

    Args:
        model: the PyTorch model (eval mode is set).
        onnx_path: its ONNX export (e.g. from :func:`frugalvision.export.export_onnx`).
        input_size: (C, H, W).
        batch_size: images per pass.
        threads: threads of both runtimes (PyTorch's setting is restored afterwards).
        rounds: timed passes per runtime.
        warmup: untimed passes per runtime first.
        label: the model name for the results.
        spin: let onnxruntime's idle workers spin (its default; see the module docstring).

    Returns:
        Two rows: ``runtime="pytorch"`` and ``runtime="onnxruntime"``.
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    if not spin:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
    input_name = session.get_inputs()[0].name
    x = torch.randn(batch_size, *input_size)
    feed = {input_name: x.numpy()}
    model = model.eval()
    old_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    load_before = os.getloadavg()[0]
    times: dict[str, list[float]] = {"pytorch": [], "onnxruntime": []}
    cpu_times: dict[str, list[float]] = {"pytorch": [], "onnxruntime": []}

    def run_torch() -> None:
        with torch.inference_mode():
            model(x)

    def run_ort() -> None:
        session.run(None, feed)

    runners = {"pytorch": run_torch, "onnxruntime": run_ort}
    try:
        for _ in range(warmup):
            run_torch()
            run_ort()
        for i in range(rounds):
            order = ("pytorch", "onnxruntime") if i % 2 == 0 else ("onnxruntime", "pytorch")
            for name in order:
                start, cpu_start = time.perf_counter(), time.process_time()
                runners[name]()
                times[name].append(time.perf_counter() - start)
                cpu_times[name].append(time.process_time() - cpu_start)
    finally:
        torch.set_num_threads(old_threads)
    load_after = os.getloadavg()[0]
    cpu = platform.processor() or platform.machine()
    return [
        OnnxLatency(model=label or type(model).__name__, runtime=name, batch_size=batch_size,
                    input_size="x".join(map(str, input_size)), median_ms=round(statistics.median(t) * 1e3, 3),
                    min_ms=round(min(t) * 1e3, 3), cpu_ms=round(statistics.median(cpu_times[name]) * 1e3, 3),
                    iters=len(t), threads=threads, load_before=round(load_before, 2),
                    load_after=round(load_after, 2), torch=torch.__version__, onnxruntime=ort.__version__, cpu=cpu)
        for name, t in times.items()
    ]
