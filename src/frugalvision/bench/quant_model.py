"""``frugalvision bench quant-model``: whole-network inference time of the integer AdderNet against the CNN twin
deployed the ways a user would deploy a CNN on a CPU (issue 11; issue 18, item 5). The one whole-network comparison.

Methods (:data:`METHODS`), each built by :func:`build_method` for one zoo model:

* ``int8_adder``: :func:`frugalvision.quantize` of the AdderNet (``observer="minmax"``), as it comes by default
  (uint8 SAD kernels, fp32 stem and head); whatever ``quantize`` returns is what is timed.
* ``int8_adder_int8stem``: the same with ``stem="int8"`` (measured for models with a multiplicative stem only;
  LeNet-5-BN has none).
* ``fp32_adder``: the float AdderNet (frugalvision's fp32 adder kernels).
* ``fp32_cnn_torch``: the CNN twin (``conv_type="conv"``) in fp32 PyTorch (oneDNN).
* ``int8_cnn_fx``: the CNN twin through PyTorch's FX post-training static quantisation, ``x86`` engine.
* ``int8_cnn_ort``: the CNN twin exported to ONNX, quantised by onnxruntime (QDQ) and run by onnxruntime with
  threads that block when idle; ``int8_cnn_ort_spin``: the same with onnxruntime's default threads, which spin
  between and after runs (faster at small batches). Its threads spin ~10 ms after each call, longer than the pause
  before the next method's call, so it runs only when named with ``--methods`` (:data:`ALONE_ONLY`); even paired
  with one other method it slows that method's calls: time it in a run of its own.
* ``fp32_cnn_openvino``: the CNN twin in OpenVINO's CPU plugin with f32 inference precision.
* ``default_cnn_openvino``: the same with OpenVINO's default precision (bf16 on a CPU with AMX, f32 elsewhere): what a
  user who keeps the defaults gets; it is neither an fp32 nor an int8 baseline in the ratios.
* ``int8_cnn_openvino``: the CNN twin quantised by NNCF's post-training quantisation, in OpenVINO.

(see :mod:`.cnn_runtimes` for how each runtime is set up). onnxruntime needs the ``export`` extra, OpenVINO and NNCF
the ``bench`` extra: a method whose runtime is not installed is left out with a printed note, unless it was named
with ``--methods`` (then it is an error).

Models (:data:`MODELS`): ``resnet20`` (CIFAR, 3x32x32), ``lenet5_bn`` (MNIST, 1x28x28), ``resnet18`` (ImageNet
layout, 3x224x224). Weights are random with BatchNorm statistics of the calibration images (time does not depend on
the values); ``--checkpoint`` gives the AdderNet methods of ResNet-20 the released weights. Every quantiser is
calibrated on the same seeded N(0, 1) images (256; 16 for ResNet-18, whose float AdderNet takes seconds per image).

Timing rule: every method runs in its own spawned worker process (:func:`.cnn_runtimes.time_in_processes`), always,
whichever methods are chosen. OpenVINO's oneTBB workers poll for ~2 ms after a call and onnxruntime's spin unless
told not to; in separate processes, with a 5 ms pause before each call, no runtime's idle threads take the cores
from the next method, and the numbers of one run do not depend on which other methods were selected. Rounds are
interleaved: one call of every method per round, in a new random order; 3 untimed warm-up rounds. Each call is timed
inside its worker: wall time and the worker's process CPU time (all threads; it leaves out time spent waiting for a
core, so it is the steadier number on a loaded machine). Medians are reported.

Columns of each row (model x batch x method):

* ``median_ms``, ``cpu_median_ms`` (and ``min_ms``, ``p90_ms``, ``images_per_s``);
* ``time_vs_best_int8_cnn`` / ``cpu_vs_best_int8_cnn``: the row's median over the smallest median among the int8 CNN
  runtimes (:data:`INT8_CNN`) at that batch size, wall and CPU separately; ``best_int8_cnn`` names the fastest by
  wall time. ``time_vs_best_fp32_cnn`` / ``cpu_vs_best_fp32_cnn`` / ``best_fp32_cnn`` likewise over
  :data:`FP32_CNN` (PyTorch and OpenVINO f32; not ``default_cnn_openvino``);
* for the int8 AdderNet rows, against the SAD peak (:func:`.sad_peak.sad_peak`, measured once per run in the parent with
  the same thread count, before the workers start: the best of 100 runs of the fastest backend's peak loop, since other
  load only lowers a run's speed): ``adder_terms``, the ``|a - b|`` terms of the adder layers per forward
  (:func:`frugalvision.analysis.counting.count_ops` of the float AdderNet: its adder layers' additions / 2, times the
  batch size); ``terms_per_s`` = ``adder_terms`` / median wall time; ``pct_of_sad_peak``; ``peak_adder_ms`` =
  ``adder_terms`` / peak terms/s, the time the adder arithmetic would take at the peak; and ``beyond_peak_ms`` =
  ``median_ms`` - ``peak_adder_ms``. The time inside the kernels is not measured (a forward may be one compiled call),
  so at batch 1 ``beyond_peak_ms`` stands for the per-forward fixed cost: everything but the adder arithmetic at peak
  speed (dispatch, stem, head, quantisation, pooling, and the kernels' own shortfall from the peak). It is an upper
  bound of the time spent outside the kernels. A negative value, or more than 100 % of the peak, means the peak run was
  slowed by other load: rerun on a quieter machine.

Run ``frugalvision bench quant-model`` (see ``--help``); it prints a table and writes a tidy CSV (machine information,
the SAD peak and the runtimes' versions on every row) under ``benchmarks/results/``.
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
import os
import statistics
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import ConfigError
from .common import IntList, Target, format_table, result_path, with_batch_statistics, write_csv
from .common import threads as using_threads
from .quant import quant_machine_info

if TYPE_CHECKING:
    from torch import Tensor, nn

    from .cnn_runtimes import InferenceFn

__all__ = ["ALONE_ONLY", "FP32_CNN", "INT8_ADDER", "INT8_CNN", "METHODS", "MODELS", "TARGET", "adder_terms",
           "bench_quant_models", "build_method", "default_batch_sizes", "missing_packages", "ratio_columns",
           "select_methods", "summary_table"]

METHODS = ("int8_adder", "int8_adder_int8stem", "fp32_adder", "fp32_cnn_torch", "int8_cnn_fx", "int8_cnn_ort",
           "int8_cnn_ort_spin", "fp32_cnn_openvino", "default_cnn_openvino", "int8_cnn_openvino")
INT8_ADDER = ("int8_adder", "int8_adder_int8stem")
# only when named: its threads spin ~10 ms after each call (20-25 ms of CPU on 2 threads, measured with
# cnn_runtimes.idle_cpu_after_call), longer than the pause before the next method's call, whose cores they would take
ALONE_ONLY = ("int8_cnn_ort_spin",)
INT8_CNN = ("int8_cnn_fx", "int8_cnn_ort", "int8_cnn_ort_spin", "int8_cnn_openvino")
FP32_CNN = ("fp32_cnn_torch", "fp32_cnn_openvino")
MODELS = ("resnet20", "lenet5_bn", "resnet18")
_IMAGENET_MODELS = ("resnet18",)  # batch sizes 1, 8 and 16 calibration images by default (224 x 224 inputs)
_RUNTIME_PACKAGES = {  # method: (packages it imports, the frugalvision extra that installs them)
    "int8_cnn_ort": (("onnxruntime", "onnx"), "export"),
    "int8_cnn_ort_spin": (("onnxruntime", "onnx"), "export"),
    "fp32_cnn_openvino": (("openvino",), "bench"),
    "default_cnn_openvino": (("openvino",), "bench"),
    "int8_cnn_openvino": (("openvino", "nncf"), "bench"),
}
PAUSE_S = 0.005  # sleep before each timed call: longer than OpenVINO's ~2 ms of polling after a call
PEAK_RUNS = 100  # runs of the SAD peak loop (~2 ms each) per backend; the best one is the peak


def default_batch_sizes(model: str) -> tuple[int, ...]:
    return (1, 8) if model in _IMAGENET_MODELS else (1, 8, 64)


def default_calibration_images(model: str) -> int:
    return 16 if model in _IMAGENET_MODELS else 256


# --------------------------------------------------------------------------------------------------------------
# Methods


def _importable(package: str) -> bool:
    """Whether ``package`` is installed (found without importing it)."""
    return importlib.util.find_spec(package) is not None


def missing_packages(method: str) -> list[str]:
    """The packages ``method`` needs that are not installed."""
    packages = _RUNTIME_PACKAGES.get(method, ((), ""))[0]
    return [p for p in packages if not _importable(p)]


def select_methods(methods: Sequence[str] | None, note: Callable[[str], None] = print) -> list[str]:
    """The methods to run: ``None`` means every method whose runtime is installed (the others are left out with a
    ``note``) but those of :data:`ALONE_ONLY`; methods named explicitly must be known and installed (else
    :class:`ConfigError`)."""
    if methods is None:
        chosen = []
        for method in METHODS:
            if method in ALONE_ONLY:
                continue
            missing = missing_packages(method)
            if missing:
                extra = _RUNTIME_PACKAGES[method][1]
                note(f"note: {method} left out: {', '.join(missing)} not installed "
                     f"(pip install 'frugalvision[{extra}]')")
            else:
                chosen.append(method)
        return chosen
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise ConfigError(f"unknown methods {', '.join(unknown)}; choose from {', '.join(METHODS)}")
    for method in methods:
        missing = missing_packages(method)
        if missing:
            raise ConfigError(f"method {method} needs {', '.join(missing)}, which is not installed "
                              f"(pip install 'frugalvision[{_RUNTIME_PACKAGES[method][1]}]')")
    return list(dict.fromkeys(methods))


def _has_stem(adder: nn.Module) -> bool:
    """Whether the AdderNet keeps a multiplicative convolution (its stem), which ``stem="int8"`` quantises."""
    from torch import nn

    return any(type(m) is nn.Conv2d for m in adder.modules())


def _addernet(name: str, calibration: Tensor, checkpoint: str | Path | None) -> nn.Module:
    """The float AdderNet ``name``: weights from ``checkpoint``, else random with BatchNorm statistics of
    ``calibration``; eval mode."""
    from ..models import create_model

    if checkpoint is not None:
        return create_model(name, conv_type="adder", checkpoint_path=str(checkpoint)).eval()
    return with_batch_statistics(create_model(name, conv_type="adder"), calibration)


def _torch_fn(model: nn.Module) -> InferenceFn:
    import torch
    from torch import Tensor

    def run(x: Any) -> Tensor:
        with torch.inference_mode():
            return model(x if isinstance(x, Tensor) else torch.as_tensor(x))

    return run


def build_method(model_name: str, method: str, threads: int = 2, calibration_images: int | None = None,
                 checkpoint: str | Path | None = None, seed: int = 0) -> InferenceFn:
    """One method of :data:`METHODS` for the zoo model ``model_name``: a function from a float32 NCHW batch to the
    logits. Calibrated on ``calibration_images`` seeded N(0, 1) images (default: 256, 16 for ResNet-18); ``checkpoint``:
    AdderNet weights for the adder methods. Module-level, so that a ``functools.partial`` of it is the picklable
    builder :func:`.cnn_runtimes.time_in_processes` runs in a worker process."""
    import torch

    from ..models import create_model
    from ..quant import quantize
    from .cnn_runtimes import cnn_twin, onnxruntime_int8, openvino_fp32, openvino_int8, torch_fx_int8

    if method not in METHODS:
        raise ConfigError(f"unknown method {method!r}; choose from {', '.join(METHODS)}")
    torch.set_num_threads(threads)
    input_size = create_model(model_name, conv_type="conv").default_input_size
    count = calibration_images or default_calibration_images(model_name)
    calibration = torch.randn(count, *input_size, generator=torch.Generator().manual_seed(0))
    torch.manual_seed(seed)
    if method in ("int8_adder", "int8_adder_int8stem", "fp32_adder"):
        adder = _addernet(model_name, calibration, checkpoint)
        if method == "fp32_adder":
            return _torch_fn(adder)
        if method == "int8_adder_int8stem":
            if not _has_stem(adder):
                raise ConfigError(f"{model_name} has no multiplicative stem: int8_adder_int8stem does not apply")
            return _torch_fn(quantize(adder, calibration.split(64), observer="minmax", stem="int8"))
        return _torch_fn(quantize(adder, calibration.split(64), observer="minmax"))
    cnn = cnn_twin(model_name, calibration, seed)
    if method == "fp32_cnn_torch":
        return _torch_fn(cnn)
    if method == "int8_cnn_fx":
        return _torch_fn(torch_fx_int8(cnn, calibration))
    if method in ("int8_cnn_ort", "int8_cnn_ort_spin"):
        return onnxruntime_int8(cnn, calibration, threads, spinning=method == "int8_cnn_ort_spin")
    if method in ("fp32_cnn_openvino", "default_cnn_openvino"):
        return openvino_fp32(cnn, calibration[:1], threads, precision="f32" if method == "fp32_cnn_openvino" else None)
    return openvino_int8(cnn, calibration, threads)  # int8_cnn_openvino


def adder_terms(model_name: str) -> int:
    """``|a - b|`` terms of one image's forward through the adder layers of AdderNet ``model_name``
    (:func:`frugalvision.analysis.counting.count_ops`: an adder layer counts two additions per term)."""
    from ..analysis.counting import count_ops
    from ..models import create_model

    model = create_model(model_name, conv_type="adder")
    counted = count_ops(model, model.default_input_size)
    return sum(r["add"] for r in counted["layers"] if r["op"] == "adder2d" and r["kind"] == "weight") // 2


def _measured_sad_peak(threads: int, runs: int = PEAK_RUNS) -> tuple[float, str]:
    """The SAD peak with ``threads`` threads: the best terms/s of ``runs`` runs of the fastest backend's peak loop
    (other load can only slow a run down, so the best run estimates the peak; on the loaded 2-core machine the
    median of 20 runs came out at 78-160 G terms/s and the best at 174-239), and that backend."""
    from .sad_peak import sad_peak

    with using_threads(threads):
        rows = sad_peak(threads=[threads], repeats=runs)
    best = max(rows, key=lambda r: r["max_terms_per_s"])
    return float(best["max_terms_per_s"]), str(best["sad_backend"])


# --------------------------------------------------------------------------------------------------------------
# Rows


def ratio_columns(method: str, wall: dict[str, float], cpu: dict[str, float]) -> dict[str, object]:
    """The row's medians over the best int8 CNN runtime's and the best fp32 CNN runtime's (wall and CPU time
    separately, each against the group's smallest median of that clock); empty where the group was not measured."""
    columns: dict[str, object] = {}
    for group, members in (("int8_cnn", INT8_CNN), ("fp32_cnn", FP32_CNN)):
        present = [m for m in members if m in wall]
        best_wall = min(present, key=wall.__getitem__, default=None)
        best_cpu = min(present, key=cpu.__getitem__, default=None)
        columns[f"time_vs_best_{group}"] = round(wall[method] / wall[best_wall], 4) if best_wall else ""
        columns[f"cpu_vs_best_{group}"] = round(cpu[method] / cpu[best_cpu], 4) if best_cpu else ""
        columns[f"best_{group}"] = best_wall or ""
    return columns


