"""Benchmarks: one module per ``frugalvision bench`` target, each exposing a :class:`~frugalvision.bench.common.Target`
(``TARGET``: name, help, ``add_arguments(parser)``, ``run(args)``), and :mod:`~frugalvision.bench.common` for what they
share (machine information, tidy CSV, tables, shape sets, result paths, the interleaved-rounds timer).

Targets (:data:`TARGETS`, in the order ``frugalvision bench --help`` lists them):

* ``adder`` (:mod:`.adder`): the float adder layer against the reference op, the official formulation and
  ``nn.Conv2d``, time and memory; a LeNet-5-BN training epoch.
* ``epoch`` (:mod:`.epoch`): training epochs of LeNet-5-BN, AdderNet vs CNN twin, under the OpenMP wait policy in use.
* ``quant`` (:mod:`.quant`): the integer adder layer against fp32 / int8 convolution and the SAD peak
  (:mod:`.sad_peak`).
* ``quant-model`` (:mod:`.quant_model`): whole int8 AdderNets against the CNN twins in PyTorch, onnxruntime and
  OpenVINO (:mod:`.cnn_runtimes`), fp32 and int8.
* ``model`` (:mod:`.model`): a model's latency, train-mode vs fused vs ResNet-50.
* ``onnx`` (:mod:`.onnx`): a model exported to ONNX, onnxruntime vs PyTorch.
* ``startup`` (:mod:`.startup`): start-up of ``import frugalvision`` and ``frugalvision --help`` against torch's.

This is a high layer: it may import ops, layers, models, quant, export and analysis; none of those imports it.

Importing this package and its target modules loads no torch, numpy or numba (``frugalvision bench --help`` starts at
once, tests/cli/test_startup.py): each target declares its name, help and options import-light, and its functions
import the library and the heavy packages where they run.
"""

from __future__ import annotations

from . import adder, epoch, model, onnx, quant, quant_model, startup
from .common import Target

__all__ = ["TARGETS", "Target", "target"]

TARGETS: tuple[Target, ...] = (adder.TARGET, epoch.TARGET, quant.TARGET, quant_model.TARGET, model.TARGET,
                               onnx.TARGET, startup.TARGET)


def target(name: str) -> Target:
    """The target called ``name`` (as on the command line)."""
    for candidate in TARGETS:
        if candidate.name == name:
            return candidate
    raise KeyError(f"no benchmark target {name!r}; targets: {', '.join(t.name for t in TARGETS)}")
