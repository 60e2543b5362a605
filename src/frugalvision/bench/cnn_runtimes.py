"""The CNN twin deployed the way CNNs are deployed on a CPU: OpenVINO (fp32, and int8 through NNCF post-training
quantisation), onnxruntime (int8 QDQ) and PyTorch's FX int8, as baselines for the integer AdderNet (issue 18,
item 5), and the per-process interleaved timer that ``frugalvision bench quant-model`` (:mod:`.quant_model`, which
names the methods built from these) uses.

Each runtime builder takes the float CNN (an ``nn.Module`` in eval mode) and returns an :data:`InferenceFn`: a callable
that takes one float32 NCHW batch (a ``torch.Tensor`` or a numpy array) and returns the logits as a numpy array,
so that a benchmark can time the runtimes side by side:

* :func:`openvino_fp32`: ``openvino.convert_model`` (PyTorch frontend, batch dimension left dynamic), compiled for
  the CPU per input shape (a static shape, as a user with a fixed batch size would compile) with
  ``INFERENCE_NUM_THREADS``, the ``LATENCY`` hint (one stream: one synchronous request uses every thread; the
  ``THROUGHPUT`` hint splits the threads into streams that only parallel requests use) and f32 inference precision
  (without it OpenVINO 2026.4 runs the "fp32" model in bf16 on a CPU with AMX, such as the Xeon this was measured
  on: method ``default_cnn_openvino`` is that, what a user who leaves the defaults gets); one infer request per shape,
  reused.
* :func:`openvino_int8`: the same model quantised by ``nncf.quantize`` (OpenVINO backend, default ``PERFORMANCE``
  preset: symmetric int8 weights per channel and activations; full bias correction, see the function), calibrated
  on the given images one at a time (NNCF's statistics assume batch-1 items), compiled as above without the
  precision hint (the convolutions run in int8 - AMX-INT8 tiles where the CPU has them - and the rest in
  OpenVINO's default precision).
* :func:`onnxruntime_int8`: ONNX export, ``quant_pre_process``, ``quantize_static`` (QDQ, uint8 activations and
  int8 per-channel weights), the given thread count and ``session.intra_op.allow_spinning = 0`` (or its default,
  1, with ``spinning=True``).
* :func:`torch_fx_int8`: PyTorch's FX-mode post-training static quantisation (``x86`` engine; returns a module).

Idle threads. onnxruntime's intra-op workers spin after a run unless ``allow_spinning`` is 0; OpenVINO's CPU plugin
runs on oneTBB, whose workers also keep polling for a while after a parallel region ends and which exposes no
property to stop it (see ``CPU.SUPPORTED_PROPERTIES``). :func:`idle_cpu_after_call` measures how much CPU a
runtime's threads burn while the caller sleeps right after a call: on ResNet-20 at batch 8 (2 threads, OpenVINO
2026.4.1, onnxruntime 1.32) OpenVINO burnt 0.6-1.0 ms whether the caller slept 2, 20 or 100 ms (so its polling ends
within ~2 ms), onnxruntime without spinning 0.03-0.05 ms, and torch 3-5 ms when it was imported before
``OMP_WAIT_POLICY=PASSIVE`` was set (``import frugalvision`` first sets it; spawned workers inherit it). So that
no runtime's pool steals the cores from the next one, :func:`time_in_processes` times every method in its own
worker process, interleaved round by round from the parent (each call timed inside its worker), with a pause
between calls that outlasts the polling (5 ms in ``bench quant-model``).
"""

from __future__ import annotations

import copy
import multiprocessing
import random
import tempfile
import time
import warnings
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ..errors import ConfigError

__all__ = ["HINTS", "InferenceFn", "OpenVinoRunner", "cnn_twin", "idle_cpu_after_call", "onnxruntime_int8",
           "openvino_fp32", "openvino_int8", "runtime_versions", "time_in_processes", "torch_fx_int8"]

InferenceFn = Callable[[Any], Any]
"""A float32 NCHW batch (``torch.Tensor`` or numpy array) in, logits out."""

