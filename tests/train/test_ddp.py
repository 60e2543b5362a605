"""Multi-process training (DDP) with ``torchrun`` on 2 CPU processes (gloo).

One ``torchrun`` launch (process start-up dominates the run time) runs a probed ``train()`` call and then
``python -m frugalvision train ...`` (distilling from the first run) in the same processes. Checks: the CLI writes one
run folder from rank 0, with the teacher's hash; both ranks see different data yet end with identical parameters;
AdderNet's adaptive learning rate acts on the all-reduced gradient (Chen et al., CVPR 2020, Eq. 13): the first
update of every adder weight has RMS exactly ``eta * lr``. Normalising each rank's gradient before averaging would
give a smaller RMS (the mean of two different unit-RMS directions).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from frugalvision import load_model
from frugalvision.run_dir import RunDir

pytestmark = pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed not available")

_WORKER = textwrap.dedent('''
    import json, runpy, sys
    import torch
    import torch.distributed as dist
    from frugalvision.optim import adder_weights
    from frugalvision.train.callbacks import Callback
    from frugalvision.train.config import TrainConfig
    from frugalvision.train.engine import train

    out = sys.argv[1]

    class Probe(Callback):
        def on_train_start(self, ctx):
            self.start = [w.detach().clone() for w in adder_weights(ctx.model)]
            self.lr = ctx.optimizer.param_groups[0]["lr"]

        def on_step_end(self, ctx, step):
            if ctx.epoch == 0 and step == 0:
                ws = adder_weights(ctx.model)
                self.rms = [float((w.detach() - s).pow(2).mean().sqrt() / self.lr) for w, s in zip(ws, self.start)]
                self.local_bn_mean = ctx.model.bn1.running_mean.tolist()  # from this rank's own batch

        def on_epoch_end(self, ctx, metrics):
            rank = dist.get_rank()
            state = {n: t.detach() for n, t in [*ctx.model.named_parameters(), *ctx.model.named_buffers()]}
            torch.save(state, f"{out}/params{rank}.pt")  # after BN recalibration and validation
            with open(f"{out}/probe{rank}.json", "w") as f:
                json.dump({"rms": self.rms, "bn_mean": self.local_bn_mean, "world": dist.get_world_size()}, f)

    config = TrainConfig(model="resnet20", model_kwargs={"conv_type": "adder"}, dataset="fake", fake_size=32,
                         epochs=1, batch_size=8, eval_batch_size=16, optimizer="sgd", lr=0.1, momentum=0.0,
                         weight_decay=0.0, scheduler="constant", alr="alr", alr_eta=0.2, bn_recalibration="always",
                         bn_recalibration_batches=1,
                         output=out, device="cpu")
    train(config, callbacks=[Probe()], log=None)

    # then exactly what `python -m frugalvision train ...` does (the command destroys the process group)
    sys.argv = ["frugalvision", *sys.argv[2:]]
    try:
        runpy.run_module("frugalvision", run_name="__main__", alter_sys=True)
    except SystemExit as exit_:
        if exit_.code:
            raise
''')


def _torchrun(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", *args]
    # passive OpenMP waiting: numba's and torch's OpenMP pools otherwise spin against each other on small machines
    env = {**os.environ, "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "PASSIVE")}
    result = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


def test_torchrun_two_cpu_ranks(tmp_path: Path) -> None:
    script = tmp_path / "worker.py"
    script.write_text(_WORKER)
    recipe = tmp_path / "tiny.yaml"
    recipe.write_text("fake_size: 32\nbatch_size: 8\neval_batch_size: 16\nbn_recalibration_batches: 2\n")
    # the command distils from the run the probed train() call writes first (a teacher under DDP: each rank runs it on
    # its own shard)
    cli = ["train", "--model", "resnet20", "--conv-type", "adder", "--dataset", "fake", "--epochs", "1", "--config",
           str(recipe), "--output", str(tmp_path / "runs"), "--no-progress",
           "--teacher", str(tmp_path / "resnet20_adder")]
    result = _torchrun([str(script), str(tmp_path), *cli], tmp_path)

    # the probed train() call: different data on the ranks, identical parameters and BN statistics (re-estimated on
    # each rank's shard, then averaged), ALR on the all-reduced gradient
    p0, p1 = (torch.load(tmp_path / f"params{r}.pt", weights_only=True) for r in (0, 1))
    probe0, probe1 = (json.loads((tmp_path / f"probe{r}.json").read_text()) for r in (0, 1))
    assert probe0["world"] == probe1["world"] == 2
    assert probe0["bn_mean"] != probe1["bn_mean"]  # the ranks trained on different samples
    assert p0.keys() == p1.keys()
    for name in p0:
        assert torch.equal(p0[name], p1[name]), name
    for rms in (probe0["rms"], probe1["rms"]):
        assert len(rms) == 20  # 18 3x3 adders + 2 adder shortcuts
        assert rms == pytest.approx([0.2] * 20, rel=1e-4)
    assert (RunDir(tmp_path / "resnet20_adder").model_file).is_file()

    # the command line: rank 0 alone logs and writes one run folder with one model checkpoint
    assert result.stdout.count("resnet20_adder_kd epoch 1/1") == 1
    runs = list((tmp_path / "runs").iterdir())
    assert [r.name for r in runs] == ["resnet20_adder_kd"]
    teacher_record = RunDir(runs[0]).read_config()["teacher"]
    teacher_file = RunDir(tmp_path / "resnet20_adder").model_file
    assert teacher_record["sha256"] == hashlib.sha256(teacher_file.read_bytes()).hexdigest()
    assert len(list(runs[0].glob("model*.safetensors"))) == 1
    model = load_model(runs[0])
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)
