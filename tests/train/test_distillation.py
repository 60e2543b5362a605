"""Knowledge distillation (Hinton et al. 2015) in the engine: the loss against a hand-written KL, a frozen teacher,
exact resume, and the one-line errors."""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import pytest
import torch
from torch import nn

from frugalvision import create_model, load_model
from frugalvision.cli.main import main
from frugalvision.errors import CheckpointError, ConfigError
from frugalvision.models import save_model
from frugalvision.run_dir import RunDir
from frugalvision.train.callbacks import Callback
from frugalvision.train.config import TrainConfig
from frugalvision.train.engine import train
from frugalvision.train.objectives import ClassificationObjective, DistillationObjective, distillation_loss


def test_distillation_loss_equals_a_hand_written_kl_at_known_logits() -> None:
    student = torch.tensor([[1.0, 2.0, 0.5], [0.0, -1.0, 3.0]])
    teacher = torch.tensor([[2.0, 1.0, 0.0], [1.0, 1.0, 1.0]])
    temperature = 2.0
    expected = 0.0
    for s_row, t_row in zip(student.tolist(), teacher.tolist()):
        zs = sum(math.exp(v / temperature) for v in s_row)
        zt = sum(math.exp(v / temperature) for v in t_row)
        p = [math.exp(v / temperature) / zt for v in t_row]  # softened teacher
        q = [math.exp(v / temperature) / zs for v in s_row]  # softened student
        expected += sum(pi * math.log(pi / qi) for pi, qi in zip(p, q))
    expected = expected / 2 * temperature**2  # batch mean, times T^2
    assert distillation_loss(student, teacher, temperature).item() == pytest.approx(expected, rel=1e-6)
    assert distillation_loss(teacher, teacher, temperature).item() == pytest.approx(0.0, abs=1e-7)


def test_the_objective_mixes_label_and_distillation_loss_and_never_trains_the_teacher() -> None:
    torch.manual_seed(0)
    student, teacher = nn.Linear(4, 3), nn.Sequential(nn.Linear(4, 3), nn.Dropout(0.5)).eval().requires_grad_(False)
    images, target = torch.randn(5, 4), torch.tensor([0, 1, 2, 1, 0])
    objective = DistillationObjective(teacher, ClassificationObjective("ce"), alpha=0.3, temperature=3.0)
    out = objective(student, images, target)
    logits = student(images)
    expected = 0.7 * nn.functional.cross_entropy(logits, target) + 0.3 * distillation_loss(logits, teacher(images), 3.0)
    assert out.loss.item() == pytest.approx(expected.item(), rel=1e-6)
    out.loss.backward()
    assert all(p.grad is None for p in teacher.parameters()) and not teacher.training
    assert student.weight.grad is not None and student.weight.grad.abs().sum() > 0


def _teacher_run(tmp_path: Path) -> Path:
    config = TrainConfig(model="lenet5_bn", model_kwargs={"conv_type": "conv"}, dataset="fake", fake_size=48,
                         fake_input_size=[1, 28, 28], epochs=1, batch_size=16, eval_batch_size=48, lr=0.05,
                         output=str(tmp_path / "teacher"), device="cpu")
    return train(config, log=None).run_dir


def _student(tmp_path: Path, teacher: Path, out: str, **changes) -> TrainConfig:
    base = dict(model="lenet5_bn", model_kwargs={"conv_type": "adder"}, dataset="fake", fake_size=48,
                fake_input_size=[1, 28, 28], epochs=3, batch_size=16, eval_batch_size=48, lr=0.05,
                bn_recalibration_batches=1, teacher=str(teacher), kd_alpha=0.7, kd_temperature=4.0,
                output=str(tmp_path / out), device="cpu")
    return TrainConfig(**{**base, **changes})


class _StopBefore(Callback):
    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_epoch_start(self, ctx) -> None:
        if ctx.epoch == self.epoch:
            raise KeyboardInterrupt