HINTS = ("LATENCY", "THROUGHPUT")


def _as_numpy(x: Any) -> np.ndarray:
    """``x`` as a C-contiguous float32 array (no copy for a contiguous float32 CPU tensor)."""
    array = x.detach().numpy() if isinstance(x, Tensor) else np.asarray(x)
    return np.ascontiguousarray(array, dtype=np.float32)


# ------------------------------------------------------------------------------------------------------- OpenVINO


class OpenVinoRunner:
    """An OpenVINO model compiled for the CPU once per input shape; one synchronous infer request per shape."""

    def __init__(self, model: Any, threads: int, hint: str = "LATENCY", precision: str | None = None) -> None:
        import openvino as ov

        if hint not in HINTS:
            raise ConfigError(f"OpenVINO performance hint must be one of {', '.join(HINTS)}, got {hint!r}")
        self.core, self.model = ov.Core(), model
        self.config: dict[str, Any] = {"INFERENCE_NUM_THREADS": int(threads), "PERFORMANCE_HINT": hint}
        if precision is not None:
            self.config["INFERENCE_PRECISION_HINT"] = precision
        self.requests: dict[tuple[int, ...], Any] = {}

    def request(self, shape: tuple[int, ...]) -> Any:
        """The infer request of a model compiled for ``shape`` (compiled on first use)."""
        if shape not in self.requests:
            import openvino as ov

            model = self.model.clone()
            model.reshape({model.inputs[0]: ov.PartialShape(list(shape))})
            self.requests[shape] = self.core.compile_model(model, "CPU", self.config).create_infer_request()
        return self.requests[shape]

    def __call__(self, x: Any) -> np.ndarray:
        x = _as_numpy(x)
        return self.request(x.shape).infer({0: x}, share_inputs=True)[0]


def _to_openvino(model: nn.Module, example: Tensor) -> Any:
    """The float model as an OpenVINO model with a dynamic batch dimension (PyTorch frontend)."""
    import openvino as ov

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TorchScript tracing notices
        converted = ov.convert_model(model.eval(), example_input=example[:1])
    converted.reshape({converted.inputs[0]: ov.PartialShape([-1, *example.shape[1:]])})
    return converted


def openvino_fp32(model: nn.Module, example: Tensor, threads: int = 2, hint: str = "LATENCY",
                  precision: str | None = "f32") -> OpenVinoRunner:
    """The float CNN in OpenVINO's CPU plugin in f32 (``precision=None``: OpenVINO's default inference precision,
    bf16 on CPUs with AMX; see the module docstring)."""
    return OpenVinoRunner(_to_openvino(model, example), threads, hint, precision=precision)


def openvino_int8(model: nn.Module, calibration: Tensor, threads: int = 2, hint: str = "LATENCY",
                  preset: str = "performance", fast_bias_correction: bool = False) -> OpenVinoRunner:
    """The float CNN quantised by NNCF's post-training quantisation on ``calibration`` (N, C, H, W), in OpenVINO.

    ``fast_bias_correction=False`` (NNCF's full bias correction; NNCF's default is the fast one) changes only bias
    values, not the graph or the speed: on the trained ResNet-20 CNN (results/cifar10_10k) it raised top-1 agreement
    with fp32 on the 1,000 shared CIFAR-10 val images from 93.0 % to 97.1 % (onnxruntime QDQ: 99.1 %).
    """
    import nncf

    presets = {"performance": nncf.QuantizationPreset.PERFORMANCE, "mixed": nncf.QuantizationPreset.MIXED}
    if preset not in presets:
        raise ConfigError(f"NNCF preset must be one of {', '.join(presets)}, got {preset!r}")
    images = [_as_numpy(x) for x in calibration.split(1)]  # batch-1 items: (1, C, H, W) each
    quantized = nncf.quantize(_to_openvino(model, calibration), nncf.Dataset(images), preset=presets[preset],
                              subset_size=len(images), fast_bias_correction=fast_bias_correction)
    return OpenVinoRunner(quantized, threads, hint)


