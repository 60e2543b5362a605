"""``frugalvision bench quant-model``: whole-network inference time of the integer AdderNet (issue 11) against the
CNN baselines a user would pick.

Methods, for one model name (``resnet20``, ``lenet5_bn``) at each batch size:

* ``int8_adder``: :func:`frugalvision.quantize` of the AdderNet as it comes by default (uint8 SAD kernels, fp32
  stem and head);
* ``int8_adder_int8stem``: the same with the stem in PyTorch's int8 conv (``quantize(..., stem="int8")``;
  LeNet-5-BN has no multiplicative stem, so this is measured for ResNets only);
* ``fp32_adder``: the float AdderNet (frugalvision's fp32 adder kernels);
* ``fp32_cnn``: the CNN twin (``conv_type="conv"``) in fp32 (oneDNN);
* ``int8_cnn_fx``: the CNN twin through PyTorch's post-training static quantisation, FX graph mode, x86 backend
  (``torch.ao.quantization.quantize_fx``; conv-BN-ReLU fused);
* ``int8_cnn_ort``: the CNN twin exported to ONNX and quantised by onnxruntime's static quantisation
  (``quantize_static``, QDQ, uint8 activations, int8 per-channel weights, after ``quant_pre_process``), run by
  onnxruntime's CPU provider with as many intra-op threads as torch uses.

Every quantised model is calibrated on the same images. Weights are the models' random initialisation with BatchNorm
statistics of the calibration images (time does not depend on the values). Timing: one untimed warm-up round, then
``repeats`` rounds; in each round every method runs once on the same input, in a new random order, so that load
from other processes, thread wake-ups and the caches the previous method left hit them alike. Medians of the wall
time and of the process CPU time (all threads; it leaves out the time the process waits for a core, so it is the
steadier number on a shared machine) are reported, and each ratio compares medians of the same run. onnxruntime's
threads are told not to spin after a run (``session.intra_op.allow_spinning = 0``), as torch's and numba's OpenMP
threads wait passively (``OMP_WAIT_POLICY=PASSIVE``, set by ``import frugalvision``), so no method steals the
cores from the next one.

Run ``frugalvision bench quant-model`` (see ``--help``); it prints a table and writes a tidy CSV (one row per
model x batch x method, machine information and CPU flags on every row).
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import tempfile
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from torch import Tensor, nn

from ..errors import ConfigError
from .common import IntList, Target, format_table, result_path, time_interleaved, with_batch_statistics, write_csv
from .quant import quant_machine_info

__all__ = ["INT8_CNN", "METHODS", "MODELS", "TARGET", "bench_quant_models", "build_methods", "summary_table"]

METHODS = ("int8_adder", "int8_adder_int8stem", "fp32_adder", "fp32_cnn", "int8_cnn_fx", "int8_cnn_ort")
INT8_CNN = ("int8_cnn_fx", "int8_cnn_ort")
MODELS = ("resnet20", "lenet5_bn")


def _fx_int8(cnn: nn.Module, calibration: Tensor) -> nn.Module:
    from torch.ao.quantization import get_default_qconfig_mapping
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

    torch.backends.quantized.engine = "x86"
    prepared = prepare_fx(copy.deepcopy(cnn).eval(), get_default_qconfig_mapping("x86"),
                          example_inputs=(calibration[:1],))
    with torch.no_grad():
        for x in calibration.split(64):
            prepared(x)
    return convert_fx(prepared)


def _ort_int8(cnn: nn.Module, calibration: Tensor, workdir: Path) -> Callable[[Tensor], object]:
    import onnxruntime as ort
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    fp32_path, prep_path, int8_path = (workdir / f"{n}.onnx" for n in ("fp32", "prep", "int8"))
    torch.onnx.export(cnn, (calibration[:1],), str(fp32_path), input_names=["input"], output_names=["logits"],
                      opset_version=17, dynamo=False, dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}})
    quant_pre_process(str(fp32_path), str(prep_path))

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = iter(calibration.split(64))

        def get_next(self) -> dict | None:
            x = next(self.batches, None)
            return None if x is None else {"input": x.numpy()}

    quantize_static(str(prep_path), str(int8_path), Reader(), quant_format=QuantFormat.QDQ,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, per_channel=True)
    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = ort.InferenceSession(str(int8_path), options, providers=["CPUExecutionProvider"])
    return lambda x: session.run(None, {"input": x.numpy()})


def build_methods(name: str, calibration: Tensor, methods: Sequence[str], workdir: Path,
                  ) -> dict[str, Callable[[Tensor], object]]:
    """One inference function per method for model ``name`` (see the module docstring)."""
    from ..models import create_model
    from ..quant import quantize

    torch.manual_seed(0)
    adder = with_batch_statistics(create_model(name, conv_type="adder"), calibration)
    cnn = with_batch_statistics(create_model(name, conv_type="conv"), calibration)
    has_stem = any(type(m) is nn.Conv2d for m in adder.modules())
    fns: dict[str, Callable[[Tensor], object]] = {}
    for method in methods:
        if method == "int8_adder":
            fns[method] = quantize(adder, calibration, observer="minmax")
        elif method == "int8_adder_int8stem" and has_stem:
            fns[method] = quantize(adder, calibration, observer="minmax", stem="int8")
        elif method == "fp32_adder":
            fns[method] = adder
        elif method == "fp32_cnn":
            fns[method] = cnn
        elif method == "int8_cnn_fx":
            fns[method] = _fx_int8(cnn, calibration)
        elif method == "int8_cnn_ort":
            fns[method] = _ort_int8(cnn, calibration, workdir)
    return fns


def _ratios(method: str, medians: dict[str, float], prefix: str) -> dict[str, object]:
    """``<prefix>_vs_fp32_cnn`` and ``<prefix>_vs_best_int8_cnn`` of ``method`` (medians of the same run)."""
    best_int8 = min((medians[m] for m in INT8_CNN if m in medians), default=None)
    return {
        f"{prefix}_vs_fp32_cnn": round(medians[method] / medians["fp32_cnn"], 4) if "fp32_cnn" in medians else "",
        f"{prefix}_vs_best_int8_cnn": round(medians[method] / best_int8, 4) if best_int8 else "",
    }


def bench_quant_models(
    models: Sequence[str] = MODELS,
    batch_sizes: Sequence[int] = (1, 64),
    methods: Sequence[str] = METHODS,
    repeats: dict[int, int] | None = None,
    calibration_images: int = 256,
) -> list[dict[str, object]]:
    """Median wall time per forward pass of each method; one row per (model, batch size, method).

    Args:
        repeats: timed rounds per batch size (default 200 at batch 1, 30 otherwise).
        calibration_images: synthetic N(0, 1) images (seeded) for BatchNorm statistics and every quantiser.
    """
    from ..models import create_model

    unknown = sorted(set(methods) - set(METHODS))
    if unknown:
        raise ConfigError(f"unknown methods {', '.join(unknown)}; choose from {', '.join(METHODS)}")
    rows: list[dict[str, object]] = []
    for name in models:
        input_size = create_model(name, conv_type="conv").default_input_size
        calibration = torch.randn(calibration_images, *input_size, generator=torch.Generator().manual_seed(0))
        with tempfile.TemporaryDirectory() as workdir, warnings.catch_warnings():
            warnings.simplefilter("ignore")  # deprecation notices of torch.ao / the TorchScript ONNX exporter
            fns = build_methods(name, calibration, methods, Path(workdir))
            for batch in batch_sizes:
                rounds = (repeats or {}).get(batch, 200 if batch == 1 else 30)
                x = torch.randn(batch, *input_size, generator=torch.Generator().manual_seed(1))
                with torch.inference_mode():
                    timings = time_interleaved({m: (lambda fn=fn, x=x: fn(x)) for m, fn in fns.items()}, rounds)
                medians, cpu_medians = timings.medians(), timings.medians("cpu")
                for method, samples in timings.wall.items():
                    rows.append({
                        "model": name, "batch_size": batch, "method": method,
                        "median_ms": round(medians[method] * 1e3, 4), "min_ms": round(min(samples) * 1e3, 4),
                        "p90_ms": round(statistics.quantiles(samples, n=10)[-1] * 1e3, 4),
                        "cpu_median_ms": round(cpu_medians[method] * 1e3, 4), "repeats": rounds,
                        "images_per_s": round(batch / medians[method], 1),
                        **_ratios(method, medians, "time"), **_ratios(method, cpu_medians, "cpu"),
                    })
    return rows


def summary_table(rows: Sequence[dict[str, object]]) -> str:
    """Median wall and CPU ms per forward pass, and the ratios of the medians to fp32 CNN and to the best int8 CNN
    (time = wall clock; cpu = process CPU time of all threads, less sensitive to other load)."""
    head = ["model", "batch", "method", "median ms", "min ms", "cpu ms", "img/s", "time/fp32 CNN",
            "time/best int8 CNN", "cpu/fp32 CNN", "cpu/best int8 CNN"]
    return format_table(head, [[r["model"], r["batch_size"], r["method"], f"{r['median_ms']:.3f}", f"{r['min_ms']:.3f}",
                                f"{r['cpu_median_ms']:.3f}", f"{r['images_per_s']:.0f}", r["time_vs_fp32_cnn"],
                                r["time_vs_best_int8_cnn"], r["cpu_vs_fp32_cnn"], r["cpu_vs_best_int8_cnn"]]
                               for r in rows])


# --------------------------------------------------------------------------------------------------------------
# Command


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--models", default=",".join(MODELS), help=f"comma list (default {','.join(MODELS)})")
    parser.add_argument("--batch-sizes", nargs="+", action=IntList, default=[1, 64],
                        help="batch sizes, space- or comma-separated")
    parser.add_argument("--methods", default=",".join(METHODS), help=f"comma list out of {', '.join(METHODS)}")
    parser.add_argument("--repeats-1", type=int, default=200, help="timed rounds at batch 1 (default 200)")
    parser.add_argument("--repeats", type=int, default=30, help="timed rounds at larger batches (default 30)")
    parser.add_argument("--calibration-images", type=int, default=256,
                        help="synthetic images for BatchNorm statistics and every quantiser (default 256)")
    parser.add_argument("--output", default=None,
                        help="CSV path (default benchmarks/results/bench_quant_model_<date>.csv)")


def _comma_list(text: str, option: str) -> list[str]:
    items = [item.strip() for item in text.split(",") if item.strip()]
    if not items:
        raise ConfigError(f"{option} needs at least one entry")
    return items


def run(args: argparse.Namespace) -> int:
    from ..models import is_model

    models = _comma_list(args.models, "--models")
    unknown = [m for m in models if not is_model(m)]
    if unknown:
        raise ConfigError(f"--models: unknown model(s) {', '.join(unknown)}")
    batch_sizes = list(args.batch_sizes)
    if min(batch_sizes) < 1 or args.repeats < 1 or args.repeats_1 < 1 or args.calibration_images < 1:
        raise ConfigError("batch sizes, repeats and --calibration-images must be positive")
    try:
        import onnxruntime
    except ImportError:
        raise ConfigError("bench quant-model needs onnxruntime (pip install 'frugalvision[export]')") from None
    info_before = quant_machine_info()
    rows = bench_quant_models(models, batch_sizes, _comma_list(args.methods, "--methods"),
                              {b: args.repeats_1 if b == 1 else args.repeats for b in batch_sizes},
                              args.calibration_images)
    info = {**info_before, "onnxruntime": onnxruntime.__version__,
            "load_average_1m_after": f"{os.getloadavg()[0]:.2f}"}
    output = write_csv(rows, args.output or result_path("quant_model"), info)
    print(summary_table(rows))
    print(f"load average (1 min) before {info['load_average_1m']}, after {info['load_average_1m_after']}; "
          f"{info['cpu']}, {info['torch_threads']} threads; wrote {output}")
    return 0


TARGET = Target(
    name="quant-model", help="whole networks: int8 AdderNet vs fp32 AdderNet, fp32 CNN and int8 CNNs (FX, onnxruntime)",
    description="Median forward time of each method on the same inputs, interleaved in a new random order every "
                "round, at each batch size; prints a table with the ratios to the fp32 CNN twin and to the best int8 "
                "CNN twin and writes a tidy CSV with machine information (needs the export extra).",
    add_arguments=add_arguments, run=run)