def test_interrupted_and_resumed_distillation_equals_an_uninterrupted_one(tmp_path: Path) -> None:
    teacher = _teacher_run(tmp_path)
    straight = train(_student(tmp_path, teacher, "a"), log=None)
    assert straight.run_dir.name == "lenet5_bn_adder_kd"
    interrupted = _student(tmp_path, teacher, "b")
    with pytest.raises(KeyboardInterrupt):
        train(interrupted, callbacks=[_StopBefore(2)], log=None)
    resumed = train(interrupted, resume=True, log=None)
    assert resumed.resumed_from == 2
    a, b = load_model(straight.run_dir).state_dict(), load_model(resumed.run_dir).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert [r["train_loss"] for r in straight.history] == [r["train_loss"] for r in resumed.history]
    # the student's checkpoint holds the student only; the teacher is named by path and hash
    assert set(load_model(resumed.run_dir).state_dict()) == set(load_model(teacher).state_dict())
    stored = RunDir(resumed.run_dir).teacher()
    assert stored.path == teacher.resolve()
    assert stored.sha256 == hashlib.sha256(RunDir(teacher).model_file.read_bytes()).hexdigest()


def test_teacher_is_recorded_by_absolute_path_whatever_the_working_folder(tmp_path: Path, monkeypatch) -> None:
    """A teacher given relative to the working folder is stored absolute: the record names the same file when read
    from anywhere else."""
    teacher = _teacher_run(tmp_path)
    monkeypatch.chdir(tmp_path)
    relative = teacher.relative_to(tmp_path)
    run = train(_student(tmp_path, relative, "rel", epochs=1), log=None).run_dir
    monkeypatch.chdir(run)
    raw = json.loads(RunDir(run).config_file.read_text())["teacher"]
    assert raw["path"] == str(teacher.resolve()) and Path(raw["path"]).is_absolute()
    assert RunDir(run).teacher().path == teacher.resolve()


def test_resuming_with_a_changed_teacher_is_refused(tmp_path: Path) -> None:
    teacher = _teacher_run(tmp_path)
    config = _student(tmp_path, teacher, "s", epochs=2)
    with pytest.raises(KeyboardInterrupt):
        train(config, callbacks=[_StopBefore(1)], log=None)
    retrained = TrainConfig(model="lenet5_bn", model_kwargs={"conv_type": "conv"}, dataset="fake", fake_size=48,
                            fake_input_size=[1, 28, 28], epochs=1, batch_size=16, lr=0.01, seed=7,
                            output=str(tmp_path / "teacher"), device="cpu")
    train(retrained, overwrite=True, log=None)
    with pytest.raises(CheckpointError, match="changed since"):
        train(config, resume=True, log=None)


