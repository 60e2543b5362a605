"""LeNet-5 with BatchNorm, the MNIST model of the AdderNet paper (Chen et al., CVPR 2020, Sec. 4.1).

"The most classic LeNet-5" (LeCun et al., 1998) on 32x32 inputs (the 28x28 digits padded by 2 in the first layer),
with a BatchNorm after every layer. With ``conv_type="adder"`` every layer, the fully connected ones included, is an
adder layer, as in the paper (870K additions, almost no multiplications). The fully connected layers are written
as convolutions (5x5 over the 5x5 map, then 1x1) so that any conv type applies to them.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from ..data import dataset_info
from ..errors import ConfigError
from ..layers import create_conv2d
from .registry import register_model, train_defaults

__all__ = ["LeNet5BN", "LeNetPP"]

# default data configs (see .registry): the data the recipes and released weights use
_MNIST = dataset_info("mnist").data_config()


class LeNet5BN(nn.Module):
    """conv5x5(6) - pool - conv5x5(16) - pool - fc(120) - fc(84) - fc(classes), BN after each layer.

    Args:
        conv_type: ``"conv"``, ``"adder"`` or ``"binary"``. Binary twins keep the first and last layer
            multiplicative (binarising a 1-channel input or the logits destroys them, as in the BNN literature) and
            use HardTanh instead of ReLU: the sign of a ReLU output is always +1.
        layer_kwargs: extra options for the adder/binary layers (e.g. ``weight_grad="sign"``).
    """

    def __init__(
        self, num_classes: int = 10, in_chans: int = 1, conv_type: str = "adder", **layer_kwargs: Any
    ) -> None:
        super().__init__()
        self.num_classes, self.conv_type = num_classes, conv_type
        self.default_input_size = (in_chans, 28, 28)
        edge_type = "conv" if conv_type == "binary" else conv_type

        def act() -> nn.Module:
            return nn.Hardtanh(inplace=True) if conv_type == "binary" else nn.ReLU(inplace=True)

        def layer(kind: str, cin: int, cout: int, k: int, padding: int = 0) -> nn.Module:
            kwargs = layer_kwargs if kind != "conv" else {}
            return create_conv2d(kind, cin, cout, k, padding=padding, **kwargs)

        self.features = nn.Sequential(
            layer(edge_type, in_chans, 6, 5, padding=2), nn.BatchNorm2d(6), act(),  # 28x28
            nn.MaxPool2d(2),  # 14x14
            layer(conv_type, 6, 16, 5), nn.BatchNorm2d(16), act(),  # 10x10
            nn.MaxPool2d(2),  # 5x5
        )
        self.classifier = nn.Sequential(
            layer(conv_type, 16, 120, 5), nn.BatchNorm2d(120), act(),  # 1x1
            layer(conv_type, 120, 84, 1), nn.BatchNorm2d(84), act(),
            layer(edge_type, 84, num_classes, 1), nn.BatchNorm2d(num_classes),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.features(x)).flatten(1)  # (N, classes, 1, 1) -> (N, classes)


@register_model(data_config=_MNIST)
@train_defaults(epochs=50, batch_size=64, lr=0.1)  # the paper's 50-epoch cosine; SGD m 0.9, wd 5e-4; ALR eta 0.2
def lenet5_bn(num_classes: int = 10, in_chans: int = 1, conv_type: str = "adder", **kwargs: Any) -> LeNet5BN:
    """LeNet-5-BN for 28x28 digits; ``conv_type`` selects the AdderNet (default), CNN or BNN twin."""
    return LeNet5BN(num_classes=num_classes, in_chans=in_chans, conv_type=conv_type, **kwargs)


class LeNetPP(nn.Module):
    """LeNet++ (Wen et al., ECCV 2016), the network of the AdderNet paper's feature visualisation (Fig. 1).

    Three stages of two 5x5 layers (32, 32, 64, 64, 128, 128 channels, padding 2) with BN and PReLU, each stage
    followed by a 2x2 max-pool (28 -> 14 -> 7 -> 3), then a ``feature_dim``-unit feature layer and the classifier.
    With ``conv_type="adder"`` every layer is an adder layer, the feature layer and the classifier included, so
    logits are negative L1 distances from the feature to learned class centres (the paper's point: adder features
    cluster around centres, CNN features separate by angle). Binary twins keep the first, feature and classifier
    layers multiplicative. Fully connected layers are written as convolutions so that any conv type applies.

    Args:
        feature_dim: width of the feature layer (2 or 3 for plots).
        layer_kwargs: extra options for the adder / binary layers.
    """

    def __init__(self, num_classes: int = 10, in_chans: int = 1, conv_type: str = "adder", feature_dim: int = 2,
                 **layer_kwargs: Any) -> None:
        super().__init__()
        if conv_type not in ("conv", "adder", "binary"):
            raise ConfigError(f"conv_type must be conv, adder or binary, got {conv_type!r}")
        self.num_classes, self.conv_type, self.feature_dim = num_classes, conv_type, feature_dim
        self.default_input_size = (in_chans, 28, 28)
        edge_type = "conv" if conv_type == "binary" else conv_type

        def layer(kind: str, cin: int, cout: int, k: int, padding: int = 0) -> nn.Module:
            return create_conv2d(kind, cin, cout, k, padding=padding, **(layer_kwargs if kind != "conv" else {}))

        blocks: list[nn.Module] = []
        cin = in_chans
        for i, cout in enumerate((32, 32, 64, 64, 128, 128)):
            blocks += [layer(edge_type if i == 0 else conv_type, cin, cout, 5, padding=2), nn.BatchNorm2d(cout)]
            blocks.append(nn.Hardtanh(inplace=True) if conv_type == "binary" else nn.PReLU(cout))
            if i % 2 == 1:
                blocks.append(nn.MaxPool2d(2))
            cin = cout
        self.features = nn.Sequential(*blocks)  # (N, 128, 3, 3) for 28x28 inputs
        self.embedding = nn.Sequential(layer(edge_type, 128, feature_dim, 3), nn.BatchNorm2d(feature_dim))
        self.classifier = nn.Sequential(layer(edge_type, feature_dim, num_classes, 1), nn.BatchNorm2d(num_classes))

    def forward_features(self, x: Tensor) -> Tensor:
        """(N, C, 28, 28) -> (N, feature_dim) features of the feature layer (after its BatchNorm)."""
        return self.embedding(self.features(x)).flatten(1)  # (N, feature_dim, 1, 1) -> (N, feature_dim)

    def forward(self, x: Tensor) -> Tensor:
        features = self.forward_features(x)[:, :, None, None]  # (N, feature_dim) -> (N, feature_dim, 1, 1)
        return self.classifier(features).flatten(1)  # (N, classes, 1, 1) -> (N, classes)


@register_model(data_config=_MNIST)
def lenet_pp(num_classes: int = 10, in_chans: int = 1, conv_type: str = "adder", feature_dim: int = 2,
             **kwargs: Any) -> LeNetPP:
    """LeNet++ with a ``feature_dim``-unit (2 or 3) feature layer, for the AdderNet feature visualisation."""
    return LeNetPP(num_classes=num_classes, in_chans=in_chans, conv_type=conv_type, feature_dim=feature_dim, **kwargs)