def _peak_columns(terms: int, seconds: float, peak: float) -> dict[str, object]:
    """Columns of an int8 AdderNet row: ``terms`` adder terms per forward in a median of ``seconds``, against the
    SAD peak of ``peak`` terms/s (see the module docstring)."""
    peak_seconds = terms / peak
    return {"adder_terms": terms, "terms_per_s": round(terms / seconds),
            "pct_of_sad_peak": round(100 * peak_seconds / seconds, 2), "peak_adder_ms": round(peak_seconds * 1e3, 4),
            "beyond_peak_ms": round((seconds - peak_seconds) * 1e3, 4)}


def bench_quant_models(
    models: Sequence[str] = MODELS,
    batch_sizes: Sequence[int] | None = None,
    methods: Sequence[str] | None = None,
    repeats: dict[int, int] | None = None,
    threads: int = 2,
    calibration_images: int | None = None,
    checkpoints: dict[str, str | Path] | None = None,
    sad_peak: bool = True,
    note: Callable[[str], None] = print,
    warm_calls: int = 0,
) -> tuple[list[dict[str, object]], dict[str, str]]:
    """Time every method on every model and batch size (see the module docstring); one row per (model, batch size,
    method), and the run's information (SAD peak, load averages) for the CSV.

    Args:
        batch_sizes: the same for every model; default 1, 8, 64 (1, 8 for ResNet-18).
        methods: ``None``: every method whose runtime is installed (:func:`select_methods`).
        repeats: timed rounds per batch size (default 200 at batch 1, 30 otherwise).
        calibration_images: default 256 (16 for ResNet-18).
        checkpoints: AdderNet weights per model name (the other models use random weights).
        sad_peak: measure the SAD peak for the int8 AdderNet rows' peak columns.
        warm_calls: untimed calls of the same method right before each timed call (0: every timed call follows the
            other methods' calls; see :func:`.cnn_runtimes.time_in_processes`).
    """
    from ..models import create_model
    from .cnn_runtimes import time_in_processes

    chosen = select_methods(methods, note)
    peak, backend = _measured_sad_peak(threads) if sad_peak else (0.0, "")
    info = {"sad_peak_terms_per_s": f"{peak:.0f}" if peak else "", "sad_peak_backend": backend,
            "load_average_1m_before": f"{os.getloadavg()[0]:.2f}"}
    rows: list[dict[str, object]] = []
    for name in models:
        model_methods = chosen
        if "int8_adder_int8stem" in chosen and not _has_stem(create_model(name, conv_type="adder")):
            note(f"note: {name} has no multiplicative stem: int8_adder_int8stem not measured")
            model_methods = [m for m in chosen if m != "int8_adder_int8stem"]
        if not model_methods:
            continue
        sizes = list(batch_sizes or default_batch_sizes(name))
        input_size = create_model(name, conv_type="conv").default_input_size
        checkpoint = (checkpoints or {}).get(name)
        builders = {m: functools.partial(build_method, name, m, threads, calibration_images, checkpoint)
                    for m in model_methods}
        rounds = {b: (repeats or {}).get(b, 200 if b == 1 else 30) for b in sizes}
        results = time_in_processes(builders, input_size, sizes, rounds, threads, pause_s=PAUSE_S,
                                    warm_calls=warm_calls)
        terms = adder_terms(name) if any(m in INT8_ADDER for m in model_methods) else 0
        for batch, samples in results.items():
            wall = {m: statistics.median(s["wall"]) for m, s in samples.items()}
            cpu = {m: statistics.median(s["cpu"]) for m, s in samples.items()}
            for method in model_methods:
                times = samples[method]["wall"]
                row: dict[str, object] = {
                    "model": name, "input_size": "x".join(map(str, input_size)), "batch_size": batch,
                    "method": method, "threads": threads, "median_ms": round(wall[method] * 1e3, 4),
                    "cpu_median_ms": round(cpu[method] * 1e3, 4), "min_ms": round(min(times) * 1e3, 4),
                    "p90_ms": round(statistics.quantiles(times, n=10)[-1] * 1e3, 4) if len(times) > 1 else "",
                    "repeats": len(times), "warm_calls": warm_calls, "images_per_s": round(batch / wall[method], 1),
                    **ratio_columns(method, wall, cpu),
                    "checkpoint": "released" if checkpoint and method in ("fp32_adder", *INT8_ADDER) else "random",
                }
                if method in INT8_ADDER and peak:
                    row.update(_peak_columns(terms * batch, wall[method], peak))
                rows.append(row)
    info["load_average_1m_after"] = f"{os.getloadavg()[0]:.2f}"
    return rows, info


