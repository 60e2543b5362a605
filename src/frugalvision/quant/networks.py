"""Integer versions of the zoo's AdderNets: ResNets (basic and bottleneck blocks) and sequential chains (LeNet-5-BN,
LeNet++, VGG-small). Built by :mod:`frugalvision.quant.convert`; float images in, float logits out.

Inside, activations between adder layers are uint8 (N, H, W, C) contiguous; float tensors between steps are NCHW
views. In a ResNet block, BatchNorm, the residual addition, ReLU and the requantisation to the next block's input
all happen in the epilogue of the block's last adder layer (one pass over the output, no elementwise PyTorch ops).
"""

from __future__ import annotations

from torch import Tensor, nn

from .modules import (
    FloatConvStem,
    FloatLinearHead,
    InferenceOnly,
    Int8ConvStem,
    PlannedForward,
    QuantizedAdder2d,
    max_pool_nhwc,
)

__all__ = ["ChannelsFirst", "MaxPoolUint8", "QuantizedBasicBlock", "QuantizedBottleneck", "QuantizedChain",
           "QuantizedResNet"]


class QuantizedBasicBlock(InferenceOnly):
    """``conv2(conv1(x), residual=shortcut(x))``: two 3x3 integer adder layers; the shortcut is the uint8 input
    itself or a 1x1 integer adder layer with its BatchNorm (uint8 output). ``conv2``'s epilogue adds the residual
    and clamps (ReLU) into the next block's uint8 input, or returns float32 for the last block (then ReLU here)."""

    def __init__(self, conv1: QuantizedAdder2d, conv2: QuantizedAdder2d, downsample: QuantizedAdder2d | None) -> None:
        super().__init__()
        self.conv1, self.conv2, self.downsample = conv1, conv2, downsample

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.conv2(self.conv1(x), residual=identity)
        return out.relu_() if self.conv2.output == "float32" else out


class QuantizedBottleneck(InferenceOnly):
    """1x1 - 3x3 - 1x1 integer adder layers; the residual enters ``conv3``'s epilogue (see QuantizedBasicBlock)."""

    def __init__(self, conv1: QuantizedAdder2d, conv2: QuantizedAdder2d, conv3: QuantizedAdder2d,
                 downsample: QuantizedAdder2d | None) -> None:
        super().__init__()
        self.conv1, self.conv2, self.conv3, self.downsample = conv1, conv2, conv3, downsample

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.conv3(self.conv2(self.conv1(x)), residual=identity)
        return out.relu_() if self.conv3.output == "float32" else out


class QuantizedResNet(PlannedForward):
    """int8 or fp32 stem (conv + BN + ReLU [+ max-pool]) -> uint8 stages of integer blocks -> fp32 average pool and
    classifier (1x1 conv / linear with the logits' BatchNorm folded)."""

    def __init__(self, stem: FloatConvStem | Int8ConvStem, stages: list[nn.Sequential], head: FloatLinearHead,
                 ) -> None:
        super().__init__()
        self.stem = stem
        self.num_stages = len(stages)
        for i, stage in enumerate(stages):
            self.add_module(f"layer{i + 1}", stage)
        self.head = head

    def forward_modules(self, x: Tensor) -> Tensor:
        x = self.stem(x)  # (N, H, W, C) uint8
        for i in range(self.num_stages):
            x = getattr(self, f"layer{i + 1}")(x)
        return self.head(x)  # last block: float (N, h, w, C) -> (N, classes)


class ChannelsFirst(nn.Module):
    """float (N, H, W, C) -> (N, C, H, W) view (no copy), for float modules between integer steps."""

    def forward(self, x: Tensor) -> Tensor:
        return x.permute(0, 3, 1, 2)


class MaxPoolUint8(nn.Module):
    """Max-pool of a uint8 (N, H, W, C) map, exact in the integer domain (max commutes with rounding)."""

    def __init__(self, pool: nn.MaxPool2d) -> None:
        super().__init__()
        self.kwargs = {k: getattr(pool, k) for k in ("kernel_size", "stride", "padding", "dilation", "ceil_mode")}

    def forward(self, x: Tensor) -> Tensor:
        return max_pool_nhwc(x, self.kwargs)


class QuantizedChain(PlannedForward):
    """A sequential network: ``steps`` (float NCHW in; uint8 NHWC between integer layers; float NCHW out), then
    ``flatten(1)`` and an optional fp32 ``classifier``."""

    def __init__(self, steps: nn.Sequential, classifier: nn.Module | None = None) -> None:
        super().__init__()
        self.steps = steps
        self.classifier = classifier

    def forward_modules(self, x: Tensor) -> Tensor:
        out = self.steps(x).flatten(1)
        return self.classifier(out) if self.classifier is not None else out
