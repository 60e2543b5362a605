"""Training engine: determinism, exact resume after interruption, run folders, BN recalibration."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from frugalvision.models import load_model
from frugalvision.run_dir import RunDir
from frugalvision.train.batchnorm import recalibrate_batchnorm
from frugalvision.train.callbacks import Callback
from frugalvision.train.config import TrainConfig
from frugalvision.train.engine import RunExistsError, train


def _config(tmp_path, **changes) -> TrainConfig:
    base = dict(model="lenet5_bn", model_kwargs={"conv_type": "adder"}, dataset="fake", fake_size=96,
                fake_input_size=[1, 28, 28], epochs=3, batch_size=32, eval_batch_size=48, lr=0.05,
                bn_recalibration_batches=2, output=str(tmp_path / "runs"))
    return TrainConfig.from_dict({**base, **changes})


class _Interrupt(Callback):
    def __init__(self, at_epoch: int) -> None:
        self.at_epoch = at_epoch

    def on_epoch_start(self, ctx) -> None:
        if ctx.epoch == self.at_epoch:
            raise KeyboardInterrupt


def _weights(run_dir):
    return load_model(run_dir).state_dict()


def test_resume_after_interruption_is_exact(tmp_path, capsys):
    straight = train(_config(tmp_path, output=str(tmp_path / "a")), log=None)
    interrupted = _config(tmp_path, output=str(tmp_path / "b"))
    with pytest.raises(KeyboardInterrupt):
        train(interrupted, callbacks=[_Interrupt(2)], log=None)
    assert RunDir(interrupted.run_dir).read_config()["train"]["epochs"] == 3
    result = train(interrupted, resume=True)
    assert result.resumed_from == 2
    assert "from epoch 3/3" in capsys.readouterr().out
    a, b = _weights(straight.run_dir), _weights(result.run_dir)
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert [r["val_top1"] for r in straight.history] == [r["val_top1"] for r in result.history]
    assert RunDir(result.run_dir).metrics_file.read_text().count("\n") == 4  # header + 3 epochs
    assert any(RunDir(result.run_dir).tensorboard_dir.iterdir())


def test_existing_run_folder_is_protected(tmp_path):
    config = _config(tmp_path, epochs=1)
    train(config, log=None)
    with pytest.raises(RunExistsError, match="--resume"):
        train(config, log=None)
    train(config, overwrite=True, log=None)


def test_training_learns_fake_data(tmp_path):
    result = train(_config(tmp_path, model_kwargs={"conv_type": "conv"}, epochs=4, fake_size=128, lr=0.1), log=None)
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]
    assert result.metrics["val_top1"] > 30  # 10 classes: chance is 10 %


def test_recalibration_replaces_stale_statistics_with_exact_means():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(2, 3, 3), nn.BatchNorm2d(3), nn.ReLU(), nn.Dropout(0.5))
    data = torch.randn(4, 8, 2, 6, 6) * 3 + 5  # 4 batches
    model.train()
    for batch in data[:1]:
        model(batch)  # one momentum update: the running mean is 10% of the way to the truth
    model.eval()
    stale = model(data[0])
    drift = recalibrate_batchnorm(model, iter(data))
    features = model[0](data.flatten(0, 1))  # (32, 3, 4, 4)
    torch.testing.assert_close(model[1].running_mean, features.mean(dim=(0, 2, 3)), rtol=1e-5, atol=1e-5)
    assert drift > 1.0
    assert not model.training and not model[1].training
    model[1].train()
    train_mode = model[1](model[0](data.flatten(0, 1)))
    model[1].eval()
    eval_mode = model[1](model[0](data.flatten(0, 1)))
    # per-batch variances averaged vs the pooled variance: close, not equal
    torch.testing.assert_close(train_mode, eval_mode, rtol=2e-2, atol=2e-2)
    assert not torch.allclose(stale, model(data[0]))


def test_engine_recalibrates_only_adder_models_and_logs_the_drift(tmp_path):
    """(The re-estimated values themselves: tests/train/test_loop.py.)"""
    result = train(_config(tmp_path, epochs=1), log=None)
    logged = RunDir(result.run_dir).metrics_file.read_text().splitlines()
    assert logged[0].split(",").count("bn_drift") == 1
    drift = float(logged[1].split(",")[logged[0].split(",").index("bn_drift")])
    assert drift == pytest.approx(result.history[0]["bn_drift"])
    conv = train(_config(tmp_path, epochs=1, model_kwargs={"conv_type": "conv"}), log=None)
    assert "bn_drift" not in conv.history[0]


def test_training_state_round_trip_keeps_tensor_group_entries(tmp_path):
    """timm's Lamb keeps a tensor 'step' in its param groups: it must survive the checkpoint."""
    from timm.optim import Lamb

    model = nn.Linear(3, 2)
    optimizer = Lamb(model.parameters(), lr=0.01)
    model(torch.randn(4, 3)).sum().backward()
    optimizer.step()
    RunDir(tmp_path).write_training_state(model_state=model.state_dict(), optimizer_state=optimizer.state_dict(),
                                          ema_state=None, metadata={"epoch": 1})
    state = RunDir(tmp_path).read_training_state()
    restored = Lamb(nn.Linear(3, 2).parameters(), lr=0.01)
    restored.load_state_dict(state["optimizer"])
    assert torch.equal(restored.param_groups[0]["step"], optimizer.param_groups[0]["step"])
    for a, b in zip(restored.state.values(), optimizer.state.values()):
        assert all(torch.equal(a[k], b[k]) for k in ("exp_avg", "exp_avg_sq"))
    assert state["epoch"] == 1


def test_vanillanet_recipe_parts_reach_the_optimizer(repo_root):
    """Layer-wise decay (timm groups, lr scaled per group) and no decay on biases / norms, as the recipes ask."""
    from frugalvision.models import create_model
    from frugalvision.optim import AdaptiveLR
    from frugalvision.train.config import load_recipe
    from frugalvision.train.optimization import build_optimizer

    recipe = load_recipe(repo_root / "recipes" / "vanillanet_6.yaml")
    config = TrainConfig.from_dict(recipe)
    model = create_model("vanillanet_6")
    optimizer = build_optimizer(config, model, AdaptiveLR([]))
    lrs = sorted({round(g["lr"] / config.lr, 6) for g in optimizer.param_groups})
    assert lrs == [round(0.8**k, 6) for k in range(5, -1, -1)]
    assert all(g["weight_decay"] == 0 for g in optimizer.param_groups if all(p.dim() == 1 for p in g["params"]))
    with pytest.raises(ValueError, match="num_layers=3"):
        build_optimizer(config.replace(layer_decay={"rate": 0.8, "num_layers": 3}), model, AdaptiveLR([]))