def _ratio(value: object) -> str:
    return f"{value:.2f}" if isinstance(value, float) else str(value)


def summary_table(rows: Sequence[dict[str, object]]) -> str:
    """Median wall and CPU ms per forward, the ratios to the best int8 and fp32 CNN runtimes (wall / CPU), and for
    the int8 AdderNet rows terms/s, % of the SAD peak and the time beyond the adder arithmetic at peak."""
    head = ["model", "batch", "method", "wall ms", "cpu ms", "/int8 CNN", "cpu/int8 CNN", "/fp32 CNN", "cpu/fp32 CNN",
            "G terms/s", "% peak", "beyond peak ms"]
    lines = []
    for r in rows:
        terms = r.get("terms_per_s")
        lines.append([r["model"], r["batch_size"], r["method"], f"{r['median_ms']:.3f}", f"{r['cpu_median_ms']:.3f}",
                      _ratio(r["time_vs_best_int8_cnn"]), _ratio(r["cpu_vs_best_int8_cnn"]),
                      _ratio(r["time_vs_best_fp32_cnn"]), _ratio(r["cpu_vs_best_fp32_cnn"]),
                      f"{terms / 1e9:.1f}" if terms else "", r.get("pct_of_sad_peak", ""),
                      f"{r['beyond_peak_ms']:.3f}" if "beyond_peak_ms" in r else ""])
    return format_table(head, lines)


