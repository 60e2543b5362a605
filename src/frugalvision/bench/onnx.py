"""``frugalvision bench onnx``: latency of a model exported to ONNX, in onnxruntime, next to the same model in
PyTorch (frugalvision's kernels); the export is checked against PyTorch first (docs/deploy.md).

The two runtimes are timed *interleaved* (:func:`frugalvision.bench.common.time_interleaved`), so load from other
processes on a shared machine hits both alike; medians are reported with the load average before and after, as well as
the fastest pass (closest to an idle machine) and the process CPU time per pass. Both use the same number of threads
(PyTorch's intra-op pool, which frugalvision's numba kernels follow, and onnxruntime's intra-op pool). onnxruntime's
idle workers spin by default, which steals the CPU from the PyTorch pass that follows in an interleaved run; the
benchmark turns spinning off (``spin=False``), as frugalvision sets ``OMP_WAIT_POLICY=PASSIVE`` for its own pools.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import ConfigError
from .common import (
    IntList,
    Target,
    format_table,
    machine_info,
    result_path,
    time_interleaved,
    with_batch_statistics,
    write_csv,
)
from .common import threads as using_threads

if TYPE_CHECKING:
    from torch import nn

__all__ = ["TARGET", "OnnxLatency", "bench_onnx_vs_torch", "prediction_agreement"]


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
    import torch

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

    def run_torch() -> None:
        with torch.inference_mode():
            model(x)

    def run_ort() -> None:
        session.run(None, feed)

    with using_threads(threads):
        load_before = os.getloadavg()[0]
        timings = time_interleaved({"pytorch": run_torch, "onnxruntime": run_ort}, rounds, warmup=warmup)
        load_after = os.getloadavg()[0]
    cpu = machine_info()["cpu"]
    return [
        OnnxLatency(model=label or type(model).__name__, runtime=name, batch_size=batch_size,
                    input_size="x".join(map(str, input_size)), median_ms=round(timings.median(name) * 1e3, 3),
                    min_ms=round(timings.minimum(name) * 1e3, 3), cpu_ms=round(timings.median(name, "cpu") * 1e3, 3),
                    iters=len(t), threads=threads, load_before=round(load_before, 2),
                    load_after=round(load_after, 2), torch=torch.__version__, onnxruntime=ort.__version__, cpu=cpu)
        for name, t in timings.wall.items()
    ]


def prediction_agreement(model: nn.Module, onnx_path: str | Path, folder: str | Path) -> str:
    """Top-1 of PyTorch and onnxruntime on the ``val`` split of an image folder (with the model's data config), and
    how often the two predict the same class."""
    import onnxruntime as ort
    import torch

    from ..data import build_dataset

    data_config = getattr(model, "data_config", None)
    if data_config is None:
        raise ConfigError("--compare-folder: the model carries no data config (preprocessing) to read images with")
    val = build_dataset("folder", "val", folder, data_config=data_config)
    images = torch.stack([val[i][0] for i in range(len(val))])
    labels = torch.tensor(val.targets)
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    (onnx_logits,) = session.run(None, {session.get_inputs()[0].name: images.numpy()})
    with torch.inference_mode():
        torch_logits = model(images)
    onnx_pred, torch_pred = torch.from_numpy(onnx_logits).argmax(1), torch_logits.argmax(1)

    def percent(hits: torch.Tensor) -> str:
        return f"{hits.float().mean().item() * 100:.1f} %"

    return (f"{len(val)} val images of {folder}: top-1 PyTorch {percent(torch_pred == labels)}, onnxruntime "
            f"{percent(onnx_pred == labels)}, same prediction on {percent(onnx_pred == torch_pred)}")


# --------------------------------------------------------------------------------------------------------------
# Command


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rounds", type=int, default=100, help="timed passes per runtime, interleaved (default 100)")
    parser.add_argument("--warmup", type=int, default=5, help="untimed passes per runtime first (default 5)")
    parser.add_argument("--threads", nargs="+", action=IntList, default=[2, 1],
                        help="thread counts of both runtimes, one measurement each, space- or comma-separated")
    parser.add_argument("--batch-size", type=int, default=1, help="images per pass")
    parser.add_argument("--tolerance", type=float, default=1e-4,
                        help="largest relative error of onnxruntime vs PyTorch accepted by the export check")
    parser.add_argument("--compare-folder", default=None, metavar="DIR",
                        help="an image folder with a val/ split: also compare the two runtimes' predictions on it")
    parser.add_argument("--output", default=None,
                        help="CSV path (default: benchmarks/results/bench_onnx_<model>_<conv type>.csv)")


def run(args: argparse.Namespace) -> int:
    """``args.model_object``, ``args.model_input_size``: see :class:`frugalvision.bench.common.Target`. A model
    without a checkpoint gets BatchNorm statistics of random images (random AdderNet activations are far out of
    range otherwise)."""
    if args.rounds < 1 or args.warmup < 0 or args.batch_size < 1 or min(args.threads) < 1:
        raise ConfigError("--rounds, --batch-size and --threads must be >= 1, --warmup >= 0")
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        raise ConfigError("bench onnx needs onnxruntime (pip install 'frugalvision[export]')") from None
    import torch

    from ..export import export_onnx

    model, input_size = args.model_object, tuple(args.model_input_size)
    cfg = getattr(model, "frugalvision_cfg", {})
    parts = (cfg.get("model"), cfg.get("kwargs", {}).get("conv_type"))
    label = "_".join(str(v) for v in parts if v) or type(model).__name__
    if args.checkpoint is None:
        torch.manual_seed(0)
        model = with_batch_statistics(model, torch.randn(96, *input_size))
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"{label}.onnx"
        error = export_onnx(model, path, torch.randn(1, *input_size), tolerance=args.tolerance)
        print(f"exported {label}: {path.stat().st_size / 2**20:.1f} MiB, onnxruntime vs PyTorch max relative error "
              f"{error:.1e}", flush=True)
        if args.compare_folder:
            print(prediction_agreement(model, path, args.compare_folder), flush=True)
        results = [row for threads in args.threads
                   for row in bench_onnx_vs_torch(model, path, input_size, batch_size=args.batch_size, threads=threads,
                                                  rounds=args.rounds, warmup=args.warmup, label=label)]
    output = write_csv([asdict(r) for r in results], args.output or result_path("onnx", label, stamp=False))
    print(format_table(["runtime", "batch", "threads", "median ms", "min ms", "CPU ms", "runs", "load average"],
                       [[r.runtime, r.batch_size, r.threads, f"{r.median_ms:.2f}", f"{r.min_ms:.2f}", f"{r.cpu_ms:.2f}",
                         r.iters, f"{r.load_before} -> {r.load_after}"] for r in results]))
    print(f"{os.cpu_count()} CPUs, {results[0].cpu}; wrote {output}")
    return 0


TARGET = Target(
    name="onnx", help="a model exported to ONNX: onnxruntime vs PyTorch latency (export checked first)",
    description="Exports the model to ONNX (adder layers as standard operators), checks onnxruntime against PyTorch, "
                "then times both runtimes interleaved on the same random batch at each thread count; optionally "
                "compares their predictions on an image folder. Prints a table and writes a tidy CSV. Example: "
                "--model resnet20 --conv-type adder --checkpoint ../shared/data/official/ResNet20-AdderNet.pth.",
    add_arguments=add_arguments, run=run, model_arguments="optional")
