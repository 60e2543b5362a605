"""Registry, factory and checkpoint loading."""

from __future__ import annotations

import pytest
import torch

import frugalvision
from frugalvision.models import CheckpointError, create_model, list_models, load_model
from frugalvision.models.checkpoint import save_model_file


def test_list_models_filters_by_pattern():
    assert "lenet5_bn" in list_models()
    assert list_models("lenet5*") == ["lenet5_bn"]
    assert frugalvision.list_models("does_not_exist*") == []


def test_unknown_model_is_a_one_line_error():
    with pytest.raises(ValueError, match="unknown model 'lenet9'") as info:
        create_model("lenet9")
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("conv_type", ["conv", "adder", "binary"])
def test_lenet5_bn_twins_give_logits_and_record_their_config(conv_type):
    model = create_model("lenet5_bn", conv_type=conv_type, num_classes=7)
    out = model(torch.randn(2, 1, 28, 28))
    assert out.shape == (2, 7)
    assert model.frugalvision_cfg == {"model": "lenet5_bn", "kwargs": {"conv_type": conv_type, "num_classes": 7}}


def test_lenet5_bn_adder_has_only_adder_layers():
    model = create_model("lenet5_bn", conv_type="adder")
    weight_layers = [m for m in model.modules() if getattr(m, "weight", None) is not None and m.weight.dim() == 4]
    assert len(weight_layers) == 5
    assert all(isinstance(m, frugalvision.layers.Adder2d) for m in weight_layers)


def test_pretrained_without_file_explains():
    with pytest.raises(ValueError, match="not bundled"):
        create_model("lenet5_bn", pretrained=True)


def test_checkpoint_round_trip_safetensors(tmp_path):
    model = create_model("lenet5_bn", conv_type="adder")
    model.eval()
    path = tmp_path / "m.safetensors"
    save_model_file(path, model.state_dict(), model.frugalvision_cfg)
    loaded = load_model(path)
    x = torch.randn(3, 1, 28, 28)
    torch.testing.assert_close(loaded(x), model(x))
    again = create_model("lenet5_bn", conv_type="adder", checkpoint_path=path).eval()
    torch.testing.assert_close(again(x), model(x))


def test_torch_save_nested_and_dataparallel_checkpoints(tmp_path):
    model = create_model("lenet5_bn", conv_type="conv").eval()
    state = {f"module.{k}": v for k, v in model.state_dict().items()}
    path = tmp_path / "official.pth"
    torch.save({"model": state, "epoch": 3}, path)
    loaded = create_model("lenet5_bn", conv_type="conv", checkpoint_path=path).eval()
    x = torch.randn(2, 1, 28, 28)
    torch.testing.assert_close(loaded(x), model(x))


def test_checkpoint_errors_name_the_problem(tmp_path):
    corrupt = tmp_path / "bad.safetensors"
    corrupt.write_bytes(b"\x00\x01not a checkpoint")
    with pytest.raises(CheckpointError, match="corrupt checkpoint"):
        create_model("lenet5_bn", checkpoint_path=corrupt)
    pickle = tmp_path / "evil.pth"
    pickle.write_bytes(b"garbage that is not a torch file")
    with pytest.raises(CheckpointError, match=r"evil\.pth is not a valid checkpoint") as refused:
        create_model("lenet5_bn", checkpoint_path=pickle)
    assert "weights_only" not in str(refused.value)  # torch's advice to unpickle unchecked is never passed on
    with pytest.raises(CheckpointError, match="not found"):
        create_model("lenet5_bn", checkpoint_path=tmp_path / "missing.pth")
    other = tmp_path / "other.safetensors"
    save_model_file(other, create_model("lenet5_bn", num_classes=3).state_dict(), {"model": "lenet5_bn"})
    with pytest.raises(CheckpointError, match="has shape"):
        create_model("lenet5_bn", checkpoint_path=other)


def test_unsafe_pickle_is_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    path = tmp_path / "evil.pth"
    torch.save({"model": Evil()}, path)
    with pytest.raises(CheckpointError, match="safely"):
        create_model("lenet5_bn", checkpoint_path=path)


def test_binary_lenet_feeds_signed_activations_to_binary_layers():
    """A ReLU before a binary layer would make every sign +1: the binary twin uses HardTanh."""
    model = create_model("lenet5_bn", conv_type="binary").train()
    seen = []
    binary = [m for m in model.modules() if isinstance(m, frugalvision.layers.BinaryConv2d)]
    hooks = [m.register_forward_pre_hook(lambda m, args: seen.append(args[0])) for m in binary]
    model(torch.randn(8, 1, 28, 28))
    for hook in hooks:
        hook.remove()
    assert len(seen) == 3
    assert all((x < 0).any() for x in seen)


def test_checkpoint_ema_selects_the_ema_entry(tmp_path):
    model = create_model("lenet5_bn", conv_type="conv").eval()
    ema = create_model("lenet5_bn", conv_type="conv").eval()
    path = tmp_path / "official.pth"
    torch.save({"model": model.state_dict(), "model_ema": ema.state_dict()}, path)
    x = torch.randn(2, 1, 28, 28)
    torch.testing.assert_close(create_model("lenet5_bn", conv_type="conv", checkpoint_path=path).eval()(x), model(x))
    loaded = create_model("lenet5_bn", conv_type="conv", checkpoint_path=path, checkpoint_ema=True).eval()
    torch.testing.assert_close(loaded(x), ema(x))
    torch.save({"model": model.state_dict()}, tmp_path / "plain.pth")
    with pytest.raises(CheckpointError, match="no model_ema"):
        create_model("lenet5_bn", checkpoint_path=tmp_path / "plain.pth", checkpoint_ema=True)
    with pytest.raises(ValueError, match="needs a checkpoint_path"):
        create_model("lenet5_bn", checkpoint_ema=True)
