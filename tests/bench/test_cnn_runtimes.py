"""The CNN runtime baselines of the benchmarks (OpenVINO fp32 / NNCF int8, onnxruntime QDQ) and their timing helpers.

OpenVINO and NNCF are optional dependencies of the benchmarks (the ``bench`` extra): these tests skip without them.
"""

from __future__ import annotations

import functools
import threading
import time

import numpy as np
import pytest
import torch

import frugalvision as fv
from frugalvision.bench import cnn_runtimes
from frugalvision.errors import ConfigError


def _relative_error(actual: np.ndarray, expected: torch.Tensor) -> float:
    expected = expected.numpy()
    return float(np.abs(actual - expected).max() / np.abs(expected).max())


@pytest.mark.parametrize("name", ["lenet5_bn", "resnet20"])
def test_openvino_fp32_matches_pytorch(name):
    pytest.importorskip("openvino")
    torch.manual_seed(0)
    model = fv.create_model(name, conv_type="conv").eval()
    size = model.default_input_size
    x = torch.randn(3, *size)  # odd batch: a shape the runner compiles on first use
    runner = cnn_runtimes.openvino_fp32(model, torch.randn(1, *size), threads=2)
    with torch.no_grad():
        expected = model(x)
    assert _relative_error(runner(x), expected) <= 1e-4  # measured 5e-6 (ResNet-20): f32 precision, not bf16
    assert _relative_error(runner(x.numpy()), expected) <= 1e-4  # numpy in, same logits
    assert _relative_error(runner(x[:1]), expected[:1]) <= 1e-4  # a second compiled shape
    assert set(runner.requests) == {(3, *size), (1, *size)}


def test_openvino_int8_agrees_with_fp32_on_cifar_images(shared_data, repo_root):
    """NNCF int8 of the trained ResNet-20 CNN (results/cifar10_10k) agrees with fp32 on the 1,000 shared CIFAR-10 val
    images. Measured: 96.7 % with these 100 calibration images (97.1 % with 250; with NNCF's fast bias correction
    92.5 / 93.0 %; onnxruntime QDQ 99.1 %). The 90 % floor leaves room for other CPUs' int8 kernels and NNCF
    versions, while a wrong scale or a dropped layer falls towards chance (10-20 %).
    A random-weight network is no test: its logit margins are so small that int8 agrees on only 75-80 % of images.
    """
    pytest.importorskip("nncf")
    from frugalvision.data import build_dataset, dataset_info

    model = fv.load_model(repo_root / "results" / "cifar10_10k" / "resnet20_conv").eval()
    folder, config = shared_data("cifar10_jpeg_10k"), dataset_info("cifar10").data_config()
    train = build_dataset("folder", "train", folder, data_config=config)
    val = build_dataset("folder", "val", folder, data_config=config)
    calibration = torch.stack([train[i][0] for i in range(0, len(train), 90)])  # 100 images, all classes
    images = torch.stack([val[i][0] for i in range(len(val))])
    runner = cnn_runtimes.openvino_int8(model, calibration, threads=2)
    with torch.no_grad():
        expected = model(images).argmax(1).numpy()
    agreement = float((runner(images).argmax(1) == expected).mean())
    assert agreement >= 0.90, agreement


def test_onnxruntime_int8_logits():
    pytest.importorskip("onnxruntime")
    torch.manual_seed(0)
    calibration = torch.randn(16, 1, 28, 28)
    model = cnn_runtimes.cnn_twin("lenet5_bn", calibration)
    run = cnn_runtimes.onnxruntime_int8(model, calibration, threads=1)
    with torch.no_grad():
        expected = model(calibration[:5])
    logits = run(calibration[:5])
    assert logits.shape == (5, 10) and _relative_error(logits, expected) < 0.1


def test_bad_options_are_config_errors():
    pytest.importorskip("openvino")
    with pytest.raises(ConfigError, match="hint"):
        cnn_runtimes.OpenVinoRunner(None, threads=1, hint="FAST")


def test_idle_cpu_after_call_sees_a_spinning_thread():
    """An independent oracle: a call that leaves a Python thread spinning for 100 ms burns CPU while the caller
    sleeps 50 ms; a call that leaves nothing running does not (bounds loose enough for a loaded 2-core machine)."""

    def spin_after(x, seconds=0.1):
        def spin():
            end = time.perf_counter() + seconds
            while time.perf_counter() < end:
                pass

        threading.Thread(target=spin, daemon=True).start()

    quiet = cnn_runtimes.idle_cpu_after_call(lambda x: None, None, window_s=0.05, calls=5)
    spinning = cnn_runtimes.idle_cpu_after_call(spin_after, None, window_s=0.05, calls=5)
    assert quiet < 0.001 and spinning > 0.004, (quiet, spinning)


def _sleeper(seconds: float):
    """A method that takes ``seconds`` per call (picklable builder for the worker processes)."""
    return lambda x: time.sleep(seconds)


def _failing_builder():
    raise ValueError("no such runtime")


def test_time_in_processes_returns_each_methods_samples():
    builders = {"short": functools.partial(_sleeper, 0.001), "long": functools.partial(_sleeper, 0.004)}
    results = cnn_runtimes.time_in_processes(builders, (1, 4, 4), [1, 2], rounds={1: 6, 2: 3}, threads=1, warmup=1)
    assert set(results) == {1, 2}
    for batch, count in ((1, 6), (2, 3)):
        assert set(results[batch]) == {"short", "long"}
        for name, seconds in (("short", 0.001), ("long", 0.004)):
            wall, cpu = results[batch][name]["wall"], results[batch][name]["cpu"]
            assert len(wall) == len(cpu) == count
            assert min(wall) >= seconds and max(cpu) < seconds / 2  # timed in the worker; sleeping burns no CPU


def test_a_worker_that_cannot_build_says_why():
    """The worker loop in this process (spawning one costs seconds): it answers with the builder's error."""
    import multiprocessing

    parent, child = multiprocessing.Pipe()
    cnn_runtimes._serve(child, _failing_builder, 1, {1: (1, 1, 4, 4)})
    assert parent.recv() == "error: ValueError: no such runtime"


def test_a_worker_runs_the_warm_calls_untimed_before_each_timed_call():
    """The worker loop in this process: per timed call, ``warm_calls`` untimed calls first (the method was called
    ``1 + calls * (warm_calls + 1)`` times: the first builds per shape), one sample per timed call."""
    import multiprocessing

    seen: list[int] = []
    parent, child = multiprocessing.Pipe()
    parent.send((1, 2, 3))  # batch 1: 2 timed calls, each after 3 warm ones
    parent.send(None)
    cnn_runtimes._serve(child, lambda: (lambda x: seen.append(len(x))), 1, {1: (1, 1, 4, 4)})
    assert parent.recv() == "ready"
    assert len(parent.recv()) == 2 and len(seen) == 1 + 2 * 4


def test_runtime_versions_name_the_installed_packages():
    from importlib import metadata

    versions = cnn_runtimes.runtime_versions()
    assert set(versions) == {"openvino", "nncf", "onnxruntime", "onnx"}
    for package, version in versions.items():
        try:
            assert version == metadata.version(package)
        except metadata.PackageNotFoundError:
            assert version == ""