# --------------------------------------------------------------------------------------------------------------
# Command


def _items(values: Iterable[str] | None) -> list[str] | None:
    """``["1,8", "64"]`` or ``["1 8 64"]`` -> ``["1", "8", "64"]``; ``None`` stays ``None``."""
    if values is None:
        return None
    return [item for value in values for item in value.replace(",", " ").split()]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--models", nargs="+", default=None, metavar="MODEL",
                        help=f"models, comma- or space-separated (default {','.join(MODELS)})")
    parser.add_argument("--batch-sizes", nargs="+", action=IntList, default=None, metavar="N",
                        help="batch sizes for every model, e.g. 1,8,64 or 1 8 64 (default 1,8,64; 1,8 for resnet18)")
    parser.add_argument("--methods", nargs="+", default=None, metavar="METHOD",
                        help=f"out of {', '.join(METHODS)} (default: all whose runtime is installed)")
    parser.add_argument("--threads", type=int, default=2, help="threads of every method (default 2)")
    parser.add_argument("--repeats-1", type=int, default=200, help="timed rounds at batch 1 (default 200)")
    parser.add_argument("--repeats", type=int, default=30, help="timed rounds at larger batches (default 30)")
    parser.add_argument("--calibration-images", type=int, default=None,
                        help="synthetic images for BatchNorm statistics and every quantiser (default 256; 16 for "
                             "resnet18)")
    parser.add_argument("--checkpoint", default=None, metavar="FILE",
                        help="AdderNet ResNet-20 weights for the adder methods of resnet20 (e.g. the released "
                             "ResNet20-AdderNet.pth); other models use random weights")
    parser.add_argument("--warm-calls", type=int, default=0, metavar="K",
                        help="untimed calls of the same method right before each timed one (default 0: each timed "
                             "call follows the other methods' calls, caches and threads cold; 1: a busy method)")
    parser.add_argument("--output", default=None,
                        help="CSV path (default benchmarks/results/bench_quant_model_<date>.csv)")


