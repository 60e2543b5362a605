"""The committed result runs (results/<dataset>/<run>/) evaluate to the accuracy their metrics.csv reports, through
the command line, on the same images: what docs/cifar10_10k.md tabulates can be checked by anyone."""

from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path

import pytest

from conftest import REPO_ROOT
from frugalvision.cli.main import main
from frugalvision.run_dir import RunDir

RESULTS = REPO_ROOT / "results"
RUNS = sorted(path.parent for path in RESULTS.glob("*/*/model.safetensors"))


def test_result_runs_are_committed_with_their_config_and_metrics():
    assert {run.parent.name for run in RUNS} >= {"cifar10_10k", "mnist5k"}
    for run in map(RunDir, RUNS):
        assert run.config_file.is_file() and run.metrics_file.is_file(), run
        assert not run.last_file.exists(), f"{run}: only the model, config and metrics are committed"


def test_distilled_runs_record_the_committed_teacher():
    distilled = [run for run in map(RunDir, RUNS) if run.teacher() is not None]
    assert {run.path.parent.name for run in distilled} == {"cifar10_10k", "mnist5k"}
    for run in distilled:
        # these runs were trained before teacher paths were stored absolute: theirs are relative to the repository
        teacher = run.teacher(base=RESULTS.parent)
        teacher_file = RunDir(teacher.path).model_file
        assert hashlib.sha256(teacher_file.read_bytes()).hexdigest() == teacher.sha256, run


@pytest.mark.slow
@pytest.mark.parametrize("run", RUNS, ids=lambda run: f"{run.parent.name}/{run.name}")
def test_committed_run_evaluates_to_its_reported_accuracy(run, shared_data, capsys):
    train = RunDir(run).read_config()["train"]
    reported = float(list(csv.DictReader(RunDir(run).metrics_file.open()))[-1]["val_top1"])
    argv = ["eval", "--checkpoint", str(run), "--dataset", train["dataset"], "--split", train["val_split"], "--json"]
    if train["dataset"] == "folder":  # the CIFAR-10 sample beside the repository
        argv += ["--data-dir", str(shared_data(Path(train["data_dir"]).name))]
    assert main(argv) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["top1"] == pytest.approx(reported, abs=1e-9)
