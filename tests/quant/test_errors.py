"""What frugalvision.quantize cannot do fails at once with a one-line error naming the problem."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import frugalvision as fv
from frugalvision.errors import ConfigError, InputError
from frugalvision.layers import AdaptiveConv2d, Adder2d

IMAGES = [torch.randn(2, 1, 28, 28)]


def _one_line(info: pytest.ExceptionInfo) -> None:
    assert "\n" not in str(info.value) and isinstance(info.value, ValueError)


@pytest.mark.parametrize("conv_type, match", [("conv", "no adder layer.*torch.ao.quantization"),
                                              ("binary", "binary convolution.*torch.ao.quantization")])
def test_conv_and_binary_twins_point_to_pytorch_quantization(conv_type, match):
    with pytest.raises(InputError, match=match) as info:
        fv.quantize(fv.create_model("lenet5_bn", conv_type=conv_type), IMAGES)
    _one_line(info)


def test_unsupported_layer_is_named():
    model = nn.Sequential(Adder2d(1, 4, 3), nn.BatchNorm2d(4), AdaptiveConv2d(4, 4, 3))
    with pytest.raises(InputError, match=r"layer 2 \(AdaptiveConv2d\) is not supported") as info:
        fv.quantize(model, IMAGES)
    _one_line(info)


@pytest.mark.parametrize("options, match", [
    (dict(bits=4), "bits=4 is not supported"),
    (dict(bits=True), "bits=True"),
    (dict(observer="kl"), "observer must be"),
    (dict(stem="int4"), "stem must be"),
    (dict(max_images=0), "max_images"),
])
def test_bad_options(options, match):
    with pytest.raises(ConfigError, match=match) as info:
        fv.quantize(fv.create_model("lenet5_bn"), IMAGES, **options)
    _one_line(info)


@pytest.mark.parametrize("data, match", [
    ([], "calibration_data is empty"),
    (iter(()), "calibration_data is empty"),
    ([torch.zeros(2, 1, 28, 28, dtype=torch.uint8)], "must yield float"),
    ([torch.randn(28, 28)], "must yield float"),
    (42, "must be iterable"),
    ([torch.randn(2, 1, 28, 28), torch.randn(2, 1, 30, 30)], "differ in shape"),
])
def test_bad_calibration_data(data, match):
    with pytest.raises(InputError, match=match) as info:
        fv.quantize(fv.create_model("lenet5_bn"), data)
    _one_line(info)
