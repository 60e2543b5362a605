"""ONNX export of integer AdderNets (:func:`frugalvision.quantize` outputs) in the standard ONNX operator set.

The graph computes what the integer model computes, step by step, with the same tensors in the same layouts:
float images (N, C, H, W) in, uint8 (N, H, W, C) activations between adder layers, float logits out. No ONNX
runtime implements the uint8 sum-of-absolute-differences kernels, so each integer adder layer (AdderNet, Chen et
al., CVPR 2020, arXiv 1912.13200, Eq. 2, on quantized values)

    S[n, h, w, o] = sum_{i, j, c} | Xq_pad[n, h*s_h + i*d_h, w*s_w + j*d_w, c] - Wq[o, c, i, j] |

is written one kernel tap (i, j) at a time, channels last::

    X     = Cast(Xq, acc)                                      (N, H, W, C)
    X_pad = Pad(X, value = zero point)                         (N, Hp, Wp, C)   skipped without padding
    X_g   = Unsqueeze(X_pad, 3)                                (N, Hp, Wp, 1, C)          groups = 1
          | Reshape(X_pad, [0, 0, 0, G, 1, C/G])               (N, Hp, Wp, G, 1, C/G)     groups = G
    T_ij  = Slice(X_g, starts (i*d_h, j*d_w), steps (s_h, s_w))            (N, Ho, Wo, ...)
    S_ij  = ReduceSum(Abs(Sub(T_ij, Wq[:, :, i, j] as (O, C) | (G, O/G, C/G))), last axis)
    S     = pairwise sum of the S_ij                           (N, Ho, Wo, O)   (Reshape for groups > 1)

**Exactness.** Every term ``|x - w|`` is an integer in 0..255 and every partial sum an integer at most
``255 * K`` with ``K = (C/G) * kh * kw`` the layer's reduction length. Integers up to ``2**24`` are exact in float32
and a sum of exact integers below that bound never rounds, whatever the order, so with ``acc = float32`` the sums are
exact as soon as ``255 * K < 2**24`` (K < 65,794; the largest K of the zoo's integer models is 64 * 9 = 576 in
ResNet-20: partial sums below 146,880). ``acc = int32`` is exact for any K (onnxruntime runs Sub, Abs, ReduceSum
and Add on int32); the exporter takes float32 when the bound holds (onnxruntime's float kernels are the faster
ones) and int32 otherwise.

**Epilogue.** As the integer model (:func:`~frugalvision.ops.adder2d_u8_epilogue.adder_u8_epilogue`), in float32,
one operation at a time and in the same order: ``y = float32(S) * scale + bias``, then
``+ (float32(residual) - zr) * sr``; uint8 outputs ``Round`` (half to even, like ``torch.round``), ``Clip`` and
``Cast``. Each is one correctly rounded IEEE operation, so these steps agree bit for bit. The entry into the integer
domain is ``x * (1 / scale)`` (the inverse in float32) rounded half to even, plus the zero point, clamped: what
``torch.quantize_per_tensor`` computes. The multiplicative stem is accumulated in float64 and rounded once to
float32 on both sides (see :class:`~frugalvision.quant.modules.FloatConvStem`), so its bytes agree too. Only the
average pool and the classifier sum in another order than PyTorch's kernels: the logits agree to float32 rounding
(~1e-7 relative).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..errors import ExportError

__all__ = [
    "FLOAT32_EXACT_LIMIT",
    "build_integer_graph",
    "compare_with_onnxruntime",
    "export_integer_onnx",
    "onnx_session",
    "sad_accumulator",
]

FLOAT32_EXACT_LIMIT = 2**24  # every integer up to this is exact in float32
MIN_INTEGER_OPSET = 13  # ReduceSum's axes as an input, Pad's constant value as an input


def sad_accumulator(reduction_length: int) -> str:
    """``"float32"`` when every partial sum of ``reduction_length`` terms in 0..255 is exact in float32, else
    ``"int32"`` (see the module docstring)."""
    return "float32" if 255 * reduction_length < FLOAT32_EXACT_LIMIT else "int32"


class _Graph:
    """A growing ONNX graph: nodes, constant initializers and fresh value names."""

    def __init__(self, opset: int, accumulator: str | None, input_sizes: dict[int, tuple[int, int]],
                 stem_input_size: tuple[int, int] = (0, 0)) -> None:
        self.opset, self.accumulator, self.stem_input_size = opset, accumulator, stem_input_size
        self.input_sizes = input_sizes  # id(adder layer) -> (H, W) of its input: the slice bounds are static
        self.nodes: list[Any] = []
        self.initializers: list[Any] = []
        self._count = 0

    def _name(self, hint: str) -> str:
        self._count += 1
        return f"{hint}_{self._count}"

    def const(self, value: np.ndarray | torch.Tensor, hint: str = "c") -> str:
        from onnx import numpy_helper

        array = value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else np.asarray(value)
        name = self._name(hint)
        self.initializers.append(numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name

    def ints(self, values: list[int]) -> str:
        return self.const(np.array(values, dtype=np.int64), "shape")

    def f32(self, value: float) -> str:
        return self.const(np.array(value, dtype=np.float32), "scalar")

    def op(self, op_type: str, *inputs: str, **attributes: Any) -> str:
        from onnx import helper

        output = self._name(op_type.lower())
        self.nodes.append(helper.make_node(op_type, list(inputs), [output], **attributes))
        return output

    def cast(self, value: str, dtype: str) -> str:
        from onnx import TensorProto

        to = {"float32": TensorProto.FLOAT, "int32": TensorProto.INT32, "uint8": TensorProto.UINT8}[dtype]
        return self.op("Cast", value, to=to)

    def nchw(self, value: str) -> str:
        return self.op("Transpose", value, perm=[0, 3, 1, 2])

    def nhwc(self, value: str) -> str:
        return self.op("Transpose", value, perm=[0, 2, 3, 1])


def _pair(value: Any) -> list[int]:
    return [int(value), int(value)] if isinstance(value, int) else [int(v) for v in value]


# ---------------------------------------------------------------------------------------------------- integer steps


def _quantize(g: _Graph, x: str, scale: float, zero_point: int) -> str:
    """float (N, C, H, W) -> uint8 (N, H, W, C): ``clamp(round(x * inv) + zero_point, 0, 255)`` with
    ``inv = 1 / scale`` computed in float32, as ``torch.quantize_per_tensor`` (fbgemm) does: ``x / scale`` differs
    from it on a few values in a million (measured on the released ResNet-20's stem outputs)."""
    inverse = np.float32(1.0) / np.float32(scale)
    q = g.op("Add", g.op("Round", g.op("Mul", x, g.const(np.array(inverse, dtype=np.float32), "inv_scale"))),
             g.f32(float(zero_point)))
    return g.nhwc(g.cast(g.op("Clip", q, g.f32(0.0), g.f32(255.0)), "uint8"))


def _sums(g: _Graph, layer: nn.Module, x_u8: str) -> str:
    """The exact sums S (N, Ho, Wo, O) of a QuantizedAdder2d, in float32 or int32 (see the module docstring)."""
    weight = layer.weight_q  # uint8 (O, C/G, kh, kw)
    group_channels, kh, kw = weight.shape[1:]
    groups = layer.groups
    acc = g.accumulator or sad_accumulator(group_channels * kh * kw)
    if acc == "float32" and 255 * group_channels * kh * kw >= FLOAT32_EXACT_LIMIT:
        raise ExportError(f"float32 sums are not exact for a reduction of {group_channels * kh * kw} terms; use int32")
    np_dtype = np.float32 if acc == "float32" else np.int32
    (sh, sw), (ph, pw), (dh, dw) = layer.stride, layer.padding, layer.dilation
    x = g.cast(x_u8, acc)
    if ph or pw:  # padded positions hold the byte zero_point (the quantized 0)
        x = g.op("Pad", x, g.ints([0, ph, pw, 0, 0, ph, pw, 0]), g.const(np.array(layer.zero_point, dtype=np_dtype)),
                 mode="constant")
    height, width = g.input_sizes[id(layer)]
    out_h = (height + 2 * ph - dh * (kh - 1) - 1) // sh + 1
    out_w = (width + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    return _tap_sums(g, x, weight.to(torch.int32).numpy().astype(np_dtype), groups, (sh, sw), (dh, dw),
                     (out_h, out_w))


def _tap_sums(g: _Graph, x_pad: str, weight: np.ndarray, groups: int, stride: tuple[int, int],
              dilation: tuple[int, int], out_size: tuple[int, int]) -> str:
    out_channels, group_channels, kh, kw = weight.shape
    (sh, sw), (dh, dw), (out_h, out_w) = stride, dilation, out_size
    if groups == 1:
        x = g.op("Unsqueeze", x_pad, g.ints([3]))  # (N, Hp, Wp, 1, C)
    else:
        x = g.op("Reshape", x_pad, g.ints([0, 0, 0, groups, 1, group_channels]))  # (N, Hp, Wp, G, 1, C/G)
    terms = []
    for i in range(kh):
        for j in range(kw):
            starts, ends = [i * dh, j * dw], [i * dh + sh * (out_h - 1) + 1, j * dw + sw * (out_w - 1) + 1]
            tap = g.op("Slice", x, g.ints(starts), g.ints(ends), g.ints([1, 2]), g.ints([sh, sw]))  # (N, Ho, Wo, ..)
            w_tap = weight[:, :, i, j]  # (O, C/G)
            if groups > 1:
                w_tap = w_tap.reshape(groups, out_channels // groups, group_channels)  # (G, O/G, C/G)
            diff = g.op("Abs", g.op("Sub", tap, g.const(w_tap, "weight")))
            terms.append(g.op("ReduceSum", diff, g.ints([-1]), keepdims=0))
    while len(terms) > 1:  # pairwise (any order is exact; this one keeps the graph shallow)
        terms = [g.op("Add", terms[k], terms[k + 1]) for k in range(0, len(terms) - 1, 2)] + terms[len(terms) // 2 * 2:]
    return terms[0] if groups == 1 else g.op("Reshape", terms[0], g.ints([0, 0, 0, out_channels]))


def _epilogue(g: _Graph, sums: str, scale: torch.Tensor, bias: torch.Tensor, output: str, qmin: int, qmax: int,
              residual: str | None = None, residual_zero_point: int = 0, residual_scale: float = 0.0) -> str:
    """``y = float32(S) * scale + bias (+ (float32(r) - zr) * sr)``; uint8: round half to even, clamp, cast."""
    y = g.op("Mul", g.cast(sums, "float32"), g.const(scale.float(), "scale"))
    y = g.op("Add", y, g.const(bias.float(), "bias"))
    if residual is not None:
        r = g.op("Sub", g.cast(residual, "float32"), g.f32(float(residual_zero_point)))
        y = g.op("Add", y, g.op("Mul", r, g.f32(residual_scale)))
    if output == "float32":
        return y
    return g.cast(g.op("Clip", g.op("Round", y), g.f32(float(qmin)), g.f32(float(qmax))), "uint8")


def _adder(g: _Graph, layer: nn.Module, x: str, residual: str | None = None) -> str:
    sums = _sums(g, layer, x)
    if layer.output == "int32":
        return sums  # exact integers, in the accumulator's type
    return _epilogue(g, sums, layer.scale, layer.bias, layer.output, layer.qmin, layer.qmax, residual,
                     layer.residual_zero_point, layer.residual_scale)


def _max_pool(g: _Graph, x_nchw: str, pool: dict[str, Any]) -> str:
    kernel = _pair(pool["kernel_size"])
    stride = _pair(pool["stride"] or pool["kernel_size"])
    padding, dilation = _pair(pool["padding"]), _pair(pool["dilation"])
    return g.op("MaxPool", x_nchw, kernel_shape=kernel, strides=stride, pads=padding + padding, dilations=dilation,
                ceil_mode=int(bool(pool["ceil_mode"])))


def _pool_args(pool: nn.MaxPool2d) -> dict[str, Any]:
    return {k: getattr(pool, k) for k in ("kernel_size", "stride", "padding", "dilation", "ceil_mode")}


def _max_pool_nhwc(g: _Graph, x: str, pool: dict[str, Any], dtype: str) -> str:
    """Max-pool of an (N, H, W, C) tensor; exact for any dtype (max only selects), computed in float32."""
    y = g.nhwc(_max_pool(g, g.nchw(g.cast(x, "float32") if dtype != "float32" else x), pool))
    return g.cast(y, dtype) if dtype != "float32" else y


# ------------------------------------------------------------------------------------------------------ the walk


def _conv(g: _Graph, x: str, conv: nn.Conv2d) -> str:
    inputs = [x, g.const(conv.weight.detach().float(), "conv_weight")]
    if conv.bias is not None:
        inputs.append(g.const(conv.bias.detach().float(), "conv_bias"))
    if isinstance(conv.padding, str):
        raise ExportError(f"ONNX export of a conv with padding={conv.padding!r} is not supported")
    padding = _pair(conv.padding)
    return g.op("Conv", *inputs, kernel_shape=list(conv.kernel_size), strides=_pair(conv.stride),
                pads=padding + padding, dilations=_pair(conv.dilation), group=conv.groups)


def _conv_float64(g: _Graph, x: str, conv: nn.Conv2d) -> str:
    """A float32 convolution accumulated in float64 and rounded once to float32, as the integer model's stem
    computes it (:class:`frugalvision.quant.modules.FloatConvStem`). onnxruntime has no float64 Conv, so: the
    kh*kw taps sliced from the padded input, concatenated along the channels ((i, j, c) order) and multiplied with
    the weight matrix in float64. (N, C, H, W) float32 -> (N, O, Ho, Wo) float32."""
    if conv.groups != 1 or isinstance(conv.padding, str):
        raise ExportError("ONNX export of an integer model's stem supports groups=1 with numeric padding only")
    weight = conv.weight.detach().double()  # (O, C, kh, kw)
    out_channels, channels, kh, kw = weight.shape
    height, width = g.stem_input_size
    (sh, sw), (ph, pw), (dh, dw) = _pair(conv.stride), _pair(conv.padding), _pair(conv.dilation)
    out_h = (height + 2 * ph - dh * (kh - 1) - 1) // sh + 1
    out_w = (width + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    x = g.op("Cast", x, to=11)  # DOUBLE
    if ph or pw:
        x = g.op("Pad", x, g.ints([0, 0, ph, pw, 0, 0, ph, pw]), mode="constant")
    taps = []
    for i in range(kh):
        for j in range(kw):
            ends = [i * dh + sh * (out_h - 1) + 1, j * dw + sw * (out_w - 1) + 1]
            taps.append(g.op("Slice", x, g.ints([i * dh, j * dw]), g.ints(ends), g.ints([2, 3]), g.ints([sh, sw])))
    columns = g.nhwc(g.op("Concat", *taps, axis=1))  # (N, kh*kw*C, Ho, Wo) -> (N, Ho, Wo, K), K in (i, j, c) order
    matrix = weight.permute(2, 3, 1, 0).reshape(kh * kw * channels, out_channels)  # (K, O), K ordered (i, j, c)
    y = g.op("MatMul", columns, g.const(matrix, "stem_weight"))
    if conv.bias is not None:
        y = g.op("Add", y, g.const(conv.bias.detach().double(), "stem_bias"))
    return g.nchw(g.cast(y, "float32"))  # (N, Ho, Wo, O) -> (N, O, Ho, Wo)


def _linear(g: _Graph, x: str, fc: nn.Linear) -> str:
    inputs = [x, g.const(fc.weight.detach().float(), "fc_weight")]
    if fc.bias is not None:
        inputs.append(g.const(fc.bias.detach().float(), "fc_bias"))
    return g.op("Gemm", *inputs, transB=1)


def _batch_norm(g: _Graph, x: str, norm: nn.modules.batchnorm._BatchNorm) -> str:
    channels = norm.num_features
    weight = norm.weight.detach() if norm.weight is not None else torch.ones(channels)
    bias = norm.bias.detach() if norm.bias is not None else torch.zeros(channels)
    return g.op("BatchNormalization", x, g.const(weight.float()), g.const(bias.float()),
                g.const(norm.running_mean.float()), g.const(norm.running_var.float()), epsilon=float(norm.eps))


def _module(g: _Graph, module: nn.Module, x: str) -> str:
    """Append ``module``'s forward on ``x`` (the tensor PyTorch would hand it) and return its output."""
    from ..quant.modules import (
        AdderUnit,
        FloatConvStem,
        FloatLinearHead,
        Int8ConvStem,
        PooledEpilogue,
        QuantizedAdder2d,
        QuantizeInput,
    )
    from ..quant.networks import (
        ChannelsFirst,
        MaxPoolUint8,
        QuantizedBasicBlock,
        QuantizedBottleneck,
        QuantizedChain,
        QuantizedResNet,
    )

    if isinstance(module, QuantizedResNet):
        x = _module(g, module.stem, x)
        for i in range(module.num_stages):
            x = _module(g, getattr(module, f"layer{i + 1}"), x)
        return _module(g, module.head, x)
    if isinstance(module, QuantizedChain):
        x = g.op("Flatten", _module(g, module.steps, x), axis=1)
        return _module(g, module.classifier, x) if module.classifier is not None else x
    if isinstance(module, nn.Sequential):
        for child in module:
            x = _module(g, child, x)
        return x
    if isinstance(module, (QuantizedBasicBlock, QuantizedBottleneck)):
        identity = x if module.downsample is None else _adder(g, module.downsample, x)
        layers = [module.conv1, module.conv2] + ([module.conv3] if isinstance(module, QuantizedBottleneck) else [])
        for layer in layers[:-1]:
            x = _adder(g, layer, x)
        out = _adder(g, layers[-1], x, residual=identity)
        return g.op("Relu", out) if layers[-1].output == "float32" else out
    if isinstance(module, QuantizedAdder2d):
        if module.residual:
            raise ExportError("a QuantizedAdder2d with a residual outside a residual block cannot be exported")
        return _adder(g, module, x)
    if isinstance(module, PooledEpilogue):  # max-pool of -(s S + C) + b = min-pool of S, then the epilogue
        pooled = g.op("Neg", _max_pool_nhwc(g, g.op("Neg", g.cast(x, "float32")), module.pool, "float32"))
        return _epilogue(g, pooled, module.scale, module.bias, module.output, module.qmin, module.qmax)
    if isinstance(module, QuantizeInput):
        return _quantize(g, x, module.scale, module.zero_point)
    if isinstance(module, FloatConvStem):
        y = _conv_float64(g, x, module.conv)
        if module.relu and (module.pool is not None or module.quant.zero_point != 0):
            y = g.op("Relu", y)
        if module.pool is not None:
            y = _module(g, module.pool, y)
        return _quantize(g, y, module.quant.scale, module.quant.zero_point)
    if isinstance(module, AdderUnit):
        raise ExportError("ONNX export of integer models covers the resnet and chain layouts; this model was "
                          "quantized with the generic layout (AdderUnit layers)")
    if isinstance(module, Int8ConvStem):
        raise ExportError("ONNX export of an int8 stem (quantize --stem int8) is not supported; quantize with "
                          "--stem fp32")
    if isinstance(module, FloatLinearHead):
        y = g.op("Relu", x) if module.relu else x
        return _linear(g, g.op("ReduceMean", y, axes=[1, 2], keepdims=0), module.fc)  # (N, H, W, C) -> (N, C)
    if isinstance(module, MaxPoolUint8):
        return _max_pool_nhwc(g, x, module.kwargs, "uint8")
    if isinstance(module, ChannelsFirst):
        return g.nchw(x)
    return _float_module(g, module, x)


_ACTIVATIONS: dict[type, Callable[[_Graph, str], str]] = {
    nn.ReLU: lambda g, x: g.op("Relu", x),
    nn.Sigmoid: lambda g, x: g.op("Sigmoid", x),
    nn.Tanh: lambda g, x: g.op("Tanh", x),
}


def _float_module(g: _Graph, module: nn.Module, x: str) -> str:
    """The float layers an integer chain keeps around its integer steps."""
    if type(module) in _ACTIVATIONS:
        return _ACTIVATIONS[type(module)](g, x)
    if isinstance(module, (nn.Identity, nn.Dropout)):
        return x
    if isinstance(module, nn.Flatten):
        if module.start_dim != 1 or module.end_dim != -1:
            raise ExportError("ONNX export of integer models supports nn.Flatten(1, -1) only")
        return g.op("Flatten", x, axis=1)
    if isinstance(module, nn.MaxPool2d):
        return _max_pool(g, x, _pool_args(module))
    if isinstance(module, nn.Conv2d):
        return _conv(g, x, module)
    if isinstance(module, nn.Linear):
        return _linear(g, x, module)
    if isinstance(module, nn.modules.batchnorm._BatchNorm):
        return _batch_norm(g, x, module)
    raise ExportError(f"ONNX export of integer models does not support {type(module).__name__} layers")


def _adder_input_sizes(model: nn.Module, input_shape: tuple[int, int, int]) -> dict[int, tuple[int, int]]:
    """(H, W) of every integer adder layer's input, from one forward pass on a zero image."""
    from ..quant.modules import QuantizedAdder2d
    from ..quant.plan import plans_disabled

    sizes: dict[int, tuple[int, int]] = {}

    def record(module: nn.Module, args: tuple) -> None:
        sizes[id(module)] = tuple(args[0].shape[1:3])  # (N, H, W, C)

    hooks = [m.register_forward_pre_hook(record) for m in model.modules() if isinstance(m, QuantizedAdder2d)]
    try:
        with torch.no_grad(), plans_disabled():  # module by module, so that the hooks see every layer
            model(torch.zeros(1, *input_shape))
    except Exception as exc:  # a wrong input size fails in the model's own layers
        raise ExportError(f"the integer model does not run on inputs of size {tuple(input_shape)}: "
                          f"{type(exc).__name__}: {' '.join(str(exc).split())[:200]}") from None
    finally:
        for hook in hooks:
            hook.remove()
    return sizes


def build_integer_graph(model: nn.Module, input_shape: tuple[int, int, int], opset: int = 17,
                        accumulator: str | None = None) -> Any:
    """The ``onnx.ModelProto`` of integer ``model`` for float inputs (batch, *input_shape), dynamic batch axis.

    ``accumulator``: ``"float32"`` or ``"int32"`` sums of absolute differences (default: float32 where it is exact,
    see :func:`sad_accumulator`).
    """
    from onnx import TensorProto, helper

    if opset < MIN_INTEGER_OPSET:
        raise ExportError(f"ONNX export of integer models needs opset >= {MIN_INTEGER_OPSET}, got {opset}")
    if accumulator not in (None, "float32", "int32"):
        raise ExportError(f"accumulator must be float32 or int32, got {accumulator!r}")
    g = _Graph(opset, accumulator, _adder_input_sizes(model, input_shape), input_shape[1:])
    logits = _module(g, model, "input")
    g.nodes.append(helper.make_node("Identity", [logits], ["logits"]))
    graph = helper.make_graph(
        g.nodes, "frugalvision_integer",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", *input_shape])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", None])], g.initializers)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], producer_name="frugalvision")