def run(args: argparse.Namespace) -> int:
    from ..models import is_model
    from .cnn_runtimes import runtime_versions

    models = _items(args.models) or list(MODELS)
    unknown = [m for m in models if not is_model(m)]
    if unknown:
        raise ConfigError(f"--models: unknown model(s) {', '.join(unknown)}")
    sizes = args.batch_sizes  # None: each model's default
    positive = [*(sizes or [1]), args.threads, args.repeats, args.repeats_1, args.calibration_images or 1]
    if min(positive) < 1:
        raise ConfigError("batch sizes, --threads, --repeats, --repeats-1 and --calibration-images must be positive")
    if args.warm_calls < 0:
        raise ConfigError(f"--warm-calls must be 0 or more, got {args.warm_calls}")
    if args.checkpoint is not None and not Path(args.checkpoint).exists():
        raise ConfigError(f"--checkpoint: {args.checkpoint} does not exist")
    repeats = {b: args.repeats_1 if b == 1 else args.repeats for b in (sizes or (1, 8, 64))}
    with using_threads(args.threads):
        machine = {**quant_machine_info(), **runtime_versions()}
    rows, run_info = bench_quant_models(models, sizes, _items(args.methods), repeats, args.threads,
                                        args.calibration_images,
                                        {"resnet20": args.checkpoint} if args.checkpoint else None,
                                        warm_calls=args.warm_calls)
    info = {**machine, **run_info}
    output = write_csv(rows, args.output or result_path("quant_model"), info)
    print(summary_table(rows))
    print(f"SAD peak {float(info['sad_peak_terms_per_s'] or 0) / 1e9:.1f} G terms/s ({info['sad_peak_backend']}, "
          f"{args.threads} threads); load average (1 min) before {info['load_average_1m_before']}, after "
          f"{info['load_average_1m_after']}; {info['cpu']}; wrote {output}")
    return 0


TARGET = Target(
    name="quant-model",
    help="whole networks: int8 AdderNet vs fp32 AdderNet and the CNN twin in PyTorch, onnxruntime and OpenVINO",
    description="Median forward time of each method, each in its own worker process, interleaved in a new random "
                "order every round, at each batch size; prints a table with the ratios to the best int8 and the best "
                "fp32 CNN runtime and the int8 AdderNet's terms/s against the SAD peak, and writes a tidy CSV with "
                "machine information. Runtimes that are not installed are left out with a note.",
    add_arguments=add_arguments, run=run)
