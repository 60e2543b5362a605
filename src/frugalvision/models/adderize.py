"""Turn any network's convolutions into AdderNet layers (Chen et al., CVPR 2020, arXiv 1912.13200, Sec. 3).

The paper's recipe for an AdderNet twin of a CNN: replace every convolution by an adder layer of the same geometry,
except the first convolution and the last weight layer, and keep the BatchNorm after each. :func:`adderize` applies
it to any ``nn.Module`` in place, e.g. a torchvision ResNet.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from ..errors import InputError
from ..layers import create_conv2d

__all__ = ["adderize"]


def adderize(model: nn.Module, keep_first: bool = True, keep_last: bool = True, *, conv_type: str = "adder",
             **layer_kwargs: Any) -> nn.Module:
    """Replace the ``nn.Conv2d`` layers of ``model`` by adder layers (in place) and return ``model``.

    Args:
        keep_first: leave the first weight layer multiplicative (AdderNet keeps the stem convolution).
        keep_last: leave the last weight layer multiplicative (the classifier).
        conv_type: what to convert to: ``"adder"`` (default) or ``"binary"`` (a BNN twin).
        layer_kwargs: options for the new layers (e.g. ``weight_grad="sign"``).

    "First" and "last" are the first and last weight layers (``nn.Conv2d`` or ``nn.Linear``) in registration order,
    which is the execution order for the usual model definitions; a ``Linear`` classifier is never converted anyway.
    Only exact ``nn.Conv2d`` instances are converted (not subclasses such as binary convolutions). The new layers
    have the conv's geometry (stride, padding, dilation, groups, bias) on its device and dtype, and freshly
    initialised weights (the adder N(0, 1) initialisation: a conv's weights are no meaningful adder weights).
    BatchNorm and all other modules stay as they are. Follow every adder layer by a BatchNorm: adder outputs are
    <= 0 and grow with the fan-in.
    """
    weight_layers = [name for name, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    keep = set()
    if keep_first and weight_layers:
        keep.add(weight_layers[0])
    if keep_last and weight_layers:
        keep.add(weight_layers[-1])
    targets = [(name, m) for name, m in model.named_modules() if type(m) is nn.Conv2d and name not in keep]
    for name, conv in targets:
        if conv.padding_mode != "zeros":
            raise InputError(f"{name}: padding_mode={conv.padding_mode!r}; adder layers pad with zeros only")
        if isinstance(conv.padding, str):
            raise InputError(f"{name}: string padding {conv.padding!r} is not supported; give explicit sizes")
        new = create_conv2d(conv_type, conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride,
                            conv.padding, conv.dilation, conv.groups, conv.bias is not None, **layer_kwargs)
        new.to(device=conv.weight.device, dtype=conv.weight.dtype)
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, new)
    return model
