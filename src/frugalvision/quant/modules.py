"""Modules of an integer AdderNet: uint8 channels-last activations between adder layers, float at the edges.

Tensors between integer layers are uint8 (N, H, W, C), contiguous (channels last, the reduction order of the SAD
kernels). :class:`QuantizeInput` enters that domain from float NCHW, :class:`QuantizedAdder2d` runs the integer op
``frugalvision::adder2d_u8`` with its fused epilogue (BatchNorm, residual, ReLU, requantisation; see
:mod:`.fold`), and the float stem / head modules do the multiplicative first and last layers in fp32.

Every number a module needs is a buffer (uint8 weights, float32 per-channel multipliers, the zero points and clamp
bounds as a small float64 ``qconfig`` vector), so ``state_dict`` / safetensors hold the whole integer model; Python
copies of the scalars are refreshed after ``load_state_dict``. The modules are inference only: ``train(True)``
raises.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import InputError
from ..ops import PackedAdderWeight, adder2d_u8, pack_adder_weight_u8, quantize_u8_nhwc, quantize_u8_nhwc_eager
from ..ops.adder2d_u8 import OUTPUTS
from ..ops.adder2d_u8_epilogue import adder_u8_epilogue
from .fold import QMAX, QParams

__all__ = [
    "AdderUnit",
    "FloatConvStem",
    "FloatLinearHead",
    "InferenceOnly",
    "Int8ConvStem",
    "PlannedForward",
    "PooledEpilogue",
    "QuantizeInput",
    "QuantizedAdder2d",
    "max_pool_nhwc",
    "weight_count",
]

_INTEGER_WEIGHTS = ("weight_q", "weight_int8")  # buffers that are a layer's weights in an integer model


def weight_count(model: nn.Module) -> int:
    """Number of weights of an integer model: its uint8 / int8 weight buffers (and the int8 stem's folded bias)
    plus its float parameters (fp32 stem and classifier). ``sum(p.numel() for p in model.parameters())`` misses the
    integer layers, whose weights are buffers."""
    total = sum(p.numel() for p in model.parameters())
    for module in model.modules():
        total += sum(b.numel() for name, b in module.named_buffers(recurse=False) if name in _INTEGER_WEIGHTS)
        if isinstance(module, Int8ConvStem):
            total += module.bias.numel()
    return total


class InferenceOnly(nn.Module):
    """Base of the integer modules: eval mode only, no gradients."""

    def train(self, mode: bool = True) -> InferenceOnly:
        if mode:
            raise InputError("quantized frugalvision models are inference only; train the float model instead")
        return super().train(False)


class PlannedForward(InferenceOnly):
    """An integer network whose ``forward`` runs its compiled plan (:mod:`frugalvision.quant.plan`, which sets
    ``planner``) where it can, else ``forward_modules``, its modules one by one."""

    planner: Callable[[nn.Module, Tensor], Tensor | None] | None = None

    def forward(self, x: Tensor) -> Tensor:
        if PlannedForward.planner is not None and (out := PlannedForward.planner(self, x)) is not None:
            return out
        return self.forward_modules(x)

    def forward_modules(self, x: Tensor) -> Tensor:
        """The forward through the modules one by one; every integer network defines it (abstract here)."""
        raise NotImplementedError(f"{type(self).__name__} must define forward_modules")

    def __getstate__(self) -> dict:
        """Copies leave the compiled plan out (it refers to this module's submodules and buffers); the copy
        compiles its own on its first forward."""
        state = self.__dict__.copy()
        state.pop("_integer_plan", None)
        return state


def _scalars(module: nn.Module, names: Sequence[str]) -> None:
    for name, value in zip(names, module.qconfig.tolist()):
        setattr(module, name, value)


class QuantizeInput(InferenceOnly):
    """float (N, C, H, W) -> uint8 (N, H, W, C) contiguous: ``clamp(round(x / scale) + zero_point, 0, 255)``."""

    _SCALARS = ("scale", "zero_point")

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("qconfig", torch.tensor([1.0, 0.0], dtype=torch.float64))
        self.register_load_state_dict_post_hook(lambda module, _: module._refresh())
        self._refresh()

    def _refresh(self) -> None:
        _scalars(self, self._SCALARS)
        self.zero_point = int(self.zero_point)

    def set_qparams(self, qparams: QParams) -> None:
        self.qconfig.copy_(torch.tensor([qparams.scale, qparams.zero_point], dtype=torch.float64))
        self._refresh()

    @property
    def qparams(self) -> QParams:
        return QParams(self.scale, self.zero_point)

    def forward(self, x: Tensor) -> Tensor:
        return quantize_u8_nhwc(x, self.scale, self.zero_point)  # (N, H, W, C), contiguous

    def forward_eager(self, x: Tensor) -> Tensor:
        """``forward`` without the ``torch.library`` op around it (~10 us less per call; compiled plans)."""
        return quantize_u8_nhwc_eager(x, self.scale, self.zero_point)


class QuantizedAdder2d(InferenceOnly):
    """Integer adder layer: ``frugalvision::adder2d_u8`` on uint8 (N, H, W, C) input with a fused epilogue.

    Args:
        geometry: as :class:`frugalvision.layers.Adder2d`.
        output: ``"uint8"`` (requantised input of the next layer, clamped to ``[qmin, qmax]``), ``"float32"``
            (the BatchNorm output ``y``) or ``"int32"`` (the raw sums, when a max-pool comes before the BatchNorm).
        residual: whether ``forward`` takes a uint8 residual to add before the clamp.

    Buffers: ``weight_q`` uint8 (O, C/G, kh, kw) sharing the input's scale and zero point; ``scale`` and ``bias``
    float32 (O,) the folded affine map (:func:`frugalvision.quant.fold.fold_adder_affine`); ``qconfig`` float64
    [zero_point, qmin, qmax, residual_zero_point, residual_scale].
    """

    _SCALARS = ("zero_point", "qmin", "qmax", "residual_zero_point", "residual_scale")

    def __init__(self, in_channels: int, out_channels: int, kernel_size: tuple[int, int],
                 stride: tuple[int, int] = (1, 1), padding: tuple[int, int] = (0, 0),
                 dilation: tuple[int, int] = (1, 1), groups: int = 1, *, output: str = "uint8",
                 residual: bool = False) -> None:
        super().__init__()
        if output not in OUTPUTS:
            raise ValueError(f"output must be one of {', '.join(OUTPUTS)}, got {output!r}")
        self.in_channels, self.out_channels, self.groups = in_channels, out_channels, groups
        self.kernel_size, self.stride = tuple(kernel_size), tuple(stride)
        self.padding, self.dilation = tuple(padding), tuple(dilation)
        self.output, self.residual = output, residual
        weight = torch.zeros(out_channels, in_channels // groups, *self.kernel_size, dtype=torch.uint8)
        self.register_buffer("weight_q", weight)
        self.register_buffer("scale", torch.zeros(out_channels))
        self.register_buffer("bias", torch.zeros(out_channels))
        self.register_buffer("qconfig", torch.tensor([0.0, 0.0, QMAX, 0.0, 0.0], dtype=torch.float64))
        self.register_buffer("weight_packed", torch.zeros(0, dtype=torch.uint8), persistent=False)
        self.register_load_state_dict_post_hook(lambda module, _: module._refresh())
        self._refresh()

    def _refresh(self) -> None:
        _scalars(self, self._SCALARS)
        self.zero_point, self.qmin, self.qmax = int(self.zero_point), int(self.qmin), int(self.qmax)
        self.residual_zero_point = int(self.residual_zero_point)
        self.weight_packed = pack_adder_weight_u8(self.weight_q, self.groups).data
        self._packed = PackedAdderWeight(self.weight_packed, self.kernel_size, self.groups, self.in_channels,
                                         self.out_channels)

    def set_weight(self, weight_q: Tensor, zero_point: int) -> None:
        """uint8 weights (O, C/G, kh, kw) on the input's grid, whose zero point is ``zero_point``."""
        self.weight_q.copy_(weight_q)
        self.qconfig[0] = zero_point
        self._refresh()

    def set_epilogue(self, scale: Tensor, bias: Tensor, qmin: int = 0, qmax: int = QMAX,
                     residual_zero_point: int = 0, residual_scale: float = 0.0) -> None:
        self.scale.copy_(scale.float())
        self.bias.copy_(bias.float())
        self.qconfig[1:] = torch.tensor([qmin, qmax, residual_zero_point, residual_scale], dtype=torch.float64)
        self._refresh()

    @property
    def packed_weight(self) -> PackedAdderWeight:
        """The weights in the kernels' layout (rebuilt if the buffer was replaced, e.g. by ``module.to``)."""
        if self._packed.data is not self.weight_packed:
            self._packed = PackedAdderWeight(self.weight_packed, self.kernel_size, self.groups, self.in_channels,
                                             self.out_channels)
        return self._packed

    def forward(self, x: Tensor, residual: Tensor | None = None) -> Tensor:
        if (residual is not None) != self.residual:
            raise InputError(f"QuantizedAdder2d: residual {'expected' if self.residual else 'not expected'}")
        if self.output == "int32":
            return adder2d_u8(x, self.packed_weight, self.stride, self.padding, self.dilation,
                              zero_point=self.zero_point)
        return adder2d_u8(
            x, self.packed_weight, self.stride, self.padding, self.dilation, zero_point=self.zero_point,
            scale=self.scale, bias=self.bias, residual=residual, residual_zero_point=self.residual_zero_point,
            residual_scale=self.residual_scale, output=self.output, qmin=self.qmin, qmax=self.qmax,
        )

    def extra_repr(self) -> str:
        options = {"stride": (self.stride, None), "padding": (self.padding, (0, 0)),
                   "dilation": (self.dilation, (1, 1)), "groups": (self.groups, 1)}  # name: (value, default)
        shown = [f"{k}={v}" for k, (v, default) in options.items() if v != default]
        return ", ".join([f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}", *shown,
                          f"output={self.output}", *(["residual"] if self.residual else [])])


def _pair_of(value: int | tuple[int, ...]) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else (int(value[0]), int(value[1]))


def max_pool_nhwc(x: Tensor, pool: nn.MaxPool2d | dict) -> Tensor:
    """Max-pool a (N, H, W, C) tensor with ``pool``'s geometry; uint8 stays uint8 (max commutes with q(.)).

    Non-overlapping windows without padding (LeNet's and VGG's 2x2 pools) take the elementwise maximum of the
    k*k strided views, which stays channels last; other geometries go through ``F.max_pool2d`` on NCHW.
    """
    if isinstance(pool, nn.MaxPool2d):
        pool = {k: getattr(pool, k) for k in ("kernel_size", "stride", "padding", "dilation", "ceil_mode")}
    (kh, kw), stride = _pair_of(pool["kernel_size"]), _pair_of(pool["stride"] or pool["kernel_size"])
    plain = _pair_of(pool["padding"]) == (0, 0) and _pair_of(pool["dilation"]) == (1, 1) and not pool["ceil_mode"]
    if plain and stride == (kh, kw):
        ho, wo = x.shape[1] // kh, x.shape[2] // kw
        out = x[:, 0 : ho * kh : kh, 0 : wo * kw : kw]  # (N, Ho, Wo, C) view
        for i in range(kh):
            for j in range(kw):
                if i or j:
                    out = torch.maximum(out, x[:, i : i + ho * kh : kh, j : j + wo * kw : kw])
        return out.contiguous()
    y = F.max_pool2d(x.permute(0, 3, 1, 2).contiguous(), **pool)  # (N, C, Ho, Wo)
    return y.permute(0, 2, 3, 1).contiguous()  # (N, Ho, Wo, C)


class PooledEpilogue(InferenceOnly):
    """A max-pool between an adder layer and its BatchNorm (VGG-small), then the epilogue in PyTorch.

    The adder output is ``-(s S + C) + b``, decreasing in the integer sum ``S``, so its max-pool is a min-pool of
    ``S``; the folded BatchNorm / ReLU / requantisation follow as in the op's epilogue.
    """

    _SCALARS = ("qmin", "qmax")

    def __init__(self, channels: int, pool: nn.MaxPool2d, output: str = "uint8") -> None:
        super().__init__()
        self.pool = {k: getattr(pool, k) for k in ("kernel_size", "stride", "padding", "dilation", "ceil_mode")}
        self.output = output
        self.register_buffer("scale", torch.zeros(channels))
        self.register_buffer("bias", torch.zeros(channels))
        self.register_buffer("qconfig", torch.tensor([0.0, QMAX], dtype=torch.float64))
        self.register_load_state_dict_post_hook(lambda module, _: module._refresh())
        self._refresh()

    def _refresh(self) -> None:
        _scalars(self, self._SCALARS)
        self.qmin, self.qmax = int(self.qmin), int(self.qmax)

    def set_epilogue(self, scale: Tensor, bias: Tensor, qmin: int = 0, qmax: int = QMAX) -> None:
        self.scale.copy_(scale.float())
        self.bias.copy_(bias.float())
        self.qconfig.copy_(torch.tensor([qmin, qmax], dtype=torch.float64))
        self._refresh()

    def forward(self, acc: Tensor) -> Tensor:
        pooled = -max_pool_nhwc(-acc.to(torch.float32), self.pool)  # exact: |S| < 2**24
        return adder_u8_epilogue(pooled.to(torch.int32), self.scale, self.bias, None, 0, 0.0, self.output, self.qmin,
                                 self.qmax)


def _fold_conv_bn(conv: nn.Conv2d | nn.Linear, norm: nn.BatchNorm2d | None) -> tuple[Tensor, Tensor]:
    """A multiplicative layer followed by a BatchNorm as one layer (weight, bias), computed in float64."""
    from .fold import batch_norm_affine

    weight = conv.weight.detach().double()
    bias = conv.bias.detach().double() if conv.bias is not None else torch.zeros(weight.shape[0], dtype=torch.float64)
    g, h = batch_norm_affine(norm, weight.shape[0])
    weight = weight * g.view(-1, *([1] * (weight.dim() - 1)))
    return weight.float(), (g * bias + h).float()


class FloatConvStem(InferenceOnly):
    """The multiplicative first layer in fp32: conv (BatchNorm folded) -> ReLU -> [max-pool] -> uint8 NHWC."""

    def __init__(self, conv: nn.Conv2d, norm: nn.BatchNorm2d | None, relu: bool, pool: nn.Module | None) -> None:
        super().__init__()
        self.conv = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                              conv.dilation, conv.groups, bias=True)
        weight, bias = _fold_conv_bn(conv, norm)
        self.conv.weight.data.copy_(weight)
        self.conv.bias.data.copy_(bias)
        self.conv.requires_grad_(False)
        self.relu = relu
        self.pool = pool
        self.quant = QuantizeInput()

    def forward(self, x: Tensor) -> Tensor:
        return self.quant(self.float_output(x))

    def float_output(self, x: Tensor) -> Tensor:
        """The float map before the quantiser, (N, C, H, W).

        Accumulated in float64 and rounded once to float32: products of float32 numbers are exact in float64 and
        the sums of a stem's few terms (27 for 3x3 on RGB) keep ~2**-50 relative accuracy, so this is the
        correctly rounded float32 convolution for all but a vanishing fraction of outputs, whatever the summation
        order. Any other float64 implementation (the ONNX export) then quantises to the same bytes, which a float32
        convolution cannot promise (oneDNN's and onnxruntime's orders differ: 56 of 16.4M stem bytes of the
        released ResNet-20 on 1,000 CIFAR images moved by one, and one prediction changed)."""
        conv = self.conv
        y = F.conv2d(x.double(), conv.weight.double(), conv.bias.double(), conv.stride, conv.padding, conv.dilation,
                     conv.groups).float()
        if self.relu and (self.pool is not None or self.quant.zero_point != 0):
            y = y.relu_()  # with zero point 0 and no pool, the quantiser's clamp at byte 0 is the ReLU
        if self.pool is not None:
            y = self.pool(y)
        return y


