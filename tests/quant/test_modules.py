"""Integer building blocks against plain PyTorch."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from frugalvision.quant.modules import max_pool_nhwc


@pytest.mark.parametrize("shape, kernel, stride, padding, ceil_mode", [
    ((2, 9, 7, 3), 2, 2, 0, False),  # odd sizes: the last row / column is dropped
    ((1, 9, 9, 2), 3, 3, 0, False),
    ((2, 9, 9, 4), 3, 2, 1, False),  # overlapping, padded (F.max_pool2d path)
    ((2, 7, 7, 3), 2, 2, 0, True),
])
def test_uint8_max_pool_equals_float_max_pool(shape, kernel, stride, padding, ceil_mode):
    x = torch.randint(0, 256, shape, dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    got = max_pool_nhwc(x, nn.MaxPool2d(kernel, stride, padding, ceil_mode=ceil_mode))
    expected = F.max_pool2d(x.permute(0, 3, 1, 2).float(), kernel, stride, padding, ceil_mode=ceil_mode)
    assert got.is_contiguous() and torch.equal(got, expected.permute(0, 2, 3, 1).to(torch.uint8))
