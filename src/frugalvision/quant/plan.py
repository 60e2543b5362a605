"""Compiled integer plans: an integer model lowered once to a flat list of steps, run with one numba call for
all its integer layers.

``quantize`` builds a tree of modules (:mod:`.networks`); calling it layer by layer costs a Python call, the
``torch.library`` dispatcher, argument checks and a numba dispatch per layer (~50 us at batch 1, against ~15 us of
work in a ResNet-20 layer). A plan removes that:

1. **Lowering.** Each model family declares how it lowers (:func:`register_lowering`, one function per module
   class): into *integer steps* (adder layer with its fused epilogue and residual, uint8 max-pool) on numbered
   values, and *torch steps* (the float stem, the classifier, anything not integer), which run the module itself.
   The zoo's ResNets (basic and bottleneck blocks), sequential chains (LeNet, VGG) and the generic layout's
   :class:`~.modules.AdderUnit` have lowerings here; a new family adds one.
2. **Compilation.** Consecutive integer steps form a segment whose weights are packed once into one uint8 array
   (the kernels' layout) and whose scales and biases into two float32 arrays. For an input size and batch size the
   segment gets a step table (:mod:`frugalvision.ops.cpu.adder_u8_plan`) and a scratch arena in which activations
   share memory once dead; both are kept for the next call of that size.
3. **Execution.** A forward runs the torch steps in Python and each integer segment as one call of the compiled
   driver, which calls the SAD kernels directly. The kernels are those of ``frugalvision::adder2d_u8``, so the
   logits equal the module-by-module forward bit for bit.

The plan is used by ``forward`` of the integer networks on CPU tensors when the selected ``adder2d_u8`` backend is a
SAD kernel (not ``torch``) and the model is not being traced or compiled (then the modules run one by one, so
``torch.compile``, FX and ``count_ops`` on the meta device see the registered ops). It is rebuilt when a buffer of
an integer layer is replaced or modified in place (e.g. ``load_state_dict``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ..errors import FrugalVisionError
from ..ops.adder2d_u8 import ADDER_U8_OP
from ..ops.cpu.adder_numba import sync_threads
from ..ops.cpu.adder_u8_numba import WIDTHS, kernel_arguments, per_group_padded
from ..ops.cpu.adder_u8_plan import (
    BUFFER_ARENA,
    BUFFER_INPUT,
    BUFFER_OUTPUT,
    PARAM_COUNT,
    STEM_PARAMS,
    STEP_ADDER,
    STEP_CONV_STEM,
    STEP_FIELDS,
    STEP_MAX_POOL,
    STEP_PATCHES,
    STEP_QUANTIZE,
    run_steps,
    step_phases,
)
from ..ops.dispatch import select
from ..ops.utils import conv_output_size
from .modules import AdderUnit, FloatConvStem, PlannedForward, QuantizedAdder2d, QuantizeInput
from .networks import MaxPoolUint8, QuantizedBasicBlock, QuantizedBottleneck, QuantizedChain, QuantizedResNet

__all__ = ["IntegerPlan", "LoweringError", "PlanBuilder", "compile_plan", "plan_of", "planned_forward",
           "plans_disabled", "register_lowering"]

_ITEM_BYTES = {"uint8": 1, "int32": 4, "float32": 4, "float64": 8}
_TORCH_DTYPES = {"uint8": torch.uint8, "int32": torch.int32, "float32": torch.float32}
_ALIGN = 64  # bytes: every arena slot starts on a cache line
# A segment with fewer |a - b| terms per call runs on one thread (no parallel region: nothing to wake). Measured on
# this 2-core VM, one thread against two, hot (calls back to back) and cold (each call after the other methods' of
# `bench quant-model`): LeNet-5-BN at batch 1 (0.4 M terms) 0.060 / 0.084 ms hot, 0.57 / 0.64 cold; at batch 8
# (3.3 M) 0.205 / 0.188 hot, 0.66 / 0.86 cold; ResNet-20 at batch 1 (40 M) 0.45 / 0.32 hot, 1.38 / 1.24 cold
PARALLEL_MIN_TERMS = 8_000_000


class LoweringError(FrugalVisionError):
    """A module tree that a plan cannot express (the modules then run one by one)."""


# ----------------------------------------------------------------------------------------------------------------
# Steps and the builder the lowerings call


@dataclass
class TorchStep:
    """``output = fn(input)`` in PyTorch (float stem, classifier, float activations)."""

    fn: Callable[[Tensor], Tensor]
    input: int
    output: int


@dataclass
class AdderStep:
    """An integer adder layer with its fused epilogue; ``residual`` is the value added in the epilogue.
    ``source``: the model's layer that ``layer`` was derived from (see :class:`PatchStep`), else ``None``."""

    layer: QuantizedAdder2d
    input: int
    output: int
    residual: int | None = None
    source: QuantizedAdder2d | None = None