def test_teacher_with_another_class_count_is_a_one_line_error(tmp_path: Path, capsys) -> None:
    teacher = tmp_path / "seven.safetensors"
    save_model(teacher, create_model("lenet5_bn", conv_type="conv", num_classes=7))
    with pytest.raises(ConfigError, match=r"predicts 7 classes, the student's data has 10"):
        train(_student(tmp_path, teacher, "x"), log=None)
    recipe = tmp_path / "r.yaml"
    recipe.write_text("fake_size: 32\nfake_input_size: [1, 28, 28]\n")
    code = main(["train", "--model", "lenet5_bn", "--conv-type", "adder", "--dataset", "fake", "--config", str(recipe),
                 "--teacher", str(teacher), "--epochs", "1", "--output", str(tmp_path / "cli"), "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.count("\n") == 0 and "predicts 7 classes" in err
    assert not RunDir(tmp_path / "cli" / "lenet5_bn_adder_kd").last_file.exists()


def test_teacher_options_are_validated_at_construction() -> None:
    with pytest.raises(ConfigError, match="give teacher too"):
        TrainConfig(teacher_model="resnet20")
    with pytest.raises(ConfigError, match=r"kd_alpha must be <= 1"):
        TrainConfig(teacher="t", kd_alpha=1.5)
    with pytest.raises(ConfigError, match=r"kd_temperature must be > 0"):
        TrainConfig(teacher="t", kd_temperature=0)


def test_the_shipped_distillation_recipe_runs_two_steps(tmp_path: Path, repo_root: Path) -> None:
    """The CIFAR distillation recipe as shipped, on 16 fake images in batches of 8 (two optimizer steps), with a tiny
    CNN run as its teacher."""
    from frugalvision.train.config import load_recipe
    from frugalvision.train.runs import resolve_config

    recipe = load_recipe(repo_root / "recipes" / "cifar10_10k_resnet20_adder_kd.yaml")
    assert recipe["teacher"] and 0 < recipe["kd_alpha"] <= 1 and recipe["model_kwargs"] == {"conv_type": "adder"}
    teacher = train(TrainConfig(model="resnet20", model_kwargs={"conv_type": "conv"}, dataset="fake", fake_size=16,
                                epochs=1, batch_size=8, output=str(tmp_path / "t"), device="cpu"), log=None).run_dir
    config = resolve_config("resnet20", recipe, dataset="fake", data_dir=None, fake_size=16, batch_size=8, epochs=1,
                            teacher=str(teacher), output=str(tmp_path / "runs"), device="cpu")
    result = train(config, log=None)
    assert result.run_dir.name == "resnet20_adder_kd" and len(result.history) == 1
    assert math.isfinite(result.history[0]["train_loss"])


def test_the_engine_keeps_the_teacher_frozen_through_training_steps(tmp_path: Path) -> None:
    from frugalvision.train.builders import build_data, build_training
    from frugalvision.train.distributed import Distributed
    from frugalvision.train.loop import train_one_epoch

    teacher = _teacher_run(tmp_path)
    config = _student(tmp_path, teacher, "f", epochs=1)
    cpu = Distributed(0, 1, torch.device("cpu"))
    data = build_data(config, cpu)
    setup = build_training(config, data, cpu, tmp_path / "f")
    before = {k: v.clone() for k, v in setup.teacher.model.state_dict().items()}
    train_one_epoch(setup, data, epoch=0)
    assert not setup.teacher.model.training
    assert not any(p.requires_grad or p.grad is not None for p in setup.teacher.model.parameters())
    after = setup.teacher.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # BN statistics included
    assert isinstance(setup.objective, DistillationObjective) and setup.objective.alpha == 0.7


def test_distillation_with_bf16_autocast_and_gradient_accumulation_runs_the_teacher_once_per_micro_batch(
        tmp_path: Path) -> None:
    from frugalvision.train.builders import build_data, build_training
    from frugalvision.train.distributed import Distributed
    from frugalvision.train.loop import train_one_epoch

    teacher = _teacher_run(tmp_path)
    # 48 images in micro-batches of 8, two per optimizer step: 6 teacher passes, 3 optimizer steps
    config = _student(tmp_path, teacher, "amp", epochs=1, batch_size=8, grad_accum=2, amp="bf16")
    cpu = Distributed(0, 1, torch.device("cpu"))
    data = build_data(config, cpu)
    setup = build_training(config, data, cpu, tmp_path / "amp")
    teacher_outputs: list[torch.dtype] = []
    steps: list[int] = []
    setup.teacher.model.register_forward_hook(lambda module, inputs, output: teacher_outputs.append(output.dtype))
    setup.optimizer.register_step_post_hook(lambda optimizer, args, kwargs: steps.append(1))
    metrics = train_one_epoch(setup, data, epoch=0)
    assert (len(teacher_outputs), len(steps)) == (6, 3)
    assert set(teacher_outputs) == {torch.bfloat16}  # the teacher runs inside the loop's autocast
    assert math.isfinite(metrics["train_loss"])
