"""LeNet-5 with BatchNorm, the MNIST model of the AdderNet paper (Chen et al., CVPR 2020, Sec. 4.1).

"The most classic LeNet-5" (LeCun et al., 1998) on 32x32 inputs (the 28x28 digits padded by 2 in the first layer),
with a BatchNorm after every layer. With ``conv_type="adder"`` every layer, the fully connected ones included, is an
adder layer, as in the paper (870K additions, almost no multiplications). The fully connected layers are written
as convolutions (5x5 over the 5x5 map, then 1x1) so that any conv type applies to them.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from ..layers import create_conv2d
from ._registry import register_model

__all__ = ["LeNet5BN"]


class LeNet5BN(nn.Module):
    """conv5x5(6) - pool - conv5x5(16) - pool - fc(120) - fc(84) - fc(classes), BN after each layer.

    Args:
        conv_type: ``"conv"``, ``"adder"`` or ``"binary"``. Binary twins keep the first and last layer
            multiplicative (binarising a 1-channel input or the logits destroys them, as in the BNN literature).
        layer_kwargs: extra options for the adder/binary layers (e.g. ``weight_grad="sign"``).
    """

    def __init__(
        self, num_classes: int = 10, in_chans: int = 1, conv_type: str = "adder", **layer_kwargs: Any
    ) -> None:
        super().__init__()
        self.num_classes, self.conv_type = num_classes, conv_type
        self.default_input_size = (in_chans, 28, 28)
        edge_type = "conv" if conv_type == "binary" else conv_type

        def layer(kind: str, cin: int, cout: int, k: int, padding: int = 0) -> nn.Module:
            kwargs = layer_kwargs if kind != "conv" else {}
            return create_conv2d(kind, cin, cout, k, padding=padding, **kwargs)

        self.features = nn.Sequential(
            layer(edge_type, in_chans, 6, 5, padding=2), nn.BatchNorm2d(6), nn.ReLU(inplace=True),  # 28x28
            nn.MaxPool2d(2),  # 14x14
            layer(conv_type, 6, 16, 5), nn.BatchNorm2d(16), nn.ReLU(inplace=True),  # 10x10
            nn.MaxPool2d(2),  # 5x5
        )
        self.classifier = nn.Sequential(
            layer(conv_type, 16, 120, 5), nn.BatchNorm2d(120), nn.ReLU(inplace=True),  # 1x1
            layer(conv_type, 120, 84, 1), nn.BatchNorm2d(84), nn.ReLU(inplace=True),
            layer(edge_type, 84, num_classes, 1), nn.BatchNorm2d(num_classes),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.features(x)).flatten(1)  # (N, classes, 1, 1) -> (N, classes)


@register_model
def lenet5_bn(num_classes: int = 10, in_chans: int = 1, conv_type: str = "adder", **kwargs: Any) -> LeNet5BN:
    """LeNet-5-BN for 28x28 digits; ``conv_type`` selects the AdderNet (default), CNN or BNN twin."""
    return LeNet5BN(num_classes=num_classes, in_chans=in_chans, conv_type=conv_type, **kwargs)