@dataclass
class PatchStep:
    """The patch rows of a one-channel uint8 map for ``layer``'s geometry, ``row_bytes`` per position (the taps,
    then zeros): the input of a 1x1 layer that equals ``layer`` (:func:`_packed_patch_layer`)."""

    layer: QuantizedAdder2d
    row_bytes: int
    input: int
    output: int


@dataclass
class MaxPoolStep:
    """Max-pool of a uint8 (N, H, W, C) value; ``pool`` holds ``nn.MaxPool2d``'s geometry."""

    pool: dict[str, Any]
    input: int
    output: int


@dataclass
class ConvStemStep:
    """The float stem's convolution (BatchNorm folded) and its quantiser, from the float32 (N, C, H, W) image to
    uint8 (N, H, W, C) in one pass: ``FloatConvStem`` without its max-pool (a :class:`MaxPoolStep` after it)."""

    stem: FloatConvStem
    input: int
    output: int


@dataclass
class QuantizeStep:
    """``QuantizeInput``: float (N, C, H, W) -> uint8 (N, H, W, C)."""

    quant: QuantizeInput
    input: int
    output: int


Step = TorchStep | AdderStep | MaxPoolStep | PatchStep | ConvStemStep | QuantizeStep
IntegerStep = AdderStep | MaxPoolStep | PatchStep | ConvStemStep | QuantizeStep
_INTEGER_STEPS = (AdderStep, MaxPoolStep, PatchStep, ConvStemStep, QuantizeStep)
_FLOAT_INPUT_STEPS = (ConvStemStep, QuantizeStep)  # integer steps that read a float image
Lowering = Callable[[nn.Module, "PlanBuilder", int], int]
_LOWERINGS: dict[type, Lowering] = {}


def register_lowering(*classes: type) -> Callable[[Lowering], Lowering]:
    """Declare how modules of ``classes`` lower: ``fn(module, builder, input_value) -> output_value``, adding
    steps with the builder's methods. Modules without a lowering become one torch step."""

    def decorate(fn: Lowering) -> Lowering:
        for cls in classes:
            _LOWERINGS[cls] = fn
        return fn

    return decorate


@dataclass
class PlanBuilder:
    """Collects the steps of a plan; value 0 is the model's input."""

    steps: list[Step] = field(default_factory=list)
    values: int = 1

    def _new(self) -> int:
        self.values += 1
        return self.values - 1

    def lower(self, module: nn.Module, value: int) -> int:
        """``module`` applied to ``value``: its registered lowering, else one torch step."""
        lowering = _LOWERINGS.get(type(module))
        return lowering(module, self, value) if lowering is not None else self.torch(module, value)

    def torch(self, fn: Callable[[Tensor], Tensor], value: int) -> int:
        self.steps.append(TorchStep(fn, value, out := self._new()))
        return out

    def adder(self, layer: QuantizedAdder2d, value: int, residual: int | None = None) -> int:
        """``layer`` on ``value``; a one-channel layer whose patch rows the kernels would gather a few bytes at a
        time runs as a 1x1 layer on packed patch rows (:class:`PatchStep`)."""
        if (residual is not None) != layer.residual:
            raise LoweringError(f"{layer}: residual {'expected' if layer.residual else 'not expected'}")
        row_bytes = _patch_row_bytes(layer)
        if row_bytes:
            patches = self.patches(layer, row_bytes, value)
            self.steps.append(AdderStep(_packed_patch_layer(layer, row_bytes), patches, out := self._new(), residual,
                                        source=layer))
            return out
        self.steps.append(AdderStep(layer, value, out := self._new(), residual))
        return out

    def patches(self, layer: QuantizedAdder2d, row_bytes: int, value: int) -> int:
        self.steps.append(PatchStep(layer, row_bytes, value, out := self._new()))
        return out

    def max_pool(self, pool: dict[str, Any], value: int) -> int:
        self.steps.append(MaxPoolStep(pool, value, out := self._new()))
        return out

    def conv_stem(self, stem: FloatConvStem, value: int) -> int:
        """``stem`` on the float image ``value``: an integer step for the convolution and quantiser, then a uint8
        max-pool where the stem has one (max commutes with the monotone quantiser); a stem with groups or
        another pool runs in PyTorch."""
        pool = stem.pool
        if stem.conv.groups != 1 or not (pool is None or type(pool) is nn.MaxPool2d):
            return self.lower(stem.quant, self.torch(stem.float_output, value))
        self.steps.append(ConvStemStep(stem, value, out := self._new()))
        if pool is None:
            return out
        return self.max_pool({k: getattr(pool, k) for k in ("kernel_size", "stride", "padding", "dilation",
                                                            "ceil_mode")}, out)


