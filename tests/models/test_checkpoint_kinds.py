"""Weights of another layer kind are refused with one line naming file, model and the option that fits.

Conv, binary and adder layers store weights of the same shape, so such a load used to succeed and compute garbage
(the official AdderNet ResNet-20 in its CNN twin: top-1 10 %, loss 4.7e20). Each case below also loads the same file
into the model it fits, so that a refusal is not a check that refuses everything.
"""

from __future__ import annotations

import pytest
import torch

import frugalvision as fv
from frugalvision.cli.main import main
from frugalvision.errors import CheckpointError
from frugalvision.models import read_state_dict, save_model
from frugalvision.models.resnet import official_state_dict

OFFICIAL = "official/ResNet20-AdderNet.pth"


@pytest.mark.parametrize("conv_type", ["conv", "binary"])
def test_the_official_addernet_is_refused_by_its_twins(shared_data, conv_type):
    path = shared_data(OFFICIAL)
    with pytest.raises(CheckpointError) as caught:
        fv.create_model("resnet20", conv_type=conv_type, checkpoint_path=path)
    message = str(caught.value)
    assert "\n" not in message
    assert str(path) in message and f"resnet20 (conv_type='{conv_type}')" in message
    assert "holds adder layers (e.g. layer1.0.conv1.adder)" in message and "--conv-type adder" in message
    fv.create_model("resnet20", conv_type="adder", checkpoint_path=path)  # the model it fits loads it


def test_the_official_addernet_is_refused_by_eval_of_the_cnn_twin(shared_data, capsys):
    """The issue's command: exit 2 and one line naming --conv-type adder, where it printed top-1 10.00 %."""
    code = main(["eval", "--checkpoint", str(shared_data(OFFICIAL)), "--model", "resnet20", "--conv-type", "conv",
                 "--dataset", "folder", "--data-dir", str(shared_data("cifar10_jpeg_10k"))])
    captured = capsys.readouterr()
    assert code == 2 and captured.out == ""
    line = captured.err.strip()
    assert "\n" not in line and line.startswith("frugalvision eval: error: checkpoint ")
    assert "does not fit resnet20 (conv_type='conv')" in line and line.endswith("(--conv-type adder)")


@pytest.mark.parametrize(("saved", "loaded"), [("conv", "adder"), ("binary", "adder"), ("adder", "conv")])
def test_a_frugalvision_file_is_refused_by_another_conv_type(tmp_path, saved, loaded):
    path = tmp_path / f"lenet5_bn_{saved}.safetensors"
    save_model(path, fv.create_model("lenet5_bn", conv_type=saved))
    with pytest.raises(CheckpointError, match=rf"^checkpoint {path} does not fit lenet5_bn \(conv_type='{loaded}'\): "
                                              rf"it holds a conv_type='{saved}' model.*\(--conv-type {saved}\)$"):
        fv.create_model("lenet5_bn", conv_type=loaded, checkpoint_path=path)
    assert fv.load_model(path).conv_type == saved
    fv.create_model("lenet5_bn", conv_type=saved, checkpoint_path=path)


def test_the_default_conv_type_counts_as_given(tmp_path):
    """A file saved without conv_type holds the default (adder): refused by the CNN twin, taken by conv_type='adder'."""
    path = tmp_path / "default.safetensors"
    save_model(path, fv.create_model("resnet20"))
    with pytest.raises(CheckpointError, match=r"holds a conv_type='adder' model, this one has conv_type='conv'"):
        fv.create_model("resnet20", conv_type="conv", checkpoint_path=path)
    fv.create_model("resnet20", conv_type="adder", checkpoint_path=path)


def test_a_shipped_cnn_twin_run_is_refused_by_the_cli_without_its_conv_type(repo_root, capsys):
    run = repo_root / "results" / "cifar10_10k" / "resnet20_conv"
    assert main(["count", "--checkpoint", str(run), "--model", "resnet20"]) == 2
    line = capsys.readouterr().err.strip()
    assert "\n" not in line and "holds a conv_type='conv' model" in line and line.endswith("(--conv-type conv)")
    assert main(["count", "--checkpoint", str(run), "--model", "resnet20", "--conv-type", "conv"]) == 0


def test_a_file_of_another_model_is_refused_by_name(tmp_path):
    path = tmp_path / "vgg.safetensors"
    save_model(path, fv.create_model("vgg_small", conv_type="conv"))
    with pytest.raises(CheckpointError, match=r"does not fit resnet20 \(conv_type='conv'\): it holds a vgg_small "
                                              r"model; build vgg_small \(--model vgg_small\)"):
        fv.create_model("resnet20", conv_type="conv", checkpoint_path=path)


