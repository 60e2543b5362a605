"""Optimisation ablation: grid bookkeeping, table files, figure, reuse of finished runs."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from frugalvision.analysis.ablation import markdown_table, run_addernet_optim
from frugalvision.cli.main import main
from frugalvision.run_dir import RunDir

TINY = {"dataset": "fake", "fake_input_size": [1, 28, 28], "fake_size": 32, "batch_size": 16, "eval_batch_size": 32,
        "bn_recalibration_batches": 2}


def test_ablation_writes_table_and_figure(tmp_path: Path) -> None:
    result = run_addernet_optim(tmp_path / "runs", epochs=1, grads=("full", "sign"), lr_modes=("alr",),
                                table=tmp_path / "docs" / "table.md", figure=tmp_path / "docs" / "fig.png", log=None,
                                **TINY)
    assert [(r["weight_grad"], r["lr_scaling"]) for r in result.rows] == [("full", "alr"), ("sign", "alr")]
    assert result.csv_path == tmp_path / "docs" / "table.csv"
    with result.csv_path.open() as f:
        rows = list(csv.DictReader(f))
    assert [r["weight_grad"] for r in rows] == ["full", "sign"] and float(rows[0]["epochs"]) == 1
    text = result.markdown_path.read_text()
    assert "| full-precision (Eq. 5) | ALR (η = 0.2) |" in text and "| sign | ALR (η = 0.2) |" in text
    assert "![learning curves of the ablation](fig.png)" in text and "`fake`, 1 epochs" in text
    assert result.figure_path.read_bytes()[:4] == b"\x89PNG"
    # the sign-gradient run really used the sign gradient
    config = RunDir(result.runs["sign_alr"]).read_config()
    assert config["model"]["kwargs"]["weight_grad"] == "sign" and config["train"]["alr"] == "alr"
    # a second call reuses the finished runs
    messages: list[str] = []
    again = run_addernet_optim(tmp_path / "runs", epochs=1, grads=("full", "sign"), lr_modes=("alr",),
                               log=messages.append, **TINY)
    assert len(messages) == 2 and all(m.startswith("Reusing") for m in messages)
    assert [r["best_val_top1"] for r in again.rows] == [r["best_val_top1"] for r in result.rows]


def test_ablation_rejects_unknown_modes(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="LR mode"):
        run_addernet_optim(tmp_path, lr_modes=("fast",))
    with pytest.raises(ValueError, match="weight gradient"):
        run_addernet_optim(tmp_path, grads=("exact",))


def test_ablation_cli_rejects_unknown_name(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["ablation", "nope"])
    assert exit_info.value.code == 2


def test_markdown_marks_best_row() -> None:
    settings = {"dataset": "mnist5k", "epochs": 3, "optimizer": "sgd", "momentum": 0.9, "weight_decay": 5e-4,
                "batch_size": 128, "lr": 0.1, "scheduler": "cosine", "augment": True, "seed": 0, "alr_eta": 0.2}
    rows = [{"weight_grad": "full", "lr_scaling": "alr", "best_val_top1": 98.0, "final_val_top1": 97.5,
             "final_train_loss": 0.1, "seconds_per_epoch": 2.0},
            {"weight_grad": "sign", "lr_scaling": "none", "best_val_top1": 60.0, "final_val_top1": 59.0,
             "final_train_loss": 1.1, "seconds_per_epoch": 2.0}]
    text = markdown_table(rows, settings)
    assert "**98.00**" in text and "**60.00**" not in text
