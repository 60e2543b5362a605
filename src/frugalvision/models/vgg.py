"""VGG-small, the CIFAR network of the AdderNet paper (Chen et al., CVPR 2020, arXiv 1912.13200, Table 2).

VGG-small is the LQ-Nets definition (Zhang et al., ECCV 2018; pointed to by huawei-noah/AdderNet issue #68): six 3x3
layers with 128, 128, 256, 256, 512, 512 channels, a 2x2 max-pool after the second, fourth and sixth (before their
BN-ReLU), and one fully connected layer over the 512x4x4 map. The first convolution and the classifier stay
multiplicative; the five layers in between are of ``conv_type`` (adder, conv or binary), each followed by BatchNorm.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from ..data import dataset_info
from ..errors import ConfigError
from ..layers import create_conv2d
from .registry import register_model, train_defaults

__all__ = ["VGGSmall"]

# default data configs (see .registry): the data the recipes and released weights use
_CIFAR10 = dataset_info("cifar10").data_config()


class VGGSmall(nn.Module):
    """conv0(128) - [conv1(128) pool] - conv2(256) - [conv3(256) pool] - conv4(512) - [conv5(512) pool] - fc.

    Args:
        conv_type: ``"adder"``, ``"conv"`` or ``"binary"`` for conv1..conv5 (BNN twins use HardTanh activations:
            the sign of a ReLU output is always +1).
        layer_kwargs: extra options for the adder / binary layers.
    """

    def __init__(self, num_classes: int = 10, in_chans: int = 3, conv_type: str = "adder",
                 **layer_kwargs: Any) -> None:
        super().__init__()
        if conv_type not in ("conv", "adder", "binary"):
            raise ConfigError(f"conv_type must be conv, adder or binary, got {conv_type!r}")
        self.num_classes, self.conv_type = num_classes, conv_type
        self.default_input_size = (in_chans, 32, 32)
        widths = (128, 128, 256, 256, 512, 512)
        layers: list[nn.Module] = []
        cin = in_chans
        for i, cout in enumerate(widths):
            kind = "conv" if i == 0 else conv_type
            layers.append(create_conv2d(kind, cin, cout, 3, padding=1, **(layer_kwargs if kind != "conv" else {})))
            if i % 2 == 1:
                layers.append(nn.MaxPool2d(2))  # 32 -> 16 -> 8 -> 4
            layers += [nn.BatchNorm2d(cout), nn.Hardtanh(inplace=True) if conv_type == "binary" else nn.ReLU(True)]
            cin = cout
        self.features = nn.Sequential(*layers)
        self.num_features = 512 * 4 * 4
        self.classifier = nn.Linear(self.num_features, num_classes)

    def forward_features(self, x: Tensor) -> Tensor:
        return self.features(x)  # (N, 512, 4, 4) for 32x32 inputs

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.forward_features(x).flatten(1))  # (N, 512, 4, 4) -> (N, 8192)


@register_model(data_config=_CIFAR10)
@train_defaults(epochs=400, batch_size=256, lr=0.1, momentum=0.9, weight_decay=5e-4, scheduler="cosine")
def vgg_small(num_classes: int = 10, in_chans: int = 3, conv_type: str = "adder", **kwargs: Any) -> VGGSmall:
    """VGG-small for 32x32 images (AdderNet Table 2: 93.72 % CIFAR-10, 72.64 % CIFAR-100 as AddNN)."""
    return VGGSmall(num_classes=num_classes, in_chans=in_chans, conv_type=conv_type, **kwargs)
