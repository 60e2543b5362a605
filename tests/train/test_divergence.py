"""A run whose loss or weights stop being finite stops at that optimizer step (exit 2, one line), keeps its last
finite epoch for ``--resume``, and never writes a non-finite model. Also under gradient accumulation, bf16 autocast,
a loss scaler that skips overflowing steps, and DDP (two gloo ranks, one of which alone sees the NaN)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from frugalvision.cli.main import main
from frugalvision.errors import TrainingDivergedError
from frugalvision.train.config import TrainConfig
from frugalvision.train.engine import train
from frugalvision.train.objectives import ClassificationObjective, StepOutput


def _config(tmp_path: Path, **changes) -> TrainConfig:
    base = dict(model="lenet5_bn", model_kwargs={"conv_type": "conv"}, dataset="fake", fake_size=64,
                fake_input_size=[1, 28, 28], epochs=2, batch_size=8, eval_batch_size=32, lr=0.05,
                scheduler="constant", output=str(tmp_path), device="cpu")
    return TrainConfig.from_dict({**base, **changes})


class PoisonedObjective:
    """The label loss, except at the listed (epoch, micro-batch) calls, where the loss is multiplied by NaN (its
    gradient is then NaN too); ``grad_inf`` instead makes the gradient infinite and keeps the loss finite."""

    def __init__(self, config: TrainConfig, at: set[tuple[int, int]], *, grad_inf: bool = False) -> None:
        self.inner = ClassificationObjective(config.loss, config.label_smoothing)
        self.at, self.grad_inf = at, grad_inf
        self.epoch, self.calls = 0, 0
        self.loss_dtypes: list[torch.dtype] = []

    def start_epoch(self, epoch: int) -> None:
        self.epoch, self.calls = epoch, 0

    def __call__(self, model, images, target) -> StepOutput:
        out = self.inner(model, images, target)
        self.loss_dtypes.append(out.logits.dtype)
        hit = (self.epoch, self.calls) in self.at
        self.calls += 1
        if hit and self.grad_inf:
            out.logits.register_hook(lambda grad: grad * float("inf"))
            return out
        return StepOutput(out.loss * float("nan"), out.logits) if hit else out


def _epoch_tracker(objective: PoisonedObjective):
    from frugalvision.train.callbacks import Callback

    class Tracker(Callback):
        def on_epoch_start(self, ctx) -> None:
            objective.start_epoch(ctx.epoch)

    return Tracker()


def _train(config: TrainConfig, objective: PoisonedObjective | None = None, **kwargs):
    callbacks = [_epoch_tracker(objective)] if objective is not None else []
    return train(config, objective=objective, callbacks=callbacks, log=None, **kwargs)


def _all_finite(path: Path) -> bool:
    return all(bool(torch.isfinite(t).all()) for t in load_file(str(path)).values() if t.is_floating_point())


def test_cli_divergence_exits_2_in_the_first_epoch_with_one_line_and_no_model(tmp_path, capsys) -> None:
    code = main(["train", "--model", "lenet5_bn", "--conv-type", "conv", "--epochs", "2", "--lr", "1e8",
                 "--output", str(tmp_path), "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1
    assert "training diverged at epoch 1, optimizer step" in err and "--lr, now 1e+08" in err
    run_dir = tmp_path / "lenet5_bn_conv"
    assert not list(run_dir.glob("*.safetensors"))  # no model, no resumable state of a diverged run


def test_divergence_keeps_the_last_finite_epoch_and_resume_with_a_lower_lr_continues(tmp_path) -> None:
    config = _config(tmp_path, lr=0.05)
    poisoned = PoisonedObjective(config, {(1, 2)})  # epoch 2, third step
    with pytest.raises(TrainingDivergedError, match=r"epoch 2, optimizer step 3/8 .*loss is not finite.*keeps "
                                                    r"epoch 1"):
        _train(config, poisoned, overwrite=True)
    run_dir = config.run_dir
    assert len((run_dir / "metrics.csv").read_text().strip().splitlines()) == 2  # header + epoch 1
    for name in ("model.safetensors", "last.safetensors"):
        assert _all_finite(run_dir / name), name
    epoch1 = load_file(str(run_dir / "model.safetensors"))

    lower = _config(tmp_path, lr=0.01)
    seen_lrs = []

    from frugalvision.train.callbacks import Callback

    class Probe(Callback):
        def on_step_end(self, ctx, step) -> None:
            seen_lrs.append(ctx.optimizer.param_groups[0]["lr"])

    result = train(lower, resume=True, callbacks=[Probe()], log=None)
    assert result.resumed_from == 1 and len(result.history) == 2
    assert seen_lrs and all(lr == pytest.approx(0.01) for lr in seen_lrs)  # the stored schedule, rescaled
    final = load_file(str(run_dir / "model.safetensors"))
    assert _all_finite(run_dir / "model.safetensors")
    assert any(not torch.equal(final[k], epoch1[k]) for k in epoch1)  # epoch 2 trained


def test_parameters_stepped_to_inf_stop_the_run_although_the_loss_was_finite(tmp_path) -> None:
    config = _config(tmp_path, lr=1e10, momentum=0.0, weight_decay=0.0, optimizer="sgd")
    inner = ClassificationObjective(config.loss, config.label_smoothing)

    def huge(model, images, target) -> StepOutput:  # a finite loss ~1e35 whose step overflows the weights
        out = inner(model, images, target)
        return StepOutput(out.loss * 1e35, out.logits)

    with pytest.raises(TrainingDivergedError, match=r"epoch 1, optimizer step 1/8 .*parameters are no longer"):
        train(config, objective=huge, log=None, overwrite=True)
    assert not list(config.run_dir.glob("*.safetensors"))


def test_gradient_accumulation_checks_every_micro_batch_of_the_step(tmp_path) -> None:
    """With 2 micro-batches per step, a NaN in the first micro-batch of step 3 is reported as a loss at step 3."""
    config = _config(tmp_path, grad_accum=2)
    poisoned = PoisonedObjective(config, {(0, 4)})  # micro-batch 5 = first half of optimizer step 3
    with pytest.raises(TrainingDivergedError, match=r"epoch 1, optimizer step 3/4 .*loss is not finite"):
        _train(config, poisoned, overwrite=True)
    assert poisoned.calls == 6  # stopped after the step's second micro-batch, not before, not later


def test_bf16_autocast_nan_stops_the_run(tmp_path) -> None:
    config = _config(tmp_path, amp="bf16")
    poisoned = PoisonedObjective(config, {(0, 1)})
    with pytest.raises(TrainingDivergedError, match=r"epoch 1, optimizer step 2/8 .*loss is not finite"):
        _train(config, poisoned, overwrite=True)
    assert torch.bfloat16 in poisoned.loss_dtypes  # autocast was on


def test_steps_skipped_by_the_loss_scaler_are_not_a_divergence(tmp_path, monkeypatch) -> None:
    """An fp16-style loss scaler (CPU GradScaler) skips the step whose gradient overflows and lowers its scale; the
    run goes on and saves finite models."""
    from frugalvision.train import builders

    build_precision = builders.build_precision

    def with_scaler(config, device):
        precision = build_precision(config, device)
        precision.scaler = torch.amp.GradScaler("cpu", init_scale=2.0**8, enabled=True)
        return precision

    monkeypatch.setattr(builders, "build_precision", with_scaler)
    config = _config(tmp_path, epochs=1)
    poisoned = PoisonedObjective(config, {(0, 1), (0, 3)}, grad_inf=True)
    result = train(config, objective=poisoned, callbacks=[_epoch_tracker(poisoned)], log=None, overwrite=True)
    assert len(result.history) == 1
    assert _all_finite(config.run_dir / "model.safetensors")
    from frugalvision.run_dir import RunDir

    stored_scale = RunDir(config.run_dir).read_training_state()["scaler"]["scale"]
    assert stored_scale == 2.0**8 / 4  # two skipped steps, each halving the scale (growth needs 2000 steps)


_DDP_WORKER = textwrap.dedent('''
    import sys
    import torch
    import torch.distributed as dist
    from frugalvision.errors import TrainingDivergedError
    from frugalvision.train.config import TrainConfig
    from frugalvision.train.engine import train
    from frugalvision.train.objectives import ClassificationObjective, StepOutput

    out = sys.argv[1]
    config = TrainConfig(model="lenet5_bn", model_kwargs={"conv_type": "conv"}, dataset="fake", fake_size=64,
                         fake_input_size=[1, 28, 28], epochs=1, batch_size=8, eval_batch_size=16, lr=0.05,
                         output=out, device="cpu")
    inner = ClassificationObjective(config.loss, config.label_smoothing)
    calls = [0]

    def objective(model, images, target):  # rank 1 alone sees a NaN loss at its third step
        result = inner(model, images, target)
        calls[0] += 1
        if dist.get_rank() == 1 and calls[0] == 3:
            return StepOutput(result.loss * float("nan"), result.logits)
        return result

    try:
        train(config, objective=objective, log=None)
        message = "finished"
    except TrainingDivergedError as error:
        message = str(error)
    with open(f"{out}/rank{dist.get_rank()}.txt", "w") as f:
        f.write(f"{message}\\n{calls[0]}")
''')


@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed not available")
def test_ddp_ranks_stop_together_when_one_rank_diverges(tmp_path) -> None:
    script = tmp_path / "worker.py"
    script.write_text(_DDP_WORKER)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(script),
           str(tmp_path)]
    env = {**os.environ, "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "PASSIVE")}
    result = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    reports = [(tmp_path / f"rank{r}.txt").read_text().splitlines() for r in (0, 1)]
    for message, calls in reports:
        assert "optimizer step 3/" in message and "loss is not finite" in message
        assert calls == "3"  # both ranks stopped after the same step, none waited for the other
    assert not list((tmp_path / "lenet5_bn_conv").glob("*.safetensors"))
