"""The fusion algebra of frugalvision.layers.reparam against the modules it replaces."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from frugalvision.layers.reparam import bn_scale_shift, fold_bn, fold_bn_into_conv, merge_1x1_after, to_conv


def _random_bn(channels: int, eps: float = 1e-6) -> nn.BatchNorm2d:
    bn = nn.BatchNorm2d(channels, eps=eps).double()
    with torch.no_grad():
        bn.weight.uniform_(0.5, 1.5)
        bn.bias.normal_()
        bn.running_mean.normal_()
        bn.running_var.uniform_(0.1, 2.0)
    return bn.eval()


@pytest.mark.parametrize("kernel,stride,padding,groups,bias", [(1, 1, 0, 1, True), (3, 2, 1, 1, False),
                                                                (7, 1, 3, 8, False), (4, 3, 1, 1, True)])
def test_fold_bn_matches_conv_then_bn(kernel: int, stride: int, padding: int, groups: int, bias: bool) -> None:
    torch.manual_seed(0)
    conv = nn.Conv2d(8, 8, kernel, stride=stride, padding=padding, groups=groups, bias=bias).double()
    bn = _random_bn(8)
    x = torch.randn(2, 8, 13, 13, dtype=torch.float64)
    fused = to_conv(*fold_bn_into_conv(conv, bn), like=conv)
    torch.testing.assert_close(fused(x), bn(conv(x)), rtol=1e-12, atol=1e-12)
    assert fused.weight.is_contiguous()


def test_bn_scale_shift_is_the_inference_map() -> None:
    bn = _random_bn(5, eps=1e-3)
    x = torch.randn(3, 5, 2, 2, dtype=torch.float64)
    scale, shift = bn_scale_shift(bn)
    torch.testing.assert_close(bn(x), x * scale[:, None, None] + shift[:, None, None])


def test_fold_bn_rejects_bn_without_running_stats() -> None:
    bn = nn.BatchNorm2d(4, track_running_stats=False)
    with pytest.raises(ValueError, match="running statistics"):
        fold_bn(torch.randn(4, 1, 3, 3), None, bn)


@pytest.mark.parametrize("kernel,stride,padding", [(1, 1, 0), (4, 4, 0), (4, 3, 1), (3, 1, 1)])
def test_merge_1x1_after_any_conv(kernel: int, stride: int, padding: int) -> None:
    torch.manual_seed(1)
    first = nn.Conv2d(3, 6, kernel, stride=stride, padding=padding).double()
    second = nn.Conv2d(6, 5, 1).double()
    x = torch.randn(2, 3, 12, 12, dtype=torch.float64)
    merged = to_conv(*merge_1x1_after(first.weight, first.bias, second.weight, second.bias), like=first)
    torch.testing.assert_close(merged(x), second(first(x)), rtol=1e-12, atol=1e-12)
    assert merged.weight.shape == (5, 3, kernel, kernel) and merged.weight.is_contiguous()


def test_merge_without_biases_and_mismatch() -> None:
    w1, w2 = torch.randn(4, 2, 1, 1), torch.randn(3, 4, 1, 1)
    w, b = merge_1x1_after(w1, None, w2, None)
    assert torch.equal(b, torch.zeros(3))
    torch.testing.assert_close(w[:, :, 0, 0], w2[:, :, 0, 0] @ w1[:, :, 0, 0])
    with pytest.raises(ValueError, match="cannot merge"):
        merge_1x1_after(w1, None, torch.randn(3, 5, 1, 1), None)


def test_merge_result_is_contiguous_even_from_strided_inputs() -> None:
    w1 = torch.randn(1, 1, 4, 4).expand(4, 1, 4, 4)  # (4, 1, 4, 4) with stride 0 on dim 0
    w2 = torch.randn(4, 4, 1, 1).to(memory_format=torch.channels_last)
    w, _ = merge_1x1_after(w1, None, w2, None)
    assert w.is_contiguous() and w.stride() == (16, 16, 4, 1)