def export_integer_onnx(model: nn.Module, path: str | Path, input_shape: tuple[int, int, int], opset: int = 17, *,
                        accumulator: str | None = None, example: torch.Tensor | None = None,
                        tolerance: float | None = None) -> dict[str, float] | None:
    """Write integer ``model`` as an ONNX file in the standard operator set (atomic: a failure leaves nothing).

    The graph is checked with ``onnx.checker`` (full check, shapes included). With ``example`` images (N, C, H, W),
    onnxruntime runs the file before it is put in place and :func:`compare_with_onnxruntime`'s numbers are returned;
    with ``tolerance`` too, a relative error above it or a different predicted class is an ``ExportError``.
    """
    try:
        import onnx
    except ImportError:
        raise ExportError("ONNX export needs the optional dependencies: pip install 'frugalvision[export]'") from None
    proto = build_integer_graph(model, tuple(int(v) for v in input_shape), opset, accumulator)
    try:
        onnx.checker.check_model(proto, full_check=True)
    except onnx.checker.ValidationError as exc:
        raise ExportError(f"the exported integer graph is not valid ONNX: {' '.join(str(exc).split())[:300]}") \
            from None
    path = Path(path)
    handle, tmp_name = tempfile.mkstemp(suffix=".onnx", prefix=f".{path.stem}-", dir=path.parent)
    os.close(handle)
    try:
        onnx.save(proto, tmp_name)
        report = compare_with_onnxruntime(tmp_name, model, example) if example is not None else None
        if report is not None and tolerance is not None and (
                report["relative_error"] > tolerance or report["argmax_agreement"] < 1.0):
            raise ExportError(f"the ONNX graph differs from the integer model: relative error "
                              f"{report['relative_error']:.2e} (tolerance {tolerance:g}), same class on "
                              f"{report['argmax_agreement']:.0%} of the examples")
        os.replace(tmp_name, path)
        return report
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)