# ---------------------------------------------------------------------------------------------------- onnxruntime


def onnxruntime_int8(model: nn.Module, calibration: Tensor, threads: int = 2, spinning: bool = False) -> InferenceFn:
    """The float CNN exported to ONNX (TorchScript exporter, opset 17, dynamic batch) and quantised by onnxruntime's
    static quantisation on ``calibration`` (``quant_pre_process``, then ``quantize_static``: QDQ, uint8 activations,
    int8 per-channel weights), run by the CPU provider with ``threads`` intra-op threads that do not spin (that spin
    between runs, onnxruntime's default, with ``spinning``)."""
    import onnxruntime as ort
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = iter(calibration.split(64))

        def get_next(self) -> dict | None:
            x = next(self.batches, None)
            return None if x is None else {"input": _as_numpy(x)}

    with tempfile.TemporaryDirectory() as folder, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TorchScript ONNX exporter deprecation notices
        fp32_path, prep_path, int8_path = (str(Path(folder) / f"{n}.onnx") for n in ("fp32", "prep", "int8"))
        torch.onnx.export(model.eval(), (calibration[:1],), fp32_path, input_names=["input"],
                          output_names=["logits"], opset_version=17, dynamo=False,
                          dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}})
        quant_pre_process(fp32_path, prep_path)
        quantize_static(prep_path, int8_path, Reader(), quant_format=QuantFormat.QDQ,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, per_channel=True)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
        session = ort.InferenceSession(int8_path, options, providers=["CPUExecutionProvider"])  # holds the model
    return lambda x: session.run(None, {"input": _as_numpy(x)})[0]


# ---------------------------------------------------------------------------------------------------- PyTorch


def torch_fx_int8(model: nn.Module, calibration: Tensor) -> nn.Module:
    """The float CNN through PyTorch's post-training static quantisation, FX graph mode, ``x86`` backend
    (``torch.ao.quantization.quantize_fx``; conv-BN-ReLU fused), calibrated on ``calibration``."""
    from torch.ao.quantization import get_default_qconfig_mapping
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

    torch.backends.quantized.engine = "x86"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao deprecation notices
        prepared = prepare_fx(copy.deepcopy(model).eval(), get_default_qconfig_mapping("x86"),
                              example_inputs=(calibration[:1],))
        with torch.no_grad():
            for x in calibration.split(64):
                prepared(x)
        return convert_fx(prepared)


def cnn_twin(name: str, calibration: Tensor, seed: int = 0) -> nn.Module:
    """The zoo model ``name`` with ``conv_type="conv"``, random weights (``seed``) and BatchNorm statistics of
    ``calibration`` (realistic activation ranges for every quantiser; time does not depend on the values)."""
    from ..models import create_model
    from .common import with_batch_statistics

    torch.manual_seed(seed)
    return with_batch_statistics(create_model(name, conv_type="conv"), calibration)


