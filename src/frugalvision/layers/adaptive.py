"""Adaptive convolutional kernel layer (Zamora Esquivel et al., ICCV Workshops 2019).

Every kernel element is computed from the patch it is applied to: ``K = tanh(Q x + b)``, ``y = x^T K`` per
(output, input) channel pair, summed over input channels (see :mod:`frugalvision.ops.adaptive_conv` for the formula,
its gradients and the memory-bounded parallel form).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.modules.utils import _pair

from ..errors import ConfigError
from ..ops.adaptive_conv import DEFAULT_MAX_CHUNK_ELEMENTS, adaptive_conv2d

__all__ = ["ADAPTIVE_INITS", "AdaptiveConv2d"]

ADAPTIVE_INITS = ("uniform", "conv")


class AdaptiveConv2d(nn.Module):
    """Adaptive convolution: ``Y[o,p] = sum_{c,d} tanh(sum_j Q[o,c,d,j] P[c,j,p] + b[o,c,d]) * P[c,d,p]``.

    Parameters: ``weight`` Q of shape (out, in, k², k²) and ``kernel_bias`` b of shape (out, in, k²), i.e.
    ``in * out * k² * (k² + 1)`` numbers; an optional output ``bias`` (out,), off by default as in the paper.

    Args:
        init: ``"uniform"`` draws Q and b from U(-1/k, 1/k), the default of the ``nn.Conv2d(1, k², k)`` kernel
            generator of the public code (docs/adaptive_kernels.md). ``"conv"`` sets Q = 0 and b = atanh(W) with W
            drawn like a default ``nn.Conv2d(in, out, k)`` weight, so the layer starts as exactly that convolution
            (with Q = 0 the kernel is the static tanh(b)) and learns its adaptivity from there.
        dilation: spacing of the patch elements (an extension; the paper uses 1).
        max_chunk_elements: memory bound of the op (elements of the kernel tensor held at once).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        stride: int | tuple[int, int] = 1,
        padding: int | tuple[int, int] = 0,
        bias: bool = False,
        *,
        dilation: int | tuple[int, int] = 1,
        init: str = "uniform",
        max_chunk_elements: int = DEFAULT_MAX_CHUNK_ELEMENTS,
        device: Any = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        if init not in ADAPTIVE_INITS:
            raise ConfigError(f"init must be one of {', '.join(ADAPTIVE_INITS)}, got {init!r}")
        if in_channels < 1 or out_channels < 1:
            raise ConfigError(f"in_channels and out_channels must be >= 1, got {in_channels}, {out_channels}")
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.stride = _pair(kernel_size), _pair(stride)
        self.padding, self.dilation = _pair(padding), _pair(dilation)
        self.init, self.max_chunk_elements = init, max_chunk_elements
        kk = self.kernel_size[0] * self.kernel_size[1]
        factory = {"device": device, "dtype": dtype}
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, kk, kk, **factory))
        self.kernel_bias = nn.Parameter(torch.empty(out_channels, in_channels, kk, **factory))
        self.bias = nn.Parameter(torch.empty(out_channels, **factory)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        kk = self.kernel_size[0] * self.kernel_size[1]
        with torch.no_grad():
            if self.init == "uniform":
                bound = 1.0 / math.sqrt(kk)  # nn.Conv2d(1, kk, k) default: fan_in = kk
                self.weight.uniform_(-bound, bound)
                self.kernel_bias.uniform_(-bound, bound)
            else:
                bound = 1.0 / math.sqrt(self.in_channels * kk)  # nn.Conv2d(in, out, k) default weight bound
                self.weight.zero_()
                self.kernel_bias.uniform_(-bound, bound).clamp_(-0.999, 0.999).atanh_()
            if self.bias is not None:
                fan_in = self.in_channels * kk
                self.bias.uniform_(-1.0 / math.sqrt(fan_in), 1.0 / math.sqrt(fan_in))

    def static_kernel(self) -> Tensor:
        """The kernel tanh(b) the layer applies when Q = 0, shaped like an ``nn.Conv2d`` weight (out, in, kh, kw)."""
        return torch.tanh(self.kernel_bias).view(self.out_channels, self.in_channels, *self.kernel_size)

    def forward(self, x: Tensor) -> Tensor:
        return adaptive_conv2d(
            x, self.weight, self.kernel_bias, self.bias, self.stride, self.padding, self.dilation,
            kernel_size=self.kernel_size, max_chunk_elements=self.max_chunk_elements,
        )

    def extra_repr(self) -> str:
        s = f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}"
        if self.padding != (0, 0):
            s += f", padding={self.padding}"
        if self.dilation != (1, 1):
            s += f", dilation={self.dilation}"
        return s + f", bias={self.bias is not None}, init={self.init!r}"