def onnx_session(path: str | Path, threads: int | None = None) -> Any:
    """An onnxruntime CPU session of ``path`` (``threads``: intra-op threads, spinning off)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    if threads is not None:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def compare_with_onnxruntime(path: str | Path, model: nn.Module, images: torch.Tensor, batch_size: int = 250
                             ) -> dict[str, float]:
    """Run ``images`` (N, C, H, W) through the ONNX file and ``model``: ``relative_error`` (max |onnx - model| /
    max |model| of the logits), ``worst_row_relative_error`` (the same per image, the largest) and
    ``argmax_agreement`` (fraction of images with the same predicted class)."""
    session = onnx_session(path)
    name = session.get_inputs()[0].name
    onnx_logits, logits = [], []
    with torch.no_grad():
        for batch in images.split(batch_size):
            onnx_logits.append(torch.from_numpy(session.run(None, {name: batch.float().numpy()})[0]))
            logits.append(model(batch).float())
    onnx_out, out = torch.cat(onnx_logits), torch.cat(logits)
    diff = (onnx_out - out).abs()
    rows = diff.amax(1) / out.abs().amax(1).clamp_min(1e-12)
    return {"relative_error": float(diff.max() / out.abs().max().clamp_min(1e-12)),
            "worst_row_relative_error": float(rows.max()),
            "argmax_agreement": float((onnx_out.argmax(1) == out.argmax(1)).float().mean()),
            "num_images": out.shape[0]}