def runtime_versions() -> dict[str, str]:
    """Versions of the baseline runtimes that are installed (for the benchmark's machine information)."""
    from importlib import metadata

    versions = {}
    for package in ("openvino", "nncf", "onnxruntime", "onnx"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = ""
    return versions


# ---------------------------------------------------------------------------------------------------- timing


def idle_cpu_after_call(fn: InferenceFn, x: Any, window_s: float = 0.02, calls: int = 20) -> float:
    """Median process CPU seconds (all threads) burnt while the caller sleeps ``window_s`` right after ``fn(x)``:
    about 0 for pools that block when idle, up to ``threads * window_s`` for pools that keep spinning."""
    fn(x)
    burnt = []
    for _ in range(calls):
        fn(x)
        start = time.process_time()
        time.sleep(window_s)
        burnt.append(time.process_time() - start)
    return float(np.median(burnt))


def _serve(conn: Any, builder: Callable[[], InferenceFn], threads: int, inputs: dict[int, tuple[int, ...]]) -> None:
    """Worker process: build the method, then answer ``(batch, calls, warm_calls)`` with [(wall s, cpu s)] per
    timed call, each right after ``warm_calls`` untimed calls."""
    try:
        torch.set_num_threads(threads)
        fn = builder()
        batches = {b: torch.randn(*shape, generator=torch.Generator().manual_seed(1)) for b, shape in inputs.items()}
        for x in batches.values():
            fn(x)  # compile per shape, fill caches
        conn.send("ready")
    except BaseException as error:  # the parent reports it; a worker has no one else to tell
        conn.send(f"error: {type(error).__name__}: {error}")
        return
    while (message := conn.recv()) is not None:
        batch, calls, warm_calls = message
        x, samples = batches[batch], []
        for _ in range(calls):
            for _ in range(warm_calls):
                fn(x)
            start, start_cpu = time.perf_counter(), time.process_time()
            fn(x)
            samples.append((time.perf_counter() - start, time.process_time() - start_cpu))
        conn.send(samples)


def time_in_processes(builders: dict[str, Callable[[], InferenceFn]], input_size: Sequence[int],
                      batch_sizes: Iterable[int], rounds: int | dict[int, int], threads: int = 2, warmup: int = 3,
                      pause_s: float = 0.0, seed: int = 0, warm_calls: int = 0,
                      ) -> dict[int, dict[str, dict[str, list[float]]]]:
    """Time each method in its own worker process (spawned; ``builders`` must be picklable, e.g.
    ``functools.partial(quant_model.build_method, ...)``; a calling script needs the ``if __name__ == "__main__":``
    guard), interleaved: in every round each method runs once on the same seeded batch, in a new random order, with
    ``pause_s`` of sleep before each call (longer than the runtimes' idle polling, so none runs while another's
    threads still spin). With ``warm_calls``, each timed call comes right after that many untimed calls of the same
    method in its worker (a method kept busy: its threads awake, its data in the caches); without, each timed call
    is the first after the other methods' calls (a request after an idle spell).

    Returns ``{batch: {method: {"wall": [s, ...], "cpu": [s, ...]}}}``: each call's wall time and its worker's
    process CPU time (all threads), timed inside the worker; ``warmup`` untimed rounds first.
    """
    batch_sizes = list(batch_sizes)
    inputs = {b: (b, *input_size) for b in batch_sizes}
    context = multiprocessing.get_context("spawn")  # no fork of a process whose thread pools already run
    workers: dict[str, tuple[Any, Any]] = {}
    try:
        for name, builder in builders.items():
            parent, child = context.Pipe()
            process = context.Process(target=_serve, args=(child, builder, threads, inputs), daemon=True)
            process.start()
            workers[name] = (process, parent)
        for name, (_, conn) in workers.items():
            try:
                answer = conn.recv()
            except EOFError:  # e.g. a script without the ``if __name__ == "__main__":`` guard that spawn needs
                answer = "the worker process exited"
            if answer != "ready":
                raise RuntimeError(f"{name}: the worker failed to build the method ({answer})")
        results: dict[int, dict[str, dict[str, list[float]]]] = {}
        shuffle = random.Random(seed).shuffle
        for batch in batch_sizes:
            count = rounds[batch] if isinstance(rounds, dict) else rounds
            samples: dict[str, dict[str, list[float]]] = {n: {"wall": [], "cpu": []} for n in workers}
            order = list(workers)
            for round_index in range(warmup + count):
                shuffle(order)  # no method always runs right after the same one
                for name in order:
                    if pause_s:
                        time.sleep(pause_s)
                    conn = workers[name][1]
                    conn.send((batch, 1, warm_calls))
                    (wall, cpu), = conn.recv()
                    if round_index >= warmup:
                        samples[name]["wall"].append(wall)
                        samples[name]["cpu"].append(cpu)
            results[batch] = samples
        return results
    finally:
        for process, conn in workers.values():
            try:
                conn.send(None)
            except (BrokenPipeError, OSError):
                pass
            process.join(timeout=10)
            if process.is_alive():
                process.kill()
