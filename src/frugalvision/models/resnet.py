"""AdderNet ResNets: ResNet-20/32 for CIFAR and ResNet-18/50 for ImageNet, with CNN and BNN twins.

Paper: H. Chen et al., "AdderNet: Do We Really Need Multiplications in Deep Learning?", CVPR 2020, arXiv 1912.13200
(Tables 2 and 3). Layout of the official code (huawei-noah/AdderNet ``resnet20.py`` and ``resnet50.py``):

- the stem convolution and the classifier stay multiplicative (``nn.Conv2d``); every other convolution, the 1x1
  downsample shortcuts included, is of ``conv_type`` ("adder", "conv" or "binary"), and each is followed by BN;
- the classifier is a 1x1 convolution over the pooled features followed by a BatchNorm on the logits (``bn2``);
- ResNet-20/32: 3x3 stem with 16 channels, three stages of basic blocks (16, 32, 64 channels), 8x8 average pool;
  ResNet-18/50: the ImageNet layout (7x7/2 stem, max-pool, four stages; ResNet-50 bottlenecks with the stride on the
  3x3 convolution, "v1.5", as in the official ``resnet50.py``). ResNet-18 has no official file; it follows the same
  rules with basic blocks.

Module names follow the official code, so the released checkpoints load after renaming the adder weights (the
official parameter is called ``adder``; frugalvision's :class:`~frugalvision.layers.Adder2d` calls it ``weight``).

The BNN twin (XNOR-Net style binary weights and activations) uses HardTanh instead of ReLU in front of the binary
layers: a binary layer takes the sign of its input, and the sign of a ReLU output is always +1.
"""

from __future__ import annotations

import re
from typing import Any

from torch import Tensor, nn

from ..data import dataset_info
from ..errors import ConfigError
from ..layers import Adder2d, create_conv2d
from .registry import register_model, train_defaults

__all__ = ["BasicBlock", "Bottleneck", "ResNet", "official_state_dict"]

# default data configs (see .registry): the data the recipes and released weights use
_CIFAR10 = dataset_info("cifar10").data_config()
_IMAGENET = dataset_info("imagenet").data_config()

_CONV_TYPES = ("conv", "adder", "binary")


def _act(conv_type: str) -> nn.Module:
    return nn.Hardtanh(inplace=True) if conv_type == "binary" else nn.ReLU(inplace=True)


class BasicBlock(nn.Module):
    """Two 3x3 layers of ``conv_type`` with BN, and an identity or (1x1 layer + BN) shortcut."""

    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1, conv_type: str = "adder",
                 **layer_kwargs: Any) -> None:
        super().__init__()
        self.conv1 = create_conv2d(conv_type, inplanes, planes, 3, stride, padding=1, **layer_kwargs)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = _act(conv_type)
        self.conv2 = create_conv2d(conv_type, planes, planes, 3, 1, padding=1, **layer_kwargs)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = _shortcut(inplanes, planes * self.expansion, stride, conv_type, layer_kwargs)

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """1x1 - 3x3 (stride) - 1x1 layers of ``conv_type`` with BN, expansion 4 (ResNet-50 v1.5)."""

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1, conv_type: str = "adder",
                 **layer_kwargs: Any) -> None:
        super().__init__()
        width = planes
        self.conv1 = create_conv2d(conv_type, inplanes, width, 1, **layer_kwargs)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = create_conv2d(conv_type, width, width, 3, stride, padding=1, **layer_kwargs)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = create_conv2d(conv_type, width, planes * self.expansion, 1, **layer_kwargs)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = _act(conv_type)
        self.downsample = _shortcut(inplanes, planes * self.expansion, stride, conv_type, layer_kwargs)

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


def _shortcut(inplanes: int, outplanes: int, stride: int, conv_type: str,
              layer_kwargs: dict[str, Any]) -> nn.Sequential | None:
    if stride == 1 and inplanes == outplanes:
        return None
    # option-B shortcut; in AdderNet it is an adder layer too (official resnet20.py / resnet50.py)
    return nn.Sequential(create_conv2d(conv_type, inplanes, outplanes, 1, stride, **layer_kwargs),
                         nn.BatchNorm2d(outplanes))