_CONV_ARGS = ("stride", "padding", "dilation", "groups")


class Int8ConvStem(InferenceOnly):
    """The multiplicative first layer in int8 with PyTorch's quantized engine (x86 / fbgemm / qnnpack): uint8 input
    image, int8 per-channel weights (BatchNorm folded, symmetric), fused ReLU, [quantized max-pool], uint8 NHWC out.

    Buffers: ``weight_int8`` (O, C, kh, kw), ``weight_scale`` and ``bias`` float32 (O,), ``qconfig`` float64
    [input scale, input zero point, output scale, output zero point]; the engine's packed conv is rebuilt from them.
    """

    _SCALARS = ("input_scale", "input_zero_point", "output_scale", "output_zero_point")

    def __init__(self, conv: nn.Conv2d, norm: nn.BatchNorm2d | None, relu: bool, pool: nn.Module | None) -> None:
        super().__init__()
        weight, bias = _fold_conv_bn(conv, norm)
        weight_scale = weight.abs().flatten(1).amax(1).clamp_min(1e-12) / 127.0
        weight_int8 = torch.round(weight / weight_scale.view(-1, 1, 1, 1)).clamp_(-127, 127).to(torch.int8)
        self.geometry = dict(in_channels=conv.in_channels, out_channels=conv.out_channels,
                             kernel_size=conv.kernel_size, stride=conv.stride, padding=conv.padding,
                             dilation=conv.dilation, groups=conv.groups)
        self.relu = relu
        self.pool = pool
        self.register_buffer("weight_int8", weight_int8)
        self.register_buffer("weight_scale", weight_scale.float())
        self.register_buffer("bias", bias.float())
        self.register_buffer("qconfig", torch.tensor([1.0, 0.0, 1.0, 0.0], dtype=torch.float64))
        self.register_load_state_dict_post_hook(lambda module, _: module._refresh())
        self._refresh()

    def _refresh(self) -> None:
        from torch.ao.nn.intrinsic.quantized import ConvReLU2d
        from torch.ao.nn.quantized import Conv2d as QConv2d

        _scalars(self, self._SCALARS)
        self.input_zero_point, self.output_zero_point = int(self.input_zero_point), int(self.output_zero_point)
        qconv = (ConvReLU2d if self.relu else QConv2d)(**self.geometry)
        zeros = torch.zeros(self.weight_int8.shape[0], dtype=torch.long)
        qweight = torch._make_per_channel_quantized_tensor(self.weight_int8, self.weight_scale.double(), zeros, 0)
        qconv.set_weight_bias(qweight, self.bias.clone())
        qconv.scale, qconv.zero_point = self.output_scale, self.output_zero_point
        self.__dict__["_qconv"] = qconv  # the engine's packed weights: rebuilt from the buffers, not a submodule

    def set_input_qparams(self, qparams: QParams) -> None:
        self.qconfig[:2] = torch.tensor([qparams.scale, qparams.zero_point], dtype=torch.float64)
        self._refresh()

    def set_output_qparams(self, qparams: QParams) -> None:
        self.qconfig[2:] = torch.tensor([qparams.scale, qparams.zero_point], dtype=torch.float64)
        self._refresh()

    def forward(self, x: Tensor) -> Tensor:
        if x.is_meta:  # shape propagation for op counting: the same convolution in float, then the quantisation
            y = F.conv2d(x, self.weight_int8.float(), self.bias, **{k: self.geometry[k] for k in _CONV_ARGS})
            y = self.pool(y.relu() if self.relu else y) if self.pool is not None else (y.relu() if self.relu else y)
            return quantize_u8_nhwc(y, self.output_scale, self.output_zero_point)
        x = x.float().contiguous(memory_format=torch.channels_last)
        y = self._qconv(torch.quantize_per_tensor(x, self.input_scale, self.input_zero_point, torch.quint8))
        if self.pool is not None:
            y = self.pool(y)  # nn.MaxPool2d runs on quantized tensors
        return y.int_repr().permute(0, 2, 3, 1).contiguous()  # (N, H, W, C); no copy when already channels last


