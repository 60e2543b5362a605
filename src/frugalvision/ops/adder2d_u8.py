"""``frugalvision::adder2d_u8``: the integer AdderNet operator on unsigned bytes, registered with ``torch.library``.

AdderNet (Chen et al., CVPR 2020, arXiv 1912.13200) Eq. 2, ``Y = -sum |X - W|``, evaluated on values quantized
with ONE scale ``s`` and ONE zero point ``z`` shared by a layer's activations and weights,
``q(v) = clamp(round(v / s) + z, 0, 255)``: then ``|q(x) - q(w)| ~= |x - w| / s`` (``z`` cancels), so the layer is
a sum of absolute differences of bytes, which x86 CPUs compute with ``vpsadbw``. Padding means ``x = 0``, i.e. the
byte ``z``.

Definitions (``Xq_pad`` = ``input_q`` padded with the byte ``zero_point``, ``g = o // (O/G)``)::

    S[n,h,w,o] = sum_{i,j,c} |Xq_pad[n, h*s_h + i*d_h, w*s_w + j*d_w, g*Cg + c] - Wq[o, c, i, j]|      (int32)
    "int32":   S
    "float32": y = float32(S) * scale[o] + bias[o] (+ (float32(residual) - residual_zero_point) * residual_scale)
    "uint8":   clamp(round_half_to_even(y), qmin, qmax)

The op has no gradient (``scale`` and ``bias`` are used detached). The float32 expression is evaluated one rounded
operation at a time (no fused multiply-add), so that a plain PyTorch evaluation is bit-identical: every backend
equals the executable spec :func:`frugalvision.ops.reference.adder2d_u8_reference` exactly (tested).

Backends (registered in :mod:`.backends`, forceable with ``use_backend(name)`` / ``FRUGALVISION_BACKEND``):
``sad512`` (AVX-512BW), ``sad256`` (AVX2), ``portable`` (generic LLVM vector code, any CPU numba supports), see
:mod:`.cpu.adder_u8_numba`; and ``torch``, the plain-PyTorch fallback of :mod:`.adder_torch`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from ..errors import InputError, InputTypeError
from .cost import NORM, WEIGHT_LAYER, register_cost
from .dispatch import select
from .utils import conv_output_size, to_pair

__all__ = [
    "ADDER_U8_OP",
    "OUTPUTS",
    "PackedAdderWeight",
    "adder2d_u8",
    "adder2d_u8_cost",
    "pack_adder_weight_u8",
]

ADDER_U8_OP = "adder2d_u8"
OUTPUTS = ("int32", "float32", "uint8")
_STEP = 8  # bytes of the reduction axis per SAD lane
_DEVICES = ("cpu", "meta")  # the kernels run on the CPU; meta tensors carry shapes for count_ops
_LANES = 8  # output channels per packed row


def _fail(message: str, error: type[Exception] = InputError) -> None:
    raise error(f"adder2d_u8: {message}")


# --------------------------------------------------------------------------------------------------------------
# Packed weights


def _pack(weight_q: Tensor, groups: int) -> Tensor:
    """uint8 (O, C/G, kh, kw) -> uint8 (G, B, S, 8, 8), ``B = ceil(O/G / 8)``, ``S = ceil(K / 8)``,
    ``K = kh * kw * C/G`` ordered (i, j, c): ``packed[g, b, t, l, e] = Wq[g*O/G + 8b + l, k = 8t + e]`` (zero where
    the channel or ``k`` is padding; ``|0 - 0| = 0``)."""
    out_channels, cg, kh, kw = weight_q.shape
    og = out_channels // groups
    k = kh * kw * cg
    blocks, steps = -(-og // _LANES), -(-k // _STEP)
    padded = weight_q.new_zeros((groups, blocks * _LANES, steps * _STEP))
    # (O, Cg, kh, kw) -> (G, Og, kh, kw, Cg) -> (G, Og, K), K ordered (i, j, c) like the patch rows
    padded[:, :og, :k] = weight_q.view(groups, og, cg, kh, kw).permute(0, 1, 3, 4, 2).reshape(groups, og, k)
    # (G, B*8, S*8) -> (G, B, 8, S, 8) -> (G, B, S, 8, 8): each step of 8 bytes holds 8 channels side by side
    return padded.view(groups, blocks, _LANES, steps, _STEP).permute(0, 1, 3, 2, 4).contiguous()


@dataclass
class PackedAdderWeight:
    """uint8 adder weights in the kernels' layout (see :func:`pack_adder_weight_u8`).

    Attributes:
        data: uint8 (G, ceil(O/G / 8), ceil(K / 8), 8, 8) with ``K = kh * kw * C/G`` ordered (i, j, c):
            ``data[g, b, t, l, e] = Wq[g*O/G + 8b + l, c, i, j]`` for ``8t + e = (i*kw + j) * C/G + c``, zero
            where the channel or the reduction index is padding. One 64-byte row holds 8 output channels x 8
            reduction bytes, so that one SAD instruction serves 8 output channels.
        kernel_size, groups, in_channels, out_channels: the layer's geometry.
    """

    data: Tensor
    kernel_size: tuple[int, int]
    groups: int
    in_channels: int
    out_channels: int

    def unpack(self) -> Tensor:
        """The uint8 (O, C/G, kh, kw) weights."""
        groups, cg, (kh, kw) = self.groups, self.in_channels // self.groups, self.kernel_size
        og = self.out_channels // groups
        blocks, steps = self.data.shape[1], self.data.shape[2]
        # (G, B, S, 8, 8) -> (G, B, 8, S, 8) -> (G, B*8, S*8) -> (G, Og, kh, kw, Cg) -> (O, Cg, kh, kw)
        rows = self.data.permute(0, 1, 3, 2, 4).reshape(groups, blocks * _LANES, steps * _STEP)
        return rows[:, :og, : kh * kw * cg].reshape(groups, og, kh, kw, cg).permute(0, 1, 4, 2, 3).reshape(
            self.out_channels, cg, kh, kw
        )


def pack_adder_weight_u8(weight_q: Tensor, groups: int = 1) -> PackedAdderWeight:
    """Pack uint8 adder weights (O, C/G, kh, kw) (quantized with the layer's shared scale and zero point)."""
    if not isinstance(weight_q, Tensor) or weight_q.dtype != torch.uint8 or weight_q.dim() != 4:
        got = f"{weight_q.dtype} {tuple(weight_q.shape)}" if isinstance(weight_q, Tensor) else type(weight_q).__name__
        _fail(f"weight_q must be a uint8 (O, C/G, kh, kw) tensor, got {got}", InputTypeError)
    if weight_q.device.type not in _DEVICES:
        _fail(f"weight_q must be on the CPU, got {weight_q.device}")
    if not isinstance(groups, int) or groups < 1 or weight_q.shape[0] % groups:
        _fail(f"groups={groups} must be a positive divisor of out_channels={weight_q.shape[0]}")
    out_channels, cg, kh, kw = weight_q.shape
    return PackedAdderWeight(_pack(weight_q.detach().contiguous(), groups), (kh, kw), groups, cg * groups,
                             out_channels)


# --------------------------------------------------------------------------------------------------------------
# Backends (registered in .backends): what a CPU uint8 kernel accepts


def cpu_uint8_rejects(*tensors: Tensor) -> str | None:
    """Why a CPU uint8 kernel cannot run these tensors (input, packed weight), or ``None``."""
    for t in tensors:
        if t.device.type != "cpu":
            return f"CPU kernels, got a tensor on {t.device}"
        if t.dtype != torch.uint8:
            return f"uint8 kernels, got {t.dtype}"
    return None


# --------------------------------------------------------------------------------------------------------------
# Registered op


def _output_dtype(output: str) -> torch.dtype:
    return {"int32": torch.int32, "float32": torch.float32, "uint8": torch.uint8}[output]


def _output_shape(input_q: Tensor, out_channels: int, kernel_size, stride, padding, dilation) -> tuple[int, ...]:
    h_out, w_out = conv_output_size(input_q.shape[1], input_q.shape[2], tuple(kernel_size), tuple(stride),
                                    tuple(padding), tuple(dilation))
    return input_q.shape[0], h_out, w_out, out_channels


# Defined with torch.library's define / impl / register_fake rather than the custom_op decorator: the op needs no
# autograd (uint8 in, integer or requantized out), and custom_op's Python autograd and dynamo-disable layers cost
# 0.07-0.16 ms per call on the ResNet-20 stage-1 layer (measured against this registration: a fifth of the layer),
# while the C++ dispatcher calls this CPU kernel directly. torch.compile, opcheck and count_ops work the same.
_LIBRARY = torch.library.Library("frugalvision", "FRAGMENT")
_LIBRARY.define(
    "adder2d_u8(Tensor input_q, Tensor weight_data, int out_channels, int[2] kernel_size, int[2] stride, "
    "int[2] padding, int[2] dilation, int zero_point, Tensor? scale, Tensor? bias, Tensor? residual, "
    "int residual_zero_point, float residual_scale, str output, int qmin, int qmax) -> Tensor"
)


def _adder2d_u8_cpu(input_q, weight_data, out_channels, kernel_size, stride, padding, dilation, zero_point, scale,
                    bias, residual, residual_zero_point, residual_scale, output, qmin, qmax) -> Tensor:
    backend = select(ADDER_U8_OP, input_q, weight_data)
    return backend.kernels["forward"](
        input_q, weight_data, out_channels, tuple(kernel_size), tuple(stride), tuple(padding), tuple(dilation),
        zero_point, scale, bias, residual, residual_zero_point, residual_scale, output, qmin, qmax,
    )


_LIBRARY.impl("adder2d_u8", _adder2d_u8_cpu, "CPU")


@torch.library.register_fake("frugalvision::adder2d_u8")
def _(input_q, weight_data, out_channels, kernel_size, stride, padding, dilation, zero_point, scale, bias, residual,
      residual_zero_point, residual_scale, output, qmin, qmax):
    shape = _output_shape(input_q, out_channels, kernel_size, stride, padding, dilation)
    return input_q.new_empty(shape, dtype=_output_dtype(output))


def adder2d_u8_cost(input_shape: Sequence[int], out_channels: int, kernel_size: int | Sequence[int], groups: int = 1,
                    stride: int | Sequence[int] = 1, padding: int | Sequence[int] = 0,
                    dilation: int | Sequence[int] = 1, output: str = "int32",
                    residual: bool = False) -> dict[str, int]:
    """Arithmetic of one ``adder2d_u8`` call on an (N, H, W, C) input.

    ``abs_diff``: the |a - b| terms, ``N * Ho * Wo * O * (C/G) * kh * kw``. ``add``: two per term (the subtraction
    and the accumulation, as :mod:`.adder2d` counts AdderNet layers) plus the epilogue's additions; ``mul``: the
    epilogue's multiplications. The float32 and uint8 outputs apply ``scale`` and ``bias`` (one multiplication and
    one addition per output), a residual one subtraction, one multiplication and one addition more; rounding and
    clamping are not counted; the int32 output has no epilogue.
    """
    n, height, width, channels = (int(v) for v in input_shape)
    kh, kw = to_pair(kernel_size, ADDER_U8_OP, "kernel_size")
    pairs = [to_pair(v, ADDER_U8_OP, name) for v, name in ((stride, "stride"), (padding, "padding"),
                                                           (dilation, "dilation"))]
    h_out, w_out = conv_output_size(height, width, (kh, kw), *pairs)
    outputs = n * h_out * w_out * out_channels
    terms = outputs * (channels // groups) * kh * kw
    epilogue_mul = epilogue_add = 0
    if output != "int32":
        epilogue_mul, epilogue_add = outputs, outputs
        if residual:
            epilogue_mul, epilogue_add = epilogue_mul + outputs, epilogue_add + 2 * outputs
    return {"abs_diff": terms, "add": 2 * terms + epilogue_add, "mul": epilogue_mul}


def _adder2d_u8_count(args, kwargs, out, module) -> list[tuple[str, dict[str, object]]]:
    """count_ops formula (:mod:`.cost`): :func:`adder2d_u8_cost` of the call, as two records: the layer's int8
    additions (two per |a - b| term) and, when there is one, the float32 requantisation epilogue, counted like an
    inference BatchNorm (kind ``norm``: the paper convention leaves it out, as it leaves BatchNorm out)."""
    input_q, weight_data, out_channels, kernel_size, stride, padding, dilation = args[:7]
    output, residual = args[13], args[10]
    cost = adder2d_u8_cost(input_q.shape, out_channels, kernel_size, weight_data.shape[0], stride, padding, dilation,
                           output, residual is not None)
    records = [(WEIGHT_LAYER, {"add": 2 * cost["abs_diff"], "precision": "int8"})]
    if cost["mul"]:
        records.append((NORM, {"mul": cost["mul"], "add": cost["add"] - 2 * cost["abs_diff"], "precision": "fp32"}))
    return records


register_cost(torch.ops.frugalvision.adder2d_u8.default, _adder2d_u8_count)


# --------------------------------------------------------------------------------------------------------------
# Public functional API


def _check_byte(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 255:
        _fail(f"{name} must be an int in 0..255, got {value!r}")
    return value


def _check_vector(t: Tensor | None, name: str, out_channels: int) -> None:
    if t is None:
        return
    if not isinstance(t, Tensor) or t.dtype != torch.float32 or tuple(t.shape) != (out_channels,):
        got = f"{t.dtype} {tuple(t.shape)}" if isinstance(t, Tensor) else type(t).__name__
        _fail(f"{name} must be a float32 ({out_channels},) tensor, got {got}", InputTypeError)
    if t.device.type not in _DEVICES:
        _fail(f"{name} must be on the CPU, got {t.device}")


def adder2d_u8(
    input_q: Tensor,
    weight: PackedAdderWeight | Tensor,
    stride: int | Sequence[int] = 1,
    padding: int | Sequence[int] = 0,
    dilation: int | Sequence[int] = 1,
    *,
    zero_point: int,
    scale: Tensor | None = None,
    bias: Tensor | None = None,
    residual: Tensor | None = None,
    residual_zero_point: int = 0,
    residual_scale: float = 0.0,
    output: str = "int32",
    qmin: int = 0,
    qmax: int = 255,
    groups: int | None = None,
) -> Tensor:
    """Integer AdderNet layer (module docstring): sums of absolute byte differences, optionally requantized.

    Args:
        input_q: uint8 (N, H, W, C), contiguous (channels last), quantized with the layer's shared scale and
            ``zero_point``.
        weight: a :class:`PackedAdderWeight` (fast), or a uint8 (O, C/G, kh, kw) tensor packed on every call
            (then ``groups`` gives G).
        zero_point: the shared zero point; padding holds this byte (x = 0).
        scale, bias: float32 (O,); ``scale`` is required for the float32 and uint8 outputs, a missing ``bias`` is 0.
        residual: uint8 (N, Ho, Wo, O) added as ``(float32(residual) - residual_zero_point) * residual_scale``.
        output: ``"int32"`` (S), ``"float32"`` (y) or ``"uint8"`` (``clamp(round(y), qmin, qmax)``).

    Returns:
        (N, Ho, Wo, O), channels last, of the output dtype.
    """
    if isinstance(weight, Tensor):
        weight = pack_adder_weight_u8(weight, 1 if groups is None else groups)
    elif not isinstance(weight, PackedAdderWeight):
        _fail(f"weight must be a PackedAdderWeight or a uint8 tensor, got {type(weight).__name__}", InputTypeError)
    elif groups is not None and groups != weight.groups:
        _fail(f"groups={groups} disagrees with the packed weight's groups={weight.groups}")
    if not isinstance(input_q, Tensor) or input_q.dtype != torch.uint8 or input_q.dim() != 4:
        got = f"{input_q.dtype} {tuple(input_q.shape)}" if isinstance(input_q, Tensor) else type(input_q).__name__
        _fail(f"input_q must be a uint8 (N, H, W, C) tensor, got {got}", InputTypeError)
    if input_q.device.type not in _DEVICES:
        _fail(f"input_q must be on the CPU, got {input_q.device}")
    if not input_q.is_contiguous():
        _fail("input_q must be contiguous (N, H, W, C); call .contiguous() (an NCHW tensor needs "
              ".permute(0, 2, 3, 1).contiguous())")
    if input_q.shape[3] != weight.in_channels:
        _fail(f"input_q has {input_q.shape[3]} channels (last dim) but the weight expects {weight.in_channels}")
    stride, padding, dilation = (to_pair(v, ADDER_U8_OP, name) for v, name in
                                 ((stride, "stride"), (padding, "padding"), (dilation, "dilation")))
    if min(stride) < 1 or min(dilation) < 1 or min(padding) < 0:
        _fail(f"need stride >= 1, dilation >= 1, padding >= 0; got {stride}, {dilation}, {padding}")
    shape = _output_shape(input_q, weight.out_channels, weight.kernel_size, stride, padding, dilation)
    if shape[1] < 1 or shape[2] < 1:
        _fail(f"kernel {weight.kernel_size} (dilation {dilation}) does not fit input {tuple(input_q.shape[1:3])} "
              f"with padding {padding}")
    _check_byte(zero_point, "zero_point")
    if output not in OUTPUTS:
        _fail(f"output must be one of {', '.join(OUTPUTS)}, got {output!r}")
    if output == "int32":
        if any(v is not None for v in (scale, bias, residual)):
            _fail('scale, bias and residual need output="float32" or "uint8"')
    elif scale is None:
        _fail(f'output="{output}" needs a scale')
    _check_vector(scale, "scale", weight.out_channels)
    _check_vector(bias, "bias", weight.out_channels)
    if residual is not None:
        if not isinstance(residual, Tensor) or residual.dtype != torch.uint8 or tuple(residual.shape) != shape:
            got = f"{residual.dtype} {tuple(residual.shape)}" if isinstance(residual, Tensor) else type(residual)
            _fail(f"residual must be a uint8 {shape} tensor (the output's shape), got {got}", InputTypeError)
        if not residual.is_contiguous() or residual.device.type not in _DEVICES:
            _fail("residual must be a contiguous CPU tensor")
    _check_byte(residual_zero_point, "residual_zero_point")
    if not isinstance(residual_scale, (int, float)) or not math.isfinite(residual_scale):
        _fail(f"residual_scale must be a finite float, got {residual_scale!r}")
    _check_byte(qmin, "qmin")
    _check_byte(qmax, "qmax")
    if qmin > qmax:
        _fail(f"qmin={qmin} > qmax={qmax}")
    scale, bias = (None if t is None else t.detach() for t in (scale, bias))  # the op has no gradient
    return torch.ops.frugalvision.adder2d_u8(
        input_q, weight.data, weight.out_channels, list(weight.kernel_size), list(stride), list(padding),
        list(dilation), zero_point, scale, bias, residual, residual_zero_point, float(residual_scale), output, qmin,
        qmax,
    )
