"""RunDir, the one owner of a run folder's files: names as documented, reading, atomic writing, the teacher record."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from frugalvision.errors import CheckpointError, OutputError
from frugalvision.run_dir import RunDir, TeacherRecord, atomic_write

README = Path(__file__).resolve().parents[1] / "README.md"


def test_file_names_are_the_ones_the_readme_documents(tmp_path: Path) -> None:
    documented = " ".join(README.read_text().split())
    sentence = re.search(r"Run folders hold (.*?) logs\.", documented).group(1)
    run = RunDir(tmp_path)
    for path in (run.model_file, run.last_file, run.config_file, run.metrics_file):
        assert path.parent == tmp_path and f"`{path.name}`" in sentence, path.name
    assert "TensorBoard" in sentence and run.tensorboard_dir.name == "tensorboard"


def test_metrics_round_trip_as_floats_with_columns_in_order_of_first_appearance(tmp_path: Path) -> None:
    run = RunDir(tmp_path / "run")
    history = [{"epoch": 1, "val_top1": 12.5}, {"epoch": 2, "val_top1": 50.0, "bn_drift": 0.25}]
    run.write_metrics(history)
    assert run.metrics_file.read_text().splitlines() == ["epoch,val_top1,bn_drift", "1,12.5,", "2,50.0,0.25"]
    assert run.read_metrics() == [{"epoch": 1.0, "val_top1": 12.5}, {"epoch": 2.0, "val_top1": 50.0, "bn_drift": 0.25}]
    assert run.finished_epochs() == 2 and RunDir(tmp_path / "empty").finished_epochs() == 0
    with pytest.raises(CheckpointError, match=r"no metrics\.csv in .*empty: is it a frugalvision run folder"):
        RunDir(tmp_path / "empty").read_metrics()


def test_config_round_trip_and_unreadable_config(tmp_path: Path) -> None:
    run = RunDir(tmp_path)
    assert run.read_config() == {}
    run.write_config({"train": {"epochs": 3}, "model": {"model": "lenet5_bn"}})
    assert run.read_config() == {"train": {"epochs": 3}, "model": {"model": "lenet5_bn"}}
    assert [p.name for p in tmp_path.iterdir()] == ["config.json"]  # no temporary file left behind
    run.config_file.write_text("[1, 2]")
    with pytest.raises(CheckpointError, match="does not hold a JSON object"):
        run.read_config()
    run.config_file.write_text("{not json")
    with pytest.raises(CheckpointError, match="unreadable"):
        run.read_config()


def test_a_failed_write_keeps_the_old_file_and_leaves_nothing_behind(tmp_path: Path) -> None:
    run = RunDir(tmp_path)
    run.write_metrics([{"epoch": 1}])
    (tmp_path / "blocker").write_text("a file where a folder should be")
    with pytest.raises(OutputError, match="cannot write"):
        RunDir(tmp_path / "blocker" / "run").write_config({})

    def half_then_crash(tmp: str) -> None:
        Path(tmp).write_text("epoch\n1\n2")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write(run.metrics_file, half_then_crash)
    assert run.metrics_file.read_text().splitlines() == ["epoch", "1"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["blocker", "metrics.csv"]


def test_teacher_record_absolute_or_relative_to_a_base(tmp_path: Path) -> None:
    run = RunDir(tmp_path / "student")
    run.write_config({"train": {}})
    assert run.teacher() is None
    run.write_config({"teacher": TeacherRecord(tmp_path / "t", "ab" * 32).to_dict()})
    assert run.teacher() == TeacherRecord(tmp_path / "t", "ab" * 32)
    assert run.teacher(base="/elsewhere").path == tmp_path / "t"  # absolute paths ignore the base
    run.write_config({"teacher": {"path": "results/x/teacher", "sha256": "cd" * 32}})  # a run from before
    assert run.teacher(base=tmp_path).path == tmp_path / "results/x/teacher"
