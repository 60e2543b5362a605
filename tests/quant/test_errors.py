"""What frugalvision.quantize cannot do fails at once with a one-line error naming the problem."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import frugalvision as fv
from frugalvision.cli.main import main
from frugalvision.errors import ConfigError, InputError
from frugalvision.layers import AdaptiveConv2d, Adder2d
from frugalvision.models import save_model
from frugalvision.quant.compare import compare_models

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


def _nan_inside() -> nn.Module:
    """A LeNet-5-BN AdderNet whose first BatchNorm has a NaN running mean: the input of features.4 is NaN."""
    model = fv.create_model("lenet5_bn").eval()
    model.features[1].running_mean[2] = float("nan")
    return model


def test_non_finite_calibration_activations_are_a_user_error_naming_the_layer(tmp_path, capsys):
    with pytest.raises(InputError, match=r"activations at the input of features\.4 are not finite") as info:
        fv.quantize(_nan_inside(), [torch.rand(4, 1, 28, 28)])
    _one_line(info)
    checkpoint = tmp_path / "nan.safetensors"
    save_model(checkpoint, _nan_inside())
    assert main(["quantize", "--checkpoint", str(checkpoint), "--calibration", "mnist5k", "--calibration-images", "8",
                 "--output", str(tmp_path / "q.safetensors")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("frugalvision quantize: error: quantize: the float model's activations at the input of "
                          "features.4 are not finite (NaN or inf)") and "\n" not in err, err
    assert not (tmp_path / "q.safetensors").exists()


def test_batchnorm_without_running_statistics_is_refused():
    model = nn.Sequential(Adder2d(1, 4, 3), nn.BatchNorm2d(4, track_running_stats=False), nn.ReLU(),
                          Adder2d(4, 4, 3), nn.BatchNorm2d(4))
    with pytest.raises(InputError, match="BatchNorm without running statistics") as info:
        fv.quantize(model.eval(), IMAGES)
    _one_line(info)


def test_bad_percentile_is_a_config_error():
    with pytest.raises(ConfigError, match="percentile must be in") as info:
        fv.quantize(fv.create_model("lenet5_bn"), IMAGES, observer="percentile", percentile=120.0)
    _one_line(info)


def test_comparing_on_no_data_is_an_input_error():
    model = fv.create_model("lenet5_bn").eval()
    with pytest.raises(InputError, match="yielded no") as info:
        compare_models(model, model, [])
    _one_line(info)