class FloatLinearHead(InferenceOnly):
    """The multiplicative classifier in fp32 on a float (N, H, W, C) map: [ReLU] -> global average pool ->
    linear (a 1x1 conv or ``nn.Linear``, with the logits' BatchNorm folded)."""

    def __init__(self, fc: nn.Conv2d | nn.Linear, norm: nn.BatchNorm2d | None, relu: bool) -> None:
        super().__init__()
        weight, bias = _fold_conv_bn(fc, norm)
        self.fc = nn.Linear(weight[0].numel(), weight.shape[0])
        self.fc.weight.data.copy_(weight.flatten(1))
        self.fc.bias.data.copy_(bias)
        self.fc.requires_grad_(False)
        self.relu = relu

    def forward(self, x: Tensor) -> Tensor:
        if self.relu:
            x = x.relu_()
        return self.fc(x.mean((1, 2)))  # (N, H, W, C) -> (N, C) -> (N, classes)


class AdderUnit(PlannedForward):
    """Drop-in integer replacement of an ``Adder2d`` (and the BatchNorm folded into it) inside any float model:
    float (N, C, H, W) -> uint8 -> ``adder2d_u8`` -> float (N, O, H', W')."""

    def __init__(self, adder: nn.Module) -> None:
        super().__init__()
        self.quant = QuantizeInput()
        self.adder = QuantizedAdder2d(adder.in_channels, adder.out_channels, adder.kernel_size, adder.stride,
                                      adder.padding, adder.dilation, adder.groups, output="float32")

    def forward_modules(self, x: Tensor) -> Tensor:
        return self.adder(self.quant(x)).permute(0, 3, 1, 2)  # (N, H', W', O) -> (N, O, H', W')