def _patch_row_bytes(layer: QuantizedAdder2d) -> int:
    """Bytes of a packed patch row (taps rounded up to 8) where ``layer`` should run on packed patches: one input
    channel, groups 1, a kernel row of fewer bytes than a SAD step or not a multiple of it; else 0."""
    kh, kw = layer.kernel_size
    if layer.in_channels != 1 or layer.groups != 1 or (kh * kw == 1) or (kw % 8 == 0 and layer.dilation[1] == 1):
        return 0
    return -(-kh * kw // 8) * 8


def _packed_patch_layer(layer: QuantizedAdder2d, row_bytes: int) -> QuantizedAdder2d:
    """The 1x1 layer on ``row_bytes``-channel patch rows equal to the one-channel ``layer``: the weights (O, 1, kh,
    kw) as (O, row_bytes, 1, 1), taps in (i, j) order, zeros after them; the same epilogue."""
    weight = torch.zeros(layer.out_channels, row_bytes, dtype=torch.uint8)
    weight[:, : layer.weight_q[0].numel()] = layer.weight_q.reshape(layer.out_channels, -1)  # (O, kh * kw)
    packed = QuantizedAdder2d(row_bytes, layer.out_channels, (1, 1), output=layer.output, residual=layer.residual)
    packed.set_weight(weight.view(layer.out_channels, row_bytes, 1, 1), layer.zero_point)
    packed.set_epilogue(layer.scale, layer.bias, layer.qmin, layer.qmax, layer.residual_zero_point,
                        layer.residual_scale)
    return packed


def _pad_channels(steps: list[Step]) -> None:
    """Rounds up to a multiple of 8 the output channels of the uint8 adder layers whose outputs only adder layers
    read (directly or through max-pools), and those readers' input channels. The kernels store a tile's 8 channels
    as one vector; with fewer in a row (LeNet-5's 6) they go through a scalar epilogue, ~10x slower. The padding
    channels hold the readers' input zero point ``z`` (weights 0, scale 0, bias ``z``: every sum gives ``z``), and
    the readers' weights for them are ``z``, as is their padding: ``|z - z| = 0``, so every sum is unchanged."""
    readers: dict[int, list[Step]] = {}
    for step in steps:
        for value in (step.input, getattr(step, "residual", None)):
            if value is not None:
                readers.setdefault(value, []).append(step)
    for step in steps:
        layer = step.layer if isinstance(step, AdderStep) else None
        if layer is None or layer.output != "uint8" or layer.residual or layer.groups != 1 \
                or layer.out_channels % 8 == 0:
            continue
        adders, values, movable = [], [step.output], True
        while values and movable:
            value = values.pop()
            movable = bool(readers.get(value))  # none: the plan's result
            for reader in readers.get(value, []):
                if isinstance(reader, MaxPoolStep):
                    values.append(reader.output)
                elif isinstance(reader, AdderStep) and reader.residual != value and reader.layer.groups == 1:
                    adders.append(reader)
                else:
                    movable = False
        zero_points = {reader.layer.zero_point for reader in adders}
        if not movable or len(zero_points) != 1 or not layer.qmin <= (fill := zero_points.pop()) <= layer.qmax:
            continue
        channels = -(-layer.out_channels // 8) * 8
        step.source, step.layer = step.source or layer, _resized(layer, layer.in_channels, channels, fill)
        for reader in adders:
            reader.source = reader.source or reader.layer
            reader.layer = _resized(reader.layer, channels, reader.layer.out_channels, fill)


def _resized(layer: QuantizedAdder2d, in_channels: int, out_channels: int, fill: int) -> QuantizedAdder2d:
    """``layer`` (groups 1) with more input and output channels: weights ``fill`` on the new inputs and 0 on the new
    outputs, whose scale is 0 and bias ``fill``; the same geometry and epilogue."""
    weight = torch.zeros(out_channels, in_channels, *layer.kernel_size, dtype=torch.uint8)
    weight[:, layer.in_channels :] = fill
    weight[: layer.out_channels, : layer.in_channels] = layer.weight_q
    scale, bias = torch.zeros(out_channels), torch.full((out_channels,), float(fill))
    scale[: layer.out_channels], bias[: layer.out_channels] = layer.scale, layer.bias
    resized = QuantizedAdder2d(in_channels, out_channels, layer.kernel_size, layer.stride, layer.padding,
                               layer.dilation, output=layer.output, residual=layer.residual)
    resized.set_weight(weight, layer.zero_point)
    resized.set_epilogue(scale, bias, layer.qmin, layer.qmax, layer.residual_zero_point, layer.residual_scale)
    return resized


# ----------------------------------------------------------------------------------------------------------------
# Lowerings of the integer networks


@register_lowering(QuantizedResNet)
def _lower_resnet(model: QuantizedResNet, b: PlanBuilder, x: int) -> int:
    x = b.lower(model.stem, x)  # (N, H, W, C) uint8
    for i in range(model.num_stages):
        for block in getattr(model, f"layer{i + 1}"):
            x = b.lower(block, x)
    return b.torch(model.head, x)


@register_lowering(QuantizedBasicBlock, QuantizedBottleneck)
def _lower_block(block: QuantizedBasicBlock | QuantizedBottleneck, b: PlanBuilder, x: int) -> int:
    identity = x if block.downsample is None else b.adder(block.downsample, x)
    convs = [block.conv1, block.conv2] + ([block.conv3] if isinstance(block, QuantizedBottleneck) else [])
    out = x
    for conv in convs[:-1]:
        out = b.adder(conv, out)
    out = b.adder(convs[-1], out, identity)
    return b.torch(Tensor.relu_, out) if convs[-1].output == "float32" else out


@register_lowering(QuantizedChain)
def _lower_chain(model: QuantizedChain, b: PlanBuilder, x: int) -> int:
    for module in model.steps:
        x = b.lower(module, x)
    x = b.torch(_flatten, x)
    return b.torch(model.classifier, x) if model.classifier is not None else x


def _flatten(x: Tensor) -> Tensor:
    return x.flatten(1)


@register_lowering(QuantizedAdder2d)
def _lower_adder(layer: QuantizedAdder2d, b: PlanBuilder, x: int) -> int:
    return b.adder(layer, x)


@register_lowering(MaxPoolUint8)
def _lower_max_pool(pool: MaxPoolUint8, b: PlanBuilder, x: int) -> int:
    return b.max_pool(pool.kwargs, x)


@register_lowering(QuantizeInput)
def _lower_quantize_input(quant: QuantizeInput, b: PlanBuilder, x: int) -> int:
    b.steps.append(QuantizeStep(quant, x, out := b._new()))
    return out


@register_lowering(FloatConvStem)
def _lower_float_stem(stem: FloatConvStem, b: PlanBuilder, x: int) -> int:
    return b.conv_stem(stem, x)


@register_lowering(AdderUnit)
def _lower_adder_unit(unit: AdderUnit, b: PlanBuilder, x: int) -> int:
    return b.torch(_channels_first, b.adder(unit.adder, b.lower(unit.quant, x)))


def _channels_first(x: Tensor) -> Tensor:
    return x.permute(0, 3, 1, 2)  # (N, H, W, C) -> (N, C, H, W)


# ----------------------------------------------------------------------------------------------------------------
# Integer segments


def _pair(value: int | tuple[int, ...]) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else (int(value[0]), int(value[1]))


def _pool_geometry(pool: dict[str, Any]) -> tuple[tuple[int, int], ...]:
    kernel = _pair(pool["kernel_size"])
    return kernel, _pair(pool["stride"] or kernel), _pair(pool["padding"]), _pair(pool["dilation"])


def _pool_output(size: int, kernel: int, stride: int, padding: int, dilation: int, ceil_mode: bool) -> int:
    """``F.max_pool2d``'s output size along one axis."""
    span = size + 2 * padding - dilation * (kernel - 1) - 1
    out = (span + (stride - 1 if ceil_mode else 0)) // stride + 1
    if ceil_mode and (out - 1) * stride >= size + padding:  # the last window must start inside the input
        out -= 1
    return out


@dataclass
class _Bound:
    """A segment's tables for one input shape and thread count, and its free scratch arenas."""

    table: np.ndarray
    params: np.ndarray
    fparams: np.ndarray
    arena_bytes: int
    out_shape: tuple[int, ...]
    out_dtype: torch.dtype
    phases: np.ndarray  # step_phases(table, params)
    workers: int  # threads that run the segment (1: no parallel region)
    arenas: list[np.ndarray] = field(default_factory=list)


class IntegerSegment:
    """Consecutive integer steps, from one uint8 (N, H, W, C) input value to one output value; the weights packed
    once into flat arrays."""

    def __init__(self, steps: list[IntegerStep]) -> None:
        self.steps = steps
        self.input, self.output = steps[0].input, steps[-1].output
        scales, biases, self._places = [], [], []  # places: (weight offset, bytes, G, B, S, vector offset)
        w_at = v_at = 0
        self.float_input = isinstance(steps[0], _FLOAT_INPUT_STEPS)  # the segment reads a float image
        for step in steps:
            if isinstance(step, ConvStemStep):  # weights (C, kh, kw, O8) in the scales, the bias (O8) in the biases
                weight, bias = _stem_weights(step.stem)
                scales.append(weight)
                biases.append(np.concatenate([bias, np.zeros(weight.size - bias.size, dtype=np.float32)]))
                self._places.append((0, 0, 0, 0, 0, v_at))
                v_at += weight.size
                continue
            if not isinstance(step, AdderStep):
                self._places.append((0, 0, 0, 0, 0, 0))
                continue
            layer = step.layer
            groups, blocks, s = layer.packed_weight.data.shape[:3]  # (G, B, S, 8, 8)
            plain = layer.output == "int32"  # no epilogue: the op passes no scale or bias
            scales.append(per_group_padded(None if plain else layer.scale, groups, blocks, 1.0))
            biases.append(per_group_padded(None if plain else layer.bias, groups, blocks, 0.0))
            size = layer.packed_weight.data.numel()
            self._places.append((w_at, size, groups, blocks, s, v_at))
            w_at += -(-size // _ALIGN) * _ALIGN
            v_at += scales[-1].size
        self.weights = np.zeros(max(w_at, _ALIGN), dtype=np.uint8)
        for (offset, size, *_), step in zip(self._places, steps):
            if isinstance(step, AdderStep):
                self.weights[offset : offset + size] = step.layer.packed_weight.data.numpy().reshape(-1)
        self.scales = np.concatenate(scales) if scales else np.zeros(8, dtype=np.float32)
        self.biases = np.concatenate(biases) if biases else np.zeros(8, dtype=np.float32)
        self._bound: dict[tuple[int, ...], _Bound] = {}

    def _bind(self, shape: tuple[int, int, int, int], width: int, threads: int) -> _Bound:
        """Step table and arena layout for an (N, H, W, C) input."""
        n = shape[0]
        shapes: dict[int, tuple[tuple[int, ...], str]] = {self.input: (shape, "uint8")}
        calls = []  # per step: (ints, floats) of the kernel
        terms = 0
        if self.float_input:
            shapes[self.input] = (shape, "float32")
        for index, step in enumerate(self.steps):
            in_shape, in_dtype = shapes[step.input]
            if in_dtype != ("float32" if isinstance(step, _FLOAT_INPUT_STEPS) else "uint8"):
                raise LoweringError(f"{type(step).__name__} on a {in_dtype} value")
            if isinstance(step, QuantizeStep):
                _, channels, height, width_in = in_shape
                shapes[step.output] = ((n, height, width_in, channels), "uint8")
                ints = np.zeros(PARAM_COUNT, dtype=np.int64)
                ints[:5] = [n, channels, height, width_in, step.quant.zero_point]
                floats = np.zeros(4, dtype=np.float32)
                floats[0] = np.float32(1.0) / np.float32(step.quant.scale)  # as torch.quantize_per_tensor does
                calls.append((ints, floats))
            elif isinstance(step, ConvStemStep):
                conv, quant = step.stem.conv, step.stem.quant
                (kh, kw), (sh, sw), (ph, pw), (dh, dw) = (_pair(getattr(conv, k)) for k in (
                    "kernel_size", "stride", "padding", "dilation"))
                _, channels, height, width_in = in_shape
                if channels != conv.in_channels:
                    raise LoweringError(f"the stem expects {conv.in_channels} channels, got {channels}")
                h_out, w_out = conv_output_size(height, width_in, (kh, kw), (sh, sw), (ph, pw), (dh, dw))
                shapes[step.output] = ((n, h_out, w_out, conv.out_channels), "uint8")
                shapes[-1 - index] = ((n, channels, height + 2 * ph, width_in + 2 * pw), "float64")  # scratch
                ints = np.zeros(PARAM_COUNT, dtype=np.int64)
                ints[: len(STEM_PARAMS)] = [
                    n, channels, height, width_in, conv.out_channels, h_out, w_out, kh, kw, sh, sw, ph, pw, dh, dw,
                    quant.zero_point, quant.zero_point if step.stem.relu else 0, -(-conv.out_channels // 8) * 8]
                floats = np.zeros(4, dtype=np.float32)
                floats[0] = np.float32(1.0) / np.float32(quant.scale)  # as torch.quantize_per_tensor computes it
                calls.append((ints, floats))
            elif isinstance(step, PatchStep):
                layer = step.layer
                (kh, kw), (sh, sw), (ph, pw), (dh, dw) = layer.kernel_size, layer.stride, layer.padding, layer.dilation
                _, height, width_in, _ = in_shape
                h_out, w_out = conv_output_size(height, width_in, layer.kernel_size, layer.stride, layer.padding,
                                                layer.dilation)
                shapes[step.output] = ((n, h_out, w_out, step.row_bytes), "uint8")
                ints = np.zeros(PARAM_COUNT, dtype=np.int64)
                ints[:16] = [n, height, width_in, 1, h_out, w_out, kh, kw, sh, sw, ph, pw, dh, dw, layer.zero_point,
                             step.row_bytes]
                calls.append((ints, np.zeros(4, dtype=np.float32)))
            elif isinstance(step, AdderStep):
                layer = step.layer
                ints, floats, out_shape = kernel_arguments(
                    width, in_shape, tuple(layer.packed_weight.data.shape), layer.out_channels, layer.kernel_size,
                    layer.stride, layer.padding, layer.dilation, layer.zero_point, step.residual is not None,
                    layer.residual_zero_point, layer.residual_scale, layer.output, layer.qmin, layer.qmax, threads)
                shapes[step.output] = (out_shape, layer.output)
                calls.append((ints, floats))
                terms += int(np.prod(out_shape)) * layer.weight_q[0].numel()  # |a - b| terms of the layer
            else:
                (kh, kw), (sh, sw), (ph, pw), (dh, dw) = _pool_geometry(step.pool)
                _, height, width_in, channels = in_shape
                ceil = bool(step.pool["ceil_mode"])
                h_out = _pool_output(height, kh, sh, ph, dh, ceil)
                w_out = _pool_output(width_in, kw, sw, pw, dw, ceil)
                shapes[step.output] = ((n, h_out, w_out, channels), "uint8")
                ints = np.zeros(PARAM_COUNT, dtype=np.int64)
                ints[:14] = [n, height, width_in, channels, h_out, w_out, kh, kw, sh, sw, ph, pw, dh, dw]
                calls.append((ints, np.zeros(4, dtype=np.float32)))
        places = self._allocate(shapes)
        table = np.zeros((len(self.steps), len(STEP_FIELDS)), dtype=np.int64)
        kinds = {AdderStep: STEP_ADDER, PatchStep: STEP_PATCHES, MaxPoolStep: STEP_MAX_POOL,
                 ConvStemStep: STEP_CONV_STEM, QuantizeStep: STEP_QUANTIZE}
        for index, (row, step, place) in enumerate(zip(table, self.steps, self._places)):
            row[0] = kinds[type(step)]
            row[1:4] = places[step.input]
            row[4:7] = places[step.output]
            row[7:10] = places[step.residual] if isinstance(step, AdderStep) and step.residual is not None \
                else places[-1 - index] if isinstance(step, ConvStemStep) else (BUFFER_ARENA, 0, 0)
            length = place[3] * 8 * place[2]
            if isinstance(step, ConvStemStep):  # the stem's weight vector, (C, kh, kw, O8)
                weight = step.stem.conv.weight
                length = weight[0].numel() * -(-weight.shape[0] // 8) * 8
            row[10:17] = place[0], place[1], place[2], place[3], place[4], place[5], length
        params = np.stack([c[0] for c in calls])
        fparams = np.stack([c[1] for c in calls])
        out_shape, out_dtype = shapes[self.output]
        arena_bytes = max((p[1] + p[2] for p in places.values() if p[0] == BUFFER_ARENA), default=0) + _ALIGN
        workers = threads if terms >= PARALLEL_MIN_TERMS else 1
        return _Bound(table, params, fparams, arena_bytes, out_shape, _TORCH_DTYPES[out_dtype],
                      step_phases(table, params), workers)

    def _allocate(self, shapes: dict[int, tuple[tuple[int, ...], str]]) -> dict[int, tuple[int, int, int]]:
        """(buffer, byte offset, bytes) of every value: the input and output in their own tensors, the others in
        the arena, reusing the space of values that are dead (first fit; a step's output and scratch never overlap
        its inputs, which are freed only after the step)."""
        last_use: dict[int, int] = {}
        for index, step in enumerate(self.steps):
            for value in (step.input, getattr(step, "residual", None)):
                if value is not None:
                    last_use[value] = index
            if -1 - index in shapes:  # the step's scratch (value -1 - index): live during the step only
                last_use[-1 - index] = index
        sizes = {v: int(np.prod(s)) * _ITEM_BYTES[d] for v, (s, d) in shapes.items()}
        places = {self.input: (BUFFER_INPUT, 0, sizes[self.input]), self.output: (BUFFER_OUTPUT, 0, sizes[self.output])}
        live: list[tuple[int, int, int]] = []  # (offset, end, value) in the arena
        for index, step in enumerate(self.steps):
            for value in (step.output, -1 - index):
                if value == self.output or value not in shapes:
                    continue
                size = -(-sizes[value] // _ALIGN) * _ALIGN
                offset = 0
                for start, end, _ in sorted(live):
                    if start - offset >= size:
                        break
                    offset = max(offset, end)
                live.append((offset, offset + size, value))
                places[value] = (BUFFER_ARENA, offset, sizes[value])
            live = [slot for slot in live if last_use.get(slot[2], -1) > index]
        return places

    def run(self, x: Tensor, width: int, threads: int) -> Tensor:
        """The segment on a uint8 (N, H, W, C) tensor (a float (N, C, H, W) one where it starts with the stem or the
        quantiser: as float32, exact from float16 / bfloat16) with the kernels of vector ``width``."""
        x = (x.float() if self.float_input else x).contiguous()
        key = (*x.shape, width, threads)
        bound = self._bound.get(key)
        if bound is None:
            bound = self._bound[key] = self._bind(tuple(x.shape), width, threads)
        arena = bound.arenas.pop() if bound.arenas else np.empty(bound.arena_bytes, dtype=np.uint8)
        out = torch.empty(bound.out_shape, dtype=bound.out_dtype)
        try:
            run_steps(width, x.view(-1).view(torch.uint8).numpy(), out.view(-1).view(torch.uint8).numpy(), arena,
                      self.weights, self.scales, self.biases, bound.table, bound.params, bound.fparams, bound.phases,
                      bound.workers)
        finally:
            bound.arenas.append(arena)  # one arena per concurrent caller of this shape
        return out


def _stem_weights(stem: FloatConvStem) -> tuple[np.ndarray, np.ndarray]:
    """The stem's float32 weights as (C, kh, kw, O8) and its bias as (O8,), flat; O8 the output channels rounded
    up to a multiple of 8, zeros in the padding channels."""
    weight, bias = stem.conv.weight.detach(), stem.conv.bias.detach()
    out_channels = weight.shape[0]
    padded = -(-out_channels // 8) * 8
    packed = torch.zeros(*weight.shape[1:], padded, dtype=torch.float32)
    packed[..., :out_channels] = weight.float().permute(1, 2, 3, 0)  # (O, C, kh, kw) -> (C, kh, kw, O)
    bias_padded = torch.zeros(padded, dtype=torch.float32)
    bias_padded[:out_channels] = bias.float()
    return packed.numpy().reshape(-1), bias_padded.numpy()


# ----------------------------------------------------------------------------------------------------------------
# The plan


class IntegerPlan:
    """A lowered model: torch steps and integer segments in order, from value 0 (the input) to the result."""

    def __init__(self, model: nn.Module) -> None:
        builder = PlanBuilder()
        lowering = _LOWERINGS.get(type(model))
        if lowering is None:
            raise LoweringError(f"no lowering registered for {type(model).__name__}")
        self.result = lowering(model, builder, 0)
        _pad_channels(builder.steps)
        self.program: list[TorchStep | IntegerSegment] = []
        run: list[IntegerStep] = []
        for step in [*builder.steps, None]:
            if isinstance(step, _INTEGER_STEPS):
                run.append(step)
                continue
            if run:
                self.program.append(IntegerSegment(run))
                run = []
            if step is not None:
                self.program.append(step)
        self._check_values()
        self.layers = [s.source or s.layer for seg in self.program if isinstance(seg, IntegerSegment)
                       for s in seg.steps if isinstance(s, AdderStep)]  # the model's adder layers that the plan runs
        # (a layer's buffer or parameter dict, name, the tensor packed, its version): a replaced or modified buffer
        # (in place, e.g. by load_state_dict) makes the plan stale; the dicts rather than getattr: this runs on
        # every forward
        watched = [(layer._buffers, name) for layer in self.layers for name in ("weight_packed", "scale", "bias",
                                                                                 "qconfig")]
        stems = [s.stem for seg in self.program if isinstance(seg, IntegerSegment) for s in seg.steps
                 if isinstance(s, ConvStemStep)]
        watched += [(stem.conv._parameters, name) for stem in stems for name in ("weight", "bias")]
        watched += [(stem.quant._buffers, "qconfig") for stem in stems]
        watched += [(s.quant._buffers, "qconfig") for seg in self.program if isinstance(seg, IntegerSegment)
                    for s in seg.steps if isinstance(s, QuantizeStep)]
        self._watched = [(tensors, name, tensors[name], tensors[name]._version) for tensors, name in watched]
        # the stem's float64 sums start from float32 values: a float64 image runs the modules one by one
        self.float32_stem = bool(stems)

    def _check_values(self) -> None:
        """Each integer segment reads one value from outside (its input) and leaves one (its output)."""
        outputs = {}  # value -> segment index that defines it
        for index, item in enumerate(self.program):
            steps = item.steps if isinstance(item, IntegerSegment) else [item]
            for step in steps:
                for value in (step.input, getattr(step, "residual", None)):
                    if value is None:
                        continue
                    source = outputs.get(value)
                    inside = source == index
                    if isinstance(item, IntegerSegment) and not inside and value != item.input:
                        raise LoweringError("an integer segment reads a value other than its input from outside")
                    if source is not None and source != index:
                        segment = self.program[source]
                        if isinstance(segment, IntegerSegment) and value != segment.output:
                            raise LoweringError("a value inside an integer segment is read after it")
                outputs[step.output] = index

    @property
    def layer_count(self) -> int:
        return len(self.layers)

    def is_current(self) -> bool:
        """Whether the integer layers' buffers are those the plan was packed from, unmodified."""
        return all(buffers[name] is t and t._version == version for buffers, name, t, version in self._watched)

    def __call__(self, x: Tensor, width: int) -> Tensor:
        threads = sync_threads()
        values: dict[int, Tensor] = {0: x}
        for item in self.program:
            if isinstance(item, IntegerSegment):
                values[item.output] = item.run(values.pop(item.input), width, threads)
            else:
                values[item.output] = item.fn(values[item.input])
        return values[self.result]


def compile_plan(model: nn.Module) -> IntegerPlan:
    """The plan of an integer model (raises :class:`LoweringError` when a module tree cannot be lowered)."""
    return IntegerPlan(model)


def plan_of(model: nn.Module) -> IntegerPlan | None:
    """``model``'s plan, compiled on first use and again when its integer layers' buffers changed; ``None`` where
    the model cannot be lowered."""
    plan = model.__dict__.get("_integer_plan")
    if plan is None or (plan is not False and not plan.is_current()):
        try:
            plan = compile_plan(model)
        except LoweringError:
            plan = False
        model.__dict__["_integer_plan"] = plan
    return plan or None


def _sad_width(layer: QuantizedAdder2d) -> int | None:
    """The vector width of the selected ``adder2d_u8`` backend, ``None`` when it is not a SAD kernel."""
    weight = layer.weight_packed
    return WIDTHS.get(select(ADDER_U8_OP, weight, weight).name)


_DISABLED: list[bool] = []


@contextlib.contextmanager
def plans_disabled() -> Iterator[None]:
    """Within the block, integer networks run their modules one by one (the forward before plans existed)."""
    _DISABLED.append(True)
    try:
        yield
    finally:
        _DISABLED.pop()


def planned_forward(model: nn.Module, x: Any) -> Tensor | None:
    """``model(x)`` through its plan, or ``None`` where the modules must run one by one (not a CPU tensor, tracing,
    compiling, a non-SAD backend, a model that does not lower, :func:`plans_disabled`)."""
    if _DISABLED or not isinstance(x, Tensor) or x.device.type != "cpu" or torch.compiler.is_compiling() \
            or torch.jit.is_tracing() or x.requires_grad:
        return None
    plan = plan_of(model)
    if plan is None or plan.layer_count == 0:
        return None
    width = _sad_width(plan.layers[0])
    if width is None or (plan.float32_stem and x.dtype == torch.float64):
        return None
    return plan(x, width)


PlannedForward.planner = staticmethod(planned_forward)
