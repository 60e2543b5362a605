"""AdderNet layer (Chen et al., CVPR 2020, arXiv 1912.13200, Eq. 2)."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.nn.modules.utils import _pair

from ..errors import ConfigError
from ..ops import adder2d

__all__ = ["Adder2d"]


class Adder2d(nn.Module):
    """Adder layer: the negative L1 distance between every input patch and every filter.

    ``weight`` has the shape of ``nn.Conv2d.weight`` (C_out, C_in/groups, kh, kw), so adder and conv layers are
    interchangeable in state dicts. Follow it by a BatchNorm: the output is always <= 0 and its scale grows with
    the fan-in.

    Args:
        weight_init: ``"normal"`` draws N(0, 1) like the official code; ``"kaiming"`` uses ``nn.Conv2d``'s default.
        weight_grad: ``"full"`` (AdderNet Eq. 5, default) or ``"sign"`` (true gradient; ablation only).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        stride: int | tuple[int, int] = 1,
        padding: int | tuple[int, int] = 0,
        dilation: int | tuple[int, int] = 1,
        groups: int = 1,
        bias: bool = False,
        *,
        weight_init: str = "normal",
        weight_grad: str = "full",
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        if in_channels % groups or out_channels % groups:
            raise ConfigError(f"groups={groups} must divide in_channels={in_channels} and out_channels={out_channels}")
        if weight_init not in ("normal", "kaiming"):
            raise ConfigError(f"weight_init must be 'normal' or 'kaiming', got {weight_init!r}")
        if weight_grad not in ("full", "sign"):
            raise ConfigError(f"weight_grad must be 'full' or 'sign', got {weight_grad!r}")
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.stride = _pair(kernel_size), _pair(stride)
        self.padding, self.dilation = _pair(padding), _pair(dilation)
        self.groups, self.weight_init, self.weight_grad = groups, weight_init, weight_grad
        factory = {"device": device, "dtype": dtype}
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels // groups, *self.kernel_size, **factory))
        self.bias = nn.Parameter(torch.empty(out_channels, **factory)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        if self.weight_init == "normal":
            nn.init.normal_(self.weight)
        else:
            nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            bound = 1.0 / math.sqrt(self.weight[0].numel())
            nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, x: Tensor) -> Tensor:
        return adder2d(
            x, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups,
            weight_grad=self.weight_grad,
        )

    def extra_repr(self) -> str:
        s = f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}"
        if self.padding != (0, 0):
            s += f", padding={self.padding}"
        if self.dilation != (1, 1):
            s += f", dilation={self.dilation}"
        if self.groups != 1:
            s += f", groups={self.groups}"
        if self.bias is None:
            s += ", bias=False"
        if self.weight_grad != "full":
            s += f", weight_grad={self.weight_grad}"
        return s
