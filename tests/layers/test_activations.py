"""Series-informed activation and the deep-training nonlinearity of VanillaNet."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from frugalvision.layers.activations import SeriesActivation, deep_training_act


def _randomize_bn(bn: nn.BatchNorm2d) -> None:
    with torch.no_grad():
        bn.weight.uniform_(0.5, 1.5)
        bn.bias.normal_()
        bn.running_mean.normal_()
        bn.running_var.uniform_(0.2, 2.0)


@pytest.mark.parametrize("act_num", [0, 1, 2, 3, 4])
def test_series_activation_is_relu_then_depthwise_then_bn(act_num: int) -> None:
    torch.manual_seed(act_num)
    act = SeriesActivation(6, act_num=act_num).eval()
    _randomize_bn(act.bn)
    x = torch.randn(2, 6, 9, 9)
    k = 2 * act_num + 1
    assert act.weight.shape == (6, 1, k, k)
    # independent statement of the paper's formula: per channel, sum over the (2n+1)^2 neighbourhood of ReLU(x)
    padded = F.pad(F.relu(x), (act_num,) * 4)
    patches = padded.unfold(2, k, 1).unfold(3, k, 1)  # (N, C, H, W, k, k)
    expected = torch.einsum("nchwij,cij->nchw", patches, act.weight[:, 0])
    expected = act.bn(expected)
    torch.testing.assert_close(act(x), expected, rtol=1e-5, atol=1e-5)
    assert act(x).shape == x.shape


@pytest.mark.parametrize("act_num", [0, 3])
def test_series_activation_deploy_fold_is_exact(act_num: int) -> None:
    torch.manual_seed(0)
    act = SeriesActivation(8, act_num=act_num).eval()
    _randomize_bn(act.bn)
    x = torch.randn(2, 8, 10, 10)
    y = act(x)
    act.switch_to_deploy()
    assert act.bn is None and act.bias.shape == (8,) and act.weight.is_contiguous()
    torch.testing.assert_close(act(x), y, rtol=1e-5, atol=1e-5)
    assert sorted(act.state_dict()) == ["bias", "weight"]
    act.switch_to_deploy()  # idempotent


def test_series_activation_keys_match_official_layout() -> None:
    keys = set(SeriesActivation(4).state_dict())
    assert keys == {"weight", "bn.weight", "bn.bias", "bn.running_mean", "bn.running_var", "bn.num_batches_tracked"}
    assert SeriesActivation(4).bn.eps == 1e-6
    assert set(SeriesActivation(4, deploy=True).state_dict()) == {"weight", "bias"}
    with pytest.raises(ValueError):
        SeriesActivation(4, act_num=-1)


def test_series_activation_gradients_match_finite_differences() -> None:
    """Training mode (batch statistics): the gradients of input, depthwise weight and BN affine parameters."""
    torch.manual_seed(0)
    act = SeriesActivation(3, act_num=1).double().train()
    x = torch.randn(3, 3, 4, 4, dtype=torch.float64, requires_grad=True)
    params = (act.weight, act.bn.weight, act.bn.bias)

    def fn(x, weight, gamma, beta):
        return torch.func.functional_call(act, {"weight": weight, "bn.weight": gamma, "bn.bias": beta}, (x,))

    # full mode: fast mode's random projection passed even with x detached inside the layer (zero input gradient)
    assert torch.autograd.gradcheck(fn, (x, *params))


@pytest.mark.parametrize("lam", [0.0, 0.3, 1.0])
def test_deep_training_act_interpolates_relu_and_identity(lam: float) -> None:
    x = torch.randn(100)
    torch.testing.assert_close(deep_training_act(x, lam), (1 - lam) * F.relu(x) + lam * x)


def test_series_activation_in_another_model_fuses_through_reparameterize_model() -> None:
    from frugalvision import reparameterize_model

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.Sequential(SeriesActivation(6, act_num=2)))
    _randomize_bn(model[1][0].bn)
    model.eval()
    x = torch.randn(2, 3, 8, 8)
    fused = reparameterize_model(model)
    assert fused[1][0].deploy and not model[1][0].deploy  # the original is left as it was
    torch.testing.assert_close(fused(x), model(x), rtol=1e-5, atol=1e-5)
