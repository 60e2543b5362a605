"""Models with adaptive convolutional kernels (Zamora Esquivel et al., ICCV Workshops 2019) and their CNN twins.

* ``adaptive_lenet``: a LeNet-style MNIST network of 7.9K parameters whose first layer is a 5x5 adaptive layer, in
  line with the paper's claim of >99 % MNIST accuracy with 66x fewer parameters than LeNet (the 431K-parameter
  Caffe LeNet 20-50-500-10; 431K / 66 = 6.5K). The paper's architecture is not public: this one is ours
  (docs/adaptive_kernels.md).
* ``small_cnn``: the same topology with an ordinary first convolution, widened to about the same parameter count (the
  parameter-matched CNN baseline).
* ``resnet18_cifar``: the CIFAR ResNet-18 of the public code the paper's experiments appear to use (BasicBlock
  [2, 2, 2, 2], 3x3 stride-1 stem, no max-pool), with ``stem_type="adaptive"`` replacing the stem convolution by an
  adaptive layer, as that code does.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from ..data import dataset_info
from ..errors import ConfigError
from ..layers import AdaptiveConv2d, create_conv2d
from .registry import register_model, train_defaults

__all__ = ["AdaptiveLeNet", "ResNet18Cifar", "adaptive_layers"]

# default data configs (see .registry): the data the recipes and released weights use
_MNIST = dataset_info("mnist").data_config()
_CIFAR10 = dataset_info("cifar10").data_config()


class AdaptiveLeNet(nn.Module):
    """first(k x k, same) - pool2 - conv3x3 - pool2 - conv3x3 - pool2 - linear, BN + ReLU after each conv, 28x28 input.

    Args:
        first_type: ``"adaptive"`` (an :class:`AdaptiveConv2d`) or ``"conv"`` for the CNN twin.
        widths: channels of the three layers.
        kernel_size: kernel of the first layer (odd; "same" padding).
        layer_kwargs: options of the adaptive layer (e.g. ``init="conv"``).
    """

    def __init__(
        self,
        num_classes: int = 10,
        in_chans: int = 1,
        first_type: str = "adaptive",
        widths: tuple[int, int, int] = (4, 16, 20),
        kernel_size: int = 5,
        dropout: float = 0.0,
        **layer_kwargs: Any,
    ) -> None:
        super().__init__()
        if first_type not in ("adaptive", "conv"):
            raise ConfigError(f"first_type must be 'adaptive' or 'conv', got {first_type!r}")
        c1, c2, c3 = widths
        self.default_input_size = (in_chans, 28, 28)
        kwargs = layer_kwargs if first_type == "adaptive" else {}
        self.num_classes, self.first_type = num_classes, first_type
        self.features = nn.Sequential(
            create_conv2d(first_type, in_chans, c1, kernel_size, padding=kernel_size // 2, **kwargs),  # 28x28
            nn.BatchNorm2d(c1), nn.ReLU(inplace=True),
            nn.MaxPool2d(2),  # 14x14
            nn.Conv2d(c1, c2, 3, padding=1, bias=False), nn.BatchNorm2d(c2), nn.ReLU(inplace=True),
            nn.MaxPool2d(2),  # 7x7
            nn.Conv2d(c2, c3, 3, padding=1, bias=False), nn.BatchNorm2d(c3), nn.ReLU(inplace=True),
            nn.MaxPool2d(2),  # 3x3
        )
        self.classifier = nn.Sequential(nn.Flatten(), nn.Dropout(dropout), nn.Linear(c3 * 3 * 3, num_classes))

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.features(x))  # (N, c3, 3, 3) -> (N, c3*9) -> (N, classes)


# Training defaults of the MNIST models (the trainer's SGD + cosine recipe; epochs measured on mnist5k, see the docs).
MNIST_TRAIN_DEFAULTS: dict[str, Any] = {"epochs": 20, "lr": 0.1, "optimizer": "sgd", "weight_decay": 5e-4}


@register_model(data_config=_MNIST)
@train_defaults(**MNIST_TRAIN_DEFAULTS)
def adaptive_lenet(num_classes: int = 10, in_chans: int = 1, **kwargs: Any) -> AdaptiveLeNet:
    """LeNet-style MNIST net with a 5x5 adaptive first layer (1 -> 4 kernels), 7.9K parameters."""
    return AdaptiveLeNet(num_classes=num_classes, in_chans=in_chans, first_type="adaptive", **kwargs)


@register_model(data_config=_MNIST)
@train_defaults(**MNIST_TRAIN_DEFAULTS)
def small_cnn(num_classes: int = 10, in_chans: int = 1, **kwargs: Any) -> AdaptiveLeNet:
    """Parameter-matched CNN twin of :func:`adaptive_lenet`: ordinary 5x5 first conv, widths (8, 24, 20), 8.2K."""
    kwargs.setdefault("widths", (8, 24, 20))
    return AdaptiveLeNet(num_classes=num_classes, in_chans=in_chans, first_type="conv", **kwargs)


class BasicBlock(nn.Module):
    """Two 3x3 convs with BN and an identity (or 1x1 projection) shortcut: He et al., CVPR 2016."""

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False),
                                          nn.BatchNorm2d(planes))

    def forward(self, x: Tensor) -> Tensor:
        out = self.bn1(self.conv1(x)).relu_()
        return (self.bn2(self.conv2(out)) + self.shortcut(x)).relu_()


class ResNet18Cifar(nn.Module):
    """ResNet-18 for 32x32 images (3x3 stride-1 stem, stages 64-128-256-512, global average pool, linear).

    Args:
        stem_type: ``"conv"`` (plain ResNet-18) or ``"adaptive"`` (the stem is an :class:`AdaptiveConv2d`, 3x3).
        stem_width: output channels of the stem. 64 by default; the public adaptive-kernel code uses 16 (then the
            first block gets a 16 -> 64 projection shortcut).
        layer_kwargs: options of the adaptive stem (e.g. ``init="conv"``).
    """

    def __init__(
        self,
        num_classes: int = 10,
        in_chans: int = 3,
        stem_type: str = "conv",
        stem_width: int = 64,
        **layer_kwargs: Any,
    ) -> None:
        super().__init__()
        if stem_type not in ("conv", "adaptive"):
            raise ConfigError(f"stem_type must be 'conv' or 'adaptive', got {stem_type!r}")
        self.num_classes, self.stem_type = num_classes, stem_type
        self.default_input_size = (in_chans, 32, 32)
        kwargs = layer_kwargs if stem_type == "adaptive" else {}
        self.stem = nn.Sequential(
            create_conv2d(stem_type, in_chans, stem_width, 3, padding=1, **kwargs),
            nn.BatchNorm2d(stem_width), nn.ReLU(inplace=True),
        )
        blocks: list[nn.Module] = []
        in_planes = stem_width
        for i, planes in enumerate((64, 128, 256, 512)):
            for j in range(2):
                blocks.append(BasicBlock(in_planes, planes, stride=2 if i > 0 and j == 0 else 1))
                in_planes = planes
        self.layers = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(512, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = self.pool(self.layers(self.stem(x)))  # (N, 512, 1, 1)
        return self.fc(x.flatten(1))  # (N, 512) -> (N, classes)


@register_model(data_config=_CIFAR10)
def resnet18_cifar(num_classes: int = 10, in_chans: int = 3, stem_type: str = "conv", **kwargs: Any) -> ResNet18Cifar:
    """CIFAR ResNet-18; ``stem_type="adaptive"`` gives the adaptive-kernel variant of the paper's CIFAR-10 test."""
    return ResNet18Cifar(num_classes=num_classes, in_chans=in_chans, stem_type=stem_type, **kwargs)


def adaptive_layers(model: nn.Module) -> list[AdaptiveConv2d]:
    """The adaptive layers of ``model`` (for inspection and for freezing Q, the public code's accidental setting)."""
    return [m for m in model.modules() if isinstance(m, AdaptiveConv2d)]