def test_official_layout_files_of_a_cnn_twin_are_refused_by_key_names(tmp_path):
    """Without a stored config, the official ``adder`` key names tell adder weights apart (here a binary twin)."""
    torch.save(official_state_dict(fv.create_model("resnet20", conv_type="adder")), tmp_path / "adder.pth")
    with pytest.raises(CheckpointError, match=r"\(conv_type='binary'\): it holds adder layers .*--conv-type adder\)$"):
        fv.create_model("resnet20", conv_type="binary", checkpoint_path=tmp_path / "adder.pth")


@pytest.mark.parametrize("as_frugalvision_file", [True, False])
def test_adaptive_and_plain_stems_are_told_apart(tmp_path, as_frugalvision_file):
    """An adaptive layer's kernel_bias marks its weights, in both directions (stem_type of resnet18_cifar)."""
    paths = {}
    for stem_type in ("adaptive", "conv"):
        model = fv.create_model("resnet18_cifar", stem_type=stem_type)
        paths[stem_type] = tmp_path / (f"{stem_type}.safetensors" if as_frugalvision_file else f"{stem_type}.pth")
        if as_frugalvision_file:
            save_model(paths[stem_type], model)
        else:
            torch.save(model.state_dict(), paths[stem_type])
    for saved, loaded in (("adaptive", "conv"), ("conv", "adaptive")):
        with pytest.raises(CheckpointError, match=rf"stem_type='{loaded}'\): it holds .*--model-option "
                                                  rf"stem_type={saved}\)$"):
            fv.create_model("resnet18_cifar", stem_type=loaded, checkpoint_path=paths[saved])
        fv.create_model("resnet18_cifar", stem_type=saved, checkpoint_path=paths[saved])


@pytest.mark.parametrize("as_frugalvision_file", [True, False])
def test_a_deploy_vanillanet_file_is_refused_by_a_train_mode_model_and_train_weights_fuse(tmp_path,
                                                                                         as_frugalvision_file):
    torch.manual_seed(0)
    train = fv.create_model("vanillanet_test").eval()
    deploy = fv.reparameterize_model(train)
    suffix = ".safetensors" if as_frugalvision_file else ".pth"
    train_path, deploy_path = tmp_path / f"train{suffix}", tmp_path / f"deploy{suffix}"
    if as_frugalvision_file:
        save_model(train_path, train)
        save_model(deploy_path, fv.create_model("vanillanet_test", deploy=True, checkpoint_path=train_path))
    else:
        torch.save(train.state_dict(), train_path)
        torch.save(deploy.state_dict(), deploy_path)
    with pytest.raises(CheckpointError, match=rf"^checkpoint {deploy_path} does not fit vanillanet_test: it holds the "
                                              r"fused \(deploy\) form.*\(--model-option deploy=true\)$"):
        fv.create_model("vanillanet_test", checkpoint_path=deploy_path)
    x = torch.randn(2, 3, 32, 32)
    expected = train(x)
    for path in (deploy_path, train_path):  # a train-mode file into a deploy model is fused on loading
        loaded = fv.create_model("vanillanet_test", deploy=True, checkpoint_path=path).eval()
        torch.testing.assert_close(loaded(x), expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(("run", "model"), [("mnist5k/lenet5_bn_conv", "lenet5_bn"),
                                            ("cifar10_10k/resnet20_conv", "resnet20"),
                                            ("cifar10_10k/resnet20_binary", "resnet20")])
def test_plain_state_dicts_of_trained_twins_are_refused_by_an_adder_model(repo_root, tmp_path, run, model):
    """No config and frugalvision's key names: the BatchNorm statistics still tell. An adder layer outputs
    -sum |x - w| <= 0, so the running mean of the norm it feeds stays <= 0; the shipped trained twins' do not."""
    path = tmp_path / "twin.pth"
    torch.save(read_state_dict(repo_root / "results" / run), path)
    with pytest.raises(CheckpointError, match=rf"^checkpoint {path} does not fit {model}: its weights were not "
                                              r"trained as adder layers \(\S+\.running_mean, fed by adder layer \S+, "
                                              r"is positive .*\(--conv-type conv / --conv-type binary\)$"):
        fv.create_model(model, checkpoint_path=path)
    fv.create_model(model, conv_type=run.rsplit("_", 1)[1], checkpoint_path=path)


@pytest.mark.parametrize(("run", "model", "norm_after_adder"), [("mnist5k/lenet5_bn_adder", "lenet5_bn", "features.5"),
                                                                ("cifar10_10k/resnet20_adder_kd", "resnet20",
                                                                 "layer1.0.bn1")])
def test_plain_state_dicts_of_trained_addernets_load(repo_root, tmp_path, run, model, norm_after_adder):
    path = tmp_path / "adder.pth"
    torch.save(read_state_dict(repo_root / "results" / run), path)
    loaded = fv.create_model(model, checkpoint_path=path)
    mean = loaded.state_dict()[f"{norm_after_adder}.running_mean"]
    assert mean.max() <= 0 and mean.min() < 0  # trained (not all zero) and never positive
