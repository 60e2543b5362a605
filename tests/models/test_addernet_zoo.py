"""AdderNet model zoo (Chen et al., CVPR 2020, arXiv 1912.13200): layouts, official checkpoint layout, adderize,
and operation counts against analytic per-layer formulas and the paper's Tables 2-3."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torchvision
from torch import nn

from frugalvision import adderize, count_ops, create_model
from frugalvision.layers import Adder2d, BinaryConv2d
from frugalvision.models.registry import model_train_defaults
from frugalvision.models.resnet import official_state_dict

ZOO = ["vgg_small", "resnet20", "resnet32", "resnet18", "resnet50"]
LAYER = {"adder": Adder2d, "binary": BinaryConv2d, "conv": nn.Conv2d}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _weight_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    return [(n, m) for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear, Adder2d))]


@pytest.mark.parametrize("conv_type", ["adder", "conv", "binary"])
@pytest.mark.parametrize("name", ZOO)
def test_first_and_last_layers_multiplicative_others_of_conv_type(name: str, conv_type: str) -> None:
    model = create_model(name, conv_type=conv_type)
    layers = _weight_layers(model)
    first, last, middle = layers[0][1], layers[-1][1], [m for _, m in layers[1:-1]]
    assert type(first) is nn.Conv2d and type(last) in (nn.Conv2d, nn.Linear)
    assert middle and all(type(m) is LAYER[conv_type] for m in middle)
    if name.startswith("resnet"):
        assert any(n.endswith("downsample.0") for n, _ in layers[1:-1])  # 1x1 shortcuts are of conv_type too
        assert isinstance(model.bn2, nn.BatchNorm2d) and model.bn2.num_features == model.num_classes  # BN on logits
    assert model_train_defaults(name)["epochs"] in (150, 400)


@pytest.mark.parametrize("name", ["resnet20", "vgg_small", "resnet18"])
def test_every_adder_is_followed_by_batchnorm(name: str) -> None:
    model = create_model(name, conv_type="adder")
    order = [m for m in model.modules() if isinstance(m, (Adder2d, nn.BatchNorm2d))]
    # every adder's output feeds the next BN in registration order (the official module order)
    for i, m in enumerate(order):
        if isinstance(m, Adder2d):
            assert isinstance(order[i + 1], nn.BatchNorm2d) and order[i + 1].num_features == m.out_channels


@pytest.mark.parametrize(("name", "conv_type", "size"), [
    ("resnet20", "adder", 32), ("resnet32", "binary", 32), ("vgg_small", "adder", 32), ("resnet18", "adder", 64),
    ("resnet50", "conv", 64),
])
def test_forward_shape_and_gradient_reaches_the_stem(name: str, conv_type: str, size: int) -> None:
    """Every parameter gets a finite gradient of its shape, and the stem's is not zero: the gradient went through
    every adder / binary layer. (``logits.sum()`` would not do: through the BatchNorm on the logits its gradient
    is exactly 0 before that BN.)"""
    torch.manual_seed(0)
    model = create_model(name, conv_type=conv_type, num_classes=7)
    x = torch.randn(2, 3, size, size)
    logits = model(x)
    assert logits.shape == (2, 7)
    torch.nn.functional.cross_entropy(logits, torch.tensor([0, 5])).backward()
    for param_name, p in model.named_parameters():
        assert p.grad is not None and p.grad.shape == p.shape and torch.isfinite(p.grad).all(), param_name
    stem = next(m for m in model.modules() if isinstance(m, nn.Conv2d))
    assert stem.weight.grad.abs().max() > 1e-6 * stem.weight.abs().max()


def test_binary_twins_keep_signed_activations() -> None:
    model = create_model("resnet20", conv_type="binary")
    assert not any(isinstance(m, nn.ReLU) for m in model.modules())  # sign(ReLU(x)) would be constant +1
    assert any(isinstance(m, nn.Hardtanh) for m in model.modules())


# -- official checkpoint layouts ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["resnet50", "resnet18", "resnet20"])
def test_official_layout_checkpoint_loads_and_matches(name: str, tmp_path: Path) -> None:
    """An official-layout file (DataParallel ``module.`` keys, ``.adder`` weights, legacy pickle) loads exactly."""
    torch.manual_seed(0)
    source = create_model(name, conv_type="adder", num_classes=10).eval()
    for m in source.modules():
        if isinstance(m, nn.BatchNorm2d):  # non-trivial running statistics
            m.running_mean.uniform_(-50, 0)
            m.running_var.uniform_(1, 20)
    state = official_state_dict(source)
    assert all(k.startswith("module.") for k in state)
    assert "module.layer1.0.conv1.adder" in state and "module.layer2.0.downsample.0.adder" in state
    assert "module.bn2.running_var" in state and "module.conv1.weight" in state
    assert ("module.fc.bias" in state) == (name != "resnet20")  # resnet50.py's fc has a bias, resnet20.py's not
    path = tmp_path / "official.pth"
    torch.save(state, path, _use_new_zipfile_serialization=False)  # the pre-1.6 format of the releases
    loaded = create_model(name, conv_type="adder", num_classes=10, checkpoint_path=path).eval()
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(loaded(x), source(x))


# -- LeNet++ and adderize ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("conv_type", ["conv", "adder"])
@pytest.mark.parametrize("feature_dim", [2, 3])
def test_lenet_pp_has_six_5x5_layers_and_the_feature_dim(conv_type: str, feature_dim: int) -> None:
    model = create_model("lenet_pp", conv_type=conv_type, feature_dim=feature_dim)
    x = torch.randn(4, 1, 28, 28)
    assert model.forward_features(x).shape == (4, feature_dim)
    assert model(x).shape == (4, 10)
    layers = _weight_layers(model)
    assert len(layers) == 8  # six 5x5 layers, the feature layer, the classifier
    assert all(type(m) is LAYER[conv_type] for _, m in layers)
    assert [m.out_channels for _, m in layers[:6]] == [32, 32, 64, 64, 128, 128]


def test_adderize_torchvision_resnet18_keeps_edges_and_counts_like_ours() -> None:
    model = adderize(torchvision.models.resnet18(num_classes=10))
    assert type(model.conv1) is nn.Conv2d and type(model.fc) is nn.Linear
    assert type(model.layer1[0].conv1) is Adder2d and type(model.layer2[0].downsample[0]) is Adder2d
    assert model.layer2[0].downsample[0].stride == (2, 2)
    assert sum(isinstance(m, nn.BatchNorm2d) for m in model.modules()) == 20  # BN preserved
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    # counted by dispatch: same adder work as frugalvision's resnet18 (whose fc is a 1x1 conv + BN)
    ours = count_ops(create_model("resnet18", conv_type="adder"), (3, 224, 224), paper_convention=True)
    theirs = count_ops(model, (3, 224, 224), paper_convention=True)
    assert theirs["add"] == ours["add"] and theirs["mul"] == ours["mul"] == 0


def test_adderize_keep_flags() -> None:
    model = adderize(nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Conv2d(4, 5, 1)), keep_first=False,
                     keep_last=False)
    assert type(model[0]) is Adder2d and type(model[2]) is Adder2d and isinstance(model[1], nn.BatchNorm2d)
    kept = adderize(nn.Sequential(nn.Conv2d(3, 4, 3), nn.Conv2d(4, 4, 3), nn.Conv2d(4, 5, 1)))
    assert [type(m) for m in kept] == [nn.Conv2d, Adder2d, nn.Conv2d]


# -- operation counts ----------------------------------------------------------------------------------------------


def _cifar_resnet_macs(blocks: int) -> int:
    """Analytic MACs of the adder/conv layers of ResNet-(6n+2) on 32x32, without stem and classifier."""
    total, cin = 0, 16
    for width, hw in ((16, 32), (32, 16), (64, 8)):
        for _ in range(blocks):
            total += cin * width * 9 * hw * hw + width * width * 9 * hw * hw  # two 3x3 layers
            if cin != width:
                total += cin * width * hw * hw  # 1x1 shortcut
            cin = width
    return total


def _vgg_small_macs() -> int:
    # conv1..conv5 (conv0 and the classifier excluded), output map sizes 32, 16, 16, 8, 8 before pooling
    return 9 * (128 * 128 * 32 * 32 + 128 * 256 * 16 * 16 + 256 * 256 * 16 * 16 + 256 * 512 * 8 * 8
                + 512 * 512 * 8 * 8)


@pytest.mark.parametrize(("name", "macs"), [
    ("resnet20", _cifar_resnet_macs(3)), ("resnet32", _cifar_resnet_macs(5)), ("vgg_small", _vgg_small_macs()),
])
def test_counts_match_analytic_formulas(name: str, macs: int) -> None:
    adder = count_ops(create_model(name, conv_type="adder"), (3, 32, 32), paper_convention=True)
    conv = count_ops(create_model(name, conv_type="conv"), (3, 32, 32), paper_convention=True)
    binary = count_ops(create_model(name, conv_type="binary"), (3, 32, 32), paper_convention=True)
    assert (adder["mul"], adder["add"], adder["xnor"]) == (0, 2 * macs, 0)
    assert (conv["mul"], conv["add"], conv["xnor"]) == (macs, macs, 0)
    assert (binary["mul"], binary["add"], binary["xnor"]) == (0, macs, macs)


# Paper Tables 2-3 (#Add of the AddNN, which is twice the CNN's #Mul and the BNN's #XNOR).
PAPER_ADDS = {"resnet20": 82.34e6, "resnet32": 138.24e6, "vgg_small": 1.30e9, "resnet18": 3.6e9, "resnet50": 7.7e9}


@pytest.mark.parametrize(("name", "tolerance"), [("resnet32", 0.01), ("resnet50", 0.05)])
def test_paper_convention_reproduces_paper(name: str, tolerance: float) -> None:
    model = create_model(name, conv_type="adder")
    counted = count_ops(model, model.default_input_size, paper_convention=True)["add"]
    assert counted == pytest.approx(PAPER_ADDS[name], rel=tolerance)


@pytest.mark.xfail(strict=True, reason="the paper's counts follow no single convention: ResNet-20 counts 41.17M MACs "
                   "where its layers without stem/classifier hold 40.37M (-1.9 %); ResNet-18's 1.8G is the whole "
                   "network incl. stem (1.82G), 1.70G without (-5.8 %); see docs/addernet_zoo.md")
@pytest.mark.parametrize(("name", "tolerance"), [("resnet20", 0.01), ("resnet18", 0.05)])
def test_paper_convention_known_gaps(name: str, tolerance: float) -> None:
    model = create_model(name, conv_type="adder")
    counted = count_ops(model, model.default_input_size, paper_convention=True)["add"]
    assert counted == pytest.approx(PAPER_ADDS[name], rel=tolerance)


def test_autocast_keeps_adder_outputs_fp32() -> None:
    """Adder outputs (~1e3 with a spread of ~1 before BN) stay float32 under autocast (AMP)."""
    model = create_model("resnet20", conv_type="adder")
    dtypes = []
    hooks = [m.register_forward_hook(lambda m, a, out: dtypes.append(out.dtype)) for m in model.modules()
             if isinstance(m, Adder2d)]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = model(torch.randn(2, 3, 32, 32))
    for hook in hooks:
        hook.remove()
    assert len(dtypes) == 20 and set(dtypes) == {torch.float32}
    assert torch.isfinite(logits.float()).all()
