"""Engine pieces on their own: one training step, one epoch, the end-of-epoch BN re-estimation, evaluation, run
state by callback name, and the run orchestration (precedence rule, run status). No whole training runs here."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from frugalvision.errors import ConfigError
from frugalvision.layers import Adder2d
from frugalvision.optim import AdaptiveLR, adder_weights
from frugalvision.train.builders import (
    TrainingData,
    TrainingSetup,
    build_callbacks,
    build_data,
    build_precision,
    build_training,
)
from frugalvision.train.callbacks import Callback, TrainContext
from frugalvision.train.config import TrainConfig
from frugalvision.train.distributed import Distributed
from frugalvision.train.loop import evaluate, train_one_epoch, train_step, validate_epoch
from frugalvision.train.objectives import ClassificationObjective
from frugalvision.train.optimization import build_scheduler
from frugalvision.train.runs import resolve_config, run_status
from frugalvision.train.state import restore_run_state, save_run_state

CPU = Distributed(rank=0, world=1, device=torch.device("cpu"))


def _config(tmp_path: Path, **changes) -> TrainConfig:
    base = dict(model="lenet5_bn", model_kwargs={"conv_type": "adder"}, dataset="fake", fake_size=64,
                fake_input_size=[1, 28, 28], epochs=2, batch_size=16, eval_batch_size=32, lr=0.05,
                bn_recalibration_batches=2, output=str(tmp_path), device="cpu")
    return TrainConfig.from_dict({**base, **changes})


def _hand_setup(config: TrainConfig, model: nn.Module, optimizer: torch.optim.Optimizer, alr: AdaptiveLR,
                steps_per_epoch: int = 4, callbacks=()) -> TrainingSetup:
    """A setup around any model (the builders need a registered model name; the loop does not)."""
    context = TrainContext(model=model, optimizer=optimizer, config=config.to_dict(), run_dir=Path(config.output),
                           num_epochs=config.epochs)
    return TrainingSetup(config=config, model=model, train_model=model, optimizer=optimizer,
                         scheduler=build_scheduler(config, optimizer, steps_per_epoch), alr=alr,
                         precision=build_precision(config, torch.device("cpu")),
                         objective=ClassificationObjective(config.loss, config.label_smoothing), ema=None, mixup=None,
                         callbacks=list(callbacks), recalibrate_bn=False, context=context)


def test_train_step_applies_alr_to_the_final_gradient_before_the_optimizer_step(tmp_path: Path) -> None:
    """With plain SGD (no momentum, no decay) the first update of every adder weight has RMS eta * lr (Eq. 13)."""
    config = _config(tmp_path, momentum=0.0, weight_decay=0.0, scheduler="constant", lr=0.05, alr_eta=0.2)
    data = build_data(config, CPU)
    setup = build_training(config, data, CPU, tmp_path)
    before = [w.detach().clone() for w in adder_weights(setup.model)]
    images, target = next(iter(data.train_loader))
    loss, logits = train_step(setup, images, target)
    assert logits.shape == (16, 10) and loss.ndim == 0
    for w, w0 in zip(adder_weights(setup.model), before):
        assert (w.detach() - w0).pow(2).mean().sqrt().item() == pytest.approx(0.2 * 0.05, rel=1e-4)
    assert setup.scheduler.last_epoch == 1  # the schedule advances once per optimizer step


def test_gradient_accumulation_equals_one_large_batch(tmp_path: Path) -> None:
    """Two micro-batches of 4 with grad_accum=2 give the update of one batch of 8 (a BN-free model)."""
    config = _config(tmp_path, grad_accum=2, momentum=0.9, weight_decay=5e-4, alr="none")
    gen = torch.Generator().manual_seed(0)
    images, target = torch.randn(8, 6, generator=gen), torch.randint(0, 3, (8,), generator=gen)
    results = []
    for micro_batches in (2, 1):
        torch.manual_seed(1)
        model = nn.Linear(6, 3)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
        setup = _hand_setup(config.replace(grad_accum=micro_batches), model, optimizer, AdaptiveLR([]))
        for part in range(micro_batches):
            rows = slice(part * 8 // micro_batches, (part + 1) * 8 // micro_batches)
            train_step(setup, images[rows], target[rows], last_micro_batch=part == micro_batches - 1)
        results.append(model.weight.detach().clone())
    torch.testing.assert_close(results[0], results[1], rtol=1e-6, atol=1e-7)


def test_train_one_epoch_runs_every_batch_and_reports_them(tmp_path: Path) -> None:
    config = _config(tmp_path, model_kwargs={"conv_type": "conv"}, epochs=3)
    data = build_data(config, CPU)
    setup = build_training(config, data, CPU, tmp_path)
    steps = []

    class Count(Callback):
        def on_step_end(self, ctx, step):
            steps.append(step)

    setup.callbacks.append(Count())
    row = train_one_epoch(setup, data, epoch=1)
    assert steps == list(range(len(data.train_loader))) == [0, 1, 2, 3]  # 64 images, batch 16
    assert row["epoch"] == 2 and 0 <= row["train_top1"] <= 100 and math.isfinite(row["train_loss"])
    factor = setup.scheduler.lr_lambdas[0](4)  # the cosine schedule after 4 of 12 steps
    assert row["lr"] == pytest.approx(0.05 * factor) and factor == pytest.approx(0.75)


def test_train_one_epoch_is_reproducible_from_the_epoch_seed(tmp_path: Path) -> None:
    """The same epoch from the same weights gives the same weights: shuffling and augmentation follow the seed."""
    config = _config(tmp_path, model_kwargs={"conv_type": "conv"}, dataset="mnist5k", fake_input_size=None,
                     batch_size=500)
    data = build_data(config, CPU)
    finals = []
    for _ in range(2):
        setup = build_training(config, data, CPU, tmp_path)
        train_one_epoch(setup, data, epoch=0)
        finals.append(setup.model.state_dict())
    for key in finals[0]:
        assert torch.equal(finals[0][key], finals[1][key]), key


def test_validate_epoch_reestimates_batchnorm_from_training_batches(tmp_path: Path) -> None:
    """For an adder model the BN statistics become the exact means over the first bn_recalibration_batches
    training batches, and bn_drift is how many standard deviations the stale mean was off."""
    config = _config(tmp_path, bn_recalibration_batches=2)
    torch.manual_seed(0)
    model = nn.Sequential(Adder2d(1, 3, 3), nn.BatchNorm2d(3), nn.Flatten(), nn.LazyLinear(10))
    batches = [(torch.randn(4, 1, 5, 5), torch.randint(0, 10, (4,))) for _ in range(3)]
    model(batches[0][0])
    model.eval()
    stale_mean = model[1].running_mean.clone()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    setup = _hand_setup(config, model, optimizer, AdaptiveLR([]))
    setup.recalibrate_bn = True
    data = TrainingData(batches, batches[:1], 10, (1, 5, 5), None, torch.Generator())
    row = validate_epoch(setup, data, CPU)
    features = model[0](torch.cat([b[0] for b in batches[:2]]))  # (8, 3, 3, 3): the first two batches only
    expected_mean = features.mean(dim=(0, 2, 3))
    torch.testing.assert_close(model[1].running_mean, expected_mean, rtol=1e-5, atol=1e-4)
    per_batch_var = torch.stack([model[0](b[0]).var(dim=(0, 2, 3)) for b in batches[:2]]).mean(0)
    torch.testing.assert_close(model[1].running_var, per_batch_var, rtol=1e-4, atol=1e-3)
    expected_drift = ((stale_mean - expected_mean).abs() / (model[1].running_var + model[1].eps).sqrt()).max()
    assert row["bn_drift"] == pytest.approx(float(expected_drift.detach()), rel=1e-4)
    assert set(row) == {"bn_drift", "val_top1", "val_top5", "val_loss"}


def test_evaluate_counts_top1_top5_and_mean_loss_exactly() -> None:
    logits = torch.tensor([[5.0, 1.0, 0.0, 0.0, 0.0, 0.0], [0.0, 1.0, 2.0, 3.0, 4.0, 5.0],
                           [1.0, 0.5, 0.4, 0.3, 0.2, 0.1]])
    target = torch.tensor([0, 0, 4])  # row 0: top-1; row 1: class 0 ranks 6th; row 2: class 4 ranks 5th

    class Fixed(nn.Module):
        def forward(self, index: torch.Tensor) -> torch.Tensor:
            return logits[index]

    loader = [(torch.tensor([0, 1]), target[:2]), (torch.tensor([2]), target[2:])]
    result = evaluate(Fixed(), loader)
    expected_loss = F.cross_entropy(logits, target).item()
    assert result == {"top1": pytest.approx(100 / 3), "top5": pytest.approx(200 / 3),
                      "loss": pytest.approx(expected_loss), "num_samples": 3}


class _Recorder(Callback):
    def __init__(self, name: str, value: int) -> None:
        self.name, self.value = name, value

    @property
    def state_name(self) -> str:
        return self.name

    def state_dict(self):
        return {"value": self.value}

    def load_state_dict(self, state):
        self.value = state["value"]


def test_callback_states_are_restored_by_name_not_position(tmp_path: Path) -> None:
    config = _config(tmp_path, model_kwargs={"conv_type": "conv"})
    data = build_data(config, CPU)
    setup = build_training(config, data, CPU, tmp_path, callbacks=[_Recorder("a", 1), _Recorder("b", 2)])
    history = [{"epoch": 1, "val_top1": 10.0}]
    save_run_state(tmp_path, setup, history)
    resumed = build_training(config, data, CPU, tmp_path, callbacks=[_Recorder("b", 0), _Recorder("a", 0)])
    messages = []
    assert restore_run_state(tmp_path, resumed, messages.append) == history
    assert [(c.name, c.value) for c in resumed.callbacks] == [("b", 2), ("a", 1)]
    assert messages == [f"Resuming {tmp_path} from epoch 2/2 (1 finished)"]


def test_callbacks_with_one_state_name_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="share the state name 'a'"):
        build_callbacks(_config(tmp_path), [_Recorder("a", 1), _Recorder("a", 2)])


def test_precedence_is_model_defaults_then_recipe_then_options() -> None:
    # lenet5_bn's training defaults: 50 epochs, batch 64, lr 0.1
    config = resolve_config("lenet5_bn", {"epochs": 3, "lr": 0.02, "model_kwargs": {"conv_type": "conv"}},
                            batch_size=16, lr=0.03, model_kwargs={"weight_init": "kaiming"})
    assert (config.epochs, config.batch_size, config.lr) == (3, 16, 0.03)
    assert config.model_kwargs == {"conv_type": "conv", "weight_init": "kaiming"}
    assert resolve_config("lenet5_bn").epochs == 50


def test_run_status_tells_fresh_unfinished_finished_and_different(tmp_path: Path) -> None:
    from frugalvision.train.engine import train

    class StopBeforeSecondEpoch(Callback):
        def on_epoch_start(self, ctx):
            if ctx.epoch == 1:
                raise KeyboardInterrupt

    config = _config(tmp_path, model_kwargs={"conv_type": "conv"}, epochs=2, fake_size=32)
    assert run_status(config) == ("fresh", [])
    with pytest.raises(KeyboardInterrupt):
        train(config, callbacks=[StopBeforeSecondEpoch()], log=None)
    assert run_status(config) == ("unfinished", [])
    assert run_status(config.replace(epochs=3, lr=0.01)) == ("different", ["epochs", "lr"])
    assert run_status(config.replace(device="auto")) == ("unfinished", [])  # where it runs does not count
    train(config, resume=True, log=None)
    assert run_status(config) == ("finished", [])