class ResNet(nn.Module):
    """ResNet with a multiplicative stem and classifier and ``conv_type`` layers in between.

    Args:
        block: :class:`BasicBlock` or :class:`Bottleneck`.
        layers: blocks per stage.
        widths: channels of each stage (before the block expansion).
        stem: ``"cifar"`` (3x3 conv, stride 1) or ``"imagenet"`` (7x7 conv stride 2 and 3x3 max-pool).
        conv_type: ``"adder"`` (AdderNet), ``"conv"`` (CNN twin) or ``"binary"`` (BNN twin).
        fc_bias: bias of the 1x1 classifier convolution (False in resnet20.py, True in resnet50.py).
        layer_kwargs: extra options for the adder / binary layers (e.g. ``weight_grad="sign"``).
    """

    def __init__(
        self,
        block: type[BasicBlock] | type[Bottleneck],
        layers: tuple[int, ...],
        widths: tuple[int, ...],
        *,
        stem: str = "cifar",
        num_classes: int = 10,
        in_chans: int = 3,
        conv_type: str = "adder",
        fc_bias: bool = False,
        **layer_kwargs: Any,
    ) -> None:
        super().__init__()
        if conv_type not in _CONV_TYPES:
            raise ConfigError(f"conv_type must be one of {', '.join(_CONV_TYPES)}, got {conv_type!r}")
        if stem not in ("cifar", "imagenet"):
            raise ConfigError(f"stem must be 'cifar' or 'imagenet', got {stem!r}")
        self.num_classes, self.conv_type = num_classes, conv_type
        self.default_input_size = (in_chans, 32, 32) if stem == "cifar" else (in_chans, 224, 224)
        self.inplanes = widths[0] if stem == "cifar" else 64
        if stem == "cifar":
            self.conv1 = nn.Conv2d(in_chans, self.inplanes, 3, 1, 1, bias=False)
        else:
            self.conv1 = nn.Conv2d(in_chans, self.inplanes, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(self.inplanes)
        self.relu = _act(conv_type)
        self.maxpool = nn.MaxPool2d(3, 2, 1) if stem == "imagenet" else nn.Identity()
        for i, (width, depth) in enumerate(zip(widths, layers)):
            stride = 1 if i == 0 else 2
            blocks = []
            for j in range(depth):
                blocks.append(block(self.inplanes, width, stride if j == 0 else 1, conv_type, **layer_kwargs))
                self.inplanes = width * block.expansion
            self.add_module(f"layer{i + 1}", nn.Sequential(*blocks))
        self.num_stages = len(layers)
        self.num_features = self.inplanes
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Conv2d(self.num_features, num_classes, 1, bias=fc_bias)
        self.bn2 = nn.BatchNorm2d(num_classes)
        for m in self.modules():
            if isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif stem == "imagenet" and type(m) is nn.Conv2d:  # resnet50.py; resnet20.py keeps PyTorch's default
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward_features(self, x: Tensor) -> Tensor:
        """(N, C, H, W) image -> (N, num_features, h, w) last-stage map."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        for i in range(self.num_stages):
            x = getattr(self, f"layer{i + 1}")(x)
        return x

    def forward_head(self, x: Tensor) -> Tensor:
        x = self.avgpool(x)  # (N, F, 1, 1)
        return self.bn2(self.fc(x)).flatten(1)  # (N, classes, 1, 1) -> (N, classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_head(self.forward_features(x))


# ----------------------------------------------------------------------------------------------------------------
# Official checkpoints (huawei-noah/AdderNet): DataParallel ``module.`` prefixes (removed by read_state_dict) and
# adder parameters named ``adder`` (weight) and ``b`` (bias, unused in the released models).

_OFFICIAL_ADDER = re.compile(r"\.(adder|b)$")


def official_checkpoint_filter(state: dict[str, Tensor], model: nn.Module) -> dict[str, Tensor]:
    """Rename ``...conv1.adder`` to ``...conv1.weight`` (and ``.b`` to ``.bias``); other keys already match."""
    converted = {}
    for key, tensor in state.items():
        match = _OFFICIAL_ADDER.search(key)
        if match is not None:
            key = key[: match.start()] + (".weight" if match.group(1) == "adder" else ".bias")
        converted[key] = tensor.float() if tensor.is_floating_point() else tensor
    return converted



def _check(conv_type: str) -> None:
    if conv_type not in _CONV_TYPES:
        raise ConfigError(f"conv_type must be one of {', '.join(_CONV_TYPES)}, got {conv_type!r}")


_CIFAR_RECIPE = dict(epochs=400, batch_size=256, lr=0.1, momentum=0.9, weight_decay=5e-4, scheduler="cosine")
_IMAGENET_RECIPE = dict(epochs=150, batch_size=256, lr=0.1, momentum=0.9, weight_decay=1e-4, scheduler="cosine")


@register_model(checkpoint_filter=official_checkpoint_filter, data_config=_CIFAR10)
@train_defaults(**_CIFAR_RECIPE)
def resnet20(num_classes: int = 10, in_chans: int = 3, conv_type: str = "adder", **kwargs: Any) -> ResNet:
    """ResNet-20 for 32x32 images (AdderNet Table 2: 91.84 % CIFAR-10 as AddNN); official layout of resnet20.py."""
    _check(conv_type)
    return ResNet(BasicBlock, (3, 3, 3), (16, 32, 64), stem="cifar", num_classes=num_classes, in_chans=in_chans,
                  conv_type=conv_type, **kwargs)


@register_model(checkpoint_filter=official_checkpoint_filter, data_config=_CIFAR10)
@train_defaults(**_CIFAR_RECIPE)
def resnet32(num_classes: int = 10, in_chans: int = 3, conv_type: str = "adder", **kwargs: Any) -> ResNet:
    """ResNet-32 for 32x32 images: resnet20 with five blocks per stage (AdderNet Table 2: 93.01 % CIFAR-10)."""
    _check(conv_type)
    return ResNet(BasicBlock, (5, 5, 5), (16, 32, 64), stem="cifar", num_classes=num_classes, in_chans=in_chans,
                  conv_type=conv_type, **kwargs)


@register_model(checkpoint_filter=official_checkpoint_filter, data_config=_IMAGENET)
@train_defaults(**_IMAGENET_RECIPE)
def resnet18(num_classes: int = 1000, in_chans: int = 3, conv_type: str = "adder", **kwargs: Any) -> ResNet:
    """ResNet-18, ImageNet layout (AdderNet Table 3: 67.0 % top-1 as AddNN); resnet50.py's rules, basic blocks."""
    _check(conv_type)
    return ResNet(BasicBlock, (2, 2, 2, 2), (64, 128, 256, 512), stem="imagenet", num_classes=num_classes,
                  in_chans=in_chans, conv_type=conv_type, fc_bias=True, **kwargs)


@register_model(checkpoint_filter=official_checkpoint_filter, data_config=_IMAGENET)
@train_defaults(**_IMAGENET_RECIPE)
def resnet50(num_classes: int = 1000, in_chans: int = 3, conv_type: str = "adder", **kwargs: Any) -> ResNet:
    """ResNet-50 v1.5, ImageNet layout of the official resnet50.py (AdderNet Table 3: 74.9 % top-1 as AddNN)."""
    _check(conv_type)
    return ResNet(Bottleneck, (3, 4, 6, 3), (64, 128, 256, 512), stem="imagenet", num_classes=num_classes,
                  in_chans=in_chans, conv_type=conv_type, fc_bias=True, **kwargs)


def official_state_dict(model: ResNet) -> dict[str, Tensor]:
    """The state dict of ``model`` in the official release's layout (``module.`` prefix, ``.adder`` names).

    Useful to hand weights to the official code, and to test loading of official checkpoints.
    """
    out = {}
    for key, tensor in model.state_dict().items():
        module_name, _, leaf = key.rpartition(".")
        module = model.get_submodule(module_name) if module_name else model
        if isinstance(module, Adder2d):
            leaf = {"weight": "adder", "bias": "b"}[leaf]
        out[f"module.{module_name}.{leaf}" if module_name else f"module.{leaf}"] = tensor.detach().clone()
    return out

