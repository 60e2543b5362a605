"""``frugalvision bench onnx`` on LeNet-5-BN: export checked, both runtimes timed, CSV with the committed columns."""

from __future__ import annotations

import pytest

from frugalvision.cli.main import main

from .conftest import MACHINE_COLUMNS, assert_positive, committed_columns, read_csv


def test_command_times_both_runtimes(tmp_path, capsys, repo_root, one_thread):
    pytest.importorskip("onnxruntime")
    output = tmp_path / "onnx.csv"
    assert main(["bench", "onnx", "--model", "lenet5_bn", "--conv-type", "adder", "--rounds", "3", "--warmup", "1",
                 "--threads", "1", "--batch-size", "2", "--output", str(output)]) == 0
    rows = read_csv(output)
    assert [(r["runtime"], r["threads"], r["batch_size"], r["iters"], r["model"]) for r in rows] == [
        ("pytorch", "1", "2", "3", "lenet5_bn_adder"), ("onnxruntime", "1", "2", "3", "lenet5_bn_adder")]
    assert set(committed_columns(repo_root, "bench_onnx_resnet20_adder.csv")) <= set(rows[0])
    assert MACHINE_COLUMNS <= set(rows[0])
    assert_positive(rows, ("median_ms", "min_ms"))
    out = capsys.readouterr().out
    assert "onnxruntime vs PyTorch max relative error" in out and str(output) in out
